//! `--only launcher`: the seed VM (`examples/seed/vm-2.yaml`, the real test guest of
//! `scripts/guest.sh`) run by `oxivirt-launcher` in a pod attached with our plugins, as
//! `apps/launcher/tests/guest.rs` does, timed and weighed:
//!
//! - launcher start → `status.json` says `Running` (written right after QMP `cont`
//!   succeeded, i.e. QMP reports the VM running), with the image already cached;
//! - beside it, in the same run, QEMU alone with the launcher's own argv (replayed from
//!   `/proc/<qemu>/cmdline`: the same disks, taps of the same names in a namespace of
//!   their own, the console on a socket instead of an inherited descriptor) started
//!   directly and timed until QMP `query-status` says running after the same `cont`;
//! - `Running` → both DHCP leases acknowledged (`leaseAcknowledgedAt` in `status.json`);
//! - the launcher's VmRSS/VmHWM and QEMU's while the VM runs, QEMU's split by mapping.
//!
//! Everything it makes is registered with testkit's cleanup, like the rest of the bench.

use crate::{run_plugin, Args};
use anyhow::{anyhow, bail, Context, Result};
use oxivirt_app_launcher::state::{parse_rfc3339, Phase, StateDir, Status};
use oxivirt_testkit::cleanup::{self, TempDir};
use oxivirt_testkit::registry::{Registry, PORT};
use oxivirt_testkit::TestNs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const SEED_VMI: &str = include_str!("../../../examples/seed/vm-2.yaml");
const SEED_IFNAME: &str = "pod2df796c6902";

/// One launcher sample.
struct Sample {
    start_to_running: Duration,
    running_to_leases: Duration,
    launcher: ProcMem,
    qemu: ProcMem,
    qemu_split: QemuSplit,
    stop: Duration,
}

/// VmRSS and VmHWM of a process, and VmRSS split into anonymous and file pages, KiB.
#[derive(Clone, Copy, Default)]
struct ProcMem {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
}

/// QEMU's resident memory by what it is, KiB: the guest's RAM block, TCG's translation
/// buffer (the big RWX mapping), everything else (heap, libraries, stacks).
#[derive(Clone, Copy, Default)]
struct QemuSplit {
    guest_ram: u64,
    tcg_buffer: u64,
    tcg_buffer_size: u64,
    rest: u64,
}

/// What the first (pulling) run learned for the bare QEMU runs.
struct Replay {
    argv: Vec<String>,
    state: String,
    /// Overlays to make per run: (file name, backing file, backing format).
    overlays: Vec<(String, String, String)>,
    /// Files to copy per run (from a copy kept in `files`).
    files: Vec<String>,
    taps: Vec<String>,
    guest_ram_kib: u64,
}

/// The report's numbers.
pub struct Report {
    pub accel: String,
    pub samples: usize,
    pub first_start: Duration,
    pub start_to_running: Vec<Duration>,
    pub bare_qemu: Vec<Duration>,
    pub running_to_leases: Vec<Duration>,
    pub stop: Vec<Duration>,
    launcher: Vec<ProcMem>,
    qemu: Vec<ProcMem>,
    split: Vec<QemuSplit>,
    guest_ram_kib: u64,
}

