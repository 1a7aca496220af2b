//! What the API server, KubeVirt's and Multus's admission do to an object before it is
//! stored: names, namespaces, KubeVirt's validation and defaults (its messages, its
//! webhook's names), NAD configs that must be JSON, unknown fields refused by name.

use serde_json::{Map, Value};

use crate::error::{ApiError, Cause};
use crate::resources::Resource;

/// The longest object accepted (etcd's default request limit is 1.5 MiB).
pub const MAX_OBJECT_BYTES: usize = 3 * 512 * 1024;

/// What admission hands back besides the object: warnings for the client.
#[derive(Debug, Default)]
pub struct Admitted {
    pub warnings: Vec<String>,
}

fn cause(field: impl Into<String>, message: impl Into<String>) -> Cause {
    Cause {
        field: field.into(),
        message: message.into(),
    }
}

fn invalid(r: &'static Resource, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        resource: r,
        name: name.to_string(),
        causes,
    }
}

/// A DNS-1123 subdomain (object names), or why not, in Kubernetes' words.
pub fn dns1123_subdomain(name: &str) -> Option<String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    if name.is_empty()
        || !ok_chars
        || !ends_ok(name.bytes().next())
        || !ends_ok(name.bytes().last())
        || name.split('.').any(str::is_empty)
    {
        return Some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into(),
        );
    }
    None
}

/// A DNS-1123 label (namespace names), or why not.
pub fn dns1123_label(name: &str) -> Option<String> {
    if name.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    if name.contains('.') || dns1123_subdomain(name).is_some() {
        return Some(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into(),
        );
    }
    None
}

/// Checks the object's name against its kind's rules.
pub fn check_name(r: &'static Resource, name: &str) -> Result<(), ApiError> {
    // Namespaces are labels (they become DNS labels of Services); every other kind
    // here, APIServices (`v1.group`) among them, takes a subdomain.
    let why = if r.kind == "Namespace" {
        dns1123_label(name)
    } else {
        dns1123_subdomain(name)
    };
    match why {
        Some(w) => Err(invalid(
            r,
            name,
            vec![cause(
                "metadata.name",
                format!("Invalid value: {name:?}: {w}"),
            )],
        )),
        None => Ok(()),
    }
}

/// Removes `null` members recursively, as the API server prunes them from custom
/// resources (the seed's `default:` under `multus`).
pub fn prune_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(prune_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

/// Deserialises `v` into `T`, naming the field that does not fit.
fn typed<T: serde::de::DeserializeOwned>(
    r: &'static Resource,
    name: &str,
    v: &Value,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        invalid(r, name, vec![cause(path, e.into_inner().to_string())])
    })
}

fn denied(
    r: &'static Resource,
    name: &str,
    webhook: &'static str,
    errs: Vec<oxivirt_api::ValidationError>,
) -> ApiError {
    ApiError::Denied {
        resource: r,
        name: name.to_string(),
        webhook,
        causes: errs
            .into_iter()
            .map(|e| cause(e.field, e.message))
            .collect(),
    }
}

/// Multus's side of a VM's networks: a `multus.networkName` names a
/// NetworkAttachmentDefinition as `[namespace/]name`, which Multus would otherwise only
/// fail to find when the VM starts.
fn multus_network_names(
    r: &'static Resource,
    name: &str,
    base: &str,
    spec: &oxivirt_api::VmiSpec,
) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    for (i, n) in spec.networks.iter().enumerate() {
        let Some(m) = &n.multus else { continue };
        let reference = m.network_name.as_str();
        if reference.is_empty() {
            continue; // KubeVirt's own refusal.
        }
        let why = match reference.split_once('/') {
            Some((ns, nad)) => dns1123_label(ns)
                .map(|w| format!("the namespace {ns:?} {w}"))
                .or_else(|| dns1123_subdomain(nad).map(|w| format!("the name {nad:?} {w}"))),
            None => dns1123_subdomain(reference),
        };
        if let Some(why) = why {
            causes.push(cause(
                format!("{base}.networks[{i}].multus.networkName"),
                format!(
                    "Invalid value: {reference:?}: must be [namespace/]name of a NetworkAttachmentDefinition: {why}"
                ),
            ));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(r, name, causes))
    }
}

/// Refuses members of the object that its kind does not have (a typo like `spex`, which
/// would otherwise be dropped without a word), as the API server's strict decoding of a
/// custom resource does.
fn known_top_level(r: &'static Resource, object: &Value) -> Result<(), ApiError> {
    const KNOWN: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
    let unknown: Vec<String> = object
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| !KNOWN.contains(&k.as_str()))
                .map(|k| format!("unknown field {k:?}"))
                .collect()
        })
        .unwrap_or_default();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(ApiError::BadRequest(format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
        unknown.join(", "),
        kind = r.kind,
        version = r.version,
    )))
}

