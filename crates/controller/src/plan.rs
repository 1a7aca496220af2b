//! What a VirtualMachine and a VirtualMachineInstance need, decided from what exists, as
//! plain data: no API calls here, so every run strategy and phase is tested on fixtures.

use std::time::Duration;

use serde_json::{json, Value};

/// The VM's finalizer: the VM controller releases the VMI before the VM goes.
pub const VM_FINALIZER: &str = "kubevirt.io/virtualMachineControllerFinalize";
/// The VMI's finalizer: its pod goes before it does.
pub const VMI_FINALIZER: &str = "kubevirt.io/foregroundDeleteVirtualMachine";
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
pub const DEFAULT_NETWORK_ANNOTATION: &str = "v1.multus-cni.io/default-network";
/// The VMI as the launcher pod's launcher reads it on a cluster (a downward API file).
pub const VMI_ANNOTATION: &str = "oxivirt.io/vmi";
/// Memory a launcher pod needs beyond the guest's: the launcher's resident set (6.9 MiB)
/// plus QEMU's above guest RAM (67 MiB under TCG, 42 of it the translation buffer; less
/// under KVM), as BENCHMARKS.md "The launcher" measures them, rounded up. KubeVirt budgets
/// 220 MiB and more for its five processes.
pub const LAUNCHER_MEMORY_OVERHEAD: i64 = 80 << 20;
/// CPU requested per vCPU: KubeVirt's default `cpuAllocationRatio` of 10.
pub const CPU_REQUEST_MILLI_PER_VCPU: i64 = 100;
/// The longest wait between restarts of a VM that keeps failing (KubeVirt: 5 minutes).
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A Kubernetes event: type, reason, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: &'static str,
    pub reason: &'static str,
    pub message: String,
}

fn normal(reason: &'static str, message: String) -> Event {
    Event {
        kind: "Normal",
        reason,
        message,
    }
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

fn name(v: &Value) -> &str {
    s(v, &["metadata", "name"]).unwrap_or("")
}

fn has_finalizer(v: &Value, f: &str) -> bool {
    v["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == f))
}

fn deleting(v: &Value) -> bool {
    !v["metadata"]["deletionTimestamp"].is_null()
}

fn phase(vmi: &Value) -> &str {
    s(vmi, &["status", "phase"]).unwrap_or("")
}

fn finished(vmi: &Value) -> bool {
    matches!(phase(vmi), "Succeeded" | "Failed")
}

fn condition<'a>(v: &'a Value, kind: &str) -> Option<&'a Value> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn condition_true(v: &Value, kind: &str) -> bool {
    condition(v, kind).is_some_and(|c| c["status"] == "True")
}

/// The run strategy in effect: `runStrategy`, else the deprecated `running`.
pub fn run_strategy(vm: &Value) -> &str {
    match (
        s(vm, &["spec", "runStrategy"]),
        vm["spec"]["running"].as_bool(),
    ) {
        (Some(r), _) => r,
        (None, Some(true)) => "Always",
        _ => "Halted",
    }
}

/// What the VM controller does for one VM.
#[derive(Debug, Clone, PartialEq)]
pub enum VmAction {
    AddFinalizer,
    RemoveFinalizer,
    CreateVmi(Value),
    DeleteVmi,
    /// The first `n` of `status.stateChangeRequests` are done.
    DropStateChangeRequests(usize),
    /// `Once` has run: the VM is `Halted` from now on, as KubeVirt leaves it.
    Halt,
    /// A Start request taken on a `Halted` VM (virtctl's paused start): it runs from now
    /// on (`runStrategy: Always`, or `running: true` where the VM uses `running`).
    Unhalt,
    /// Look again after this long (a back-off ends, a VMI goes).
    Requeue(Duration),
}

/// The VM controller's decision for one VM.
#[derive(Debug, Clone, PartialEq)]
pub struct VmPlan {
    pub actions: Vec<VmAction>,
    /// The VM's new `status` (merged over the old one).
    pub status: Value,
    pub events: Vec<Event>,
}

/// What the VM controller sees of one VM.
#[derive(Debug, Clone, Copy)]
pub struct VmView<'a> {
    pub vm: &'a Value,
    pub vmi: Option<&'a Value>,
    /// The VMI's launcher pod, if there is one.
    pub pod: Option<&'a Value>,
    /// Seconds since the epoch.
    pub now: i64,
}

