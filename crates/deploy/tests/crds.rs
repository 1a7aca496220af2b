//! The generated CRDs: snapshot, Kubernetes' structural-schema rules, and the seed's
//! manifests validating against them (with the API server's pruning of nulls).

use oxivirt_deploy::crd::{crds, schema};
use oxivirt_deploy::manifests::{files, yaml_docs};
use oxivirt_deploy::structural::{check, make_structural, validate};
use serde_json::{json, Value};

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed");
const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");

fn crd(kind: &str) -> Value {
    crds()
        .into_iter()
        .find(|c| c["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no CRD of {kind}"))
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("yaml")
}

#[test]
fn crds_snapshot() {
    insta::assert_snapshot!(yaml_docs(&crds()));
}

#[test]
fn manifests_snapshot() {
    let others: Vec<String> = files()
        .into_iter()
        .filter(|(name, _)| *name != "01-crds.yaml")
        .map(|(name, text)| format!("# {name}\n{text}"))
        .collect();
    insta::assert_snapshot!(others.join("\n"));
}

#[test]
fn deploy_dir_is_generated() {
    let mut names: Vec<String> = std::fs::read_dir(DEPLOY)
        .expect("deploy/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let want: Vec<&str> = files().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, want, "deploy/ holds only generated files");
    for (name, text) in files() {
        let path = format!("{DEPLOY}/{name}");
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{path} is stale: run `cargo run -p oxivirt-deploy -- deploy`"
        );
    }
}

#[test]
fn every_schema_is_structural() {
    for c in crds() {
        let errs = check(schema(&c));
        assert!(errs.is_empty(), "{}: {errs:#?}", c["metadata"]["name"]);
    }
}

#[test]
fn names_and_columns() {
    let vm = crd("VirtualMachine");
    assert_eq!(vm["spec"]["names"]["shortNames"], json!(["vm", "vms"]));
    assert_eq!(vm["spec"]["names"]["categories"], json!(["all"]));
    assert_eq!(
        vm["spec"]["versions"][0]["subresources"],
        json!({"status": {}})
    );
    let cols = |c: &Value| -> Vec<(String, String, u64)> {
        c["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|x| {
                (
                    x["name"].as_str().unwrap_or("").to_string(),
                    x["jsonPath"].as_str().unwrap_or("").to_string(),
                    x["priority"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let s = |a: &str, b: &str, p: u64| (a.to_string(), b.to_string(), p);
    assert_eq!(
        cols(&vm),
        vec![
            s("Age", ".metadata.creationTimestamp", 0),
            s("Status", ".status.printableStatus", 0),
            s("Ready", ".status.conditions[?(@.type=='Ready')].status", 0),
        ]
    );
    let vmi = crd("VirtualMachineInstance");
    assert_eq!(vmi["spec"]["names"]["shortNames"], json!(["vmi", "vmis"]));
    assert_eq!(
        cols(&vmi),
        vec![
            s("Age", ".metadata.creationTimestamp", 0),
            s("Phase", ".status.phase", 0),
            s("IP", ".status.interfaces[0].ipAddress", 0),
            s("NodeName", ".status.nodeName", 0),
            s("Ready", ".status.conditions[?(@.type=='Ready')].status", 0),
            s(
                "Live-Migratable",
                ".status.conditions[?(@.type=='LiveMigratable')].status",
                1
            ),
            s(
                "Paused",
                ".status.conditions[?(@.type=='Paused')].status",
                1
            ),
        ]
    );
    let nad = crd("NetworkAttachmentDefinition");
    assert_eq!(
        nad["metadata"]["name"],
        "network-attachment-definitions.k8s.cni.cncf.io"
    );
    assert_eq!(
        nad["spec"]["names"]["shortNames"],
        json!(["net-attach-def"])
    );
    assert_eq!(
        schema(&nad)["properties"]["spec"]["properties"]["config"]["type"],
        "string"
    );
}

#[test]
fn seed_vm_validates() {
    let text = std::fs::read_to_string(format!("{SEED}/vm-2.yaml")).expect("vm-2.yaml");
    let vm = yaml(&text);
    // The seed's `default:` is a null the server prunes.
    assert_eq!(
        vm["spec"]["template"]["spec"]["networks"][1]["multus"]["default"],
        Value::Null
    );
    let errs = validate(schema(&crd("VirtualMachine")), &vm);
    assert!(errs.is_empty(), "{errs:#?}");
    // An `Option` is nullable (its null kept); the null of a field that is not is pruned
    // by the server, then the object validates without it.
    let vm_crd = crd("VirtualMachine");
    let multus = &schema(&vm_crd)["properties"]["spec"]["properties"]["template"]["properties"]
        ["spec"]["properties"]["networks"]["items"]["properties"]["multus"];
    assert_eq!(multus["properties"]["default"]["nullable"], true);
    let devices = &schema(&vm_crd)["properties"]["spec"]["properties"]["template"]["properties"]
        ["spec"]["properties"]["domain"]["properties"]["devices"];
    assert!(devices.get("nullable").is_none(), "{devices}");
    let mut pruned = vm.clone();
    pruned["spec"]["template"]["spec"]["domain"]["devices"] = Value::Null;
    assert!(validate(schema(&vm_crd), &pruned).is_empty());
}

#[test]
fn seed_nad_validates_once_its_quote_is_closed() {
    let text =
        std::fs::read_to_string(format!("{SEED}/multus-bridge.yaml")).expect("multus-bridge");
    // The seed's config string is never closed (a YAML error as published).
    let fixed = format!("{}'\n", text.trim_end());
    let nad = yaml(&fixed);
    let config = nad["spec"]["config"].as_str().expect("config");
    let conf: Value = serde_json::from_str(config).expect("config is JSON");
    assert_eq!(conf["type"], "bridge");
    let errs = validate(schema(&crd("NetworkAttachmentDefinition")), &nad);
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn validation_refuses_what_the_server_would() {
    let vm_schema = schema(&crd("VirtualMachine")).clone();
    let text = std::fs::read_to_string(format!("{SEED}/vm-2.yaml")).expect("vm-2.yaml");
    let mut vm = yaml(&text);
    vm["spec"]["runStrategy"] = json!("Sometimes");
    vm["spec"]["template"]["spec"]["domain"]["cpu"] = json!({"cores": "two"});
    vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"][0]
        .as_object_mut()
        .expect("disk")
        .remove("name");
    let errs = validate(&vm_schema, &vm);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains(".spec.runStrategy")));
    assert!(errs.iter().any(|e| e.contains(".cpu.cores")));
    assert!(errs.iter().any(|e| e.ends_with(".disks[0].name: required")));
    // A NAD's fields are Multus's alone.
    let nad = json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "x"}, "spec": {"config": "{}", "other": 1}});
    let errs = validate(schema(&crd("NetworkAttachmentDefinition")), &nad);
    assert_eq!(errs, vec![".spec.other: unknown field".to_string()]);
}

