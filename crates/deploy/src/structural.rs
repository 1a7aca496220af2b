//! Structural schemas, as Kubernetes requires of a CRD's `openAPIV3Schema`: from the
//! schemars (OpenAPI 3.0) output to a schema the API server accepts ([`make_structural`]),
//! the rules themselves ([`check`]), and validation of an object with the server's
//! pruning of null and unknown fields ([`validate`]), so tests can see that a manifest is
//! admitted.

use serde_json::{json, Map, Value};

/// The formats Kubernetes knows for CRDs; schemars' others (`uint32`, `uint`, ...) go.
const FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "date",
    "date-time",
    "password",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
];

/// JSON-schema keys a structural schema may not carry (or that only mean something to
/// JSON-schema tooling).
const DROP: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "definitions",
    "$defs",
    "components",
    "default",
    "examples",
];

/// The schemars output of a type made structural:
/// - a `true`/`{}` schema (a `serde_json::Value` field) keeps anything:
///   `x-kubernetes-preserve-unknown-fields: true`;
/// - `anyOf`/`oneOf` of one schema and a null one (an `Option`) becomes that schema with
///   `nullable: true`: the server then keeps a null as written (the seed's `default:`), as
///   `oxivirtd` stores it, so a second `kubectl apply` of the same file is `unchanged`
///   (a pruned null would make the list holding it differ from the last applied one);
///   fields that are not `Option`s are not nullable, and the server prunes their nulls;
/// - `properties` with `additionalProperties` (a `#[serde(flatten)]` map of extra fields)
///   becomes `x-kubernetes-preserve-unknown-fields: true`; `additionalProperties: false`
///   (`deny_unknown_fields`) goes: the server prunes unknown fields;
/// - the root's `metadata` is `{type: object}` (the server's own schema applies);
/// - formats Kubernetes does not know, defaults, titles and definitions go.
///
/// `$ref`s are not resolved here: the generator inlines subschemas, and [`check`] refuses
/// any left.
pub fn make_structural(schema: Value) -> Value {
    let mut s = node(schema);
    if let Value::Object(m) = &mut s {
        m.entry("type").or_insert(json!("object"));
        m.remove("nullable");
        // The server sets apiVersion and kind; they are not the schema's to require.
        if let Some(Value::Array(req)) = m.get_mut("required") {
            req.retain(|r| r != "apiVersion" && r != "kind");
            if req.is_empty() {
                m.remove("required");
            }
        }
        if let Some(Value::Object(props)) = m.get_mut("properties") {
            if props.contains_key("metadata") {
                props.insert("metadata".into(), json!({"type": "object"}));
            }
            // A status kept as written (a `Value`) is still an object.
            if let Some(Value::Object(st)) = props.get_mut("status") {
                st.entry("type").or_insert(json!("object"));
            }
        }
    }
    s
}

fn is_null_schema(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            m.get("type") == Some(&json!("null"))
                || (m.len() == 1 && m.get("nullable") == Some(&json!(true)))
                || (m.get("enum") == Some(&json!([null])))
        }
        _ => false,
    }
}

