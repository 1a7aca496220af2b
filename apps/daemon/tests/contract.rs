//! The API's contract, through real HTTPS against a real `oxivirtd`: object metadata on
//! create, optimistic concurrency, generation, the status subresource, the three patch
//! types, selectors, watch resumption and expiry, finalizers, namespaces, authentication,
//! data-dir permissions, resourceVersions across restarts, and no acknowledged write lost
//! to a `kill -9` in the middle of concurrent writers.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn vm_path(name: &str) -> String {
    format!("{VMS}/{name}")
}

fn reason(s: &Value) -> &str {
    s["reason"].as_str().unwrap_or("")
}

/// Asserts `s` is a failure `Status` with `code` and `reason`, its message containing
/// `part`.
fn assert_status(code: u16, s: &Value, want_code: u16, want_reason: &str, part: &str) {
    assert_eq!(code, want_code, "{s}");
    assert_eq!(s["kind"], "Status", "{s}");
    assert_eq!(s["status"], "Failure", "{s}");
    assert_eq!(s["code"], want_code, "{s}");
    assert_eq!(reason(s), want_reason, "{s}");
    let m = s["message"].as_str().unwrap_or("");
    assert!(m.contains(part), "{part:?} not in {m:?}");
}

#[test]
fn create_sets_metadata_and_updates_are_optimistic() {
    let dir = tmp("contract-update");
    let d = Daemon::start(&dir.path().join("data"));
    let c = Client::admin(&d);

    let (code, vm) = c.post(VMS, &seed_vm("vm1"));
    assert_eq!(code, 201, "{vm}");
    let m = &vm["metadata"];
    assert_eq!(m["name"], "vm1");
    assert_eq!(m["namespace"], "default");
    assert_eq!(m["uid"].as_str().map(str::len), Some(36), "{vm}");
    let ts = m["creationTimestamp"].as_str().expect("creationTimestamp");
    assert!(ts.len() == 20 && ts.ends_with('Z'), "RFC 3339 UTC: {ts}");
    assert_eq!(m["generation"], 1);
    let rv1 = rv(&vm);
    assert!(rv1 > 0);
    // Creating it again is AlreadyExists.
    let (code, s) = c.post(VMS, &seed_vm("vm1"));
    assert_status(code, &s, 409, "AlreadyExists", "\"vm1\" already exists");

    // A metadata-only change: the version moves, the generation does not.
    let mut v = vm.clone();
    v["metadata"]["labels"] = json!({"app": "web"});
    let (code, updated) = c.put(&vm_path("vm1"), &v);
    assert_eq!(code, 200, "{updated}");
    let rv2 = rv(&updated);
    assert!(rv2 > rv1);
    assert_eq!(updated["metadata"]["generation"], 1);
    assert_eq!(updated["metadata"]["uid"], vm["metadata"]["uid"]);
    assert_eq!(
        updated["metadata"]["creationTimestamp"],
        vm["metadata"]["creationTimestamp"]
    );

    // The first version is stale now: 409 Conflict, nothing written.
    let mut stale = vm.clone();
    stale["spec"]["template"]["spec"]["domain"]["resources"]["requests"]["memory"] = json!("128M");
    let (code, s) = c.put(&vm_path("vm1"), &stale);
    assert_status(
        code,
        &s,
        409,
        "Conflict",
        "the object has been modified; please apply your changes to the latest version and try again",
    );
    assert_eq!(s["details"]["name"], "vm1");
    let (_, now) = c.get(&vm_path("vm1"));
    assert_eq!(rv(&now), rv2);

    // With the current version: a spec change bumps the generation.
    let mut next = updated.clone();
    next["spec"]["template"]["spec"]["domain"]["resources"]["requests"]["memory"] = json!("128M");
    let (code, after) = c.put(&vm_path("vm1"), &next);
    assert_eq!(code, 200, "{after}");
    assert!(rv(&after) > rv2);
    assert_eq!(after["metadata"]["generation"], 2);
    // The same object again is no write at all: version and generation stay.
    let (code, same) = c.put(&vm_path("vm1"), &after);
    assert_eq!(code, 200, "{same}");
    assert_eq!(rv(&same), rv(&after));
    assert_eq!(same["metadata"]["generation"], 2);
    // What only the server sets cannot be set by a client.
    let mut forged = after.clone();
    forged["metadata"]["uid"] = json!("forged");
    forged["metadata"]["generation"] = json!(99);
    forged["metadata"]["labels"] = json!({"app": "db"});
    let (code, kept) = c.put(&vm_path("vm1"), &forged);
    assert_eq!(code, 200, "{kept}");
    assert_eq!(kept["metadata"]["uid"], vm["metadata"]["uid"]);
    assert_eq!(kept["metadata"]["generation"], 2);
    // A name that is not the URL's.
    let mut other = kept.clone();
    other["metadata"]["name"] = json!("vm2");
    let (code, s) = c.put(&vm_path("vm1"), &other);
    assert_status(
        code,
        &s,
        400,
        "BadRequest",
        "does not match the name on the URL",
    );
    // An update of nothing is NotFound.
    let (code, s) = c.put(&vm_path("nope"), &seed_vm("nope"));
    assert_status(code, &s, 404, "NotFound", "\"nope\" not found");
}

