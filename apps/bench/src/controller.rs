//! `--only controller`: `oxivirt-controller` (KubeVirt's VM and VMI controllers, the
//! separate process a cluster runs as its virt-controller) against a Kubernetes API, here
//! a release `oxivirtd --api-only` on a temporary data dir (the API alone: its own
//! controllers do not run, so every VMI and Pod is the controller under test's work):
//!
//! - the controller's resident memory (VmRSS, and its peak VmHWM) idle, once it has synced
//!   its informers against the empty API;
//! - 100 VirtualMachines (the seed's, distinct names, `runStrategy: Always`) created
//!   through the API: the time from the first create until the controller has made 100
//!   VMIs and 100 launcher Pods (list counts). No node runs the Pods here: they stay
//!   Pending, and the VMIs Scheduling;
//! - its resident memory with the 100 VMs, VMIs and Pods in its caches;
//! - optionally (when the release `oxivirt-node` is beside this binary) the node agent's
//!   long-running `install-cni` (temporary host dirs and a fake service-account dir, as
//!   `apps/node/tests/install_cni.rs` does) once it has installed; its `launcher-status`
//!   with the 100 launcher pods on its node (each pod's `status.json` written as a running
//!   launcher writes it; the pods bound to the node by a patch, as a scheduler binds
//!   them): the time until all 100 VMIs are Running, and its memory then; its `relay`
//!   idle (the certificate made as oxivirt-api makes it); and the controller's memory
//!   with the 100 VMIs Running;
//! - optionally (when the release `oxivirt-api` is beside this binary) `oxivirt-api`
//!   idle, once it serves.
//!
//! No leader election (`--leader-elect` is off): one replica, acting from the start.
//! Every process and directory is registered with testkit's cleanup.

use crate::api::{agent, get, seed_vm};
use anyhow::{bail, Context, Result};
use oxivirt_testkit::cleanup::{self, TempDir};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VMS: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines";
const VMIS: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances";
const PODS: &str = "/api/v1/namespaces/default/pods";
const COUNT: usize = 100;
/// How long the controller is left to sync before the idle measurement.
const SETTLE: Duration = Duration::from_secs(3);

/// Resident memory of a process (KiB).
#[derive(Clone, Copy)]
pub(crate) struct Mem {
    rss: u64,
    hwm: u64,
}

impl Mem {
    pub(crate) fn of(pid: u32) -> Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |k: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .with_context(|| k.to_string())
        };
        Ok(Self {
            rss: field("VmRSS:")?,
            hwm: field("VmHWM:")?,
        })
    }

    pub(crate) fn show(&self) -> String {
        format!(
            "{:.1} MiB (peak {:.1} MiB)",
            self.rss as f64 / 1024.0,
            self.hwm as f64 / 1024.0
        )
    }
}

/// What one run measured.
pub struct Report {
    idle: Mem,
    loaded: Mem,
    settled: Mem,
    to_vmis: Duration,
    to_pods: Duration,
    creates: Duration,
    pending: usize,
    node: Option<Mem>,
    agent: Option<Agent>,
    api: Option<Mem>,
}

/// The node agent's VMI work and the aggregated API server.
pub struct Agent {
    /// `launcher-status` started → the 100 VMIs Running.
    to_running: Duration,
    status_mem: Mem,
    relay_mem: Mem,
    /// The controller with the 100 VMIs Running.
    controller_mem: Mem,
}

/// A child killed when dropped (its cleanup registration goes with it).
struct Proc {
    child: Child,
    _reg: cleanup::Registration,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Result<Self> {
        let (child, reg) = cleanup::spawn(cmd)?;
        Ok(Self { child, _reg: reg })
    }