fn node(v: Value) -> Value {
    let mut m = match v {
        Value::Bool(_) => return json!({"x-kubernetes-preserve-unknown-fields": true}),
        Value::Object(m) => m,
        other => return other,
    };
    for k in DROP {
        m.remove(*k);
    }
    // anyOf/oneOf [X, null] → X, nullable.
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(branches)) = m.get(key) else {
            continue;
        };
        let (nulls, rest): (Vec<&Value>, Vec<&Value>) =
            branches.iter().partition(|b| is_null_schema(b));
        if !nulls.is_empty() && rest.len() == 1 {
            let inner = rest[0].clone();
            m.remove(key);
            m.insert("nullable".into(), json!(true));
            if let Value::Object(inner) = node(inner) {
                for (k, v) in inner {
                    m.entry(k).or_insert(v);
                }
            }
        }
    }
    // type: [X, "null"] (JSON-schema style) → X, nullable.
    if let Some(Value::Array(types)) = m.get("type") {
        let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if rest.len() == 1 {
            if rest.len() < types.len() {
                m.insert("nullable".into(), json!(true));
            }
            m.insert("type".into(), rest[0].clone());
        }
    }
    if let Some(Value::Array(e)) = m.get_mut("enum") {
        // `Option<Enum>`: null is `nullable`'s business, not a value of the enum.
        e.retain(|x| !x.is_null());
    }
    if let Some(f) = m.get("format").and_then(Value::as_str) {
        if !FORMATS.contains(&f) {
            m.remove("format");
        }
    }
    for key in ["properties"] {
        if let Some(Value::Object(props)) = m.remove(key) {
            let props: Map<String, Value> = props.into_iter().map(|(k, v)| (k, node(v))).collect();
            m.insert(key.into(), Value::Object(props));
        }
    }
    if let Some(items) = m.remove("items") {
        m.insert("items".into(), node(items));
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(bs)) = m.remove(key) {
            m.insert(key.into(), Value::Array(bs.into_iter().map(node).collect()));
        }
    }
    match m.remove("additionalProperties") {
        None | Some(Value::Bool(false)) => {}
        Some(ap) => {
            let open =
                matches!(&ap, Value::Bool(true)) || matches!(&ap, Value::Object(o) if o.is_empty());
            if m.contains_key("properties") || open {
                m.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
            } else {
                m.insert("additionalProperties".into(), node(ap));
            }
        }
    }
    if m.contains_key("properties") || m.contains_key("additionalProperties") {
        m.entry("type").or_insert(json!("object"));
    }
    let int_or_string = m.get("x-kubernetes-int-or-string") == Some(&json!(true));
    if !m.contains_key("type") && !int_or_string {
        m.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
    }
    Value::Object(m)
}

const TYPES: &[&str] = &["object", "array", "string", "integer", "number", "boolean"];

/// Kubernetes' rules for a structural schema; every breach, with its path.
pub fn check(schema: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    check_node(schema, "", true, &mut errs);
    if schema.get("type") != Some(&json!("object")) {
        errs.push("the root must be of type object".into());
    }
    if let Some(meta) = schema.get("properties").and_then(|p| p.get("metadata")) {
        let ok = meta
            .as_object()
            .is_some_and(|m| m.keys().all(|k| k == "type" || k == "description"));
        if !ok {
            errs.push(".properties.metadata: only type (object) is allowed".into());
        }
    }
    errs
}

fn check_node(s: &Value, path: &str, value_node: bool, errs: &mut Vec<String>) {
    let Some(m) = s.as_object() else {
        errs.push(format!("{path}: a schema must be an object, found {s}"));
        return;
    };
    for k in ["$ref", "definitions", "$defs"] {
        if m.contains_key(k) {
            errs.push(format!("{path}: {k} is not allowed"));
        }
    }
    let preserve = m.get("x-kubernetes-preserve-unknown-fields");
    if preserve.is_some_and(|p| p != &json!(true)) {
        errs.push(format!(
            "{path}: x-kubernetes-preserve-unknown-fields must be true or absent"
        ));
    }
    let int_or_string = m.get("x-kubernetes-int-or-string") == Some(&json!(true));
    match m.get("type") {
        Some(Value::String(t)) if t == "array" && !m.contains_key("items") => {
            errs.push(format!("{path}: an array needs items"));
        }
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {}
        Some(t) => errs.push(format!("{path}: type {t} is not one of {TYPES:?}")),
        None if value_node && !int_or_string && preserve.is_none() => {
            errs.push(format!("{path}: type is missing"))
        }
        None => {}
    }
    if int_or_string {
        let ok = m.get("type").is_none()
            && m.get("anyOf")
                .is_none_or(|a| a == &json!([{"type": "integer"}, {"type": "string"}]));
        if !ok {
            errs.push(format!(
                "{path}: x-kubernetes-int-or-string takes no type and only anyOf [integer, string]"
            ));
        }
    }
    if m.contains_key("properties") && m.contains_key("additionalProperties") {
        errs.push(format!(
            "{path}: properties and additionalProperties exclude each other"
        ));
    }
    if m.get("additionalProperties") == Some(&json!(false)) {
        errs.push(format!(
            "{path}: additionalProperties: false is not allowed"
        ));
    }
    if let Some(n) = m.get("nullable") {
        if !n.is_boolean() {
            errs.push(format!("{path}: nullable must be a boolean"));
        }
    }
    if !value_node {
        // Inside anyOf/allOf/oneOf/not: validation only.
        for k in [
            "type",
            "description",
            "default",
            "additionalProperties",
            "nullable",
            "x-kubernetes-preserve-unknown-fields",
        ] {
            if m.contains_key(k) {
                errs.push(format!(
                    "{path}: {k} is not allowed under a logical junctor"
                ));
            }
        }
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            check_node(v, &format!("{path}.properties.{k}"), value_node, errs);
        }
    }
    if let Some(items) = m.get("items") {
        check_node(items, &format!("{path}.items"), value_node, errs);
    }
    if let Some(ap) = m.get("additionalProperties").filter(|a| a.is_object()) {
        check_node(
            ap,
            &format!("{path}.additionalProperties"),
            value_node,
            errs,
        );
    }
    for k in ["anyOf", "oneOf", "allOf"] {
        if let Some(bs) = m.get(k).and_then(Value::as_array) {
            // The int-or-string anyOf is checked as a whole above.
            if !int_or_string {
                for (i, b) in bs.iter().enumerate() {
                    check_node(b, &format!("{path}.{k}[{i}]"), false, errs);
                }
            }
        }
    }
    if let Some(not) = m.get("not") {
        check_node(not, &format!("{path}.not"), false, errs);
    }
}

