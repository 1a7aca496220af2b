//! The controllers' decisions on fixtures: every run strategy, virtctl's requests, the
//! failure back-off, the printable statuses, and the launcher pod KubeVirt would make.

use oxivirt_controller::plan::{
    self, launcher_pod, plan_vm, plan_vmi, VmAction, VmView, VmiAction, VMI_FINALIZER, VM_FINALIZER,
};
use serde_json::{json, Value};

const NOW: i64 = 1_796_120_276;

fn seed_vm(spec: Value) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed/vm-2.yaml"
    ))
    .expect("seed");
    let typed = oxivirt_api::parse_vm("vm-2.yaml", &text).expect("parse");
    let mut vm = serde_json::to_value(typed).expect("json");
    vm["metadata"]["namespace"] = json!("default");
    vm["metadata"]["uid"] = json!("vm-uid");
    vm["metadata"]["finalizers"] = json!([VM_FINALIZER]);
    if let (Some(m), Some(extra)) = (vm["spec"].as_object_mut(), spec.as_object()) {
        m.remove("running");
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    vm
}

fn vmi(phase: &str, ready: bool) -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "testvm-2", "namespace": "default", "uid": format!("vmi-{phase}")},
        "spec": {}, "status": {"phase": phase,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

fn view<'a>(vm: &'a Value, vmi: Option<&'a Value>) -> VmView<'a> {
    VmView {
        vm,
        vmi,
        pod: None,
        now: NOW,
    }
}

fn creates(a: &[VmAction]) -> bool {
    a.iter().any(|x| matches!(x, VmAction::CreateVmi(_)))
}

#[test]
fn stopped_vm_is_stopped_and_gets_its_finalizer() {
    let mut vm = seed_vm(json!({"running": false}));
    vm["metadata"]["finalizers"] = Value::Null;
    let p = plan_vm(view(&vm, None));
    assert_eq!(p.actions, vec![VmAction::AddFinalizer]);
    assert_eq!(p.status["printableStatus"], "Stopped");
    assert_eq!(p.status["ready"], false);
    assert_eq!(p.status["conditions"][0]["reason"], "VMINotExists");
}

#[test]
fn running_vm_gets_a_vmi_owned_and_finalized() {
    let vm = seed_vm(json!({"running": true}));
    let p = plan_vm(view(&vm, None));
    let Some(VmAction::CreateVmi(new)) = p.actions.first() else {
        panic!("{:?}", p.actions)
    };
    assert_eq!(new["metadata"]["name"], "testvm-2");
    assert_eq!(new["metadata"]["ownerReferences"][0]["uid"], "vm-uid");
    assert_eq!(new["metadata"]["finalizers"], json!([VMI_FINALIZER]));
    assert_eq!(new["metadata"]["labels"]["kubevirt.io/domain"], "testvm-2");
    assert_eq!(p.events[0].reason, "SuccessfulCreate");
}

#[test]
fn printable_statuses_follow_the_vmi() {
    let vm = seed_vm(json!({"runStrategy": "Always"}));
    for (i, want) in [
        (vmi("Scheduling", false), "Starting"),
        (vmi("Running", true), "Running"),
        (vmi("Unknown", false), "Unknown"),
    ] {
        assert_eq!(plan_vm(view(&vm, Some(&i))).status["printableStatus"], want);
    }
    let mut paused = vmi("Running", true);
    paused["status"]["conditions"]
        .as_array_mut()
        .expect("conditions")
        .push(json!({"type": "Paused", "status": "True", "reason": "PausedByUser"}));
    let p = plan_vm(view(&vm, Some(&paused)));
    assert_eq!(p.status["printableStatus"], "Paused");
    assert_eq!(p.status["ready"], true);
    let pod = json!({"status": {"containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
    let starting = vmi("Scheduling", false);
    let p = plan_vm(VmView {
        pod: Some(&pod),
        ..view(&vm, Some(&starting))
    });
    assert_eq!(p.status["printableStatus"], "ImagePullBackOff");
    let mut going = vmi("Running", true);
    going["metadata"]["deletionTimestamp"] = json!("2026-12-01T10:00:00Z");
    assert_eq!(
        plan_vm(view(&vm, Some(&going))).status["printableStatus"],
        "Stopping"
    );
}

#[test]
fn run_strategies_when_the_guest_ends() {
    let ok = vmi("Succeeded", false);
    let failed = vmi("Failed", false);
    // Always restarts in both cases (a failure after a back-off).
    let always = seed_vm(json!({"runStrategy": "Always"}));
    assert!(plan_vm(view(&always, Some(&ok)))
        .actions
        .contains(&VmAction::DeleteVmi));
    let p = plan_vm(view(&always, Some(&failed)));
    assert!(!p.actions.contains(&VmAction::DeleteVmi), "{:?}", p.actions);
    assert_eq!(p.status["printableStatus"], "CrashLoopBackOff");
    assert_eq!(p.status["startFailure"]["consecutiveFailCount"], 1);
    assert!(p.actions.contains(&VmAction::Requeue(plan::backoff(1))));
    // RerunOnFailure: a clean end stays stopped, a failure reruns.
    let rerun = seed_vm(json!({"runStrategy": "RerunOnFailure"}));
    let p = plan_vm(view(&rerun, Some(&ok)));
    assert!(!p.actions.contains(&VmAction::DeleteVmi));
    assert_eq!(p.status["printableStatus"], "Stopped");
    assert_eq!(
        plan_vm(view(&rerun, Some(&failed))).status["printableStatus"],
        "CrashLoopBackOff"
    );
    // Manual leaves a finished VMI alone; Once halts the VM after its run.
    let manual = seed_vm(json!({"runStrategy": "Manual"}));
    assert!(!plan_vm(view(&manual, Some(&ok)))
        .actions
        .iter()
        .any(|a| matches!(a, VmAction::DeleteVmi | VmAction::CreateVmi(_))));
    // A failure of a VM that does not restart by itself is no start failure: Stopped,
    // no back-off streak (KubeVirt backs off Always and RerunOnFailure only).
    let p = plan_vm(view(&manual, Some(&failed)));
    assert_eq!(p.status["printableStatus"], "Stopped");
    assert!(p.status["startFailure"].is_null(), "{}", p.status);
    let once = seed_vm(json!({"runStrategy": "Once"}));
    assert!(creates(&plan_vm(view(&once, None)).actions));
    assert!(plan_vm(view(&once, Some(&ok)))
        .actions
        .contains(&VmAction::Halt));
    // Halted stops a running VMI.
    let halted = seed_vm(json!({"runStrategy": "Halted"}));
    let running = vmi("Running", true);
    assert!(plan_vm(view(&halted, Some(&running)))
        .actions
        .contains(&VmAction::DeleteVmi));
}

#[test]
fn back_off_grows_and_ends() {
    assert_eq!(plan::backoff(1).as_secs(), 10);
    assert_eq!(plan::backoff(2).as_secs(), 20);
    assert_eq!(plan::backoff(4).as_secs(), 80);
    assert_eq!(plan::backoff(30), plan::MAX_BACKOFF);
    // Once the retry time has passed, the failed VMI goes and a new one follows.
    let mut vm = seed_vm(json!({"runStrategy": "Always"}));
    vm["status"]["startFailure"] = json!({"lastFailedVMIUID": "vmi-Failed",
        "consecutiveFailCount": 1, "retryAfterTimestamp": NOW - 1});
    let failed = vmi("Failed", false);
    let p = plan_vm(view(&vm, Some(&failed)));
    assert!(p.actions.contains(&VmAction::DeleteVmi), "{:?}", p.actions);
    assert_eq!(p.status["startFailure"]["consecutiveFailCount"], 1);
    // A run that became ready ends the streak.
    let ready = vmi("Running", true);
    assert!(plan_vm(view(&vm, Some(&ready))).status["startFailure"].is_null());
}

#[test]
fn virtctl_requests_in_manual_and_a_restart() {
    let mut manual = seed_vm(json!({"runStrategy": "Manual"}));
    manual["status"]["stateChangeRequests"] = json!([{"action": "Start"}]);
    let p = plan_vm(view(&manual, None));
    assert!(creates(&p.actions));
    assert!(p.actions.contains(&VmAction::DropStateChangeRequests(1)));

    // restart = Stop (of this VMI) then Start: first the VMI goes, the requests stay...
    let mut always = seed_vm(json!({"runStrategy": "Always"}));
    always["status"]["stateChangeRequests"] =
        json!([{"action": "Stop", "uid": "vmi-Running"}, {"action": "Start"}]);
    let running = vmi("Running", true);
    let p = plan_vm(view(&always, Some(&running)));
    assert!(p.actions.contains(&VmAction::DeleteVmi));
    assert!(!p
        .actions
        .iter()
        .any(|a| matches!(a, VmAction::DropStateChangeRequests(_))));
    // ...then, with the VMI gone, both are done and a new VMI is made.
    let p = plan_vm(view(&always, None));
    assert!(p.actions.contains(&VmAction::DropStateChangeRequests(2)));
    assert!(creates(&p.actions));
}

#[test]
fn deleting_a_vm_releases_its_vmi_first() {
    let mut vm = seed_vm(json!({"runStrategy": "Always"}));
    vm["metadata"]["deletionTimestamp"] = json!("2026-12-01T10:00:00Z");
    let running = vmi("Running", true);
    let p = plan_vm(view(&vm, Some(&running)));
    assert_eq!(p.actions, vec![VmAction::DeleteVmi]);
    assert_eq!(p.status["printableStatus"], "Terminating");
    assert_eq!(
        plan_vm(view(&vm, None)).actions,
        vec![VmAction::RemoveFinalizer]
    );
}

fn seed_vmi() -> Value {
    let vm = seed_vm(json!({"runStrategy": "Always"}));
    let mut v = plan::vmi_for(&vm);
    v["metadata"]["uid"] = json!("vmi-uid");
    v
}

#[test]
fn the_launcher_pod_as_kubevirt_makes_it() {
    let pod = launcher_pod(&seed_vmi(), "node-1", "x7k2p");
    insta::assert_json_snapshot!(pod);
    let nets: Value = serde_json::from_str(
        pod["metadata"]["annotations"][plan::NETWORKS_ANNOTATION]
            .as_str()
            .expect("annotation"),
    )
    .expect("json");
    assert_eq!(
        nets,
        json!([{"name": "multus-br", "namespace": "default", "interface": "pod2df796c6902"}])
    );
    // A `default: true` multus network replaces the pod network instead.
    let mut v = seed_vmi();
    v["spec"]["networks"][1]["multus"]["default"] = json!(true);
    v["spec"]["networks"][1]["multus"]["networkName"] = json!("other/br");
    let (nets, default) = plan::network_annotations(&v);
    assert_eq!(nets, None);
    assert_eq!(default.as_deref(), Some("other/br"));
}

#[test]
fn vmi_phases_up_to_scheduled_and_its_pod() {
    let mut v = seed_vmi();
    v["metadata"]["finalizers"] = json!([VMI_FINALIZER]);
    let p = plan_vmi(&v, None, "node-1", "abcde");
    assert!(
        matches!(p.actions.as_slice(), [VmiAction::CreatePod(_)]),
        "{:?}",
        p.actions
    );
    assert_eq!(p.status, Some(json!({"phase": "Scheduling"})));

    v["status"] = json!({"phase": "Scheduling"});
    let pod = json!({"metadata": {"name": "virt-launcher-testvm-2-abcde"},
        "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}});
    let p = plan_vmi(&v, Some(&pod), "node-1", "abcde");
    assert_eq!(
        p.status,
        Some(json!({"phase": "Scheduled", "nodeName": "node-1"}))
    );

    let failed_pod = json!({"metadata": {"name": "p"}, "status": {"phase": "Failed",
        "containerStatuses": [{"state": {"terminated": {"message": "ErrImagePull: no such image"}}}]}});
    let p = plan_vmi(&v, Some(&failed_pod), "node-1", "abcde");
    let s = p.status.expect("status");
    assert_eq!(s["phase"], "Failed");
    assert_eq!(s["conditions"][0]["message"], "ErrImagePull: no such image");

    // Deletion: the pod goes first, then the finalizer.
    v["metadata"]["deletionTimestamp"] = json!("2026-12-01T10:00:00Z");
    assert_eq!(
        plan_vmi(&v, Some(&pod), "n", "s").actions,
        vec![VmiAction::DeletePod]
    );
    assert_eq!(
        plan_vmi(&v, None, "n", "s").actions,
        vec![VmiAction::RemoveFinalizer]
    );
    // The pod goes with the VMI's grace period as it is now (a forced stop's), never 0.
    v["spec"]["terminationGracePeriodSeconds"] = json!(180);
    assert_eq!(plan::pod_deletion_grace(&v), Some(180));
    v["spec"]["terminationGracePeriodSeconds"] = json!(0);
    assert_eq!(plan::pod_deletion_grace(&v), Some(1));
}

#[test]
fn a_paused_start_of_a_halted_vm() {
    let mut vm = seed_vm(json!({"runStrategy": "Halted"}));
    vm["status"]["stateChangeRequests"] = json!([{"action": "Start", "data": {"paused": "true"}}]);
    let p = plan_vm(view(&vm, None));
    assert!(p.actions.contains(&VmAction::Unhalt), "{:?}", p.actions);
    assert!(p.actions.contains(&VmAction::DropStateChangeRequests(1)));
    let new = p
        .actions
        .iter()
        .find_map(|a| match a {
            VmAction::CreateVmi(v) => Some(v.clone()),
            _ => None,
        })
        .expect("a VMI");
    assert_eq!(new["spec"]["startStrategy"], "Paused");
}

/// The cluster's launcher pod: the scheduler places it, it asks for the guest's memory
/// plus the launcher's measured overhead, 100m CPU per vCPU and the device plugin's
/// `/dev/kvm` and `/dev/net/tun`, runs unprivileged with three capabilities, and reads the
/// VMI from its own annotation through a downward API file the launcher can parse.
#[test]
fn the_cluster_launcher_pod_as_kubevirt_shapes_it() {
    let launch = plan::ClusterLaunch {
        image: "oxivirt:test".into(),
    };
    let mut vmi = seed_vmi();
    vmi["spec"]["domain"]["cpu"] = json!({"cores": 2, "sockets": 1});
    let pod = plan::launcher_pod_in_cluster(&vmi, "x7k2p", &launch);
    insta::assert_json_snapshot!(pod);
    assert!(pod["spec"].get("nodeName").is_none(), "{pod}");
    let c = &pod["spec"]["containers"][0];
    let guest = oxivirt_api::Quantity::parse(
        vmi["spec"]["domain"]["memory"]["guest"]
            .as_str()
            .or_else(|| vmi["spec"]["domain"]["resources"]["requests"]["memory"].as_str())
            .expect("the seed's memory"),
    )
    .expect("quantity")
    .value()
    .expect("bytes");
    assert_eq!(
        c["resources"]["requests"]["memory"],
        json!((guest + plan::LAUNCHER_MEMORY_OVERHEAD).to_string())
    );
    assert_eq!(c["resources"]["requests"]["cpu"], "200m");
    assert_eq!(c["resources"]["limits"]["devices.kubevirt.io/kvm"], "1");
    assert_eq!(c["securityContext"]["privileged"], false);
    // A Pod as Kubernetes' own types read it.
    let typed: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod.clone()).expect("a v1 Pod");
    assert_eq!(typed.spec.expect("spec").containers.len(), 1);
    // The launcher's VMI: the pod's annotation, a VMI the API types parse and validate.
    let text = pod["metadata"]["annotations"][plan::VMI_ANNOTATION]
        .as_str()
        .expect("the VMI annotation");
    let parsed = oxivirt_api::parse_vmi("annotation", text).expect("a VMI");
    assert_eq!(parsed.metadata.name.as_deref(), Some("testvm-2"));
    assert_eq!(
        serde_json::to_value(&parsed.spec).expect("spec"),
        serde_json::to_value(
            oxivirt_api::parse_vmi("vmi", &vmi.to_string())
                .expect("the VMI")
                .spec
        )
        .expect("spec")
    );
    // The downward API file is that annotation, where the launcher is told to read it.
    let vol = &pod["spec"]["volumes"][0]["downwardAPI"]["items"][0];
    assert_eq!(
        vol["fieldRef"]["fieldPath"],
        format!("metadata.annotations['{}']", plan::VMI_ANNOTATION)
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args
        .windows(2)
        .any(|w| w == ["--vmi", "/var/run/oxivirt/podinfo/vmi.json"]));
    // The placement picks it; on one machine the pod stays bound to the node.
    let placed = plan::plan_vmi_placed(&vmi, None, &plan::Placement::Cluster(launch), "x7k2p");
    assert!(
        placed
            .actions
            .iter()
            .any(|a| matches!(a, VmiAction::CreatePod(p) if p == &pod)),
        "{:?}",
        placed.actions
    );
}