    fn alive(&mut self, what: &str, log: &Path) -> Result<()> {
        if let Some(st) = self.child.try_wait()? {
            bail!(
                "{what} exited ({st}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        Ok(())
    }
}

fn count(a: &ureq::Agent, url: &str) -> Result<(usize, usize)> {
    let (code, body) = get(a, url)?;
    if code != 200 {
        bail!("list {url}: {code} {}", String::from_utf8_lossy(&body));
    }
    let v: Value = serde_json::from_slice(&body)?;
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let pending = items
        .iter()
        .filter(|i| i["status"]["phase"].as_str().unwrap_or("Pending") == "Pending")
        .count();
    Ok((items.len(), pending))
}

fn beside(name: &str, package: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.parent().map(|d| d.join(name)).unwrap_or_default();
    if !bin.is_file() {
        bail!(
            "{} not found: build it beside the bench (cargo build --release -p {package} -p oxivirt-app-bench)",
            bin.display()
        );
    }
    Ok(bin)
}

pub fn bench() -> Result<Report> {
    let daemon_bin = beside("oxivirtd", "oxivirt-app-daemon")?;
    let ctl_bin = beside("oxivirt-controller", "oxivirt-app-controller")?;
    let dir = TempDir::new("bench-controller")?;
    let data = dir.path().join("data");
    let daemon = crate::api::start(&daemon_bin, &data)?;
    let base = daemon.url.clone();
    let a = agent(&data)?;

    let log = dir.path().join("controller.log");
    let mut ctl = Proc::spawn(
        Command::new(&ctl_bin)
            .arg("--kubeconfig")
            .arg(data.join("kubeconfig"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?),
    )
    .with_context(|| format!("start {}", ctl_bin.display()))?;
    std::thread::sleep(SETTLE);
    ctl.alive("oxivirt-controller", &log)?;
    let idle = Mem::of(ctl.child.id())?;

    // 100 VMs, one keep-alive connection, sequential creates.
    let url = format!("{base}{VMS}");
    let t0 = Instant::now();
    for i in 0..COUNT {
        let name = format!("testvm-{i:03}");
        let mut vm = seed_vm(&name);
        if let Some(spec) = vm["spec"].as_object_mut() {
            spec.remove("running");
            spec.insert("runStrategy".into(), "Always".into());
        }
        let resp = a
            .post(&url)
            .header("Content-Type", "application/json")
            .send(&serde_json::to_vec(&vm)?[..])?;
        let code = resp.status().as_u16();
        let mut text = Vec::new();
        resp.into_body().into_reader().read_to_end(&mut text)?;
        if code != 201 {
            bail!("create {name}: {code} {}", String::from_utf8_lossy(&text));
        }
    }
    let creates = t0.elapsed();

    let (vmis_url, pods_url) = (format!("{base}{VMIS}"), format!("{base}{PODS}"));
    let deadline = t0 + Duration::from_secs(120);
    let (mut to_vmis, mut to_pods) = (None, None);
    let mut pending = 0;
    while to_vmis.is_none() || to_pods.is_none() {
        if Instant::now() > deadline {
            bail!(
                "after 120 s: {} VMIs, {} pods of {COUNT}; controller log: {}",
                count(&a, &vmis_url)?.0,
                count(&a, &pods_url)?.0,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        ctl.alive("oxivirt-controller", &log)?;
        if to_vmis.is_none() && count(&a, &vmis_url)?.0 >= COUNT {
            to_vmis = Some(t0.elapsed());
        }
        if to_pods.is_none() {
            let (n, p) = count(&a, &pods_url)?;
            if n >= COUNT {
                to_pods = Some(t0.elapsed());
                pending = p;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let loaded = Mem::of(ctl.child.id())?;
    std::thread::sleep(SETTLE);
    ctl.alive("oxivirt-controller", &log)?;
    let settled = Mem::of(ctl.child.id())?;

    let (node, agent) = match beside("oxivirt-node", "oxivirt-app-node") {
        Ok(bin) => {
            let cni = install_cni(&bin, &data)?;
            let mut agent = node_agent(&bin, &a, &base, &data)?;
            ctl.alive("oxivirt-controller", &log)?;
            agent.controller_mem = Mem::of(ctl.child.id())?;
            (Some(cni), Some(agent))
        }
        Err(e) => {
            eprintln!("node agent skipped: {e}");
            (None, None)
        }
    };
    drop(ctl);
    let api = match beside("oxivirt-api", "oxivirt-app-api") {
        Ok(bin) => Some(aggregated_api(&bin, &a, &base, &data)?),
        Err(e) => {
            eprintln!("oxivirt-api skipped: {e}");
            None
        }
    };
    drop(daemon);
    Ok(Report {
        idle,
        loaded,
        settled,
        to_vmis: to_vmis.unwrap_or_default(),
        to_pods: to_pods.unwrap_or_default(),
        creates,
        pending,
        node,
        agent,
        api,
    })
}

fn send(a: &ureq::Agent, method: &str, url: &str, content_type: &str, body: &Value) -> Result<()> {
    let bytes = serde_json::to_vec(body)?;
    let req = match method {
        "PATCH" => a.patch(url),
        _ => a.post(url),
    };
    let resp = req.header("Content-Type", content_type).send(&bytes[..])?;
    let code = resp.status().as_u16();
    let mut text = Vec::new();
    resp.into_body().into_reader().read_to_end(&mut text)?;
    if !(200..300).contains(&code) && code != 409 {
        bail!("{method} {url}: {code} {}", String::from_utf8_lossy(&text));
    }
    Ok(())
}

fn items(a: &ureq::Agent, url: &str) -> Result<Vec<Value>> {
    let (code, body) = get(a, url)?;
    if code != 200 {
        bail!("list {url}: {code} {}", String::from_utf8_lossy(&body));
    }
    let v: Value = serde_json::from_slice(&body)?;
    Ok(v["items"].as_array().cloned().unwrap_or_default())
}

/// The node agent's `launcher-status` with the 100 launcher pods on its node, and its
/// `relay` idle.
fn node_agent(bin: &Path, a: &ureq::Agent, base: &str, data: &Path) -> Result<Agent> {
    const NODE: &str = "bench-node";
    let root = TempDir::new("bench-agent")?;
    let launchers = root.path().join("launchers");
    for pod in items(a, &format!("{base}{PODS}"))? {
        let (Some(uid), Some(name)) = (
            pod["metadata"]["uid"].as_str(),
            pod["metadata"]["name"].as_str(),
        ) else {
            continue;
        };
        let dir = launchers.join(uid);
        std::fs::create_dir_all(&dir)?;
        // What a running launcher writes (apps/launcher/src/state.rs).
        let status = serde_json::json!({"phase": "Running", "paused": false, "accelerator": "kvm",
            "interfaces": [{"name": "default", "mac": "02:00:00:00:00:01", "ipAddress": "10.0.2.2",
                "ipAddresses": ["10.0.2.2"], "interfaceName": "eth0", "infoSource": "domain"}]});
        std::fs::write(dir.join("status.json"), serde_json::to_vec(&status)?)?;
        send(
            a,
            "PATCH",
            &format!("{base}{PODS}/{name}"),
            "application/merge-patch+json",
            &serde_json::json!({"spec": {"nodeName": NODE}}),
        )?;
    }
    let log = root.path().join("status.log");
    let t0 = Instant::now();
    let mut status = Proc::spawn(
        Command::new(bin)
            .args(["launcher-status", "--node-name", NODE])
            .arg("--state-root")
            .arg(&launchers)
            .arg("--kubeconfig")
            .arg(data.join("kubeconfig"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?),
    )?;
    let deadline = t0 + Duration::from_secs(60);
    let to_running = loop {
        status.alive("oxivirt-node launcher-status", &log)?;
        let running = items(a, &format!("{base}{VMIS}"))?
            .iter()
            .filter(|v| v["status"]["phase"] == "Running")
            .count();
        if running >= COUNT {
            break t0.elapsed();
        }
        if Instant::now() > deadline {
            bail!("after 60 s {running} of {COUNT} VMIs Running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(SETTLE);
    status.alive("oxivirt-node launcher-status", &log)?;
    let status_mem = Mem::of(status.child.id())?;
    drop(status);

    // The relay, with the certificate oxivirt-api would put into its Secret.
    use oxivirt_apiserver::pki::{Ca, Usage};
    let ca = Ca::generate("bench-ca")?;
    let cert = ca.issue(
        oxivirt_apiserver::relay::SERVER_NAME,
        &[oxivirt_apiserver::relay::SERVER_NAME.to_string()],
        Usage::Server,
    )?;
    let tls = root.path().join("relay-tls");
    std::fs::create_dir_all(&tls)?;
    std::fs::write(tls.join("tls.crt"), &cert.cert_pem)?;
    std::fs::write(tls.join("tls.key"), &cert.key_pem)?;
    std::fs::write(tls.join("ca.crt"), &ca.cert_pem)?;
    let rlog = root.path().join("relay.log");
    let mut relay = Proc::spawn(
        Command::new(bin)
            .args(["relay", "--listen", "127.0.0.1:0"])
            .arg("--tls-dir")
            .arg(&tls)
            .arg("--state-root")
            .arg(&launchers)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&rlog)?),
    )?;
    std::thread::sleep(SETTLE);
    relay.alive("oxivirt-node relay", &rlog)?;
    let relay_mem = Mem::of(relay.child.id())?;
    Ok(Agent {
        to_running,
        status_mem,
        relay_mem,
        controller_mem: status_mem,
    })
}

/// `oxivirt-api` once it serves (its Secrets made, the front proxy's CA from a file).
fn aggregated_api(bin: &Path, a: &ureq::Agent, base: &str, data: &Path) -> Result<Mem> {
    send(
        a,
        "POST",
        &format!("{base}/api/v1/namespaces"),
        "application/json",
        &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "oxivirt"}}),
    )?;
    let root = TempDir::new("bench-api")?;
    let front = oxivirt_apiserver::pki::Ca::generate("bench-front-proxy")?;
    let ca_file = root.path().join("front-proxy-ca.crt");
    std::fs::write(&ca_file, &front.cert_pem)?;
    let log = root.path().join("api.log");
    let mut api = Proc::spawn(
        Command::new(bin)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--namespace",
                "oxivirt",
                "--apiservice",
                "",
            ])
            .arg("--requestheader-client-ca-file")
            .arg(&ca_file)
            .arg("--kubeconfig")
            .arg(data.join("kubeconfig"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?),
    )?;
    let mut line = String::new();
    if let Some(out) = api.child.stdout.take() {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
    }
    if !line.contains("serving") {
        api.alive("oxivirt-api", &log)?;
        bail!("oxivirt-api did not serve: {line:?}");
    }
    std::thread::sleep(SETTLE);
    api.alive("oxivirt-api", &log)?;
    Mem::of(api.child.id())
}

/// `oxivirt-node install-cni` (long-running) over temporary host dirs: its memory once it
/// has written the multus config and kubeconfig.
fn install_cni(bin: &Path, data: &Path) -> Result<Mem> {
    let root = TempDir::new("bench-node")?;
    let d = |n: &str| -> Result<PathBuf> {
        let p = root.path().join(n);
        std::fs::create_dir_all(&p)?;
        Ok(p)
    };
    let (bins, conf, sa, src) = (d("opt/cni/bin")?, d("etc/cni/net.d")?, d("sa")?, d("src")?);
    for p in ["oxivirt-cni", "oxivirt-multus"] {
        std::fs::write(
            src.join(p),
            b"#!/bin/sh\n# stands in for the image's plugin\n",
        )?;
    }
    std::fs::write(
        conf.join("10-flannel.conflist"),
        r#"{"cniVersion":"0.3.1","name":"cbr0","plugins":[{"type":"flannel","delegate":{"isDefaultGateway":true}}]}"#,
    )?;
    std::fs::copy(data.join("pki").join("ca.crt"), sa.join("ca.crt"))?;
    std::fs::write(sa.join("token"), "token-one\n")?;
    let log = root.path().join("node.log");
    let mut node = Proc::spawn(
        Command::new(bin)
            .arg("install-cni")
            .arg("--bin-dir")
            .arg(&bins)
            .arg("--conf-dir")
            .arg(&conf)
            .arg("--source-dir")
            .arg(&src)
            .arg("--service-account-dir")
            .arg(&sa)
            .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
            .env("KUBERNETES_SERVICE_PORT", "443")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?),
    )?;
    let installed = conf.join("00-multus.conf");
    let end = Instant::now() + Duration::from_secs(10);
    while !installed.is_file() {
        node.alive("oxivirt-node install-cni", &log)?;
        if Instant::now() > end {
            bail!("install-cni wrote no {}", installed.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(SETTLE);
    node.alive("oxivirt-node install-cni", &log)?;
    Mem::of(node.child.id())
}

impl Report {
    pub fn print(&self) {
        let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        println!("| oxivirt-controller against `oxivirtd --api-only` (no leader election) | measured | target | KubeVirt |");
        println!("|---|---|---|---|");
        println!(
            "| resident memory, idle after its informers synced ({} s) | {} | ≤ 30 MiB | virt-controller: hundreds of MiB |",
            SETTLE.as_secs(),
            self.idle.show()
        );
        println!(
            "| {COUNT} VMs (seed, `runStrategy: Always`) created, sequential, one connection | {} | — | — |",
            s(self.creates)
        );
        println!(
            "| first create → {COUNT} VMIs listed | {} | — | — |",
            s(self.to_vmis)
        );
        println!(
            "| first create → {COUNT} launcher Pods listed ({} Pending: no node runs them) | {} | — | — |",
            self.pending,
            s(self.to_pods)
        );
        println!(
            "| resident memory at {COUNT} VMs / VMIs / Pods | {} | ≤ 30 MiB | — |",
            self.loaded.show()
        );
        println!(
            "| resident memory {} s later | {} | ≤ 30 MiB | — |",
            SETTLE.as_secs(),
            self.settled.show()
        );
        match self.node {
            Some(m) => println!(
                "| node agent `oxivirt-node install-cni`, installed and polling | {} | ≤ 30 MiB | virt-handler: hundreds of MiB |",
                m.show()
            ),
            None => println!("| node agent `oxivirt-node install-cni` | not built | ≤ 30 MiB | — |"),
        }
        if let Some(g) = &self.agent {
            println!(
                "| node agent `oxivirt-node launcher-status`: start → {COUNT} VMIs Running (their launchers' status reported) | {} | — | — |",
                s(g.to_running)
            );
            println!(
                "| node agent `oxivirt-node launcher-status`, {COUNT} VMIs on its node, {} s later | {} | ≤ 30 MiB | virt-handler: hundreds of MiB |",
                SETTLE.as_secs(),
                g.status_mem.show()
            );
            println!(
                "| node agent `oxivirt-node relay`, idle ({COUNT} launcher dirs) | {} | ≤ 30 MiB | — |",
                g.relay_mem.show()
            );
            println!(
                "| oxivirt-controller with the {COUNT} VMIs Running | {} | ≤ 30 MiB | — |",
                g.controller_mem.show()
            );
        }
        match self.api {
            Some(m) => println!(
                "| `oxivirt-api` (virtctl's subresources), serving, idle | {} | — | virt-api: hundreds of MiB |",
                m.show()
            ),
            None => println!("| `oxivirt-api` | not built | — | — |"),
        }
    }
}