#[test]
fn the_checker_catches_non_structural_schemas() {
    let bad = json!({
        "type": "object",
        "properties": {
            "a": {"$ref": "#/components/schemas/A"},
            "b": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "c": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}},
            "d": {"type": "array"},
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
        }
    });
    let errs = check(&bad);
    for want in [
        ".properties.a: $ref is not allowed",
        ".properties.a: type is missing",
        ".properties.b: type is missing",
        ".properties.b.anyOf[0]: type is not allowed under a logical junctor",
        ".properties.c: properties and additionalProperties exclude each other",
        ".properties.d: an array needs items",
        ".properties.metadata: only type (object) is allowed",
    ] {
        assert!(errs.iter().any(|e| e == want), "{want} not in {errs:#?}");
    }
    // ... and the conversion fixes what it can.
    let made = make_structural(json!({
        "type": "object",
        "properties": {
            "o": {"anyOf": [{"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": true}, {"nullable": true}]},
            "v": true,
            "n": {"type": "integer", "format": "uint32", "minimum": 0},
        },
        "additionalProperties": false,
    }));
    assert_eq!(
        made,
        json!({
            "type": "object",
            "properties": {
                "o": {"type": "object", "nullable": true, "properties": {"x": {"type": "string"}},
                      "x-kubernetes-preserve-unknown-fields": true},
                "v": {"x-kubernetes-preserve-unknown-fields": true},
                "n": {"type": "integer", "minimum": 0},
            },
        })
    );
    assert!(check(&made).is_empty());
}

/// The CRDs and `oxivirtd`'s API describe the kinds alike: names, scope, categories,
/// status subresource, and the Table columns (`oxivirtd` renders them itself; on a
/// cluster the API server renders them from the CRD's printer columns).
#[test]
fn crds_agree_with_oxivirtds_api() {
    use oxivirt_apiserver::resources::{NAD, VM, VMI};
    use oxivirt_apiserver::table::column_definitions;
    for r in [VM, VMI, NAD] {
        let c = crd(r.kind);
        assert_eq!(c["spec"]["group"], r.group);
        assert_eq!(c["spec"]["scope"], "Namespaced");
        assert!(r.namespaced);
        let names = &c["spec"]["names"];
        assert_eq!(names["plural"], r.plural);
        assert_eq!(names["singular"], r.singular);
        assert_eq!(
            names["shortNames"].as_array().cloned().unwrap_or_default(),
            r.short_names.iter().map(|s| json!(s)).collect::<Vec<_>>()
        );
        assert_eq!(
            names["categories"].as_array().cloned().unwrap_or_default(),
            r.categories.iter().map(|s| json!(s)).collect::<Vec<_>>()
        );
        assert_eq!(
            c["spec"]["versions"][0]["subresources"]["status"].is_object(),
            r.status_subresource,
            "{}",
            r.kind
        );
        let ours: Vec<(Value, Value, u64)> = column_definitions(&r)
            .as_array()
            .expect("columns")
            .iter()
            .filter(|d| d["name"] != "Name")
            .map(|d| {
                (
                    d["name"].clone(),
                    d["type"].clone(),
                    d["priority"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let theirs: Vec<(Value, Value, u64)> = c["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|d| {
                (
                    d["name"].clone(),
                    d["type"].clone(),
                    d["priority"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        if r.kind == "NetworkAttachmentDefinition" {
            // Multus declares none: kubectl's default columns are Name and Age.
            assert!(theirs.is_empty());
            assert_eq!(ours, vec![(json!("Age"), json!("date"), 0)]);
        } else {
            assert_eq!(ours, theirs, "{}", r.kind);
        }
    }
}