/// Admits an object of kind `r` for create or update: validates it as its owner would
/// and applies the defaults stored with it. `object` is the whole object, metadata
/// already settled by the caller.
pub fn admit(r: &'static Resource, name: &str, object: &mut Value) -> Result<Admitted, ApiError> {
    let mut out = Admitted::default();
    match r.kind {
        "VirtualMachine" => {
            known_top_level(r, object)?;
            // Stored as written, nulls too (an API server would prune the seed's
            // `default:`): kubectl 1.30 and earlier compare their configuration, nulls
            // included, with what is stored, so applying the seed again is `unchanged`.
            // kubectl 1.31 and later drop the nulls of what they read back and see a change
            // whatever the server keeps.
            let mut vm: oxivirt_api::VirtualMachine = typed(r, name, object)?;
            if vm.spec.running.is_some() {
                out.warnings.push(
                    "spec.running is deprecated, please use spec.runStrategy instead.".into(),
                );
            }
            // KubeVirt validates the template as its VMI would be run: with defaults.
            oxivirt_api::defaults::set_vm_defaults(&mut vm);
            oxivirt_api::validate::validate_vm(&vm)
                .map_err(|e| denied(r, name, "virtualmachine-validator.kubevirt.io", e))?;
            multus_network_names(r, name, "spec.template.spec", &vm.spec.template.spec)?;
        }
        "VirtualMachineInstance" => {
            known_top_level(r, object)?;
            prune_nulls(object);
            let mut vmi: oxivirt_api::VirtualMachineInstance = typed(r, name, object)?;
            oxivirt_api::defaults::set_defaults(&mut vmi.spec);
            oxivirt_api::validate::validate_vmi(&vmi).map_err(|e| {
                denied(
                    r,
                    name,
                    "virtualmachineinstances-create-validator.kubevirt.io",
                    e,
                )
            })?;
            multus_network_names(r, name, "spec", &vmi.spec)?;
            // A VMI is stored with KubeVirt's defaults, as its mutating webhook leaves it.
            let status = object.get("status").cloned();
            *object = serde_json::to_value(&vmi)
                .map_err(|e| invalid(r, name, vec![cause("", format!("cannot encode: {e}"))]))?;
            if let (Some(s), Some(m)) = (status, object.as_object_mut()) {
                m.insert("status".into(), s);
            }
        }
        "NetworkAttachmentDefinition" => {
            prune_nulls(object);
            nad(r, name, object)?;
        }
        "Namespace" => {
            let status = object.as_object_mut().map(|m| {
                m.entry("status")
                    .or_insert_with(|| Value::Object(Map::new()))
            });
            if let Some(Value::Object(s)) = status {
                s.entry("phase")
                    .or_insert_with(|| Value::String("Active".into()));
            }
        }
        "Pod" => {
            let containers = object["spec"]["containers"].as_array().map_or(0, Vec::len);
            if containers == 0 {
                return Err(invalid(
                    r,
                    name,
                    vec![cause("spec.containers", "Required value")],
                ));
            }
            let status = object.as_object_mut().map(|m| {
                m.entry("status")
                    .or_insert_with(|| Value::Object(Map::new()))
            });
            if let Some(Value::Object(s)) = status {
                s.entry("phase")
                    .or_insert_with(|| Value::String("Pending".into()));
            }
        }
        _ => {}
    }
    Ok(out)
}

/// Multus's NAD: `spec.config`, when given, must be a JSON object (its line and column
/// when it does not parse).
fn nad(r: &'static Resource, name: &str, object: &Value) -> Result<(), ApiError> {
    if let Some(extra) = object.as_object().and_then(|m| {
        m.keys()
            .find(|k| !["apiVersion", "kind", "metadata", "spec"].contains(&k.as_str()))
    }) {
        return Err(invalid(
            r,
            name,
            vec![cause(extra.as_str(), "field not declared in schema")],
        ));
    }
    let spec = &object["spec"];
    if let Some(m) = spec.as_object() {
        if let Some(k) = m.keys().find(|k| k.as_str() != "config") {
            return Err(invalid(
                r,
                name,
                vec![cause(format!("spec.{k}"), "field not declared in schema")],
            ));
        }
    }
    if !spec["config"].is_string() && !spec["config"].is_null() {
        return Err(invalid(
            r,
            name,
            vec![cause(
                "spec.config",
                format!(
                    "Invalid value: {}: spec.config must be a string",
                    spec["config"]
                ),
            )],
        ));
    }
    // The one definition of the kind (also its OpenAPI schema).
    let _: oxivirt_api::NetworkAttachmentDefinition = typed(r, name, object)?;
    match &spec["config"] {
        Value::Null => Ok(()),
        Value::String(text) if text.trim().is_empty() => Ok(()),
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(_)) => Ok(()),
            Ok(_) => Err(invalid(
                r,
                name,
                vec![cause(
                    "spec.config",
                    "must be a JSON object (a CNI network configuration)",
                )],
            )),
            Err(e) => Err(invalid(
                r,
                name,
                vec![cause("spec.config", config_error(text, &e))],
            )),
        },
        other => Err(invalid(
            r,
            name,
            vec![cause(
                "spec.config",
                format!("Invalid value: {other}: spec.config must be a string"),
            )],
        )),
    }
}

