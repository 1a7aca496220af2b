//! The controllers on the API: watches of VirtualMachines, VirtualMachineInstances and
//! launcher Pods (kube-rs `Controller`s), each reconcile reading what exists, asking
//! [`crate::plan`] what to do, and doing it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt as _;
use serde_json::{json, Value};

use oxivirt_api::time::{now_secs as now, rfc3339};

use crate::error::{kube as kerr, Error};
use crate::plan::{self, Event, VmAction, VmView, VmiAction};

/// What the controllers need to know of where they run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where launcher pods go: this machine's node (oxivirtd), or the cluster's scheduler.
    pub placement: plan::Placement,
}

fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    let api_version = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version,
        kind: kind.into(),
        plural: plural.into(),
    }
}

struct Ctx {
    client: kube::Client,
    config: Config,
    vm: ApiResource,
    vmi: ApiResource,
    pod: ApiResource,
    event: ApiResource,
}

impl Ctx {
    fn api(&self, r: &ApiResource, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, r)
    }
}

fn to_value(o: &DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

fn from_value(kind: &'static str, name: &str, v: Value) -> Result<DynamicObject, Error> {
    serde_json::from_value(v).map_err(|source| Error::Parse {
        kind,
        name: name.to_string(),
        source,
    })
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Five characters of KubeVirt's (and Kubernetes') name suffix alphabet.
fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Records a `v1` Event about `object` (best effort: an event that cannot be written
/// does not fail the reconcile).
async fn record(ctx: &Ctx, object: &Value, component: &str, e: &Event) {
    let ns = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let ts = rfc3339(now());
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{name}.{}", &uuid::Uuid::new_v4().simple().to_string()[..16]), "namespace": ns},
        "involvedObject": {
            "apiVersion": object["apiVersion"], "kind": object["kind"], "name": name,
            "namespace": ns, "uid": object["metadata"]["uid"],
            "resourceVersion": object["metadata"]["resourceVersion"],
        },
        "reason": e.reason, "message": e.message, "type": e.kind,
        "source": {"component": component},
        "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
        "reportingComponent": component, "reportingInstance": "",
    });
    if let Ok(obj) = serde_json::from_value::<DynamicObject>(ev) {
        if let Err(err) = ctx
            .api(&ctx.event, ns)
            .create(&PostParams::default(), &obj)
            .await
        {
            eprintln!("oxivirt-controller: event {} on {name}: {err}", e.reason);
        }
    }
}