#[test]
fn status_is_a_subresource() {
    let dir = tmp("contract-status");
    let d = Daemon::start(&dir.path().join("data"));
    let c = Client::admin(&d);
    let mut vm = seed_vm("vm1");
    vm["status"] = json!({"printableStatus": "Running"});
    let (code, created) = c.post(VMS, &vm);
    assert_eq!(code, 201, "{created}");
    assert!(
        created.get("status").is_none(),
        "status dropped on create: {created}"
    );

    // Through /status: the status changes, not the spec, not the generation.
    let mut s = created.clone();
    s["status"] = json!({"printableStatus": "Stopped", "ready": false});
    s["spec"]["runStrategy"] = json!("Always");
    s["metadata"]["labels"] = json!({"x": "y"});
    let (code, after) = c.put(&format!("{}/status", vm_path("vm1")), &s);
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["status"]["printableStatus"], "Stopped");
    assert_eq!(after["spec"], created["spec"]);
    assert!(after["metadata"].get("labels").is_none(), "{after}");
    assert_eq!(after["metadata"]["generation"], 1);
    assert!(rv(&after) > rv(&created));
    // GET on /status is the object.
    let (code, got) = c.get(&format!("{}/status", vm_path("vm1")));
    assert_eq!(code, 200);
    assert_eq!(got["status"]["printableStatus"], "Stopped");

    // The main resource ignores status.
    let mut m = after.clone();
    m["status"] = json!({"printableStatus": "Forged"});
    m["metadata"]["labels"] = json!({"a": "b"});
    let (code, main) = c.put(&vm_path("vm1"), &m);
    assert_eq!(code, 200, "{main}");
    assert_eq!(main["status"]["printableStatus"], "Stopped");
    assert_eq!(main["metadata"]["labels"]["a"], "b");
    // And so does a merge patch of it.
    let (code, p) = c.patch(
        &vm_path("vm1"),
        "application/merge-patch+json",
        &json!({"status": {"printableStatus": "Forged"}}),
    );
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["status"]["printableStatus"], "Stopped");
    // A status patch through /status.
    let (code, p) = c.patch(
        &format!("{}/status", vm_path("vm1")),
        "application/merge-patch+json",
        &json!({"status": {"ready": true}}),
    );
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["status"]["ready"], true);
    assert_eq!(p["status"]["printableStatus"], "Stopped");
    // No status subresource on namespaces' neighbours that lack one: events.
    let (code, _) = c.get(&format!("{EVENTS}/x/status"));
    assert_eq!(code, 404);
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
    "spec": {"containers": [
        {"name": "compute", "image": "virt-launcher:1", "env": [{"name": "A", "value": "1"}]},
        {"name": "sidecar", "image": "sidecar:1"}
    ]}})
}