/// Where a NAD's config stops being JSON: the line and column inside the config, what
/// was before it (YAML folds a multi-line config into one long line, so the position
/// alone is hard to find), and what the parser expected.
fn config_error(text: &str, e: &serde_json::Error) -> String {
    let full = e.to_string();
    // serde_json ends its message with the position, which comes first here.
    let what = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(w, _)| w);
    let line: Vec<char> = text
        .lines()
        .nth(e.line().saturating_sub(1))
        .unwrap_or("")
        .chars()
        .collect();
    let end = e.column().min(line.len());
    let before: String = line[end.saturating_sub(40)..end].iter().collect();
    let before = before.split_whitespace().collect::<Vec<_>>().join(" ");
    if before.is_empty() {
        format!(
            "invalid JSON at line {}, column {} of the config: {what}",
            e.line(),
            e.column()
        )
    } else {
        format!(
            "invalid JSON at line {}, column {} of the config, after '{before}': {what}",
            e.line(),
            e.column()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{NAD, NAMESPACE, VM};
    use serde_json::json;

    #[test]
    fn names() {
        assert!(check_name(&VM, "testvm-2").is_ok());
        assert!(check_name(&VM, "a.b").is_ok());
        for bad in ["TestVM", "-a", "a-", "a..b", "a_b", ""] {
            assert!(check_name(&VM, bad).is_err(), "{bad}");
        }
        assert!(check_name(&NAMESPACE, "a.b").is_err());
    }

    #[test]
    fn nad_config_must_be_json_with_its_position() {
        let mut o = json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "x"}, "spec": {"config": "{\n  \"cniVersion\": \"0.3.1\",\n  \"name\": }"}});
        let e = admit(&NAD, "x", &mut o).expect_err("broken");
        assert!(e.to_string().contains("line 3, column 11"), "{e}");
        assert!(
            e.to_string().ends_with(
                "spec.config: invalid JSON at line 3, column 11 of the config, after '\"name\": }': expected value"
            ),
            "{e}"
        );
    }

    #[test]
    fn multus_network_names_are_namespace_slash_name() {
        let vm = |net: &str| {
            json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "x"}, "spec": {"runStrategy": "Always",
            "template": {"spec": {"domain": {"devices": {"interfaces": [{"name": "n", "bridge": {}}]},
                "resources": {"requests": {"memory": "64M"}}},
                "networks": [{"name": "n", "multus": {"networkName": net}}]}}}})
        };
        for good in ["multus-br", "default/multus-br", "a.b", "team/a.b"] {
            assert!(admit(&VM, "x", &mut vm(good)).is_ok(), "{good}");
        }
        for bad in ["a/b/c", "Bad_Name", "/x", "x/", "a.b/c", "ns/-x"] {
            let e = admit(&VM, "x", &mut vm(bad)).expect_err(bad);
            assert_eq!(e.status()["code"], 422, "{bad}");
            let m = e.to_string();
            assert!(
                m.contains("spec.template.spec.networks[0].multus.networkName: Invalid value")
                    && m.contains("must be [namespace/]name"),
                "{m}"
            );
        }
    }

    #[test]
    fn unknown_top_level_fields_are_refused_by_name() {
        let mut o = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "x"}, "spex": {}, "spec": {"runStrategy": "Always",
            "template": {"spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64M"}}}}}}});
        let e = admit(&VM, "x", &mut o).expect_err("spex");
        assert_eq!(e.status()["code"], 400);
        assert_eq!(
            e.to_string(),
            "VirtualMachine in version \"v1\" cannot be handled as a VirtualMachine: strict decoding error: unknown field \"spex\""
        );
    }

    #[test]
    fn vm_running_and_run_strategy_is_kubevirts_refusal() {
        let mut o = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "x"}, "spec": {"running": true, "runStrategy": "Always",
            "template": {"spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64M"}}}}}}});
        let e = admit(&VM, "x", &mut o).expect_err("both");
        assert_eq!(e.status()["code"], 422);
        assert!(e.to_string().starts_with("admission webhook \"virtualmachine-validator.kubevirt.io\" denied the request: spec.running: Running and RunStrategy are mutually exclusive"), "{e}");
    }
}
