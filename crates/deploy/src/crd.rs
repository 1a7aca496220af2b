//! The CustomResourceDefinitions, from the types: each kind's schemars schema, made
//! structural by [`crate::structural::make_structural`], with the names, scope, status
//! subresource and printer columns KubeVirt's and Multus's own CRDs declare.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Value};

use crate::structural::make_structural;

/// One kind's CRD facts (besides its schema).
struct Kind {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    status_subresource: bool,
}

/// `kubectl get` columns as `additionalPrinterColumns`: (name, type, jsonPath, priority,
/// description).
type Column = (&'static str, &'static str, &'static str, u8, &'static str);

const AGE: Column = ("Age", "date", ".metadata.creationTimestamp", 0, "");

fn ready(name: &'static str, kind: &'static str) -> (&'static str, String) {
    (
        name,
        format!(".status.conditions[?(@.type=='{kind}')].status"),
    )
}

fn columns(kind: &str) -> Vec<Value> {
    let col = |(name, ty, path, priority, description): (&str, &str, &str, u8, &str)| {
        let mut c = json!({"name": name, "type": ty, "jsonPath": path});
        if priority > 0 {
            c["priority"] = json!(priority);
        }
        if !description.is_empty() {
            c["description"] = json!(description);
        }
        c
    };
    let cond = |name, cond_kind, priority: u8| {
        let (n, p) = ready(name, cond_kind);
        col((n, "string", p.as_str(), priority, ""))
    };
    match kind {
        // KubeVirt's virtualmachines.kubevirt.io columns.
        "VirtualMachine" => vec![
            col(AGE),
            col((
                "Status",
                "string",
                ".status.printableStatus",
                0,
                "Human Readable Status",
            )),
            cond("Ready", "Ready", 0),
        ],
        // KubeVirt's virtualmachineinstances.kubevirt.io columns (the last two: -o wide).
        "VirtualMachineInstance" => vec![
            col(AGE),
            col(("Phase", "string", ".status.phase", 0, "")),
            col(("IP", "string", ".status.interfaces[0].ipAddress", 0, "")),
            col(("NodeName", "string", ".status.nodeName", 0, "")),
            cond("Ready", "Ready", 0),
            cond("Live-Migratable", "LiveMigratable", 1),
            cond("Paused", "Paused", 1),
        ],
        _ => Vec::new(),
    }
}

/// The schemars schema of `T`, every subschema inlined (the types are not recursive).
fn schema_of<T: JsonSchema>() -> Value {
    let mut settings = SchemaSettings::openapi3();
    settings.inline_subschemas = true;
    settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

fn crd(k: &Kind, schema: Value) -> Value {
    let mut names = json!({
        "kind": k.kind, "listKind": format!("{}List", k.kind),
        "plural": k.plural, "singular": k.singular,
    });
    if !k.short_names.is_empty() {
        names["shortNames"] = json!(k.short_names);
    }
    if !k.categories.is_empty() {
        names["categories"] = json!(k.categories);
    }
    let mut version = json!({
        "name": "v1", "served": true, "storage": true,
        "schema": {"openAPIV3Schema": schema},
    });
    if k.status_subresource {
        version["subresources"] = json!({"status": {}});
    }
    let cols = columns(k.kind);
    if !cols.is_empty() {
        version["additionalPrinterColumns"] = Value::Array(cols);
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{}", k.plural, k.group)},
        "spec": {
            "group": k.group,
            "names": names,
            "scope": "Namespaced",
            "versions": [version],
        },
    })
}

/// The three CRDs: VirtualMachine, VirtualMachineInstance (`kubevirt.io/v1`) and
/// NetworkAttachmentDefinition (`k8s.cni.cncf.io/v1`).
pub fn crds() -> Vec<Value> {
    let vm = Kind {
        group: "kubevirt.io",
        kind: "VirtualMachine",
        plural: "virtualmachines",
        singular: "virtualmachine",
        short_names: &["vm", "vms"],
        categories: &["all"],
        status_subresource: true,
    };
    let vmi = Kind {
        kind: "VirtualMachineInstance",
        plural: "virtualmachineinstances",
        singular: "virtualmachineinstance",
        short_names: &["vmi", "vmis"],
        ..vm
    };
    let nad = Kind {
        group: "k8s.cni.cncf.io",
        kind: "NetworkAttachmentDefinition",
        plural: "network-attachment-definitions",
        singular: "network-attachment-definition",
        short_names: &["net-attach-def"],
        categories: &[],
        status_subresource: false,
    };
    vec![
        crd(
            &vm,
            make_structural(schema_of::<oxivirt_api::VirtualMachine>()),
        ),
        crd(
            &vmi,
            make_structural(schema_of::<oxivirt_api::VirtualMachineInstance>()),
        ),
        crd(
            &nad,
            make_structural(schema_of::<oxivirt_api::NetworkAttachmentDefinition>()),
        ),
    ]
}

/// The `openAPIV3Schema` of a CRD made by [`crds`].
pub fn schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}