#[test]
fn patches_merge_json_and_strategic() {
    let dir = tmp("contract-patch");
    let d = Daemon::start(&dir.path().join("data"));
    let c = Client::admin(&d);
    let (code, vm) = c.post(VMS, &seed_vm("vm1"));
    assert_eq!(code, 201, "{vm}");
    let p = vm_path("vm1");

    // JSON merge patch: labels added, null removes, lists replace whole.
    let (code, m) = c.patch(
        &p,
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"app": "web", "tier": "a"}}}),
    );
    assert_eq!(code, 200, "{m}");
    assert_eq!(m["metadata"]["labels"], json!({"app": "web", "tier": "a"}));
    assert_eq!(m["metadata"]["generation"], 1);
    let (code, m) = c.patch(
        &p,
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"tier": null}}, "spec": {"running": true}}),
    );
    assert_eq!(code, 200, "{m}");
    assert_eq!(m["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(m["spec"]["running"], true);
    assert_eq!(m["metadata"]["generation"], 2);

    // JSON patch: test, replace, add, remove, in order, all or nothing.
    let (code, j) = c.patch(
        &p,
        "application/json-patch+json",
        &json!([
            {"op": "test", "path": "/spec/running", "value": true},
            {"op": "replace", "path": "/spec/template/spec/domain/resources/requests/memory", "value": "256M"},
            {"op": "add", "path": "/metadata/labels/new", "value": "x"},
            {"op": "remove", "path": "/metadata/labels/app"}
        ]),
    );
    assert_eq!(code, 200, "{j}");
    assert_eq!(
        j["spec"]["template"]["spec"]["domain"]["resources"]["requests"]["memory"],
        "256M"
    );
    assert_eq!(j["metadata"]["labels"], json!({"new": "x"}));
    assert_eq!(j["metadata"]["generation"], 3);
    let before = rv(&j);
    let (code, s) = c.patch(
        &p,
        "application/json-patch+json",
        &json!([
            {"op": "replace", "path": "/metadata/labels/new", "value": "changed"},
            {"op": "test", "path": "/spec/running", "value": false}
        ]),
    );
    assert_eq!(code, 422, "{s}");
    assert_eq!(reason(&s), "Invalid", "{s}");
    let (_, now) = c.get(&p);
    assert_eq!(rv(&now), before, "a failed JSON patch writes nothing");
    assert_eq!(now["metadata"]["labels"]["new"], "x");
    // A patch that makes the VM invalid is KubeVirt's refusal, and nothing is written.
    let (code, s) = c.patch(
        &p,
        "application/merge-patch+json",
        &json!({"spec": {"runStrategy": "Always"}}),
    );
    assert_eq!(code, 422, "{s}");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or("")
            .contains("Running and RunStrategy are mutually exclusive"),
        "{s}"
    );
    // A resourceVersion in a patch is a precondition.
    let (code, s) = c.patch(
        &p,
        "application/merge-patch+json",
        &json!({"metadata": {"resourceVersion": "1", "labels": {"z": "1"}}}),
    );
    assert_status(code, &s, 409, "Conflict", "the object has been modified");
    // Strategic merge is for built-in kinds only.
    let (code, s) = c.patch(
        &p,
        "application/strategic-merge-patch+json",
        &json!({"metadata": {"labels": {"a": "b"}}}),
    );
    assert_eq!(code, 415, "{s}");
    assert_eq!(reason(&s), "UnsupportedMediaType");

    // Strategic merge on a Pod: containers merge by name.
    let (code, created) = c.post(PODS, &pod("p1"));
    assert_eq!(code, 201, "{created}");
    let (code, sm) = c.patch(
        &format!("{PODS}/p1"),
        "application/strategic-merge-patch+json",
        &json!({"spec": {"containers": [
            {"name": "compute", "image": "virt-launcher:2", "env": [{"name": "B", "value": "2"}]}
        ]}}),
    );
    assert_eq!(code, 200, "{sm}");
    let containers = sm["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 2, "{sm}");
    let compute = containers
        .iter()
        .find(|c| c["name"] == "compute")
        .expect("compute");
    assert_eq!(compute["image"], "virt-launcher:2");
    let env: BTreeSet<&str> = compute["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(env, BTreeSet::from(["A", "B"]), "env merged by name: {sm}");
    assert!(containers.iter().any(|c| c["image"] == "sidecar:1"));
    // ... and `$patch: delete` removes one.
    let (code, sm) = c.patch(
        &format!("{PODS}/p1"),
        "application/strategic-merge-patch+json",
        &json!({"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}),
    );
    assert_eq!(code, 200, "{sm}");
    assert_eq!(sm["spec"]["containers"].as_array().map(Vec::len), Some(1));
    // A patch of nothing.
    let (code, s) = c.patch(
        &vm_path("nope"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"a": "b"}}}),
    );
    assert_status(code, &s, 404, "NotFound", "\"nope\" not found");
}

fn names_sorted(c: &Client, path: &str) -> Vec<String> {
    let mut n = c.names(path);
    n.sort();
    n
}

fn selected(c: &Client, base: &str, kind: &str, selector: &str) -> Vec<String> {
    let q = selector
        .replace('%', "%25")
        .replace(' ', "%20")
        .replace('=', "%3D")
        .replace('!', "%21")
        .replace(',', "%2C")
        .replace('(', "%28")
        .replace(')', "%29");
    names_sorted(c, &format!("{base}?{kind}={q}"))
}

#[test]
fn list_with_label_and_field_selectors() {
    let dir = tmp("contract-select");
    let d = Daemon::start(&dir.path().join("data"));
    let c = Client::admin(&d);
    for (name, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "db"})),
        ("c", json!({"app": "cache", "tier": "back"})),
        ("d", json!({})),
    ] {
        let mut vm = seed_vm(name);
        vm["metadata"]["labels"] = labels;
        let (code, v) = c.post(VMS, &vm);
        assert_eq!(code, 201, "{v}");
    }
    let sel = |s: &str| selected(&c, VMS, "labelSelector", s);
    assert_eq!(sel("app=web"), ["a"]);
    assert_eq!(sel("app==web"), ["a"]);
    assert_eq!(sel("app!=web"), ["b", "c", "d"]);
    assert_eq!(sel("app in (web,db)"), ["a", "b"]);
    assert_eq!(sel("app notin (web,db)"), ["c", "d"]);
    assert_eq!(sel("tier"), ["a", "c"]);
    assert_eq!(sel("!tier"), ["b", "d"]);
    assert_eq!(sel("app,!tier"), ["b"]);
    assert_eq!(sel("app in (web,cache),tier=back"), ["c"]);
    assert_eq!(sel("app=nothing"), Vec::<String>::new());
    let fsel = |s: &str| selected(&c, VMS, "fieldSelector", s);
    assert_eq!(fsel("metadata.name=b"), ["b"]);
    assert_eq!(fsel("metadata.name!=b"), ["a", "c", "d"]);
    assert_eq!(fsel("metadata.namespace=default"), ["a", "b", "c", "d"]);
    // Both at once.
    assert_eq!(
        names_sorted(
            &c,
            &format!("{VMS}?labelSelector=tier&fieldSelector=metadata.name%3Dc")
        ),
        ["c"]
    );
    // A selector that does not parse is a 400 that says which part.
    let (code, s) = c.get(&format!("{VMS}?labelSelector=app%20in%20web"));
    assert_status(code, &s, 400, "BadRequest", "app in web");

    // Events by the object they are about.
    for (name, about) in [("e1", "vm-a"), ("e2", "vm-b"), ("e3", "vm-a")] {
        let (code, e) = c.post(
            EVENTS,
            &json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
                "involvedObject": {"kind": "VirtualMachine", "name": about, "namespace": "default"},
                "reason": "Started", "message": "VM started", "type": "Normal"}),
        );
        assert_eq!(code, 201, "{e}");
    }
    let ev = |s: &str| selected(&c, EVENTS, "fieldSelector", s);
    assert_eq!(ev("involvedObject.name=vm-a"), ["e1", "e3"]);
    assert_eq!(
        ev("involvedObject.name=vm-b,involvedObject.kind=VirtualMachine"),
        ["e2"]
    );
    assert_eq!(ev("involvedObject.name=vm-c"), Vec::<String>::new());
    // Across namespaces.
    assert_eq!(
        names_sorted(
            &c,
            "/api/v1/events?fieldSelector=involvedObject.name%3Dvm-a"
        ),
        ["e1", "e3"]
    );
}

