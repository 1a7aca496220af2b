//! `--only lifecycle`: the seed VM through the whole of `oxivirtd` (API, controllers, pod
//! runtime, `oxivirt-launcher`), as a user starts it:
//!
//! - set up once: in the bench's "node" namespace a registry serving the test guest as
//!   `quay.io/kubevirt/cirros-container-disk-demo` (through `--registry-mirror`), the
//!   seed's outside world (`multus-bridge` with an uplink to an "outside" namespace), the
//!   release `oxivirtd` with its controllers, our plugins and `oxivirt-multus`, then the
//!   seed's NAD and `examples/seed/vm-2.yaml` applied with `oxivirt apply`;
//! - one untimed start that pulls the image into the daemon's cache;
//! - per sample: `oxivirt start testvm-2`, timed until the VMI's `status.phase` is
//!   `Running` (seen on a watch of the API), and until both interfaces carry
//!   `leaseAcknowledgedAt` in the launcher's `status.json`; where the time went, from the
//!   arrival of every watch event (VMI, Pod, Event) and `status.json` read every 2 ms;
//!   then `oxivirt stop` and a wait until the VMI, the Pod, the pod's namespace and the
//!   launcher's state are gone;
//! - memory: `oxivirtd` idle, and with ten VMs running (the seed VM on a small disk that
//!   does not boot, the guest stays in the BIOS): its growth per VM, the launchers' VmRSS
//!   and PSS.
//!
//! Everything it makes is registered with testkit's cleanup, like the rest of the bench;
//! the launchers `oxivirtd` starts (in sessions of their own) are adopted into it as soon
//! as their pod records name them.

use crate::Args;
use anyhow::{anyhow, bail, Context, Result};
use oxivirt_app_launcher::state::{parse_rfc3339, Phase, StateDir};
use oxivirt_testkit::cleanup::{self, Held, Registration, TempDir};
use oxivirt_testkit::registry::{small_qcow2, Layout, Registry, PORT};
use oxivirt_testkit::TestNs;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const SEED_VM: &str = include_str!("../../../examples/seed/vm-2.yaml");
const NS: &str = "default";
const VMI: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances";
const VMS: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines";
const PODS: &str = "/api/v1/namespaces/default/pods";
const EVENTS: &str = "/api/v1/namespaces/default/events";
/// VMs running at once for the memory figures.
const MANY: usize = 10;

/// The milestones of one start, in order, as the breakdown prints them.
const STEPS: &[(&str, &str)] = &[
    ("put", "`oxivirt start` exited (PUT …/start acknowledged)"),
    ("vmi", "VMI created (watch ADDED)"),
    ("pod", "launcher Pod created (watch ADDED)"),
    ("pulling", "image check began (Event Pulling)"),
    ("pulled", "image cached (Event Pulled)"),
    ("network", "netns + CNI done (daemon log `network ready`)"),
    ("podip", "Pod `status.podIP` (watch)"),
    ("launcher", "launcher started (Event Started container)"),
    ("qmp", "`status.json` phase Running (QMP `cont` done)"),
    ("running", "VMI `status.phase` Running (watch)"),
    (
        "leases",
        "both DHCP leases acknowledged (`leaseAcknowledgedAt`)",
    ),
];

/// One sample: milliseconds since `oxivirt start` was spawned, by milestone.
type Sample = BTreeMap<&'static str, f64>;

pub struct Report {
    accel: String,
    first: Sample,
    samples: Vec<Sample>,
    stops: Vec<f64>,
    idle_rss_kib: u64,
    idle_after_rss_kib: u64,
    many_rss_kib: u64,
    /// Per launcher while the ten run: (VmRSS, Pss, RssAnon) KiB.
    launchers: Vec<LauncherMem>,
    /// Each sample's launcher VmRSS, KiB (the seed guest running, leases done).
    seed_launcher_rss: Vec<u64>,
    qemu_rss_kib: Vec<u64>,
}

/// A launcher's (VmRSS, Pss, RssAnon), KiB.
type LauncherMem = (u64, u64, u64);

