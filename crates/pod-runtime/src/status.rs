//! What the runtime writes to the API: Pod and VMI status as merge patches on `/status`,
//! and Events worded as the kubelet and virt-handler word them.

use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// The launcher Pod's one container (see docs/lifecycle.md).
pub const CONTAINER: &str = "compute";

/// Now, RFC 3339 in UTC (seconds, as the API's timestamps).
pub fn now() -> String {
    oxivirt_api::time::rfc3339(oxivirt_api::time::now_secs())
}

pub fn vmi_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachineInstance"),
        "virtualmachineinstances",
    )
}

fn condition(kind: &str, status: bool, reason: &str, message: &str, at: &str) -> Value {
    let mut c = json!({
        "type": kind,
        "status": if status { "True" } else { "False" },
        "lastProbeTime": null,
        "lastTransitionTime": at,
    });
    if let Some(o) = c.as_object_mut() {
        if !reason.is_empty() {
            o.insert("reason".into(), json!(reason));
        }
        if !message.is_empty() {
            o.insert("message".into(), json!(message));
        }
    }
    c
}

/// Pod conditions of a pod whose sandbox is being made or whose container runs.
pub fn pod_conditions(ready: bool, at: &str) -> Value {
    let why = if ready { "" } else { "ContainersNotReady" };
    let msg = if ready {
        String::new()
    } else {
        format!("containers with unready status: [{CONTAINER}]")
    };
    json!([
        condition("PodReadyToStartContainers", true, "", "", at),
        condition("Initialized", true, "", "", at),
        condition("Ready", ready, why, &msg, at),
        condition("ContainersReady", ready, why, &msg, at),
        condition("PodScheduled", true, "", "", at),
    ])
}

/// The container waiting (`ContainerCreating`, `ErrImagePull`, `ImagePullBackOff`, …).
pub fn waiting(image: &str, reason: &str, message: &str, start: &str) -> Value {
    let mut state = json!({"reason": reason});
    if !message.is_empty() {
        state["message"] = json!(message);
    }
    json!({"status": {
        "phase": "Pending",
        "startTime": start,
        "conditions": pod_conditions(false, start),
        "containerStatuses": [{
            "name": CONTAINER, "image": image, "imageID": "", "ready": false,
            "started": false, "restartCount": 0, "state": {"waiting": state},
        }],
    }})
}

/// The container running since `started_at`, ready or not yet.
pub fn running(image: &str, started_at: &str, ready: bool, start: &str) -> Value {
    json!({"status": {
        "phase": "Running",
        "startTime": start,
        "conditions": pod_conditions(ready, started_at),
        "containerStatuses": [{
            "name": CONTAINER, "image": image, "imageID": "", "ready": ready,
            "started": true, "restartCount": 0,
            "state": {"running": {"startedAt": started_at}},
        }],
    }})
}

/// The container ended: the pod is Succeeded (exit 0) or Failed.
pub fn terminated(image: &str, started_at: &str, exit_code: i32, message: &str) -> Value {
    let at = now();
    let ok = exit_code == 0;
    let mut term = json!({
        "exitCode": exit_code,
        "reason": if ok { "Completed" } else { "Error" },
        "startedAt": started_at,
        "finishedAt": at,
    });
    if !message.is_empty() {
        term["message"] = json!(message);
    }
    let mut conditions = pod_conditions(false, &at);
    if let Some(c) = conditions.get_mut(2) {
        c["reason"] = json!("PodCompleted");
        c["message"] = Value::Null;
    }
    json!({"status": {
        "phase": if ok { "Succeeded" } else { "Failed" },
        "conditions": conditions,
        "containerStatuses": [{
            "name": CONTAINER, "image": image, "imageID": "", "ready": false,
            "started": false, "restartCount": 0, "state": {"terminated": term},
        }],
    }})
}