#[test]
fn watch_resumes_exactly_after_its_version() {
    let dir = tmp("contract-watch");
    let d = Daemon::start(&dir.path().join("data"));
    let c = Client::admin(&d);
    let mut rvs = BTreeMap::new();
    for n in ["a", "b", "c"] {
        let (code, v) = c.post(VMS, &seed_vm(n));
        assert_eq!(code, 201, "{v}");
        rvs.insert(n, rv(&v));
    }
    // From a's version: b and c, in order, then what comes live; never a.
    let w = c.watch(&format!("{VMS}?watch=true&resourceVersion={}", rvs["a"]));
    // Live writes: one more create, an update and a delete.
    let (code, dv) = c.post(VMS, &seed_vm("d"));
    assert_eq!(code, 201, "{dv}");
    let (code, _) = c.patch(
        &vm_path("b"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"x": "1"}}}),
    );
    assert_eq!(code, 200);
    let (code, _) = c.delete(&vm_path("c"));
    assert_eq!(code, 200);
    let want = [
        ("ADDED", "b"),
        ("ADDED", "c"),
        ("ADDED", "d"),
        ("MODIFIED", "b"),
        ("DELETED", "c"),
    ];
    let mut last = rvs["a"];
    for (kind, name) in want {
        let e = w.expect();
        assert_eq!(
            (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
            (Some(kind), Some(name)),
            "{e}"
        );
        let v = rv(&e["object"]);
        assert!(v > last, "versions grow in a watch: {v} after {last}");
        last = v;
    }
    assert!(
        w.next(Duration::from_millis(300)).is_none(),
        "no duplicates"
    );

    // Resuming from the last event seen gives nothing already seen, then the next one.
    let w2 = c.watch(&format!("{VMS}?watch=true&resourceVersion={last}"));
    assert!(w2.next(Duration::from_millis(300)).is_none());
    let (code, _) = c.post(VMS, &seed_vm("e"));
    assert_eq!(code, 201);
    let e = w2.expect();
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["metadata"]["name"], "e");

    // From a list's version: what comes after the list.
    let (_, list) = c.get(VMS);
    let w3 = c.watch(&format!("{VMS}?watch=true&resourceVersion={}", rv(&list)));
    let (code, _) = c.post(VMS, &seed_vm("f"));
    assert_eq!(code, 201);
    assert_eq!(w3.expect()["object"]["metadata"]["name"], "f");
    // Without a version: every object as ADDED first, then live.
    let w4 = c.watch(&format!("{VMS}?watch=true"));
    let mut initial = BTreeSet::new();
    for _ in 0..4 {
        let e = w4.expect();
        assert_eq!(e["type"], "ADDED");
        initial.insert(e["object"]["metadata"]["name"].as_str().map(str::to_string));
    }
    let expect: BTreeSet<Option<String>> = ["a", "b", "d", "e", "f"]
        .iter()
        .map(|s| Some(s.to_string()))
        .collect();
    let (code, _) = c.post(VMS, &seed_vm("g"));
    assert_eq!(code, 201);
    let e = w4.expect();
    initial.insert(e["object"]["metadata"]["name"].as_str().map(str::to_string));
    assert_eq!(initial, expect, "five present objects, once each");
    assert_eq!(w4.expect()["object"]["metadata"]["name"], "g");
    // A watch with a label selector sees only what matches.
    let w5 = c.watch(&format!(
        "{VMS}?watch=true&resourceVersion={}&labelSelector=pick%3Dme",
        rvs["c"]
    ));
    let mut h = seed_vm("h");
    h["metadata"]["labels"] = json!({"pick": "me"});
    let (code, _) = c.post(VMS, &seed_vm("i"));
    assert_eq!(code, 201);
    let (code, _) = c.post(VMS, &h);
    assert_eq!(code, 201);
    let e = w5.expect();
    assert_eq!(e["object"]["metadata"]["name"], "h", "{e}");
}