async fn set_finalizers(
    api: &Api<DynamicObject>,
    name: &str,
    current: &Value,
    finalizer: &str,
    present: bool,
) -> Result<(), Error> {
    let mut list: Vec<Value> = current["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    list.retain(|f| f != finalizer);
    if present {
        list.push(json!(finalizer));
    }
    let patch = json!({"metadata": {"finalizers": list, "resourceVersion": current["metadata"]["resourceVersion"]}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(kerr(format!("finalizers of {name}"))(e)),
    }
}

/// The newest launcher pod of the VMI with `uid`.
async fn launcher_pod(ctx: &Ctx, ns: &str, uid: &str) -> Result<Option<Value>, Error> {
    let pods = ctx
        .api(&ctx.pod, ns)
        .list(&ListParams::default().labels(&format!("kubevirt.io/created-by={uid}")))
        .await
        .map_err(kerr("list launcher pods"))?;
    Ok(pods.items.iter().map(to_value).max_by(|a, b| {
        a["metadata"]["creationTimestamp"]
            .as_str()
            .cmp(&b["metadata"]["creationTimestamp"].as_str())
    }))
}

async fn reconcile_vm(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_else(|| "default".into());
    let name = obj.name_any();
    let vms = ctx.api(&ctx.vm, &ns);
    let vmis = ctx.api(&ctx.vmi, &ns);
    let vm = to_value(&obj);
    let vmi = vmis
        .get_opt(&name)
        .await
        .map_err(kerr(format!("get VMI {ns}/{name}")))?
        .map(|o| to_value(&o));
    let pod = match vmi.as_ref().and_then(|v| v["metadata"]["uid"].as_str()) {
        Some(uid) => launcher_pod(&ctx, &ns, uid).await?,
        None => None,
    };
    let plan = plan::plan_vm(VmView {
        vm: &vm,
        vmi: vmi.as_ref(),
        pod: pod.as_ref(),
        now: now(),
    });
    let mut next = Action::requeue(Duration::from_secs(300));
    let mut status = plan.status.clone();
    for a in &plan.actions {
        match a {
            VmAction::AddFinalizer => {
                set_finalizers(&vms, &name, &vm, plan::VM_FINALIZER, true).await?
            }
            VmAction::RemoveFinalizer => {
                set_finalizers(&vms, &name, &vm, plan::VM_FINALIZER, false).await?
            }
            VmAction::CreateVmi(v) => {
                let o = from_value("VirtualMachineInstance", &name, v.clone())?;
                match vmis.create(&PostParams::default(), &o).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(kerr(format!("create VMI {ns}/{name}"))(e)),
                }
            }
            VmAction::DeleteVmi => match vmis.delete(&name, &DeleteParams::default()).await {
                Ok(_) => next = Action::requeue(Duration::from_secs(1)),
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(kerr(format!("delete VMI {ns}/{name}"))(e)),
            },
            VmAction::DropStateChangeRequests(n) => {
                let old = vm["status"]["stateChangeRequests"].clone();
                let rest: Vec<Value> = old
                    .as_array()
                    .map(|a| a.iter().skip(*n).cloned().collect())
                    .unwrap_or_default();
                // Only if nobody added a request meanwhile: the resourceVersion makes the
                // patch conditional (a conflict runs the reconcile again on the newer VM).
                let patch = json!({
                    "metadata": {"resourceVersion": vm["metadata"]["resourceVersion"]},
                    "status": {"stateChangeRequests": if rest.is_empty() { Value::Null } else { json!(rest) }},
                });
                vms.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(kerr(format!("state change requests of {ns}/{name}")))?;
                if let Some(m) = status.as_object_mut() {
                    m.remove("stateChangeRequests");
                }
            }
            VmAction::Halt => {
                vms.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"runStrategy": "Halted", "running": null}})),
                )
                .await
                .map_err(kerr(format!("halt {ns}/{name}")))?;
            }
            VmAction::Unhalt => {
                let spec = if vm["spec"]["runStrategy"].is_string() {
                    json!({"runStrategy": "Always"})
                } else {
                    json!({"running": true})
                };
                vms.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": spec})),
                )
                .await
                .map_err(kerr(format!("run {ns}/{name}")))?;
            }
            VmAction::Requeue(d) => next = Action::requeue(*d),
        }
    }
    for e in &plan.events {
        record(&ctx, &vm, "virtualmachine-controller", e).await;
    }
    if !deleting_gone(&plan) {
        let current = &vm["status"];
        let changed = status.as_object().is_some_and(|m| {
            m.iter()
                .any(|(k, v)| current.get(k).unwrap_or(&Value::Null) != v)
        });
        if changed {
            match vms
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(kerr(format!("status of {ns}/{name}"))(e)),
            }
        }
    }
    Ok(next)
}

/// After the finalizer is removed the VM is gone: no status to write.
fn deleting_gone(plan: &plan::VmPlan) -> bool {
    plan.actions.contains(&VmAction::RemoveFinalizer)
}

