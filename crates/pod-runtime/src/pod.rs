//! One worker per Pod of this node: the state machine from a new Pod to a running launcher,
//! its status into the Pod and VMI, and the way out (the launcher's end or the Pod's
//! deletion), plus what a restarted daemon finds on disk without a Pod.

use crate::cni;
use crate::error::chain;
use crate::launcher::{self, Exit, Process, Record};
use crate::netns;
use crate::status::{self, Recorder};
use crate::Config;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, Preconditions};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub(crate) struct Ctx {
    pub config: Config,
    pub client: kube::Client,
    pub pods: Api<Pod>,
    pub recorder: Recorder,
    pub puller: Arc<oxivirt_image::Puller>,
    /// Held while the default network is checked and written (pods start in parallel).
    pub default_network: tokio::sync::Mutex<()>,
}

impl Ctx {
    /// Writes the default network if the config dir has none: when the first pod needs
    /// it, so a daemon that runs no VM never touches the machine's CNI config.
    async fn ensure_default_network(&self) -> crate::Result<()> {
        let _held = self.default_network.lock().await;
        let c = &self.config;
        for p in cni::ensure_default_network(&c.cni_conf_dir, &c.cni_bin_dir, &c.data_dir)? {
            println!("oxivirtd: wrote the CNI config {}", p.display());
        }
        Ok(())
    }
}

/// The daemon is stopping: the worker leaves everything as it is (launchers keep running).
struct Shutdown;

type Rx = watch::Receiver<Option<Pod>>;

/// How often a running launcher's `status.json` is read.
const POLL: Duration = Duration::from_millis(200);
/// How often a starting launcher's `status.json` is read until it says Running (for at most
/// [`START_WINDOW`]): the VMI's `Running` waits on this read, and at [`POLL`] it came on
/// average 100 ms after the launcher's (a third of `oxivirt start` → Running).
const START_POLL: Duration = Duration::from_millis(5);
const START_WINDOW: Duration = Duration::from_secs(60);
/// How long past the grace period a launcher gets before it is killed.
const KILL_MARGIN: Duration = Duration::from_secs(10);

/// The kubelet's back-off for image pulls and sandbox creation: 10 s doubling to 300 s.
fn backoff(n: u32) -> Duration {
    Duration::from_secs(10u64.saturating_mul(1u64 << n.min(6)).min(300))
}

/// Why a start did not get through, for the Pod's status and an Event.
struct Failure {
    /// The container's waiting reason.
    reason: &'static str,
    /// The Event's reason.
    event: &'static str,
    message: String,
    /// The image a failed pull was of.
    image: Option<String>,
    retry: bool,
}

impl Failure {
    fn new(reason: &'static str, event: &'static str, message: String) -> Self {
        Self {
            reason,
            event,
            message,
            image: None,
            retry: true,
        }
    }
}

struct Worker {
    ctx: Arc<Ctx>,
    rx: Rx,
    api: Api<Pod>,
    namespace: String,
    name: String,
    uid: String,
    image: String,
    start_time: String,
    rec: Record,
}

pub(crate) async fn worker(ctx: Arc<Ctx>, rx: Rx) {
    let Some(pod) = rx.borrow().clone() else {
        return;
    };
    let (Some(namespace), Some(name), Some(uid)) = (
        pod.metadata.namespace.clone(),
        pod.metadata.name.clone(),
        pod.metadata.uid.clone(),
    ) else {
        return;
    };
    let image = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(status::now);
    let vmi = vmi_name(&pod);
    let rec = Record {
        namespace: namespace.clone(),
        name: name.clone(),
        uid: uid.clone(),
        state_dir: ctx.config.state_dir(&namespace, &vmi),
        vmi,
        vmi_uid: owner_uid(&pod),
        netns: netns::path_for(&uid),
        grace: pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .and_then(|g| u64::try_from(g).ok()),
        ..Default::default()
    };
    let mut w = Worker {
        api: Api::namespaced(ctx.client.clone(), &namespace),
        ctx,
        rx,
        namespace,
        name,
        uid,
        image,
        start_time,
        rec,
    };
    let _ = w.run(pod).await;
}

/// The VMI the pod runs: `kubevirt.io/domain`, else its controlling owner.
pub(crate) fn vmi_name(pod: &Pod) -> String {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubevirt.io/domain").cloned())
        .or_else(|| {
            pod.metadata.owner_references.as_ref().and_then(|o| {
                o.iter()
                    .find(|r| r.kind == "VirtualMachineInstance")
                    .map(|r| r.name.clone())
            })
        })
        .unwrap_or_default()
}

