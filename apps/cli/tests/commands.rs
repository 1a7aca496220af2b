//! The verbs end to end, process to output, against the stand-in API in `support`.

mod support;

use std::path::{Path, PathBuf};

use oxivirt_testkit::cleanup::TempDir;
use serde_json::Value;
use support::{oxivirt, text, Fake};

fn seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/seed")
        .join(name)
}

/// The seed's NAD with its quote closed, and the seed VM, in `dir`.
fn manifests(dir: &Path) -> (PathBuf, PathBuf) {
    let nad = std::fs::read_to_string(seed("multus-bridge.yaml")).expect("seed nad");
    let nad_path = dir.join("multus-bridge.yaml");
    std::fs::write(&nad_path, format!("{}'\n", nad.trim_end())).expect("nad");
    let vm_path = dir.join("vm-2.yaml");
    std::fs::copy(seed("vm-2.yaml"), &vm_path).expect("vm");
    (nad_path, vm_path)
}

#[test]
fn apply_creates_then_leaves_unchanged_then_configures() {
    let tmp = TempDir::new("cli-apply").expect("tmp");
    let fake = Fake::start();
    let kc = fake.kubeconfig(tmp.path());
    let (nad, vm) = manifests(tmp.path());
    let (nad, vm) = (nad.display().to_string(), vm.display().to_string());

    let out = oxivirt(&kc, &["apply", "-f", &nad, "-f", &vm]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "networkattachmentdefinition.k8s.cni.cncf.io/multus-br created\nvirtualmachine.kubevirt.io/testvm-2 created\n"
    );
    let stored = fake
        .object("virtualmachines/default/testvm-2")
        .expect("stored");
    let recorded = stored["metadata"]["annotations"]
        ["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("last-applied");
    assert!(recorded.starts_with("{\"apiVersion\":\"kubevirt.io/v1\",\"kind\":\"VirtualMachine\",\"metadata\":{\"annotations\":{},\"name\":\"testvm-2\",\"namespace\":\"default\"}"), "{recorded}");

    // The directory: both again, sorted, and nothing to change.
    let dir = tmp.path().display().to_string();
    let out = oxivirt(&kc, &["apply", "-f", &dir]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "networkattachmentdefinition.k8s.cni.cncf.io/multus-br unchanged\nvirtualmachine.kubevirt.io/testvm-2 unchanged\n"
    );

    // `running: true`, and a label dropped from the template: one merge patch.
    let edited = std::fs::read_to_string(&vm)
        .expect("vm")
        .replace("running: false", "running: true")
        .replace("        kubevirt.io/size: small\n", "");
    std::fs::write(&vm, edited).expect("edit");
    let out = oxivirt(&kc, &["apply", "-f", &vm]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "virtualmachine.kubevirt.io/testvm-2 configured\n"
    );
    let live = fake
        .object("virtualmachines/default/testvm-2")
        .expect("stored");
    assert_eq!(live["spec"]["running"], true);
    assert!(live["spec"]["template"]["metadata"]["labels"]
        .get("kubevirt.io/size")
        .is_none());
    assert_eq!(
        live["status"]["printableStatus"], "Stopped",
        "server fields kept"
    );
    assert!(fake
        .requests()
        .iter()
        .any(|r| r == "PATCH /apis/kubevirt.io/v1/namespaces/default/virtualmachines/testvm-2"));
}

#[test]
fn the_seeds_broken_file_is_refused_at_line_6_column_11_and_nothing_is_sent() {
    let tmp = TempDir::new("cli-broken").expect("tmp");
    let fake = Fake::start();
    let kc = fake.kubeconfig(tmp.path());
    let (_, vm) = manifests(tmp.path());
    let broken = seed("multus-bridge.yaml");
    // The good VM first: a broken file anywhere means nothing is applied.
    let out = oxivirt(
        &kc,
        &[
            "apply",
            "-f",
            &vm.display().to_string(),
            "-f",
            &broken.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: error parsing {}: line 6, column 11: unclosed quote\n",
            broken.display()
        )
    );
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[test]
fn server_errors_are_printed_like_kubectl() {
    let tmp = TempDir::new("cli-invalid").expect("tmp");
    let fake = Fake::start();
    let kc = fake.kubeconfig(tmp.path());
    let (_, vm) = manifests(tmp.path());
    let text_vm = std::fs::read_to_string(&vm)
        .expect("vm")
        .replace("running: false", "running: \"no\"");
    std::fs::write(&vm, text_vm).expect("edit");
    let out = oxivirt(&kc, &["apply", "-f", &vm.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("Error from server (Invalid): error when creating \"{}\": VirtualMachine.kubevirt.io \"testvm-2\" is invalid: spec.running: Invalid value: \"string\": spec.running in body must be of type boolean: \"string\"\n", vm.display())
    );

    let out = oxivirt(&kc, &["get", "vm", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error from server (NotFound): virtualmachines.kubevirt.io \"nope\" not found\n"
    );

    let out = oxivirt(&kc, &["get", "deployments"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: the server doesn't have a resource type \"deployments\"\n"
    );
}

#[test]
fn get_prints_tables_objects_and_names() {
    let tmp = TempDir::new("cli-get").expect("tmp");
    let fake = Fake::start();
    let kc = fake.kubeconfig(tmp.path());

    let out = oxivirt(&kc, &["get", "vm"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "No resources found in default namespace.\n"
    );

    let (nad, vm) = manifests(tmp.path());
    let out = oxivirt(
        &kc,
        &[
            "apply",
            "-f",
            &nad.display().to_string(),
            "-f",
            &vm.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = oxivirt(&kc, &["get", "vm"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "NAME       AGE   STATUS\ntestvm-2   1m    Stopped\n"
    );
    // The accept header is kubectl's.
    let out = oxivirt(
        &kc,
        &["get", "virtualmachines.kubevirt.io", "-o", "wide", "-A"],
    );
    assert_eq!(
        text(&out.stdout),
        "NAMESPACE   NAME       AGE   STATUS    UID\ndefault     testvm-2   1m    Stopped   uid-2\n"
    );
    let out = oxivirt(&kc, &["get", "vm/testvm-2", "-o", "name"]);
    assert_eq!(text(&out.stdout), "virtualmachine.kubevirt.io/testvm-2\n");
    let out = oxivirt(&kc, &["get", "nad", "-o", "name"]);
    assert_eq!(
        text(&out.stdout),
        "networkattachmentdefinition.k8s.cni.cncf.io/multus-br\n"
    );

    let out = oxivirt(&kc, &["get", "vm", "testvm-2", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["kind"], "VirtualMachine");
    assert_eq!(v["metadata"]["name"], "testvm-2");
    assert!(
        text(&out.stdout).contains("\n    \"apiVersion\""),
        "4-space indent"
    );

    let out = oxivirt(&kc, &["get", "vm", "-o", "yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Value = serde_saphyr::from_str(&text(&out.stdout)).expect("yaml");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["kind"], "VirtualMachine");
    assert_eq!(list["items"][0]["spec"]["running"], false);
}

#[test]
fn describe_shows_fields_and_events() {
    let tmp = TempDir::new("cli-describe").expect("tmp");
    let fake = Fake::start();
    let kc = fake.kubeconfig(tmp.path());
    let (_, vm) = manifests(tmp.path());
    assert!(oxivirt(&kc, &["apply", "-f", &vm.display().to_string()])
        .status
        .success());
    let out = oxivirt(&kc, &["describe", "vm", "testvm-2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.starts_with("Name:         testvm-2\nNamespace:    default\n"),
        "{s}"
    );
    assert!(
        s.contains("API Version:  kubevirt.io/v1\nKind:         VirtualMachine\n"),
        "{s}"
    );
    assert!(s.contains("\n  Running:  false\n"), "{s}");
    // Aligned with the status lines before it, as kubectl's tab writer does.
    assert!(s.ends_with("Events:              <none>\n"), "{s}");

    fake.insert(
        "events/default/testvm-2.1",
        serde_json::json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "testvm-2.1", "namespace": "default"},
            "involvedObject": {"kind": "VirtualMachine", "name": "testvm-2", "namespace": "default"},
            "type": "Normal", "reason": "SuccessfulCreate", "message": "Started the virtual machine",
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:00:00Z", "count": 1,
            "source": {"component": "virtualmachine-controller"}}),
    );
    let out = oxivirt(&kc, &["describe", "vm", "testvm-2"]);
    let s = text(&out.stdout);
    assert!(
        s.contains("Events:\n  Type    Reason            Age"),
        "{s}"
    );
    assert!(s.contains("  Normal  SuccessfulCreate  "), "{s}");
    assert!(
        s.contains("virtualmachine-controller  Started the virtual machine\n"),
        "{s}"
    );
    assert!(fake
        .requests()
        .iter()
        .any(|r| r == "GET /api/v1/namespaces/default/events"));
}

#[test]
fn delete_by_name_and_by_file() {
    let tmp = TempDir::new("cli-delete").expect("tmp");
    let fake = Fake::start();
    let kc = fake.kubeconfig(tmp.path());
    let (nad, vm) = manifests(tmp.path());
    let (nad, vm) = (nad.display().to_string(), vm.display().to_string());
    assert!(oxivirt(&kc, &["apply", "-f", &nad, "-f", &vm])
        .status
        .success());

    let out = oxivirt(&kc, &["delete", "vm", "testvm-2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "virtualmachine.kubevirt.io \"testvm-2\" deleted\n"
    );
    assert!(fake.object("virtualmachines/default/testvm-2").is_none());

    let out = oxivirt(&kc, &["delete", "-f", &vm]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("Error from server (NotFound): error when deleting \"{vm}\": virtualmachines.kubevirt.io \"testvm-2\" not found\n")
    );
    let out = oxivirt(&kc, &["delete", "-f", &vm, "--ignore-not-found"]);
    assert!(out.status.success());

    let out = oxivirt(&kc, &["delete", "-f", &nad, "--now"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "networkattachmentdefinition.k8s.cni.cncf.io \"multus-br\" deleted\n"
    );
}

#[test]
fn completion_and_help() {
    let kc = Path::new("/nonexistent");
    for shell in ["bash", "zsh", "fish"] {
        let out = oxivirt(kc, &["completion", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(text(&out.stdout).contains("oxivirt"), "{shell}");
    }
    for verb in ["apply", "get", "describe", "delete", "completion"] {
        let out = oxivirt(kc, &[verb, "--help"]);
        assert!(out.status.success(), "{verb}");
        assert!(text(&out.stdout).contains("Examples:"), "{verb}");
    }
}