#[test]
fn watch_from_a_version_before_the_restart_is_expired() {
    let dir = tmp("contract-expired");
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let c = Client::admin(&d);
    for n in ["a", "b"] {
        let (code, v) = c.post(VMS, &seed_vm(n));
        assert_eq!(code, 201, "{v}");
    }
    d.kill9();
    let d = Daemon::start(&data);
    let c = Client::admin(&d);
    let w = c.watch(&format!("{VMS}?watch=true&resourceVersion=1"));
    let e = w.expect();
    assert_eq!(e["type"], "ERROR", "{e}");
    assert_eq!(e["object"]["kind"], "Status");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(
        e["object"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("too old resource version: 1"),
        "{e}"
    );
    assert!(
        w.next(WAIT).is_none(),
        "the stream ends after the ERROR event"
    );
    // A relist then a watch from its version works.
    let (_, list) = c.get(VMS);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    let w = c.watch(&format!("{VMS}?watch=true&resourceVersion={}", rv(&list)));
    let (code, _) = c.post(VMS, &seed_vm("c"));
    assert_eq!(code, 201);
    assert_eq!(w.expect()["object"]["metadata"]["name"], "c");
}

#[test]
fn finalizers_hold_a_delete_until_removed() {
    let dir = tmp("contract-finalizers");
    let d = Daemon::start(&dir.path().join("data"));
    let c = Client::admin(&d);
    let mut vm = seed_vm("vm1");
    vm["metadata"]["finalizers"] = json!(["example.com/keep"]);
    let (code, created) = c.post(VMS, &vm);
    assert_eq!(code, 201, "{created}");
    let w = c.watch(&format!(
        "{VMS}?watch=true&resourceVersion={}",
        rv(&created)
    ));

    let (code, del) = c.delete(&vm_path("vm1"));
    assert_eq!(code, 200, "{del}");
    let ts = del["metadata"]["deletionTimestamp"]
        .as_str()
        .expect("deletionTimestamp");
    assert!(ts.ends_with('Z'));
    let (code, still) = c.get(&vm_path("vm1"));
    assert_eq!(code, 200, "kept while a finalizer is on it");
    assert_eq!(still["metadata"]["deletionTimestamp"], ts);
    assert_eq!(still["metadata"]["finalizers"], json!(["example.com/keep"]));
    // A second delete changes nothing.
    let (code, again) = c.delete(&vm_path("vm1"));
    assert_eq!(code, 200);
    assert_eq!(rv(&again), rv(&still));
    // A deleting object takes no new finalizers' worth of resurrection: the timestamp
    // cannot be cleared by an update.
    let mut clear = still.clone();
    clear["metadata"]["deletionTimestamp"] = Value::Null;
    clear["metadata"]["labels"] = json!({"a": "b"});
    let (code, kept) = c.put(&vm_path("vm1"), &clear);
    assert_eq!(code, 200, "{kept}");
    assert_eq!(kept["metadata"]["deletionTimestamp"], ts);
    // The finalizer's owner removes it: the object goes.
    let (code, gone) = c.patch(
        &vm_path("vm1"),
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": null}}),
    );
    assert_eq!(code, 200, "{gone}");
    let (code, s) = c.get(&vm_path("vm1"));
    assert_status(code, &s, 404, "NotFound", "\"vm1\" not found");
    let kinds: Vec<String> = (0..3)
        .map(|_| w.expect()["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(kinds, ["MODIFIED", "MODIFIED", "DELETED"]);
    // Without finalizers a delete is immediate; a second one is NotFound.
    let (code, _) = c.post(VMS, &seed_vm("vm2"));
    assert_eq!(code, 201);
    let (code, _) = c.delete(&vm_path("vm2"));
    assert_eq!(code, 200);
    let (code, s) = c.delete(&vm_path("vm2"));
    assert_status(code, &s, 404, "NotFound", "\"vm2\" not found");
}

#[test]
fn namespaces_must_exist_and_default_stays() {
    let dir = tmp("contract-namespaces");
    let d = Daemon::start(&dir.path().join("data"));
    let c = Client::admin(&d);
    let in_ns = |ns: &str| format!("/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines");
    let (code, s) = c.post(&in_ns("team"), &seed_vm("vm1"));
    assert_status(code, &s, 404, "NotFound", "namespaces \"team\" not found");
    assert!(c.names(&in_ns("team")).is_empty());

    let (code, ns) = c.post(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    );
    assert_eq!(code, 201, "{ns}");
    assert_eq!(ns["status"]["phase"], "Active");
    let (code, v) = c.post(&in_ns("team"), &seed_vm("vm1"));
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["metadata"]["namespace"], "team");
    // A body's namespace must be the path's.
    let mut wrong = seed_vm("vm2");
    wrong["metadata"]["namespace"] = json!("default");
    let (code, s) = c.post(&in_ns("team"), &wrong);
    assert_status(code, &s, 400, "BadRequest", "does not match the namespace");
    // All namespaces.
    let (code, _) = c.post(VMS, &seed_vm("vm3"));
    assert_eq!(code, 201);
    assert_eq!(
        names_sorted(&c, "/apis/kubevirt.io/v1/virtualmachines"),
        ["vm1", "vm3"]
    );

    let (code, s) = c.delete("/api/v1/namespaces/default");
    assert_status(
        code,
        &s,
        403,
        "Forbidden",
        "this namespace may not be deleted",
    );
    let (code, _) = c.get("/api/v1/namespaces/default");
    assert_eq!(code, 200);
    // Another namespace goes, with what is in it.
    let (code, _) = c.delete("/api/v1/namespaces/team");
    assert_eq!(code, 200);
    let (code, _) = c.get("/api/v1/namespaces/team");
    assert_eq!(code, 404);
    assert!(c.names(&in_ns("team")).is_empty());
    assert_eq!(c.names(VMS), ["vm3"]);
}

#[test]
fn authentication_needs_a_client_certificate_of_our_ca() {
    let dir = tmp("contract-auth");
    let d = Daemon::start(&dir.path().join("data"));
    let other = Daemon::start(&dir.path().join("other"));

    let anonymous = Client::new(&d.url, &d.data, None);
    for path in [VMS, "/api", "/apis", "/version", "/openapi/v3"] {
        let (code, s) = anonymous.get(path);
        assert_status(code, &s, 401, "Unauthorized", "Unauthorized");
    }
    let (code, s) = anonymous.call("POST", VMS, Some(&seed_vm("x")));
    assert_eq!(code, 401, "{s}");
    for health in ["/healthz", "/livez", "/readyz"] {
        let (code, body) = anonymous
            .send("GET", health, None, "application/json")
            .expect("health");
        assert_eq!((code, body.as_str()), (200, "ok"), "{health}");
    }
    // The other daemon's admin: the handshake fails, no request is served.
    let stranger = Client::new(&d.url, &d.data, Some(&other.data));
    assert!(
        stranger.send("GET", VMS, None, "application/json").is_err(),
        "a certificate of another CA must be refused"
    );
    assert!(stranger
        .send(
            "POST",
            VMS,
            Some(br#"{"metadata":{"name":"x"}}"#),
            "application/json"
        )
        .is_err());
    // Nor is a server of another CA trusted by our client.
    let confused = Client::new(&d.url, &other.data, Some(&d.data));
    assert!(confused.send("GET", VMS, None, "application/json").is_err());
    // curl agrees.
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--cacert", &d.pki("ca.crt")])
        .args([
            "--cert",
            &other.pki("admin.crt"),
            "--key",
            &other.pki("admin.key"),
        ])
        .arg(format!("{}{VMS}", d.url))
        .output()
        .expect("curl");
    assert!(!out.status.success(), "{}", text(&out));
    // Nothing was created by anyone but the admin.
    assert!(Client::admin(&d).names(VMS).is_empty());
}

#[test]
fn two_daemons_side_by_side() {
    let dir = tmp("contract-two");
    let a = Daemon::start(&dir.path().join("a"));
    let b = Daemon::start(&dir.path().join("b"));
    assert_ne!(a.url, b.url);
    let (ca, cb) = (Client::admin(&a), Client::admin(&b));
    let (code, _) = ca.post(VMS, &seed_vm("only-a"));
    assert_eq!(code, 201);
    let (code, _) = cb.post(VMS, &seed_vm("only-b"));
    assert_eq!(code, 201);
    assert_eq!(ca.names(VMS), ["only-a"]);
    assert_eq!(cb.names(VMS), ["only-b"]);
    // A second daemon on a data dir in use is refused, and the first keeps serving.
    let out = Command::new(daemon_bin())
        .args(["--data-dir"])
        .arg(&a.data)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("oxivirtd");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("store"), "{}", text(&out));
    assert_eq!(ca.names(VMS), ["only-a"]);
}

#[test]
fn data_dir_and_credentials_are_private() {
    let dir = tmp("contract-perms");
    let data = dir.path().join("data");
    let d = Daemon::start(&data);
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("pki")), 0o700);
    assert_eq!(mode(&d.kubeconfig()), 0o600);
    for f in ["ca.crt", "server.key", "admin.key", "admin.crt"] {
        assert_eq!(mode(&data.join("pki").join(f)), 0o600, "{f}");
    }
    let kc = std::fs::read_to_string(d.kubeconfig()).expect("kubeconfig");
    assert!(kc.contains(&format!("server: {}", d.url)), "{kc}");
    // A data dir made wider is narrowed again at the next start.
    drop(d);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let _d = Daemon::start(&data);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("kubeconfig")), 0o600);
}