async fn reconcile_vmi(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_else(|| "default".into());
    let name = obj.name_any();
    let vmis = ctx.api(&ctx.vmi, &ns);
    let pods = ctx.api(&ctx.pod, &ns);
    let vmi = to_value(&obj);
    let uid = vmi["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let pod = launcher_pod(&ctx, &ns, &uid).await?;
    let plan = plan::plan_vmi_placed(&vmi, pod.as_ref(), &ctx.config.placement, &suffix());
    for a in &plan.actions {
        match a {
            VmiAction::AddFinalizer => {
                set_finalizers(&vmis, &name, &vmi, plan::VMI_FINALIZER, true).await?
            }
            VmiAction::RemoveFinalizer => {
                set_finalizers(&vmis, &name, &vmi, plan::VMI_FINALIZER, false).await?
            }
            VmiAction::CreatePod(p) => {
                let o = from_value("Pod", &name, p.clone())?;
                pods.create(&PostParams::default(), &o)
                    .await
                    .map_err(kerr(format!("create the launcher pod of {ns}/{name}")))?;
            }
            VmiAction::DeletePod => {
                if let Some(p) = &pod {
                    let pname = p["metadata"]["name"].as_str().unwrap_or("");
                    let dp = DeleteParams {
                        grace_period_seconds: plan::pod_deletion_grace(&vmi)
                            .and_then(|g| u32::try_from(g).ok()),
                        ..DeleteParams::default()
                    };
                    match pods.delete(pname, &dp).await {
                        Ok(_) => {}
                        Err(e) if not_found(&e) => {}
                        Err(e) => return Err(kerr(format!("delete pod {ns}/{pname}"))(e)),
                    }
                }
            }
        }
    }
    for e in &plan.events {
        record(&ctx, &vmi, "virtualmachineinstance-controller", e).await;
    }
    if let Some(s) = &plan.status {
        // Conditional on the VMI this plan was made from: the pod runtime takes the phase
        // on from Scheduled (Running, Succeeded, Failed), and a plan made from an older
        // VMI must not put it back (a conflict plans again on the newer one).
        let patch = json!({
            "metadata": {"resourceVersion": vmi["metadata"]["resourceVersion"]},
            "status": s,
        });
        match vmis
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                return Ok(Action::requeue(Duration::from_millis(200)))
            }
            Err(e) => return Err(kerr(format!("status of VMI {ns}/{name}"))(e)),
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn retry<K>(_: Arc<K>, e: &Error, _: Arc<Ctx>) -> Action {
    eprintln!("oxivirt-controller: {}", crate::error::chain(e));
    Action::requeue(Duration::from_secs(2))
}

/// Runs the VM and VMI controllers until the future is dropped.
pub async fn run(client: kube::Client, config: Config) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        config,
        vm: resource("kubevirt.io", "VirtualMachine", "virtualmachines"),
        vmi: resource(
            "kubevirt.io",
            "VirtualMachineInstance",
            "virtualmachineinstances",
        ),
        pod: resource("", "Pod", "pods"),
        event: resource("", "Event", "events"),
    });
    let all = |r: &ApiResource| Api::<DynamicObject>::all_with(client.clone(), r);
    let wc = watcher::Config::default;

    let vm_ar = ctx.vm.clone();
    let vms = Controller::new_with(all(&ctx.vm), wc(), ctx.vm.clone())
        .owns_with(all(&ctx.vmi), ctx.vmi.clone(), wc())
        .watches_with(all(&ctx.pod), ctx.pod.clone(), wc(), move |pod| {
            // A launcher pod's state (image pull, readiness) shows in its VM's status.
            let vm = pod.labels().get("vm.kubevirt.io/name").cloned();
            let ns = pod.namespace();
            vm.map(|n| {
                let r = ObjectRef::new_with(&n, vm_ar.clone());
                match ns {
                    Some(ns) => r.within(&ns),
                    None => r,
                }
            })
        })
        .run(reconcile_vm, retry, ctx.clone())
        .for_each(|_| async {});
    let vmis = Controller::new_with(all(&ctx.vmi), wc(), ctx.vmi.clone())
        .owns_with(all(&ctx.pod), ctx.pod.clone(), wc())
        .run(reconcile_vmi, retry, ctx.clone())
        .for_each(|_| async {});
    tokio::join!(vms, vmis);
}