fn owner_uid(pod: &Pod) -> String {
    pod.metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.iter().find(|r| r.kind == "VirtualMachineInstance"))
        .map(|r| r.uid.clone())
        .unwrap_or_default()
}

fn finished_phase(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Worker {
    fn records(&self) -> PathBuf {
        self.ctx.config.records()
    }

    fn save(&self) {
        if let Err(e) = self.rec.save(&self.records()) {
            eprintln!(
                "oxivirtd: pod {}/{}: {}",
                self.namespace,
                self.name,
                chain(&e)
            );
        }
    }

    fn pod_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            field_path: Some(format!("spec.containers{{{}}}", status::CONTAINER)),
            ..Default::default()
        }
    }

    fn vmi_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("kubevirt.io/v1".into()),
            kind: Some("VirtualMachineInstance".into()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.rec.vmi.clone()),
            uid: Some(self.rec.vmi_uid.clone()).filter(|u| !u.is_empty()),
            ..Default::default()
        }
    }

    async fn event(&self, warning: bool, reason: &str, message: &str) {
        self.ctx
            .recorder
            .event(&self.pod_ref(), warning, reason, message)
            .await;
    }

    async fn patch(&self, patch: &Value) {
        if let Err(e) = status::patch_pod(&self.api, &self.name, patch).await {
            eprintln!(
                "oxivirtd: status of pod {}/{}: {e}",
                self.namespace, self.name
            );
        }
    }

    /// Whether the pod is being deleted (or is gone); `Err` when the daemon stops.
    fn deleting(&self) -> Result<bool, Shutdown> {
        if self.rx.has_changed().is_err() {
            return Err(Shutdown);
        }
        Ok(match &*self.rx.borrow() {
            None => true,
            Some(p) => p.metadata.deletion_timestamp.is_some(),
        })
    }

    /// Sleeps `d`, cut short when the pod is being deleted (then `true`).
    async fn wait(&mut self, d: Duration) -> Result<bool, Shutdown> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if self.deleting()? {
                return Ok(true);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return self.deleting(),
                changed = self.rx.changed() => if changed.is_err() { return Err(Shutdown) },
            }
        }
    }

    async fn run(&mut self, pod: Pod) -> Result<(), Shutdown> {
        let mut process = None;
        if let Some(rec) = Record::load(&self.records(), &self.uid) {
            self.rec = rec;
            if self.rec.launcher_pid != 0 && !self.rec.finished {
                match Process::adopt(self.rec.launcher_pid, self.rec.launcher_start) {
                    Some(p) => {
                        println!(
                            "oxivirtd: adopted the launcher of pod {}/{} (pid {})",
                            self.namespace, self.name, p.pid
                        );
                        process = Some(p);
                    }
                    // It ended while no daemon watched: its final status is still owed.
                    None => self.finish(Exit::Unknown).await,
                }
            }
        } else if finished_phase(&pod) {
            self.rec.finished = true;
        }
        if self.rec.finished {
            return self.after_finish().await;
        }
        let mut process = match process {
            Some(p) => p,
            None => match self.start().await? {
                Some(p) => p,
                None => return self.delete(None).await,
            },
        };
        match self.monitor(&mut process).await? {
            Some(exit) => {
                self.finish(exit).await;
                self.after_finish().await
            }
            None => self.delete(Some(process)).await,
        }
    }

    /// From a new pod to a started launcher; `None` when the pod is deleted on the way.
    async fn start(&mut self) -> Result<Option<Process>, Shutdown> {
        self.save();
        self.patch(&status::waiting(
            &self.image,
            "ContainerCreating",
            "",
            &self.start_time,
        ))
        .await;
        let mut attempt = 0;
        loop {
            if self.deleting()? {
                return Ok(None);
            }
            let f = match self.try_start().await {
                Ok(p) => return Ok(Some(p)),
                Err(f) => f,
            };
            eprintln!(
                "oxivirtd: pod {}/{}: {}: {}",
                self.namespace, self.name, f.reason, f.message
            );
            self.event(true, f.event, &f.message).await;
            self.patch(&status::waiting(
                &self.image,
                f.reason,
                &f.message,
                &self.start_time,
            ))
            .await;
            if !f.retry {
                // Only a change of the pod (its deletion) helps.
                while !self.wait(Duration::from_secs(3600)).await? {}
                return Ok(None);
            }
            let mut pause = backoff(attempt);
            attempt += 1;
            if let Some(image) = &f.image {
                // ErrImagePull shows until the next sync, then the back-off, as the kubelet.
                let first = Duration::from_secs(2).min(pause);
                if self.wait(first).await? {
                    return Ok(None);
                }
                pause -= first;
                let msg = format!("Back-off pulling image \"{image}\"");
                self.event(false, "BackOff", &msg).await;
                self.patch(&status::waiting(
                    &self.image,
                    "ImagePullBackOff",
                    &msg,
                    &self.start_time,
                ))
                .await;
            }
            if self.wait(pause).await? {
                return Ok(None);
            }
        }
    }

    async fn try_start(&mut self) -> Result<Process, Failure> {
        let sandbox = |e: &(dyn std::error::Error + 'static)| {
            Failure::new(
                "ContainerCreating",
                "FailedCreatePodSandBox",
                format!("Failed to create pod sandbox: {}", chain(e)),
            )
        };
        let path = self.rec.netns.clone();
        tokio::task::spawn_blocking(move || netns::create(&path))
            .await
            .map_err(|e| sandbox(&e))?
            .map_err(|e| sandbox(&e))?;

        let vmi = self.get_vmi().await?;
        for image in container_disks(&vmi) {
            self.pull(&image).await?;
        }

        // The pod's networks, through the first config as a runtime picks it.
        self.ctx
            .ensure_default_network()
            .await
            .map_err(|e| sandbox(&e))?;
        let cfg = &self.ctx.config;
        let (conf_path, conf) = cni::first_config(&cfg.cni_conf_dir).map_err(|e| sandbox(&e))?;
        self.rec.cni_added = true;
        self.save();
        let call = cni::Call {
            bin_dir: &cfg.cni_bin_dir,
            netns: &self.rec.netns,
            ifname: "eth0",
            pod: cni::PodRef {
                namespace: &self.namespace,
                name: &self.name,
                uid: &self.uid,
            },
        };
        let result = match call.add(&conf).await {
            Ok(r) => r,
            Err(e) => {
                // Nothing of a failed ADD stays: DEL, and the namespace goes.
                let _ = call.del(&conf).await;
                self.rec.cni_added = false;
                self.save();
                let _ = netns::delete(&self.rec.netns);
                return Err(sandbox(&e));
            }
        };
        let ips = cni::pod_ips(&result);
        println!(
            "oxivirtd: pod {}/{}: network ready ({}) through {}",
            self.namespace,
            self.name,
            ips.join(", "),
            conf_path.display()
        );
        self.rec.pod_ips = ips.clone();
        self.save();
        if let Some(first) = ips.first() {
            let pod_ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
            self.patch(&json!({"status": {"podIP": first, "podIPs": pod_ips}}))
                .await;
        }

        self.launch(&vmi).await
    }

    async fn get_vmi(&mut self) -> Result<Value, Failure> {
        let fail = |m: String| Failure::new("CreateContainerConfigError", "Failed", m);
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.ctx.client.clone(),
            &self.namespace,
            &status::vmi_resource(),
        );
        let vmi = api
            .get_opt(&self.rec.vmi)
            .await
            .map_err(|e| fail(format!("Error: get VirtualMachineInstance: {e}")))?
            .ok_or_else(|| {
                fail(format!(
                    "Error: VirtualMachineInstance {:?} not found",
                    self.rec.vmi
                ))
            })?;
        let uid = vmi.metadata.uid.clone().unwrap_or_default();
        if !self.rec.vmi_uid.is_empty() && uid != self.rec.vmi_uid {
            return Err(fail(format!(
                "Error: VirtualMachineInstance {:?} is another one (uid {uid}) than the pod's owner ({})",
                self.rec.vmi, self.rec.vmi_uid
            )));
        }
        self.rec.vmi_uid = uid;
        let mut v = serde_json::to_value(&vmi).map_err(|e| fail(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.insert("apiVersion".into(), json!("kubevirt.io/v1"));
            o.insert("kind".into(), json!("VirtualMachineInstance"));
        }
        Ok(v)
    }

    /// Pulls one image into the node's cache, as the kubelet reports it.
    async fn pull(&self, image: &str) -> Result<(), Failure> {
        let fail = |reason: &'static str, e: &(dyn std::error::Error + 'static)| Failure {
            reason,
            event: "Failed",
            message: format!("Failed to pull image \"{image}\": {}", chain(e)),
            image: Some(image.to_string()),
            retry: reason != "InvalidImageName",
        };
        let reference =
            oxivirt_image::Reference::parse(image).map_err(|e| fail("InvalidImageName", &e))?;
        self.event(false, "Pulling", &format!("Pulling image \"{image}\""))
            .await;
        let began = Instant::now();
        let puller = self.ctx.puller.clone();
        let r = reference.clone();
        let pulled = tokio::task::spawn_blocking(move || {
            puller.pull(&r, oxivirt_image::PullPolicy::default_for(&r))
        })
        .await
        .map_err(|e| fail("ErrImagePull", &e))?;
        match pulled {
            Ok(img) => {
                self.event(
                    false,
                    "Pulled",
                    &format!(
                        "Successfully pulled image \"{image}\" in {:.3}s. Image size: {} bytes.",
                        began.elapsed().as_secs_f64(),
                        img.layers.iter().map(|l| l.size).sum::<u64>()
                    ),
                )
                .await;
                Ok(())
            }
            Err(e) => Err(fail(e.kubelet_reason().unwrap_or("ErrImagePull"), &e)),
        }
    }

    async fn launch(&mut self, vmi: &Value) -> Result<Process, Failure> {
        let fail = |e: &(dyn std::error::Error + 'static)| {
            Failure::new(
                "CreateContainerError",
                "Failed",
                format!("Error: {}", chain(e)),
            )
        };
        let dir = self.rec.state_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
        // A status of an earlier VMI of this name must not be read as this one's.
        let _ = std::fs::remove_file(dir.join("status.json"));
        let cfg = &self.ctx.config;
        let images = cfg.images();
        let p = Process::spawn(&launcher::Spawn {
            binary: &cfg.launcher,
            netns: &self.rec.netns,
            state_dir: &dir,
            image_cache: &images,
            mirrors: &cfg.registry_mirrors,
            accel: cfg.accel.as_deref(),
            vmi,
        })
        .await
        .map_err(|e| fail(&e))?;
        self.rec.launcher_pid = p.pid;
        self.rec.launcher_start = p.start_time;
        self.rec.started_at = status::now();
        self.save();
        let msg = format!("Created container {}", status::CONTAINER);
        self.event(false, "Created", &msg).await;
        let msg = format!("Started container {}", status::CONTAINER);
        self.event(false, "Started", &msg).await;
        self.patch(&status::running(
            &self.image,
            &self.rec.started_at,
            false,
            &self.start_time,
        ))
        .await;
        Ok(p)
    }

    /// Follows the launcher until it ends (`Some`) or the pod is deleted (`None`).
    async fn monitor(&mut self, p: &mut Process) -> Result<Option<Exit>, Shutdown> {
        let mut last: Option<Value> = None;
        let mut ready = false;
        let began = Instant::now();
        loop {
            let current = launcher::read_status(&self.rec.state_dir);
            if current != last {
                if let Some(s) = &current {
                    self.report(s, &mut ready).await;
                }
                last = current;
            }
            if let Some(exit) = p.try_exit() {
                return Ok(Some(exit));
            }
            let poll = if !ready && began.elapsed() < START_WINDOW {
                START_POLL
            } else {
                POLL
            };
            if self.wait(poll).await? {
                return Ok(None);
            }
        }
    }

    /// The launcher's status into the VMI (and the pod's readiness).
    async fn report(&self, s: &Value, ready: &mut bool) {
        let node = &self.ctx.config.node_name;
        if let Some(patch) = status::vmi_status(s, node, &status::now()) {
            if let Err(e) =
                status::patch_vmi(&self.ctx.client, &self.namespace, &self.rec.vmi, &patch).await
            {
                eprintln!(
                    "oxivirtd: status of VMI {}/{}: {e}",
                    self.namespace, self.rec.vmi
                );
            }
        }
        let running = s.get("phase").and_then(Value::as_str) == Some("Running");
        if running && !*ready {
            *ready = true;
            self.patch(&status::running(
                &self.image,
                &self.rec.started_at,
                true,
                &self.start_time,
            ))
            .await;
            self.ctx
                .recorder
                .event(
                    &self.vmi_ref(),
                    false,
                    "Started",
                    "VirtualMachineInstance started.",
                )
                .await;
        }
    }

    /// The launcher ended: the sandbox goes (CNI DEL, the namespace), as the kubelet tears
    /// down a finished pod's sandbox, then the final Pod and VMI status; in that order so
    /// whoever sees the end (the controller making the next pod) finds the addresses free.
    async fn finish(&mut self, exit: Exit) {
        self.teardown_network().await;
        let s = launcher::read_status(&self.rec.state_dir).unwrap_or(Value::Null);
        let phase = s.get("phase").and_then(Value::as_str).unwrap_or("");
        let reason = s
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let code = match exit {
            Exit::Code(c) => c,
            Exit::Signal(sig) => 128 + sig,
            Exit::Unknown if phase == "Succeeded" => 0,
            Exit::Unknown => 1,
        };
        let (final_phase, why) = match phase {
            "Succeeded" | "Failed" => (phase.to_string(), reason.clone()),
            _ => (
                "Failed".to_string(),
                format!("the launcher ended ({exit:?}) before it reported an end"),
            ),
        };
        let mut final_status = s.clone();
        if let Some(o) = final_status.as_object_mut() {
            o.insert("phase".into(), json!(final_phase));
            o.insert("reason".into(), json!(why));
        } else {
            final_status = json!({"phase": final_phase, "reason": why});
        }
        let mut ready = true;
        self.report(&final_status, &mut ready).await;
        let started = if self.rec.started_at.is_empty() {
            status::now()
        } else {
            self.rec.started_at.clone()
        };
        self.patch(&status::terminated(&self.image, &started, code, &why))
            .await;
        println!(
            "oxivirtd: pod {}/{}: the launcher ended ({final_phase}, exit {code}){}",
            self.namespace,
            self.name,
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        );
        self.rec.finished = true;
        self.save();
    }

    /// After the end: everything goes once the pod is deleted.
    async fn after_finish(&mut self) -> Result<(), Shutdown> {
        while !self.wait(Duration::from_secs(3600)).await? {}
        self.teardown_network().await;
        self.remove_state().await;
        self.delete_pod().await;
        Ok(())
    }

    /// The pod is being deleted: stop the launcher within the grace period, tear down, and
    /// delete the pod for good.
    async fn delete(&mut self, process: Option<Process>) -> Result<(), Shutdown> {
        if let Some(mut p) = process {
            let grace = self.grace();
            let msg = format!("Stopping container {}", status::CONTAINER);
            self.event(false, "Killing", &msg).await;
            let dir = self.rec.state_dir.clone();
            let asked = tokio::task::spawn_blocking(move || launcher::request_stop(&dir, grace))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
            if let Err(e) = asked {
                eprintln!(
                    "oxivirtd: stop the launcher of {}/{}: {e}",
                    self.namespace, self.name
                );
            }
            let deadline = Instant::now() + Duration::from_secs(grace) + KILL_MARGIN;
            let mut exit = None;
            while exit.is_none() && Instant::now() < deadline {
                tokio::time::sleep(POLL).await;
                exit = p.try_exit();
            }
            if exit.is_none() {
                let qemu = launcher::read_status(&self.rec.state_dir)
                    .and_then(|s| s.get("qemuPid").and_then(Value::as_u64))
                    .and_then(|q| u32::try_from(q).ok());
                p.kill(qemu);
                let until = Instant::now() + Duration::from_secs(5);
                while exit.is_none() && Instant::now() < until {
                    tokio::time::sleep(POLL).await;
                    exit = p.try_exit();
                }
            }
            // The VM's end, for whoever still looks at the VMI.
            if let Some(s) = launcher::read_status(&self.rec.state_dir) {
                let mut ready = true;
                self.report(&s, &mut ready).await;
            }
        }
        self.teardown_network().await;
        self.remove_state().await;
        self.delete_pod().await;
        Ok(())
    }

    /// The deletion's grace period: the pod's marked one, else its spec's, else 30 s.
    fn grace(&self) -> u64 {
        let pod = self.rx.borrow();
        let p = pod.as_ref();
        p.and_then(|p| p.metadata.deletion_grace_period_seconds)
            .or_else(|| {
                p.and_then(|p| p.spec.as_ref())
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .and_then(|g| u64::try_from(g).ok())
            .unwrap_or(30)
    }

    async fn teardown_network(&mut self) {
        if let Err(e) = teardown(&self.ctx.config, &self.rec).await {
            let msg = format!("error killing pod: failed to destroy network for sandbox: {e}");
            eprintln!("oxivirtd: pod {}/{}: {msg}", self.namespace, self.name);
            self.event(true, "FailedKillPod", &msg).await;
        }
        self.rec.cni_added = false;
        self.save();
    }

    async fn remove_state(&self) {
        let _ = std::fs::remove_dir_all(&self.rec.state_dir);
        Record::remove(&self.records(), &self.uid);
    }

    async fn delete_pod(&self) {
        if self.rx.borrow().is_none() {
            return;
        }
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.api.delete(&self.name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => eprintln!("oxivirtd: delete pod {}/{}: {e}", self.namespace, self.name),
        }
    }
}

/// The containerDisk images of a VMI.
fn container_disks(vmi: &Value) -> Vec<String> {
    vmi.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map(|vols| {
            vols.iter()
                .filter_map(|v| v.pointer("/containerDisk/image").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// CNI DEL (when ADD was called) and the namespace's removal; DEL's error is returned
/// after the namespace is gone all the same.
async fn teardown(cfg: &Config, rec: &Record) -> Result<(), String> {
    let mut err = None;
    if rec.cni_added {
        match cni::first_config(&cfg.cni_conf_dir) {
            Ok((_, conf)) => {
                let call = cni::Call {
                    bin_dir: &cfg.cni_bin_dir,
                    netns: &rec.netns,
                    ifname: "eth0",
                    pod: cni::PodRef {
                        namespace: &rec.namespace,
                        name: &rec.name,
                        uid: &rec.uid,
                    },
                };
                if let Err(e) = call.del(&conf).await {
                    err = Some(chain(&e));
                }
            }
            Err(e) => err = Some(chain(&e)),
        }
    }
    if let Err(e) = netns::delete(&rec.netns) {
        err.get_or_insert(chain(&e));
    }
    err.map_or(Ok(()), Err)
}

/// Stops a launcher that has no pod any more and waits for it (killed after the grace
/// period when it is known by pid).
async fn stop_orphan(state_dir: &Path, p: Option<&Process>, grace: Option<u64>) {
    let dir = state_dir.to_path_buf();
    let grace = grace.unwrap_or(30);
    let _ = tokio::task::spawn_blocking(move || launcher::request_stop(&dir, grace)).await;
    let deadline = Instant::now() + Duration::from_secs(grace) + KILL_MARGIN;
    let gone = || match p {
        Some(p) => !launcher::alive(p.pid, p.start_time),
        None => !launcher::answers(state_dir),
    };
    while !gone() && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    if let (false, Some(p)) = (gone(), p) {
        let qemu = launcher::read_status(state_dir)
            .and_then(|s| s.get("qemuPid").and_then(Value::as_u64))
            .and_then(|q| u32::try_from(q).ok());
        p.kill(qemu);
    }
}

/// On start, once the pods of this node are listed: what a crash left without a pod goes
/// (its launcher stopped, CNI DEL with the meta plugin's cache, the namespace and state
/// dir removed). `listed` maps the uids of this node's pods to their state dirs.
pub(crate) async fn clean_orphans(ctx: Arc<Ctx>, listed: HashMap<String, PathBuf>) {
    let cfg = &ctx.config;
    let keep_dirs: HashSet<&PathBuf> = listed.values().collect();
    for rec in Record::all(&cfg.records()) {
        if listed.contains_key(&rec.uid) {
            continue;
        }
        println!(
            "oxivirtd: cleaning up after pod {}/{} (uid {}), which is gone",
            rec.namespace, rec.name, rec.uid
        );
        let ours = !keep_dirs.contains(&rec.state_dir);
        let p = Process::adopt(rec.launcher_pid, rec.launcher_start);
        if p.is_some() || (ours && launcher::answers(&rec.state_dir)) {
            stop_orphan(&rec.state_dir, p.as_ref(), rec.grace).await;
        }
        if let Err(e) = teardown(cfg, &rec).await {
            eprintln!(
                "oxivirtd: network of gone pod {}/{}: {e}",
                rec.namespace, rec.name
            );
        }
        if ours {
            let _ = std::fs::remove_dir_all(&rec.state_dir);
        }
        Record::remove(&cfg.records(), &rec.uid);
    }
    // A namespace named like ours but in no record of this daemon is left alone: other
    // daemons (other data dirs) share /run/netns, and records are written before any
    // namespace is made, so a crash leaves none of ours unrecorded.
    let records = Record::all(&cfg.records());
    let launchers = cfg.data_dir.join("launchers");
    for ns_dir in sub_dirs(&launchers) {
        for dir in sub_dirs(&ns_dir) {
            if keep_dirs.contains(&dir) || records.iter().any(|r| r.state_dir == dir) {
                continue;
            }
            if launcher::answers(&dir) {
                println!(
                    "oxivirtd: stopping the launcher of no pod in {}",
                    dir.display()
                );
                stop_orphan(&dir, None, None).await;
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

fn sub_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}