/// The VMI's status from the launcher's `status.json`; `None` while there is nothing to
/// say (the launcher is still starting).
pub fn vmi_status(launcher: &Value, node: &str, at: &str) -> Option<Value> {
    let phase = launcher.get("phase").and_then(Value::as_str)?;
    if !matches!(phase, "Running" | "Succeeded" | "Failed") {
        return None;
    }
    let interfaces: Vec<Value> = launcher
        .get("interfaces")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|i| {
                    let mut out = serde_json::Map::new();
                    for k in [
                        "name",
                        "mac",
                        "ipAddress",
                        "ipAddresses",
                        "interfaceName",
                        "infoSource",
                    ] {
                        if let Some(v) = i.get(k) {
                            out.insert(k.into(), v.clone());
                        }
                    }
                    Value::Object(out)
                })
                .collect()
        })
        .unwrap_or_default();
    let reason = launcher.get("reason").and_then(Value::as_str).unwrap_or("");
    let paused = launcher.get("paused").and_then(Value::as_bool) == Some(true);
    let conditions = match phase {
        // As in KubeVirt: a paused VMI's pod fails its readiness gate, so it is not Ready.
        "Running" if paused => json!([
            condition(
                "Ready",
                false,
                "ReadinessGatesNotReady",
                "the status of pod readiness gate \"kubevirt.io/virtual-machine-unpaused\" is not \"True\", but False",
                at
            ),
            condition("Paused", true, "PausedByUser", "VMI was paused by user", at),
        ]),
        "Running" => json!([condition("Ready", true, "", "", at)]),
        "Succeeded" => json!([condition("Ready", false, "PodCompleted", reason, at)]),
        _ => json!([condition("Ready", false, "PodFailed", reason, at)]),
    };
    Some(json!({"status": {
        "phase": phase,
        "nodeName": node,
        "interfaces": interfaces,
        "conditions": conditions,
    }}))
}

/// Merge patch on a Pod's `/status` (no resourceVersion: no overwriting another writer).
pub async fn patch_pod(pods: &Api<Pod>, name: &str, patch: &Value) -> Result<(), kube::Error> {
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(drop)
}

/// Merge patch on a VMI's `/status`; a VMI that is gone is fine (its pod goes too).
pub async fn patch_vmi(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    patch: &Value,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &vmi_resource());
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map(drop),
    }
}

/// Writes Events as the kubelet does (`source.component: kubelet`, this node as host).
#[derive(Clone)]
pub struct Recorder {
    pub client: kube::Client,
    pub node: String,
}

impl Recorder {
    /// Records `reason`/`message` about `obj`; a failure only goes to the log: an Event is
    /// a courtesy, never a reason to stop.
    pub async fn event(&self, obj: &ObjectReference, warning: bool, reason: &str, message: &str) {
        let ns = obj.namespace.clone().unwrap_or_else(|| "default".into());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let at = now();
        let ev: Event = match serde_json::from_value(json!({
            "metadata": {
                "name": format!("{}.{nanos:x}", obj.name.as_deref().unwrap_or("object")),
                "namespace": ns,
            },
            "involvedObject": obj,
            "reason": reason,
            "message": message,
            "type": if warning { "Warning" } else { "Normal" },
            "source": {"component": "kubelet", "host": self.node},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
            "firstTimestamp": at,
            "lastTimestamp": at,
            "count": 1,
        })) {
            Ok(ev) => ev,
            Err(e) => {
                eprintln!("oxivirtd: event {reason}: {e}");
                return;
            }
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &ev).await {
            eprintln!("oxivirtd: event {reason} on {ns}/{:?}: {e}", obj.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {}

    #[test]
    fn the_vmi_status_follows_the_launcher() {
        let l = json!({"phase": "Running", "paused": true, "interfaces": [
            {"name": "default", "mac": "02:00:00:00:00:01", "ipAddress": "10.0.2.2",
             "interfaceName": "eth0", "infoSource": "domain", "leaseAcknowledgedAt": "x"}]});
        let s = vmi_status(&l, "n1", "t").expect("status");
        assert_eq!(s["status"]["phase"], "Running");
        assert_eq!(s["status"]["nodeName"], "n1");
        assert_eq!(s["status"]["interfaces"][0]["ipAddress"], "10.0.2.2");
        assert!(s["status"]["interfaces"][0]
            .get("leaseAcknowledgedAt")
            .is_none());
        assert_eq!(s["status"]["conditions"][1]["type"], "Paused");
        assert_eq!(
            s["status"]["conditions"][0]["status"], "False",
            "paused: not Ready"
        );
        assert!(vmi_status(&json!({"phase": "Scheduled"}), "n1", "t").is_none());
        let f = vmi_status(&json!({"phase": "Failed", "reason": "boom"}), "n1", "t").expect("f");
        assert_eq!(f["status"]["conditions"][0]["message"], "boom");
    }
}