/// The VMI a VM runs: its template, named, labelled and owned as KubeVirt makes it.
pub fn vmi_for(vm: &Value) -> Value {
    let typed: Result<oxivirt_api::VirtualMachine, _> = serde_json::from_value(vm.clone());
    let mut vmi = match typed {
        Ok(t) => serde_json::to_value(oxivirt_api::VirtualMachineInstance::from_vm(&t))
            .unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    if vmi.is_null() {
        return vmi;
    }
    let vm_name = name(vm).to_string();
    let m = &mut vmi["metadata"];
    m["labels"]["kubevirt.io/vm"] = json!(vm_name);
    m["finalizers"] = json!([VMI_FINALIZER]);
    m["ownerReferences"] = json!([{
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": vm_name,
        "uid": vm["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
    }]);
    vmi
}

/// Back-off before the next start after `failures` consecutive failed runs:
/// 10 s, 20 s, 40 s, ... up to five minutes.
pub fn backoff(failures: u32) -> Duration {
    let secs = 10u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// What the VM should be doing on this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Desire {
    Run,
    Stop,
    /// Leave the VMI as it is (Manual without a request, a finished run that stays).
    Keep,
}

/// Decides for one VM.
pub fn plan_vm(v: VmView<'_>) -> VmPlan {
    let mut actions = Vec::new();
    let mut events = Vec::new();
    let vm = v.vm;
    let vmi = v.vmi;
    let strategy = run_strategy(vm);
    let mut failure = vm["status"]["startFailure"].clone();
    let mut in_backoff = false;
    let stopped_event = |i: &Value| {
        normal(
            "SuccessfulDelete",
            format!(
                "Stopped the virtual machine by deleting the virtual machine instance {}",
                i["metadata"]["uid"].as_str().unwrap_or("")
            ),
        )
    };

    if deleting(vm) {
        match vmi {
            Some(i) if !deleting(i) => {
                actions.push(VmAction::DeleteVmi);
                events.push(stopped_event(i));
            }
            Some(_) => actions.push(VmAction::Requeue(Duration::from_secs(1))),
            None if has_finalizer(vm, VM_FINALIZER) => actions.push(VmAction::RemoveFinalizer),
            None => {}
        }
        let status = vm_status(&v, &failure, false);
        return VmPlan {
            actions,
            status,
            events,
        };
    }
    if !has_finalizer(vm, VM_FINALIZER) {
        actions.push(VmAction::AddFinalizer);
    }

    // A failed run counts once (by the VMI's uid); a run that became ready, or ended
    // well, ends the streak. Only the strategies that restart by themselves back off
    // (KubeVirt's shouldBackoffStart): the others keep no streak.
    let backs_off = matches!(strategy, "Always" | "RerunOnFailure");
    if !backs_off {
        failure = Value::Null;
    }
    if let Some(i) = vmi.filter(|_| backs_off) {
        let uid = &i["metadata"]["uid"];
        if phase(i) == "Failed" && failure["lastFailedVMIUID"] != *uid {
            let n = failure["consecutiveFailCount"].as_u64().unwrap_or(0) as u32 + 1;
            failure = json!({
                "lastFailedVMIUID": uid, "consecutiveFailCount": n,
                "retryAfterTimestamp": v.now + backoff(n).as_secs() as i64,
            });
        } else if (phase(i) == "Succeeded" || condition_true(i, "Ready"))
            && failure["lastFailedVMIUID"] != *uid
        {
            failure = Value::Null;
        }
    }
    let retry_at = failure["retryAfterTimestamp"].as_i64().unwrap_or(0);
    let backing_off = retry_at > v.now;

    // virtctl's requests (`status.stateChangeRequests`): Stop ends the running VMI, Start
    // makes a new one once none is left. Each is dropped when done.
    let requests = vm["status"]["stateChangeRequests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut desire = None;
    let mut done = 0;
    let mut start_paused = false;
    for r in &requests {
        match r["action"].as_str() {
            Some("Stop") => {
                let ours =
                    r["uid"].is_null() || vmi.is_some_and(|i| i["metadata"]["uid"] == r["uid"]);
                if ours && vmi.is_some() {
                    desire = Some(Desire::Stop);
                    break;
                }
                done += 1;
            }
            Some("Start") => {
                if vmi.is_none() {
                    desire = Some(Desire::Run);
                    start_paused |= r["data"]["paused"] == "true";
                    if strategy == "Halted" {
                        actions.push(VmAction::Unhalt);
                    }
                    done += 1;
                } else if vmi.is_some_and(finished) {
                    // The finished run goes first; the Start is taken on a later pass.
                    desire = Some(Desire::Stop);
                    break;
                } else {
                    done += 1;
                }
            }
            _ => done += 1,
        }
    }
    if done > 0 {
        actions.push(VmAction::DropStateChangeRequests(done));
    }
    let desire = desire.unwrap_or(match strategy {
        "Always" => Desire::Run,
        "RerunOnFailure" if vmi.is_some_and(|i| phase(i) == "Succeeded") => Desire::Keep,
        "RerunOnFailure" => Desire::Run,
        "Once" if vmi.is_some_and(finished) => {
            actions.push(VmAction::Halt);
            Desire::Keep
        }
        "Once" if vmi.is_none() => Desire::Run,
        "Halted" => Desire::Stop,
        _ => Desire::Keep,
    });

    match (desire, vmi) {
        (_, Some(i)) if deleting(i) => actions.push(VmAction::Requeue(Duration::from_secs(1))),
        (Desire::Stop, Some(i)) => {
            actions.push(VmAction::DeleteVmi);
            events.push(stopped_event(i));
        }
        (Desire::Run, Some(i)) if finished(i) => {
            if phase(i) == "Failed" && backing_off {
                in_backoff = true;
                actions.push(VmAction::Requeue(Duration::from_secs(
                    (retry_at - v.now).max(1) as u64,
                )));
            } else {
                actions.push(VmAction::DeleteVmi);
                events.push(stopped_event(i));
            }
        }
        (Desire::Run, None) if backing_off => {
            in_backoff = true;
            actions.push(VmAction::Requeue(Duration::from_secs(
                (retry_at - v.now).max(1) as u64,
            )));
        }
        (Desire::Run, None) => {
            let mut new = vmi_for(vm);
            if start_paused && !new.is_null() {
                new["spec"]["startStrategy"] = json!("Paused");
            }
            if !new.is_null() {
                events.push(normal(
                    "SuccessfulCreate",
                    format!(
                        "Started the virtual machine by creating the new virtual machine instance {}",
                        name(vm)
                    ),
                ));
                actions.push(VmAction::CreateVmi(new));
            }
        }
        _ => {}
    }
    if desire == Desire::Stop && vmi.is_none() {
        // Stopped by the user: the failure streak is over.
        failure = Value::Null;
    }
    let status = vm_status(&v, &failure, in_backoff);
    VmPlan {
        actions,
        status,
        events,
    }
}

/// The VM's status as KubeVirt shows it: `printableStatus`, `ready`, `created`,
/// conditions, the failure streak.
fn vm_status(v: &VmView<'_>, failure: &Value, in_backoff: bool) -> Value {
    let vmi = v.vmi;
    let waiting = v.pod.and_then(|p| {
        p["status"]["containerStatuses"].as_array().and_then(|cs| {
            cs.iter()
                .find_map(|c| c["state"]["waiting"]["reason"].as_str())
        })
    });
    let printable = if deleting(v.vm) {
        "Terminating"
    } else if in_backoff {
        "CrashLoopBackOff"
    } else {
        match vmi {
            None => "Stopped",
            Some(i) if deleting(i) => "Stopping",
            Some(i) => match phase(i) {
                "Succeeded" | "Failed" => "Stopped",
                "Running" if condition_true(i, "Paused") => "Paused",
                "Running" => "Running",
                "Unknown" => "Unknown",
                _ => waiting
                    .filter(|r| matches!(*r, "ErrImagePull" | "ImagePullBackOff"))
                    .unwrap_or("Starting"),
            },
        }
    };
    let ready =
        vmi.is_some_and(|i| !deleting(i) && phase(i) == "Running" && condition_true(i, "Ready"));
    let ready_condition = json!({
        "type": "Ready",
        "status": if ready { "True" } else { "False" },
        "reason": if ready { Value::Null } else if vmi.is_none() { json!("VMINotExists") } else { json!("PodNotReady") },
        "message": if vmi.is_none() { json!("VMI does not exist") } else { Value::Null },
        "lastProbeTime": Value::Null,
        "lastTransitionTime": Value::Null,
    });
    let mut conditions = vec![ready_condition];
    if let Some(p) = vmi.and_then(|i| condition(i, "Paused")) {
        conditions.push(p.clone());
    }
    json!({
        "printableStatus": printable,
        "ready": ready,
        "created": vmi.is_some(),
        "conditions": conditions,
        "startFailure": failure,
        "runStrategy": run_strategy(v.vm),
    })
}

/// What the VMI controller does for one VMI.
#[derive(Debug, Clone, PartialEq)]
pub enum VmiAction {
    AddFinalizer,
    RemoveFinalizer,
    CreatePod(Value),
    DeletePod,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VmiPlan {
    pub actions: Vec<VmiAction>,
    /// A merge patch for the VMI's status, if it changes.
    pub status: Option<Value>,
    pub events: Vec<Event>,
}

/// Decides for one VMI: its launcher pod and the phases up to `Scheduled` (the node takes
/// it from there).
pub fn plan_vmi(vmi: &Value, pod: Option<&Value>, node: &str, suffix: &str) -> VmiPlan {
    plan_vmi_placed(vmi, pod, &Placement::Node(node.to_string()), suffix)
}

/// Where launcher pods go: bound to this machine (oxivirtd), or to the cluster's
/// scheduler in the cluster's shape (oxivirt-controller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Node(String),
    Cluster(ClusterLaunch),
}

impl Placement {
    /// The launcher pod of `vmi` for this placement.
    pub fn launcher_pod(&self, vmi: &Value, suffix: &str) -> Value {
        match self {
            Placement::Node(node) => launcher_pod(vmi, node, suffix),
            Placement::Cluster(launch) => launcher_pod_in_cluster(vmi, suffix, launch),
        }
    }
}

/// [`plan_vmi`] with the launcher pod made for `placement`.
pub fn plan_vmi_placed(
    vmi: &Value,
    pod: Option<&Value>,
    placement: &Placement,
    suffix: &str,
) -> VmiPlan {
    let mut actions = Vec::new();
    let mut events = Vec::new();
    let mut status = None;
    if deleting(vmi) {
        match pod {
            Some(p) if !deleting(p) => {
                actions.push(VmiAction::DeletePod);
                events.push(normal(
                    "SuccessfulDelete",
                    format!("Deleted virtual machine pod {}", name(p)),
                ));
            }
            Some(_) => {}
            None => {
                if has_finalizer(vmi, VMI_FINALIZER) {
                    actions.push(VmiAction::RemoveFinalizer);
                }
            }
        }
        return VmiPlan {
            actions,
            status,
            events,
        };
    }
    if !has_finalizer(vmi, VMI_FINALIZER) {
        actions.push(VmiAction::AddFinalizer);
    }
    let ph = phase(vmi);
    match (pod, ph) {
        (_, "Succeeded" | "Failed") => {}
        (None, "" | "Pending") => {
            let p = placement.launcher_pod(vmi, suffix);
            events.push(normal(
                "SuccessfulCreate",
                format!("Created virtual machine pod {}", name(&p)),
            ));
            actions.push(VmiAction::CreatePod(p));
            status = Some(json!({"phase": "Scheduling"}));
        }
        (None, _) => {
            status = Some(json!({"phase": "Failed", "reason": "PodDisappeared",
                "conditions": [{"type": "Ready", "status": "False", "reason": "PodTerminating",
                    "message": "virt-launcher pod is gone"}]}));
        }
        (Some(p), _) => {
            let pod_phase = s(p, &["status", "phase"]).unwrap_or("");
            match (ph, pod_phase) {
                ("Scheduling" | "Pending" | "", "Running") => {
                    status = Some(json!({"phase": "Scheduled", "nodeName": p["spec"]["nodeName"]}));
                }
                ("Scheduling" | "Pending" | "" | "Scheduled", "Failed" | "Succeeded") => {
                    let why = p["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
                        .as_str()
                        .or_else(|| s(p, &["status", "message"]))
                        .unwrap_or("virt-launcher pod ended before the VM ran")
                        .to_string();
                    status = Some(json!({"phase": "Failed", "conditions": [{"type": "Ready",
                        "status": "False", "reason": "PodTerminating", "message": why}]}));
                }
                _ => {}
            }
        }
    }
    VmiPlan {
        actions,
        status,
        events,
    }
}

/// The grace period the VMI's launcher pod is deleted with: the VMI's
/// `terminationGracePeriodSeconds` as it is now (a forced stop lowers it after the pod was
/// made), at least 1 s (0 would remove the pod at once, before its launcher is stopped).
pub fn pod_deletion_grace(vmi: &Value) -> Option<i64> {
    vmi["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .map(|g| g.max(1))
}

/// The `k8s.v1.cni.cncf.io/networks` annotation KubeVirt writes for a VMI's Multus
/// networks (the pod interface `pod<hash>` of each), and the default network if one is
/// `default: true`.
pub fn network_annotations(vmi: &Value) -> (Option<String>, Option<String>) {
    let ns = s(vmi, &["metadata", "namespace"]).unwrap_or("default");
    let mut secondary = Vec::new();
    let mut default = None;
    for n in vmi["spec"]["networks"].as_array().into_iter().flatten() {
        let Some(multus) = n.get("multus").filter(|m| m.is_object()) else {
            continue;
        };
        let Some(full) = multus["networkName"].as_str() else {
            continue;
        };
        let (nad_ns, nad) = full.split_once('/').unwrap_or((ns, full));
        if multus["default"] == true {
            default = Some(format!("{nad_ns}/{nad}"));
            continue;
        }
        let net_name = n["name"].as_str().unwrap_or("");
        secondary.push(json!({
            "name": nad, "namespace": nad_ns,
            "interface": format!("pod{}", oxivirt_vm_net::naming::network_hash(net_name)),
        }));
    }
    let networks = (!secondary.is_empty()).then(|| Value::Array(secondary).to_string());
    (networks, default)
}

/// The launcher pod of a VMI, as docs/lifecycle.md shows it.
pub fn launcher_pod(vmi: &Value, node: &str, suffix: &str) -> Value {
    let vmi_name = name(vmi);
    let vm_name = s(vmi, &["metadata", "labels", "kubevirt.io/vm"]).unwrap_or(vmi_name);
    let mut annotations = json!({"kubevirt.io/domain": vmi_name});
    let (networks, default) = network_annotations(vmi);
    if let Some(n) = networks {
        annotations[NETWORKS_ANNOTATION] = json!(n);
    }
    if let Some(d) = default {
        annotations[DEFAULT_NETWORK_ANNOTATION] = json!(d);
    }
    let grace = vmi["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(180);
    let memory = vmi["spec"]["domain"]["memory"]["guest"]
        .as_str()
        .or_else(|| s(vmi, &["spec", "domain", "resources", "requests", "memory"]))
        .map(str::to_string);
    let mut requests = json!({});
    if let Some(m) = memory {
        requests["memory"] = json!(m);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("virt-launcher-{vm_name}-{suffix}"),
            "namespace": vmi["metadata"]["namespace"],
            "labels": {
                "kubevirt.io": "virt-launcher",
                "kubevirt.io/created-by": vmi["metadata"]["uid"],
                "vm.kubevirt.io/name": vm_name,
            },
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                "name": vmi_name, "uid": vmi["metadata"]["uid"],
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": grace,
            "containers": [{
                "name": "compute",
                "image": "oxivirt-launcher",
                "resources": {"requests": requests},
            }],
        },
    })
}

/// How launcher pods run on a Kubernetes cluster (`oxivirt-controller`); `None` on one
/// machine, where oxivirtd's pod runtime starts the launcher itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLaunch {
    /// The image holding `oxivirt-launcher`.
    pub image: String,
}

/// Where the launcher pod mounts the VMI file and keeps its state.
const PODINFO_DIR: &str = "/var/run/oxivirt/podinfo";
const STATE_DIR: &str = "/var/run/oxivirt/state";
/// The host directory holding every launcher pod's state dir, `<pod uid>/`.
pub const LAUNCHERS_HOST_DIR: &str = "/var/run/oxivirt/launchers";

/// A VMI's vCPUs: cores × sockets × threads, each 1 when unset.
fn vcpus(vmi: &Value) -> i64 {
    let cpu = &vmi["spec"]["domain"]["cpu"];
    ["cores", "sockets", "threads"]
        .iter()
        .map(|k| cpu[k].as_i64().filter(|n| *n > 0).unwrap_or(1))
        .product()
}

/// The launcher pod of a VMI on a cluster, as KubeVirt's virt-controller shapes
/// virt-launcher: the scheduler places it (no `nodeName`); it asks for the guest's memory
/// plus the launcher's measured overhead, 100m CPU per vCPU, and `/dev/kvm` and
/// `/dev/net/tun` through the node agent's device plugin (`devices.kubevirt.io/kvm`,
/// `devices.kubevirt.io/tun`), so it runs unprivileged; it gets the capabilities the
/// launcher's own work in its network namespace needs (taps, the bindings' bridge and nft
/// rules: NET_ADMIN; the DHCP server: NET_BIND_SERVICE, NET_RAW) and no more. The launcher
/// reads the VMI from a downward API file of the pod's own annotation, so it needs no API
/// access, and works in the pod's namespace (`--netns` its own).
pub fn launcher_pod_in_cluster(vmi: &Value, suffix: &str, launch: &ClusterLaunch) -> Value {
    let mut pod = launcher_pod(vmi, "", suffix);
    let mut vmi_file = json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {
            "name": vmi["metadata"]["name"], "namespace": vmi["metadata"]["namespace"],
            "uid": vmi["metadata"]["uid"],
        },
        "spec": vmi["spec"],
    });
    if let Some(labels) = vmi["metadata"]["labels"].as_object() {
        vmi_file["metadata"]["labels"] = json!(labels);
    }
    pod["metadata"]["annotations"][VMI_ANNOTATION] = json!(vmi_file.to_string());
    let guest = vmi["spec"]["domain"]["memory"]["guest"]
        .as_str()
        .or_else(|| s(vmi, &["spec", "domain", "resources", "requests", "memory"]))
        .and_then(|m| oxivirt_api::Quantity::parse(m).ok())
        .and_then(|q| q.value())
        .unwrap_or(0);
    let devices = json!({"devices.kubevirt.io/kvm": "1", "devices.kubevirt.io/tun": "1"});
    let mut requests = devices.clone();
    requests["memory"] = json!((guest + LAUNCHER_MEMORY_OVERHEAD).to_string());
    requests["cpu"] = json!(format!("{}m", vcpus(vmi) * CPU_REQUEST_MILLI_PER_VCPU));
    if let Some(spec) = pod["spec"].as_object_mut() {
        spec.remove("nodeName");
        spec.insert("automountServiceAccountToken".into(), json!(false));
        spec.insert(
            "volumes".into(),
            json!([
                {"name": "podinfo", "downwardAPI": {"items": [{"path": "vmi.json",
                    "fieldRef": {"fieldPath": format!("metadata.annotations['{VMI_ANNOTATION}']")}}]}},
                // The node agent reads the launcher's status.json (and later its console)
                // here: one directory per pod on the host, as KubeVirt shares virt-launcher's
                // sockets with virt-handler.
                {"name": "state", "hostPath": {"path": LAUNCHERS_HOST_DIR, "type": "DirectoryOrCreate"}},
            ]),
        );
    }
    pod["spec"]["containers"][0] = json!({
        "name": "compute",
        "image": launch.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/usr/bin/oxivirt-launcher"],
        "args": [
            "--netns", "/proc/self/ns/net",
            "--vmi", format!("{PODINFO_DIR}/vmi.json"),
            "--state-dir", STATE_DIR,
        ],
        "resources": {"requests": requests, "limits": devices},
        "securityContext": {
            "privileged": false,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW"]},
        },
        "volumeMounts": [
            {"name": "podinfo", "mountPath": PODINFO_DIR, "readOnly": true},
            {"name": "state", "mountPath": STATE_DIR, "subPathExpr": "$(POD_UID)"},
        ],
        "env": [{"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}],
    });
    pod
}