/// The test guest's OCI layout: `--guest DIR`, or what `scripts/guest.sh` prints (it
/// builds once and then answers from its cache).
pub(crate) fn guest_layout(args: &Args) -> Result<PathBuf> {
    if let Some(dir) = &args.guest {
        return Ok(dir.clone());
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/guest.sh");
    let out = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .context("run scripts/guest.sh")?;
    if !out.status.success() {
        bail!("scripts/guest.sh failed");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().context("guest.sh printed no path")?;
    Ok(PathBuf::from(last.trim()))
}

/// Waits for changes to a directory's files (`status.json` is renamed into place).
struct DirWatch(OwnedFd);

impl DirWatch {
    fn new(dir: &Path) -> Result<Self> {
        // SAFETY: inotify_init1 has no memory effects; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            bail!("inotify_init1: {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())?;
        // SAFETY: a valid descriptor and NUL-terminated path.
        let wd = unsafe {
            libc::inotify_add_watch(
                fd.as_raw_fd(),
                path.as_ptr(),
                libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE,
            )
        };
        if wd < 0 {
            bail!("inotify_add_watch: {}", std::io::Error::last_os_error());
        }
        Ok(Self(fd))
    }

    /// Waits up to `timeout` for an event and drains what is queued.
    fn wait(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) };
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a buffer of the given length; the descriptor is non-blocking.
        while unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

/// Reads the status until `done` says yes; the launcher's log on failure or timeout.
fn await_status(
    watch: &DirWatch,
    state: &Path,
    log: &Path,
    timeout: Duration,
    mut done: impl FnMut(&Status) -> bool,
) -> Result<Status> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = StateDir::read_status(state) {
            if done(&s) {
                return Ok(s);
            }
            if matches!(s.phase, Phase::Failed | Phase::Succeeded | Phase::Unknown) {
                bail!(
                    "the launcher ended {:?}: {:?}; its log:\n{}",
                    s.phase,
                    s.reason,
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "timed out; the launcher's log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        watch.wait(left.min(Duration::from_millis(500)));
    }
}

fn proc_mem(pid: u32) -> Result<ProcMem> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Ok(ProcMem {
        rss: field("VmRSS:").context("VmRSS")?,
        hwm: field("VmHWM:").context("VmHWM")?,
        anon: field("RssAnon:").unwrap_or(0),
        file: field("RssFile:").unwrap_or(0),
    })
}

/// QEMU's RSS by mapping: the guest RAM is the anonymous mapping of the guest's size, the
/// translation buffer the largest RWX one.
fn qemu_split(pid: u32, guest_ram_kib: u64) -> Result<QemuSplit> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut maps: Vec<(String, u64, u64)> = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some(k) if k.contains('-') && !k.ends_with(':') => {
                maps.push((w.next().unwrap_or("").to_string(), 0, 0));
            }
            Some("Size:") => {
                if let (Some(m), Some(v)) = (maps.last_mut(), w.next().and_then(|v| v.parse().ok()))
                {
                    m.1 = v;
                }
            }
            Some("Rss:") => {
                if let (Some(m), Some(v)) = (maps.last_mut(), w.next().and_then(|v| v.parse().ok()))
                {
                    m.2 = v;
                }
            }
            _ => {}
        }
    }
    let mut split = QemuSplit::default();
    let ram = maps
        .iter()
        .position(|(_, size, _)| *size >= guest_ram_kib && *size <= guest_ram_kib + 4096);
    let tcg = maps
        .iter()
        .enumerate()
        .filter(|(i, (perms, _, _))| perms.starts_with("rwx") && Some(*i) != ram)
        .max_by_key(|(_, (_, size, _))| *size)
        .map(|(i, _)| i);
    for (i, (_, size, rss)) in maps.iter().enumerate() {
        if Some(i) == ram {
            split.guest_ram += rss;
        } else if Some(i) == tcg {
            split.tcg_buffer += rss;
            split.tcg_buffer_size = *size;
        } else {
            split.rest += rss;
        }
    }
    Ok(split)
}

/// The pod of the seed's virt-launcher, attached with our plugins as `Env::attach` does.
struct Pod {
    ns: TestNs,
    confs: Vec<(&'static str, String)>,
    _data: TempDir,
}

fn attach_pod(args: &Args) -> Result<Pod> {
    let data = TempDir::new("bench-lpod")?;
    let dir = data.path().display().to_string();
    let pod_net = serde_json::json!({"cniVersion": "1.0.0", "name": "pod-net", "type": "bridge",
        "bridge": "cni0", "isDefaultGateway": true,
        "ipam": {"type": "host-local", "dataDir": dir, "ranges": [[{"subnet": "10.244.0.0/24"}]]}})
    .to_string();
    let seed = serde_json::json!({"cniVersion": "0.3.1", "name": "multus-br", "type": "bridge",
        "bridge": "multus-bridge",
        "ipam": {"type": "host-local", "subnet": "192.168.100.0/24", "dataDir": dir}})
    .to_string();
    let ns = TestNs::try_new("oxbl")?;
    let confs = vec![("eth0", pod_net), (SEED_IFNAME, seed)];
    for (ifname, conf) in &confs {
        let env = args.cni_env("ADD", "launcher", &ns.path(), ifname, &args.plugins);
        let r = run_plugin(&args.plugins.join("bridge"), &env, conf)?;
        if !r.ok {
            bail!("CNI ADD {ifname}: {}", r.stdout);
        }
    }
    Ok(Pod {
        ns,
        confs,
        _data: data,
    })
}

impl Pod {
    fn detach(&self, args: &Args) {
        for (ifname, conf) in self.confs.iter().rev() {
            let env = args.cni_env("DEL", "launcher", &self.ns.path(), ifname, &args.plugins);
            let _ = run_plugin(&args.plugins.join("bridge"), &env, conf);
        }
    }
}

/// The launcher and what it was started with.
struct Launch<'a> {
    bin: PathBuf,
    vmi: PathBuf,
    cache: PathBuf,
    pod: &'a Pod,
    accel: &'a str,
}