/// A watch event as the bench saw it arrive.
struct Seen {
    at: SystemTime,
    kind: &'static str,
    kind_of_event: String,
    obj: Value,
}

/// A daemon log line and when the bench read it.
type LogLine = (SystemTime, String);

struct Daemon {
    child: Child,
    _reg: Registration,
    url: String,
    data: PathBuf,
    log: Arc<Mutex<Vec<LogLine>>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The launchers the daemon started, adopted into the cleanup (and killed when dropped, as
/// on a failure half-way; a clean run has stopped them through the API first).
#[derive(Default)]
struct Launchers {
    held: HashMap<i32, (Registration, Option<String>)>,
    netns: HashMap<String, Registration>,
}

impl Launchers {
    /// Adopts every launcher (and pod namespace) the daemon's pod records name.
    fn adopt(&mut self, data: &Path) {
        for rec in records(data) {
            if let Some(ns) = rec["netns"].as_str().and_then(|p| p.rsplit('/').next()) {
                if !self.netns.contains_key(ns) {
                    if let Ok(((), reg)) = cleanup::hold(Held::Netns(ns.into()), || Ok(())) {
                        self.netns.insert(ns.to_string(), reg);
                    }
                }
            }
            let pid = rec["launcherPid"].as_i64().unwrap_or(0) as i32;
            if pid > 0 && !self.held.contains_key(&pid) {
                if let Ok(reg) = cleanup::adopt_group(pid) {
                    let dir = rec["stateDir"].as_str().map(str::to_string);
                    self.held.insert(pid, (reg, dir));
                }
            }
        }
    }
}

impl Drop for Launchers {
    fn drop(&mut self) {
        for (pid, (_, dir)) in &self.held {
            if Path::new(&format!("/proc/{pid}")).exists() {
                // SAFETY: kill has no memory effects; the group is the launcher's session.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let qemu = dir
                .as_ref()
                .and_then(|d| StateDir::read_status(Path::new(d)).ok())
                .and_then(|s| s.qemu_pid);
            if let Some(q) = qemu {
                // SAFETY: as above (QEMU is in the launcher's session; belt and braces).
                unsafe { libc::kill(q as libc::pid_t, libc::SIGKILL) };
            }
        }
        for ns in self.netns.keys() {
            let _ = cleanup::delete_netns(ns);
        }
    }
}

fn records(data: &Path) -> Vec<Value> {
    std::fs::read_dir(data.join("pods"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read(e.path()).ok())
                .filter_map(|b| serde_json::from_slice(&b).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn beside(name: &str, pkg: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(|d| d.join(name))
        .filter(|p| p.is_file())
        .with_context(|| {
            format!("{name} is not beside oxivirt-bench (build it: cargo build --release -p {pkg})")
        })
}

fn start_daemon(args: &Args, root: &Path, bin: &Path, launcher: &Path) -> Result<Daemon> {
    let data = root.join("data");
    let (mut child, reg) = cleanup::spawn(
        Command::new(bin)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0", "--node-name", "node-1"])
            .arg("--cni-conf-dir")
            .arg(root.join("net.d"))
            .arg("--cni-bin-dir")
            .arg(&args.plugins)
            .arg("--launcher")
            .arg(launcher)
            .args([
                "--registry-mirror",
                &format!("quay.io=http://127.0.0.1:{PORT}"),
                "--accel",
                &args.launcher_accel,
            ])
            .env("OXIVIRT_IPAM_INDEX_DIR", args.index.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .with_context(|| format!("start {}", bin.display()))?;
    let mut out = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .map(|u| u.trim_end_matches(';').to_string())
        .with_context(|| format!("no URL in oxivirtd's ready line {line:?}"))?;
    let log: Arc<Mutex<Vec<LogLine>>> = Arc::default();
    let file = Arc::new(Mutex::new(std::fs::File::create(
        root.join("oxivirtd.log"),
    )?));
    let err = child.stderr.take().context("stderr")?;
    for stream in [
        Box::new(out) as Box<dyn BufRead + Send>,
        Box::new(BufReader::new(err)),
    ] {
        let (log, file) = (log.clone(), file.clone());
        std::thread::spawn(move || {
            for l in stream.lines().map_while(Result::ok) {
                let at = SystemTime::now();
                if let Ok(mut f) = file.lock() {
                    use std::io::Write as _;
                    let _ = writeln!(f, "{l}");
                }
                if let Ok(mut v) = log.lock() {
                    v.push((at, l));
                }
            }
        });
    }
    Ok(Daemon {
        child,
        _reg: reg,
        url,
        data,
        log,
    })
}

/// A watch of `path` from its current list, reopened whenever the server ends it; every
/// event goes to `tx` stamped with its arrival.
fn watch(
    agent: ureq::Agent,
    base: String,
    path: &'static str,
    kind: &'static str,
    tx: mpsc::Sender<Seen>,
) {
    std::thread::spawn(move || loop {
        let Ok((200, list)) = crate::api::get(&agent, &format!("{base}{path}")) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let rv = serde_json::from_slice::<Value>(&list)
            .ok()
            .and_then(|l| {
                l["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let Ok(resp) = agent
            .get(format!("{base}{path}?watch=true&resourceVersion={rv}"))
            .call()
        else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        for line in BufReader::new(resp.into_body().into_reader()).lines() {
            let Ok(line) = line else { break };
            let at = SystemTime::now();
            let Ok(ev) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let seen = Seen {
                at,
                kind,
                kind_of_event: ev["type"].as_str().unwrap_or("").to_string(),
                obj: ev["object"].clone(),
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
}

fn since(t0: SystemTime, t: SystemTime) -> f64 {
    t.duration_since(t0).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Reads the launcher's `status.json` every 2 ms until both leases are acknowledged:
/// (when it first said Running, when the later lease was acknowledged, launcher pid).
fn follow_status(
    state: PathBuf,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(Option<SystemTime>, Option<SystemTime>)> {
    std::thread::spawn(move || {
        let mut running = None;
        let mut last_mtime = None;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // A new inode per write (renamed into place): two writes within one tick of
            // the file system's clock have the same mtime.
            let mtime = std::fs::metadata(state.join("status.json"))
                .and_then(|m| Ok((m.modified()?, std::os::unix::fs::MetadataExt::ino(&m))))
                .ok();
            if mtime.is_some() && mtime != last_mtime {
                last_mtime = mtime;
                if let Ok(s) = StateDir::read_status(&state) {
                    if s.phase == Phase::Running && running.is_none() {
                        running = Some(SystemTime::now());
                    }
                    let acks: Vec<SystemTime> = s
                        .interfaces
                        .iter()
                        .filter_map(|i| i.lease_acknowledged_at.as_deref().and_then(parse_rfc3339))
                        .collect();
                    if s.interfaces.len() == 2 && acks.len() == 2 {
                        return (running, acks.into_iter().max());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        (running, None)
    })
}

fn rss(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

fn pss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Bench<'a> {
    daemon: Daemon,
    agent: ureq::Agent,
    cli: PathBuf,
    events: mpsc::Receiver<Seen>,
    launchers: Launchers,
    root: &'a Path,
}

impl Bench<'_> {
    fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.cli)
            .args(args)
            .env("KUBECONFIG", self.daemon.data.join("kubeconfig"))
            .output()?;
        if !out.status.success() {
            bail!(
                "oxivirt {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn get(&self, path: &str) -> Result<(u16, Value)> {
        let (code, body) = crate::api::get(&self.agent, &format!("{}{path}", self.daemon.url))?;
        Ok((code, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let url = format!("{}{path}", self.daemon.url);
        let resp = match (method, body) {
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(serde_json::to_vec(b)?)?,
            ("PUT", _) => self
                .agent
                .put(&url)
                .header("Content-Type", "application/json")
                .send(serde_json::to_vec(body.unwrap_or(&json!({})))?)?,
            ("DELETE", _) => self.agent.delete(&url).call()?,
            _ => bail!("{method} {path}"),
        };
        let code = resp.status().as_u16();
        let mut text = Vec::new();
        resp.into_body().into_reader().read_to_end(&mut text)?;
        Ok((code, serde_json::from_slice(&text).unwrap_or(Value::Null)))
    }

    fn drain(&self) {
        while self.events.try_recv().is_ok() {}
    }

    /// Waits until no VMI, no launcher Pod, no pod record and no launcher state is left.
    fn await_gone(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.launchers.adopt(&self.daemon.data);
            let (_, vmis) = self.get(VMI)?;
            let (_, pods) = self.get(PODS)?;
            let n = |v: &Value| v["items"].as_array().map_or(0, Vec::len);
            let launchers = self.daemon.data.join("launchers").join(NS);
            let states = std::fs::read_dir(&launchers).map_or(0, |rd| rd.count());
            if n(&vmis) == 0
                && n(&pods) == 0
                && records(&self.daemon.data).is_empty()
                && states == 0
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "not gone after {timeout:?}: {} VMIs, {} pods, {states} launcher states",
                    n(&vmis),
                    n(&pods)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One start of testvm-2 to both leases, then its stop: (milestones, stop ms,
    /// launcher VmRSS, QEMU VmRSS).
    fn sample(&mut self) -> Result<(Sample, f64, u64, u64)> {
        self.drain();
        let state = self.daemon.data.join("launchers").join(NS).join("testvm-2");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let follower = follow_status(state.clone(), done.clone());
        let log_from = self.daemon.log.lock().map(|l| l.len()).unwrap_or(0);
        let t0 = SystemTime::now();
        let out = self.cli(&["start", "testvm-2"])?;
        let mut s = Sample::new();
        s.insert("put", since(t0, SystemTime::now()));
        if !out.contains("scheduled to start") {
            bail!("oxivirt start: {out}");
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while !s.contains_key("running") {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = match self
                .events
                .recv_timeout(left.min(Duration::from_millis(500)))
            {
                Ok(ev) => ev,
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {
                    self.launchers.adopt(&self.daemon.data);
                    continue;
                }
                Err(_) => {
                    done.store(true, std::sync::atomic::Ordering::Relaxed);
                    bail!("testvm-2 not Running after 120 s; seen so far: {s:?}");
                }
            };
            let ms = since(t0, ev.at);
            let o = &ev.obj;
            let mut note = |k: &'static str| {
                s.entry(k).or_insert(ms);
            };
            match ev.kind {
                "vmi" if o["metadata"]["name"] == "testvm-2" => {
                    if ev.kind_of_event == "ADDED" {
                        note("vmi");
                    }
                    if o["status"]["phase"] == "Running" {
                        note("running");
                    }
                }
                "pod" if o["metadata"]["labels"]["vm.kubevirt.io/name"] == "testvm-2" => {
                    if ev.kind_of_event == "ADDED" {
                        note("pod");
                        self.launchers.adopt(&self.daemon.data);
                    }
                    if o["status"]["podIP"].is_string() {
                        note("podip");
                    }
                }
                "event" if o["involvedObject"]["kind"] == "Pod" => match o["reason"].as_str() {
                    Some("Pulling") => note("pulling"),
                    Some("Pulled") => note("pulled"),
                    Some("Started") => {
                        note("launcher");
                        self.launchers.adopt(&self.daemon.data);
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        self.launchers.adopt(&self.daemon.data);
        let follow_deadline = Instant::now() + Duration::from_secs(120);
        while !follower.is_finished() && Instant::now() < follow_deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let (qmp, leases) = follower
            .join()
            .map_err(|_| anyhow!("status follower panicked"))?;
        if let Some(t) = qmp {
            s.insert("qmp", since(t0, t));
        }
        let leases = leases.with_context(|| {
            format!(
                "both leases not acknowledged within 120 s; status.json: {}; the launcher's log:\n{}",
                std::fs::read_to_string(state.join("status.json")).unwrap_or_default(),
                std::fs::read_to_string(state.join("launcher.log")).unwrap_or_default()
            )
        })?;
        s.insert("leases", since(t0, leases));
        if let Ok(log) = self.daemon.log.lock() {
            if let Some((at, _)) = log[log_from.min(log.len())..]
                .iter()
                .find(|(_, l)| l.contains("network ready"))
            {
                s.insert("network", since(t0, *at));
            }
        }
        // Weighed with the guest up and its network configured.
        let status = StateDir::read_status(&state)?;
        let qemu = status.qemu_pid.map_or(0, |p| rss(p).0);
        let launcher = records(&self.daemon.data)
            .iter()
            .filter(|r| {
                r["vmi"] == "testvm-2"
                    || r["stateDir"].as_str() == Some(&state.display().to_string())
            })
            .find_map(|r| r["launcherPid"].as_u64())
            .map_or(0, |p| rss(p as u32).0);
        let t = Instant::now();
        let out = self.cli(&["stop", "testvm-2"])?;
        if !out.contains("scheduled to stop") {
            bail!("oxivirt stop: {out}");
        }
        self.await_gone(Duration::from_secs(240))?;
        Ok((s, t.elapsed().as_secs_f64() * 1e3, launcher, qemu))
    }

    /// Ten VMs on the small disk running at once: the daemon's RSS then, and each
    /// launcher's (VmRSS, Pss, RssAnon).
    fn many(&mut self) -> Result<(u64, Vec<LauncherMem>)> {
        let names: Vec<String> = (0..MANY).map(|i| format!("memvm-{i}")).collect();
        for name in &names {
            let mut vm = crate::api::seed_vm(name);
            vm["spec"]["template"]["spec"]["volumes"][0]["containerDisk"]["image"] =
                json!("quay.io/kubevirt/small-disk");
            // The guest sits in the BIOS and ignores ACPI: no grace to wait out.
            vm["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(1);
            vm["spec"]["running"] = json!(true);
            let (code, v) = self.send("POST", VMS, Some(&vm))?;
            if code != 201 {
                bail!("create {name}: {code} {v}");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            self.launchers.adopt(&self.daemon.data);
            let (_, vmis) = self.get(VMI)?;
            let running = vmis["items"].as_array().map_or(0, |a| {
                a.iter()
                    .filter(|v| v["status"]["phase"] == "Running")
                    .count()
            });
            if running == MANY {
                break;
            }
            if Instant::now() > deadline {
                bail!("{running} of {MANY} VMs Running after 180 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // Settled: the pod runtime's status polls and the watches' buffers in their
        // steady state.
        std::thread::sleep(Duration::from_secs(5));
        let daemon = rss(self.daemon.child.id()).0;
        let launchers = records(&self.daemon.data)
            .iter()
            .filter_map(|r| r["launcherPid"].as_u64())
            .map(|p| {
                let (r, anon) = rss(p as u32);
                (r, pss(p as u32), anon)
            })
            .collect();
        for name in &names {
            let (code, v) = self.send("DELETE", &format!("{VMS}/{name}"), None)?;
            if code >= 300 {
                bail!("delete {name}: {code} {v}");
            }
        }
        self.await_gone(Duration::from_secs(120))?;
        Ok((daemon, launchers))
    }
}

/// Runs the lifecycle benchmark in the "node" namespace `node` (this thread is in it).
pub fn bench(args: &Args, node: &TestNs) -> Result<Report> {
    let layout = crate::launcher::guest_layout(args)?;
    let daemon_bin = beside("oxivirtd", "oxivirt-app-daemon")?;
    let launcher = beside("oxivirt-launcher", "oxivirt-app-launcher")?;
    let cli = beside("oxivirt", "oxivirt-app-cli")?;
    let root_dir = TempDir::new("bench-life")?;
    let root = root_dir.path();
    std::fs::create_dir_all(root.join("net.d"))?;
    let mut reg = Registry::start_in(&node.path());
    reg.push(
        &layout,
        "kubevirt/cirros-container-disk-demo",
        "latest",
        None,
    );
    // The small disk of the daemon's tests (apps/daemon/tests/common/node.rs): no boot.
    let small = Layout::new(root.join("small-oci"));
    let disk = small_qcow2(root);
    let image = small.image(&[("disk/disk.img", &disk)]);
    small.tag(&image);
    reg.push(&small.dir, "kubevirt/small-disk", "latest", None);
    let _outside = oxivirt_testkit::cni_env::try_outside_world(node, "oxbo")?;

    let daemon = start_daemon(args, root, &daemon_bin, &launcher)?;
    let agent = crate::api::agent(&daemon.data)?;
    let (tx, events) = mpsc::channel();
    for (path, kind) in [(VMI, "vmi"), (PODS, "pod"), (EVENTS, "event")] {
        watch(
            crate::api::agent(&daemon.data)?,
            daemon.url.clone(),
            path,
            kind,
            tx.clone(),
        );
    }
    drop(tx);
    let mut b = Bench {
        daemon,
        agent,
        cli,
        events,
        launchers: Launchers::default(),
        root,
    };
    let result = run(args, &mut b);
    if result.is_err() {
        eprintln!(
            "lifecycle: the daemon's log is in {}",
            b.root.join("oxivirtd.log").display()
        );
    }
    // Launchers left by a failure go before the daemon and the registry.
    drop(b);
    reg.stop();
    if result.is_err() && std::env::var_os("OXIVIRT_BENCH_KEEP").is_some() {
        std::mem::forget(root_dir);
    }
    result
}

fn run(args: &Args, b: &mut Bench) -> Result<Report> {
    // The seed's NAD (IPAM state in the bench's dir) and vm-2.yaml, applied as a user does.
    let ipam = b.root.join("ipam");
    let config = json!({"cniVersion": "0.3.1", "name": "multus-br", "type": "bridge",
        "bridge": "multus-bridge",
        "ipam": {"type": "host-local", "subnet": "192.168.100.0/24", "dataDir": ipam.display().to_string()}});
    let nad = b.root.join("multus-bridge.yaml");
    std::fs::write(
        &nad,
        format!("apiVersion: \"k8s.cni.cncf.io/v1\"\nkind: NetworkAttachmentDefinition\nmetadata:\n  name: multus-br\nspec:\n  config: '{config}'\n"),
    )?;
    let vm = b.root.join("vm-2.yaml");
    std::fs::write(&vm, SEED_VM)?;
    b.cli(&["apply", "-f", &nad.display().to_string()])?;
    b.cli(&["apply", "-f", &vm.display().to_string()])?;
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss_kib = rss(b.daemon.child.id()).0;

    let t = Instant::now();
    let (first, stop, _, _) = b.sample()?;
    eprintln!(
        "lifecycle: first start (pulls the image) {:.0} ms to Running, {:.0} ms to both leases, stop {stop:.0} ms, {:.1} s in all",
        first.get("running").copied().unwrap_or(f64::NAN),
        first.get("leases").copied().unwrap_or(f64::NAN),
        t.elapsed().as_secs_f64()
    );
    let mut samples = Vec::new();
    let mut stops = Vec::new();
    let mut seed_launcher_rss = Vec::new();
    let mut qemu_rss_kib = Vec::new();
    for i in 0..args.launcher_samples {
        let (s, stop, l, q) = b.sample()?;
        eprintln!(
            "lifecycle sample {i}: {}; stop {stop:.0} ms",
            STEPS
                .iter()
                .filter_map(|(k, _)| s.get(k).map(|v| format!("{k} {v:.1}")))
                .collect::<Vec<_>>()
                .join(", ")
        );
        samples.push(s);
        stops.push(stop);
        seed_launcher_rss.push(l);
        qemu_rss_kib.push(q);
    }
    std::thread::sleep(Duration::from_secs(2));
    let idle_after_rss_kib = rss(b.daemon.child.id()).0;
    let (many_rss_kib, launchers) = b.many()?;
    let accel = args.launcher_accel.clone();
    Ok(Report {
        accel,
        first,
        samples,
        stops,
        idle_rss_kib,
        idle_after_rss_kib,
        many_rss_kib,
        launchers,
        seed_launcher_rss,
        qemu_rss_kib,
    })
}

fn median_f(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

fn median_u(v: &[u64]) -> u64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0)
}

impl Report {
    pub fn print(&self) {
        let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
        let col = |k: &str| -> Vec<f64> {
            self.samples
                .iter()
                .filter_map(|s| s.get(k).copied())
                .collect()
        };
        let range = |v: &[f64]| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{lo:.0}–{hi:.0} ms")
        };
        let running = col("running");
        let leases = col("leases");
        println!(
            "\n| lifecycle ({} samples, accelerator {}) | median | range | target |",
            self.samples.len(),
            self.accel
        );
        println!("|---|---|---|---|");
        println!(
            "| `oxivirt start` → VMI `Running` (image cached) | **{:.0} ms** | {} | ≤ 250 ms (KubeVirt: 15–25 s) |",
            median_f(&running),
            range(&running)
        );
        println!(
            "| `oxivirt start` → both DHCP leases acknowledged in the guest | **{:.0} ms** | {} | report |",
            median_f(&leases),
            range(&leases)
        );
        println!(
            "| `oxivirt stop` → VMI, Pod, netns and launcher state gone | {:.0} ms | {} | — |",
            median_f(&self.stops),
            range(&self.stops)
        );
        println!(
            "\nfirst start (pulls the image into the daemon's cache): {:.0} ms to Running, {:.0} ms to both leases\n",
            self.first.get("running").copied().unwrap_or(f64::NAN),
            self.first.get("leases").copied().unwrap_or(f64::NAN)
        );
        println!("| where `start → Running` goes (median ms since `oxivirt start` was spawned) | at | step |");
        println!("|---|---|---|");
        let mut prev = 0.0;
        for (k, what) in STEPS {
            let v = col(k);
            if v.is_empty() {
                println!("| {what} | — | — |");
                continue;
            }
            let m = median_f(&v);
            println!("| {what} | {m:.1} | +{:.1} |", m - prev);
            prev = m;
        }
        let l_rss: Vec<u64> = self.launchers.iter().map(|l| l.0).collect();
        let l_pss: Vec<u64> = self.launchers.iter().map(|l| l.1).collect();
        let l_anon: Vec<u64> = self.launchers.iter().map(|l| l.2).collect();
        let growth = self.many_rss_kib.saturating_sub(self.idle_after_rss_kib) / MANY as u64;
        println!("\n| memory | measured | target |");
        println!("|---|---|---|");
        println!("| `oxivirtd` VmRSS idle (API, controllers, pod runtime; NAD and VM applied) | {} | report |", mib(self.idle_rss_kib));
        println!(
            "| `oxivirtd` VmRSS idle after the samples | {} | — |",
            mib(self.idle_after_rss_kib)
        );
        println!("| `oxivirtd` VmRSS with {MANY} VMs running (small disk, guest in the BIOS) | {} | report |", mib(self.many_rss_kib));
        println!(
            "| `oxivirtd` growth per running VM ((ten − idle) / 10) | {} | — |",
            mib(growth)
        );
        println!(
            "| launcher per VM with ten running: VmRSS / PSS / anonymous (median) | {} / {} / {} | — |",
            mib(median_u(&l_rss)),
            mib(median_u(&l_pss)),
            mib(median_u(&l_anon))
        );
        println!(
            "| **per VM excluding QEMU**: launcher VmRSS + daemon growth | **{}** (PSS: {}) | ≤ 10 MiB |",
            mib(median_u(&l_rss) + growth),
            mib(median_u(&l_pss) + growth)
        );
        println!(
            "| the seed guest's launcher VmRSS / QEMU VmRSS (leases done, median of the samples) | {} / {} | — |",
            mib(median_u(&self.seed_launcher_rss)),
            mib(median_u(&self.qemu_rss_kib))
        );
    }
}
