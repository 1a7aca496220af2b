//! OpenAPI v3 as far as kubectl needs it: the root index, and per group-version the paths
//! (so `kubectl apply` sees that PATCH takes `fieldValidation` and lets the server check
//! fields) and the schemas `kubectl explain` reads, generated from the Rust types.

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::resources::{self, Resource};

/// `/openapi/v3`: where each group-version's document is.
pub fn root() -> Value {
    let mut paths = Map::new();
    for gv in group_versions() {
        paths.insert(
            gv.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", crate::discovery::KUBERNETES_MINOR)}),
        );
    }
    json!({ "paths": paths })
}

/// `/openapi/v2` as JSON: a document without definitions (the schemas are in v3; v2 only
/// answers kubectl's fallback for kinds v3 does not know).
pub fn v2_empty() -> Value {
    json!({"swagger": "2.0", "info": {"title": "oxivirt", "version": "v1"}, "paths": {}, "definitions": {}})
}

/// `api/v1`, `apis/kubevirt.io/v1`, ...
fn group_versions() -> Vec<String> {
    let mut out = vec!["api/v1".to_string()];
    out.extend(resources::GROUPS.iter().map(|g| format!("apis/{g}/v1")));
    out
}

/// The document of `gv` (`api/v1`, `apis/<group>/v1`).
pub fn document(gv: &str) -> Option<&'static Value> {
    static DOCS: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    let docs = DOCS.get_or_init(|| {
        group_versions()
            .into_iter()
            .map(|gv| {
                let doc = build(&gv);
                (gv, doc)
            })
            .collect()
    });
    docs.iter().find(|(k, _)| k == gv).map(|(_, v)| v)
}

fn schema_name(r: &Resource) -> String {
    match r.group {
        "" => format!("io.k8s.api.core.v1.{}", r.kind),
        "kubevirt.io" => format!("io.kubevirt.v1.{}", r.kind),
        "k8s.cni.cncf.io" => format!("io.cncf.cni.k8s.v1.{}", r.kind),
        g => format!("{g}.v1.{}", r.kind),
    }
}

fn gvk(r: &Resource) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

fn param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
        "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(r: &Resource, verb: &str, action: &str) -> Value {
    let mut params = vec![param(
        "dryRun",
        "When present, modifications are not persisted.",
    )];
    if matches!(verb, "post" | "put" | "patch") {
        params.push(param(
            "fieldManager",
            "A name of the actor making the changes.",
        ));
        params.push(param(
            "fieldValidation",
            "How the server handles unknown or duplicate fields: Ignore, Warn or Strict.",
        ));
    }
    let schema = json!({"$ref": format!("#/components/schemas/{}", schema_name(r))});
    json!({
        "operationId": format!("{action}{}", r.kind),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(r),
    })
}

fn build(gv: &str) -> Value {
    let group = gv
        .strip_prefix("apis/")
        .and_then(|g| g.strip_suffix("/v1"))
        .unwrap_or("");
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in resources::in_group(group) {
        let base = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/v1")
        };
        let coll = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        paths.insert(
            coll.clone(),
            json!({"get": operation(r, "get", "list"), "post": operation(r, "post", "post")}),
        );
        paths.insert(
            format!("{coll}/{{name}}"),
            json!({
                "get": operation(r, "get", "get"), "put": operation(r, "put", "put"),
                "patch": operation(r, "patch", "patch"), "delete": operation(r, "delete", "delete"),
            }),
        );
        let mut schema = schema_of(r, &mut schemas);
        if let Value::Object(m) = &mut schema {
            m.insert("x-kubernetes-group-version-kind".into(), json!([gvk(r)]));
        }
        schemas.insert(schema_name(r), schema);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "oxivirt", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The schema of `r`'s objects; the types' own definitions go into `defs`.
fn schema_of(r: &Resource, defs: &mut Map<String, Value>) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let schema = match r.kind {
        "VirtualMachine" => generator.subschema_for::<oxivirt_api::VirtualMachine>(),
        "VirtualMachineInstance" => {
            generator.subschema_for::<oxivirt_api::VirtualMachineInstance>()
        }
        "NetworkAttachmentDefinition" => {
            generator.subschema_for::<oxivirt_api::NetworkAttachmentDefinition>()
        }
        kind => {
            return json!({
                "description": format!("{kind}: a Kubernetes core object"),
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
            });
        }
    };
    for (k, v) in generator.take_definitions(true) {
        defs.entry(k).or_insert(v);
    }
    // The type's schema is a $ref into its definitions: inline it under the API name.
    let target = schema
        .as_value()
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|s| s.rsplit('/').next())
        .map(str::to_string);
    match target.and_then(|t| defs.remove(&t)) {
        Some(v) => v,
        None => schema.to_value(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_of_every_kind_takes_field_validation() {
        for gv in group_versions() {
            let doc = document(&gv).expect("doc");
            let patches: Vec<&Value> = doc["paths"]
                .as_object()
                .expect("paths")
                .values()
                .filter_map(|p| p.get("patch"))
                .collect();
            assert!(!patches.is_empty(), "{gv}");
            for p in patches {
                assert!(p["parameters"]
                    .as_array()
                    .expect("params")
                    .iter()
                    .any(|x| x["name"] == "fieldValidation"));
            }
        }
        let kv = document("apis/kubevirt.io/v1").expect("kubevirt");
        let vm = &kv["components"]["schemas"]["io.kubevirt.v1.VirtualMachine"];
        assert_eq!(
            vm["x-kubernetes-group-version-kind"][0]["kind"],
            "VirtualMachine"
        );
        assert!(vm["properties"]["spec"].is_object(), "{vm}");
    }
}