impl Launch<'_> {
    /// One run: start, `Running`, both leases, memory, graceful stop. With `replay`, also
    /// notes what the bare QEMU runs need.
    fn sample(&self, state: &Path, replay: Option<&Path>) -> Result<(Sample, Option<Replay>)> {
        std::fs::create_dir_all(state)?;
        let log = state.with_extension("log");
        let watch = DirWatch::new(state)?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--netns")
            .arg(self.pod.ns.path())
            .arg("--vmi")
            .arg(&self.vmi)
            .arg("--state-dir")
            .arg(state)
            .arg("--image-cache")
            .arg(&self.cache)
            .args([
                "--registry-mirror",
                &format!("quay.io=http://127.0.0.1:{PORT}"),
                "--accel",
                self.accel,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let t0 = Instant::now();
        let (mut child, _running) = cleanup::spawn(&mut cmd).context("spawn the launcher")?;
        let result = self.measure(&child, t0, state, &log, &watch, replay);
        // Gracefully: SIGTERM, the guest powers itself off.
        let t = Instant::now();
        // SAFETY: kill on our own child's pid, not yet reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let ended = wait_child(&mut child, Duration::from_secs(90))?;
        let stop = t.elapsed();
        let (mut sample, replay) = result?;
        if !ended.is_some_and(|s| s.success()) {
            bail!(
                "the launcher did not stop cleanly ({ended:?}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        sample.stop = stop;
        Ok((sample, replay))
    }

    fn measure(
        &self,
        child: &Child,
        t0: Instant,
        state: &Path,
        log: &Path,
        watch: &DirWatch,
        replay: Option<&Path>,
    ) -> Result<(Sample, Option<Replay>)> {
        let running = await_status(watch, state, log, Duration::from_secs(120), |s| {
            s.phase == Phase::Running
        })?;
        let start_to_running = t0.elapsed();
        let running_at = SystemTime::now();
        let qemu_pid = running.qemu_pid.context("no qemuPid in status.json")?;
        let replay = replay
            .map(|dir| prepare_replay(qemu_pid, state, dir))
            .transpose()?;
        let leased = await_status(watch, state, log, Duration::from_secs(120), |s| {
            s.interfaces.len() == 2
                && s.interfaces
                    .iter()
                    .all(|i| i.lease_acknowledged_at.is_some())
        })?;
        let last_ack = leased
            .interfaces
            .iter()
            .filter_map(|i| i.lease_acknowledged_at.as_deref().and_then(parse_rfc3339))
            .max()
            .context("unreadable leaseAcknowledgedAt")?;
        let running_to_leases = last_ack.duration_since(running_at).unwrap_or_default();
        let guest_ram_kib = guest_ram_kib(&cmdline(qemu_pid)?)?;
        // Weighed while the guest runs, its network up.
        let launcher = proc_mem(child.id())?;
        let qemu = proc_mem(qemu_pid)?;
        let qemu_split = qemu_split(qemu_pid, guest_ram_kib)?;
        Ok((
            Sample {
                start_to_running,
                running_to_leases,
                launcher,
                qemu,
                qemu_split,
                stop: Duration::ZERO,
            },
            replay,
        ))
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn cmdline(pid: u32) -> Result<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect())
}

/// `-m size=<n>M` of an argv, in KiB.
fn guest_ram_kib(argv: &[String]) -> Result<u64> {
    argv.windows(2)
        .find(|w| w[0] == "-m")
        .and_then(|w| {
            w[1].strip_prefix("size=")?
                .strip_suffix('M')?
                .parse::<u64>()
                .ok()
        })
        .map(|mib| mib * 1024)
        .ok_or_else(|| anyhow!("no -m size=<n>M in QEMU's argv"))
}

/// Reads the running QEMU's argv and keeps what a bare start of it needs in `dir`.
fn prepare_replay(qemu_pid: u32, state: &Path, dir: &Path) -> Result<Replay> {
    let argv = cmdline(qemu_pid)?;
    let state_str = state.display().to_string();
    let files_dir = dir.join("files");
    std::fs::create_dir_all(&files_dir)?;
    let (mut overlays, mut files) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(state)?.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_file()
            || !argv.iter().any(|a| a.contains(&*path.to_string_lossy()))
        {
            continue;
        }
        if name.ends_with(".qcow2") {
            let out = Command::new("qemu-img")
                .args(["info", "-U", "--output=json"])
                .arg(&path)
                .output()?;
            let info: serde_json::Value = serde_json::from_slice(&out.stdout)
                .with_context(|| format!("qemu-img info {}", path.display()))?;
            let backing = info["full-backing-filename"]
                .as_str()
                .or(info["backing-filename"].as_str())
                .context("overlay without a backing file")?;
            let format = info["backing-filename-format"].as_str().unwrap_or("qcow2");
            overlays.push((name, backing.to_string(), format.to_string()));
        } else {
            std::fs::copy(&path, files_dir.join(&name))?;
            files.push(name);
        }
    }
    let taps = argv
        .windows(2)
        .filter(|w| w[0] == "-netdev")
        .filter_map(|w| serde_json::from_str::<serde_json::Value>(&w[1]).ok())
        .filter_map(|v| v["ifname"].as_str().map(str::to_string))
        .collect();
    let guest_ram_kib = guest_ram_kib(&argv)?;
    Ok(Replay {
        argv: argv.into_iter().skip(1).collect(),
        state: state_str,
        overlays,
        files,
        taps,
        guest_ram_kib,
    })
}

impl Replay {
    /// Its taps, made in `ns` (QEMU opens them by name).
    fn make_taps(&self, ns: &TestNs) -> Result<()> {
        for tap in &self.taps {
            let ok = Command::new("ip")
                .args(["-n", &ns.name, "tuntap", "add", "dev", tap, "mode", "tap"])
                .status()?
                .success();
            if !ok {
                bail!("ip tuntap add {tap}");
            }
        }
        Ok(())
    }

    /// One bare start: QEMU with the launcher's argv, spawn → QMP `query-status` running
    /// (after `cont`, as the launcher does). The disks are made untimed first.
    fn sample(&self, root: &Path, dir: &Path, ns: &TestNs) -> Result<Duration> {
        std::fs::create_dir_all(dir)?;
        for (name, backing, format) in &self.overlays {
            let ok = Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-b", backing, "-F", format])
                .arg(dir.join(name))
                .status()?
                .success();
            if !ok {
                bail!("qemu-img create {name}");
            }
        }
        for name in &self.files {
            std::fs::copy(root.join("files").join(name), dir.join(name))?;
        }
        let to = dir.display().to_string();
        let argv: Vec<String> = self
            .argv
            .iter()
            .map(|a| {
                if a.starts_with("socket,id=charserial0,fd=") {
                    // The launcher hands QEMU one end of a socketpair; a socket of its own
                    // here.
                    format!("socket,id=charserial0,path={to}/console.sock,server=on,wait=off")
                } else {
                    a.replace(&self.state, &to)
                }
            })
            .collect();
        let netns = std::fs::File::open(ns.path())?;
        let netns_fd = netns.as_raw_fd();
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("qemu.log"))?);
        // SAFETY: only setns, async-signal-safe, on a descriptor opened before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let qmp_path = dir.join("qmp.sock");
        let t0 = Instant::now();
        let (mut child, _running) = cleanup::spawn(&mut cmd).context("spawn QEMU")?;
        let result = (|| -> Result<Duration> {
            // As the launcher's supervisor: connect every millisecond until QEMU listens.
            let stream = loop {
                if let Ok(s) = UnixStream::connect(&qmp_path) {
                    break s;
                }
                if let Some(e) = child.try_wait()? {
                    bail!(
                        "QEMU exited ({e}): {}",
                        std::fs::read_to_string(dir.join("qemu.log")).unwrap_or_default()
                    );
                }
                if t0.elapsed() > Duration::from_secs(30) {
                    bail!("QEMU's QMP did not answer");
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            let qmp = oxivirt_qemu::qmp::Qmp::handshake(stream, Duration::from_secs(30))?;
            qmp.cont()?;
            while !qmp.query_status()?.running {}
            let t = t0.elapsed();
            let _ = qmp.quit();
            Ok(t)
        })();
        if wait_child(&mut child, Duration::from_secs(10))?.is_none() {
            bail!("QEMU did not quit");
        }
        drop(netns);
        let _ = std::fs::remove_dir_all(dir);
        result
    }
}

fn median<T: Copy + Ord + Default>(v: &[T]) -> T {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

/// Runs the launcher benchmark in the "node" namespace `node` (this thread is in it).
pub fn bench(args: &Args, node: &TestNs) -> Result<Report> {
    let layout = guest_layout(args)?;
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .map(|d| d.join("oxivirt-launcher"))
        .filter(|p| p.is_file())
        .context("oxivirt-launcher is not beside oxivirt-bench (build it: cargo build --release -p oxivirt-app-launcher)")?;
    let root_dir = TempDir::new("bench-launch")?;
    let root = root_dir.path();
    let vmi = root.join("vm-2.yaml");
    std::fs::write(&vmi, SEED_VMI)?;
    let mut reg = Registry::start_in(&node.path());
    reg.push(
        &layout,
        "kubevirt/cirros-container-disk-demo",
        "latest",
        None,
    );
    let pod = attach_pod(args)?;
    let launch = Launch {
        bin,
        vmi,
        cache: root.join("cache"),
        pod: &pod,
        accel: &args.launcher_accel,
    };
    let result = (|| -> Result<Report> {
        // The first run pulls the image into the cache and notes QEMU's argv.
        let t = Instant::now();
        let replay_dir = root.join("replay");
        let (first, replay) = launch.sample(&root.join("state-first"), Some(&replay_dir))?;
        let first_start = first.start_to_running;
        eprintln!(
            "launcher: first run (pulls the image) {:.0} ms to Running, {:.1} s in all",
            first_start.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64()
        );
        let replay = replay.context("no replay")?;
        let tapns = TestNs::try_new("oxbq")?;
        replay.make_taps(&tapns)?;
        // One untimed bare start warms QEMU's pages as the first run did the launcher's.
        replay.sample(&replay_dir, &root.join("bare-warm"), &tapns)?;
        let accel = StateDir::read_status(&root.join("state-first"))
            .ok()
            .and_then(|s| s.accelerator)
            .unwrap_or_else(|| args.launcher_accel.clone());
        let mut samples = Vec::new();
        let mut bare = Vec::new();
        for i in 0..args.launcher_samples {
            // Alternating which goes first.
            let mut run_bare = || -> Result<()> {
                bare.push(replay.sample(&replay_dir, &root.join(format!("bare{i}")), &tapns)?);
                Ok(())
            };
            if i % 2 == 1 {
                run_bare()?;
            }
            let (s, _) = launch.sample(&root.join(format!("state{i}")), None)?;
            eprintln!(
                "launcher sample {i}: start→Running {:.1} ms, Running→leases {:.0} ms, launcher RSS {} KiB (HWM {}), QEMU RSS {} KiB, stop {:.0} ms",
                s.start_to_running.as_secs_f64() * 1e3,
                s.running_to_leases.as_secs_f64() * 1e3,
                s.launcher.rss,
                s.launcher.hwm,
                s.qemu.rss,
                s.stop.as_secs_f64() * 1e3
            );
            samples.push(s);
            if i % 2 == 0 {
                run_bare()?;
            }
            if let Some(b) = bare.last() {
                eprintln!(
                    "bare QEMU sample {i}: start→running {:.1} ms",
                    b.as_secs_f64() * 1e3
                );
            }
        }
        Ok(Report {
            accel,
            samples: samples.len(),
            first_start,
            start_to_running: samples.iter().map(|s| s.start_to_running).collect(),
            bare_qemu: bare,
            running_to_leases: samples.iter().map(|s| s.running_to_leases).collect(),
            stop: samples.iter().map(|s| s.stop).collect(),
            launcher: samples.iter().map(|s| s.launcher).collect(),
            qemu: samples.iter().map(|s| s.qemu).collect(),
            split: samples.iter().map(|s| s.qemu_split).collect(),
            guest_ram_kib: replay.guest_ram_kib,
        })
    })();
    pod.detach(args);
    reg.stop();
    result
}

impl Report {
    /// The markdown table of medians.
    pub fn print(&self) {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
        let pick = |f: &dyn Fn(&ProcMem) -> u64, v: &[ProcMem]| {
            median(&v.iter().map(f).collect::<Vec<_>>())
        };
        let (l_rss, l_hwm) = (
            pick(&|m| m.rss, &self.launcher),
            pick(&|m| m.hwm, &self.launcher),
        );
        let (q_rss, q_hwm) = (pick(&|m| m.rss, &self.qemu), pick(&|m| m.hwm, &self.qemu));
        let split =
            |f: &dyn Fn(&QemuSplit) -> u64| median(&self.split.iter().map(f).collect::<Vec<_>>());
        let totals: Vec<u64> = self
            .launcher
            .iter()
            .zip(&self.qemu)
            .map(|(l, q)| l.rss + q.rss)
            .collect();
        let range = |v: &[Duration]| {
            let (lo, hi) = (
                v.iter().min().copied().unwrap_or_default(),
                v.iter().max().copied().unwrap_or_default(),
            );
            format!("{}–{}", ms(lo), ms(hi))
        };
        println!(
            "\n| launcher ({} samples, accelerator {}) | median | range | target |",
            self.samples, self.accel
        );
        println!("|---|---|---|---|");
        println!(
            "| `oxivirt-launcher` start → QMP running (image cached) | {} | {} | ≤ 150 ms |",
            ms(median(&self.start_to_running)),
            range(&self.start_to_running)
        );
        println!(
            "| bare QEMU, the launcher's argv, start → QMP `query-status` running | {} | {} | — |",
            ms(median(&self.bare_qemu)),
            range(&self.bare_qemu)
        );
        println!("| guest running → both DHCP leases acknowledged (eth0 masquerade, eth1 bridge) | {} | {} | ≤ 3 s |", ms(median(&self.running_to_leases)), range(&self.running_to_leases));
        println!(
            "| graceful stop (SIGTERM → launcher exited, guest powered off) | {} | {} | — |",
            ms(median(&self.stop)),
            range(&self.stop)
        );
        println!(
            "| launcher VmRSS / VmHWM while the VM runs | {} / {} | | ≤ 8 MiB |",
            mib(l_rss),
            mib(l_hwm)
        );
        println!(
            "| launcher VmRSS: anonymous (heap, stacks) / file (its binary's pages) | {} / {} | | — |",
            mib(pick(&|m| m.anon, &self.launcher)),
            mib(pick(&|m| m.file, &self.launcher))
        );
        println!(
            "| QEMU VmRSS / VmHWM (guest RAM {}) | {} / {} | | — |",
            mib(self.guest_ram_kib),
            mib(q_rss),
            mib(q_hwm)
        );
        println!(
            "| QEMU RSS above the guest's RAM size | {} | | — |",
            mib(q_rss.saturating_sub(self.guest_ram_kib))
        );
        println!("| QEMU RSS: guest RAM touched / TCG buffer touched (of {}) / the rest | {} / {} / {} | | — |", mib(split(&|s| s.tcg_buffer_size)), mib(split(&|s| s.guest_ram)), mib(split(&|s| s.tcg_buffer)), mib(split(&|s| s.rest)));
        println!(
            "| total per VM (launcher + QEMU VmRSS) | {} | | — |",
            mib(median(&totals))
        );
        println!(
            "\nfirst run, pulling the image: {} to Running",
            ms(self.first_start)
        );
    }
}