#[test]
fn resource_versions_never_go_back_across_restarts() {
    let dir = tmp("contract-rv");
    let data = dir.path().join("data");
    let mut highest = 0;
    for round in 0..3 {
        let mut d = Daemon::start(&data);
        let c = Client::admin(&d);
        let (_, list) = c.get(VMS);
        assert!(
            rv(&list) >= highest,
            "list at {} after {highest}",
            rv(&list)
        );
        for i in 0..3 {
            let (code, v) = c.post(VMS, &seed_vm(&format!("r{round}-{i}")));
            assert_eq!(code, 201, "{v}");
            assert!(rv(&v) > highest, "{} after {highest}", rv(&v));
            highest = rv(&v);
        }
        let (code, _) = c.delete(&vm_path(&format!("r{round}-0")));
        assert_eq!(code, 200);
        // The delete took a version too.
        let (_, list) = c.get(VMS);
        assert!(rv(&list) > highest);
        highest = rv(&list);
        if round % 2 == 0 {
            d.kill9();
        } else {
            // SIGTERM: a clean stop.
            // SAFETY: signals our own live child.
            unsafe { libc::kill(d.child.child.id() as i32, libc::SIGTERM) };
            let status = d.child.child.wait().expect("wait");
            assert!(status.success(), "{status}");
        }
    }
    let d = Daemon::start(&data);
    let c = Client::admin(&d);
    assert_eq!(c.names(VMS).len(), 6);
}