/// Validates `v` against a structural `schema` as the API server does after pruning:
/// a null of a field that is not `nullable` is dropped (as the server prunes the seed's
/// `default:`), fields the schema does not know are reported (what `kubectl apply`'s
/// strict field validation refuses), then types, enums, required fields and bounds are
/// checked. Returns every error, with its path.
pub fn validate(schema: &Value, v: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    // The root's metadata is the server's ObjectMeta, not the CRD's schema.
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        if o.remove("metadata").is_some_and(|m| !m.is_object()) {
            errs.push(".metadata: expected object".to_string());
        }
    }
    validate_node(schema, &v, "", &mut errs);
    errs
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => false,
    }
}

fn validate_node(s: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let preserve = s.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if v.is_null() {
        if s.get("nullable") != Some(&json!(true)) && !preserve {
            errs.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    if s.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errs.push(format!("{path}: expected an integer or a string, got {v}"));
        }
        return;
    }
    if let Some(t) = s.get("type").and_then(Value::as_str) {
        if !type_ok(t, v) {
            errs.push(format!("{path}: expected {t}, got {v}"));
            return;
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            errs.push(format!(
                "{path}: {v} is not one of {}",
                Value::Array(e.clone())
            ));
        }
    }
    if let (Some(min), Some(n)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if n < min {
            errs.push(format!("{path}: {n} is less than {min}"));
        }
    }
    if let (Some(items), Some(a)) = (s.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            validate_node(items, x, &format!("{path}[{i}]"), errs);
        }
    }
    let Some(o) = v.as_object() else { return };
    let props = s.get("properties").and_then(Value::as_object);
    // Pruning: nulls of fields that are not nullable go before validation.
    let present = |k: &str| {
        o.get(k).is_some_and(|x| {
            !x.is_null()
                || props.and_then(|p| p.get(k)).and_then(|p| p.get("nullable"))
                    == Some(&json!(true))
        })
    };
    if let Some(req) = s.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !present(r) {
                errs.push(format!("{path}.{r}: required"));
            }
        }
    }
    for (k, x) in o {
        let sub = format!("{path}.{k}");
        match props.and_then(|p| p.get(k)) {
            Some(ps) => {
                if x.is_null() && ps.get("nullable") != Some(&json!(true)) {
                    continue; // pruned
                }
                validate_node(ps, x, &sub, errs);
            }
            None => match s.get("additionalProperties").filter(|a| a.is_object()) {
                Some(ap) => validate_node(ap, x, &sub, errs),
                None if preserve => {}
                None => errs.push(format!("{sub}: unknown field")),
            },
        }
    }
}