#[test]
fn kill_9_during_a_burst_loses_no_acknowledged_write() {
    let dir = tmp("contract-kill9");
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for t in 0..8 {
        let c = Client::admin(&d);
        let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
        writers.push(std::thread::spawn(move || {
            let mut mine = Vec::new();
            let mut failures = 0;
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("w{t}-{i}");
                match c.send(
                    "POST",
                    VMS,
                    Some(&serde_json::to_vec(&seed_vm(&name)).expect("encode")),
                    "application/json",
                ) {
                    Ok((201, body)) => {
                        let v: Value = serde_json::from_str(&body).expect("created JSON");
                        mine.push((name, v["metadata"]["uid"].clone(), rv(&v)));
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((code, body)) => panic!("{name}: {code} {body}"),
                    // The daemon is gone: what was not acknowledged may or may not be there.
                    Err(_) => {
                        failures += 1;
                        if failures > 3 {
                            break;
                        }
                    }
                }
            }
            mine
        }));
    }
    // Kill in the middle of the burst: after some hundreds of acknowledgements, with
    // writes in flight on every connection.
    let start = Instant::now();
    while acked.load(Ordering::Relaxed) < 300 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    d.kill9();
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.join().expect("writer"));
    }
    assert!(
        acknowledged.len() >= 300,
        "{} acknowledged",
        acknowledged.len()
    );

    let d = Daemon::start(&data);
    let c = Client::admin(&d);
    let (code, list) = c.get(VMS);
    assert_eq!(code, 200);
    let stored: BTreeMap<String, Value> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().expect("name").to_string(),
                i["metadata"]["uid"].clone(),
            )
        })
        .collect();
    let mut lost = Vec::new();
    for (name, uid, _) in &acknowledged {
        if stored.get(name) != Some(uid) {
            lost.push(name.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    eprintln!(
        "kill -9 mid-burst: {} acknowledged, {} stored after the restart",
        acknowledged.len(),
        stored.len()
    );
    // At most the 8 in flight were stored without their acknowledgement.
    assert!(stored.len() <= acknowledged.len() + 8);
    // And the next version is above every acknowledged one.
    let max = acknowledged.iter().map(|a| a.2).max().unwrap_or(0);
    let (code, v) = c.post(VMS, &seed_vm("after"));
    assert_eq!(code, 201);
    assert!(rv(&v) > max);
}
