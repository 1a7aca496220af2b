//! `oxivirt-bench`: times oxivirt's CNI plugins and Debian's reference plugins on the same
//! work in one run and prints the ratios (the table in BENCHMARKS.md).
//!
//! Needs root: it makes a "node" namespace, enters it, and makes one fresh pod namespace
//! per sample (namespace creation is not timed).
//!
//! Everything it makes (namespaces, directories, plugin processes) is registered with
//! testkit's cleanup: removed at the end, on SIGINT/SIGTERM, or by the next run's sweep if
//! this one was killed outright.
//!
//! Usage: `oxivirt-bench [--samples N] [--big-samples N] [--plugins DIR] [--reference DIR]
//! [--only seed,multus,store,bindings,launcher,api,lifecycle,controller] [--launcher-samples N]
//! [--launcher-accel tcg|kvm|auto] [--guest OCI-LAYOUT]`
//!
//! `launcher` (the seed VM under `oxivirt-launcher`, see [`launcher`]) runs only when named
//! in `--only`: it boots real guests and takes minutes. So does `api` (`oxivirtd` under
//! load, see [`api`]), which needs the release `oxivirtd` beside this binary, and
//! `lifecycle` (`oxivirt start` → VMI Running through the whole daemon, see [`lifecycle`]),
//! which needs `oxivirtd`, `oxivirt`, `oxivirt-launcher` and the plugins beside it, and
//! `controller` (`oxivirt-controller`'s memory idle and with 100 VMIs, see [`controller`]),
//! which needs `oxivirtd` and `oxivirt-controller` (and optionally `oxivirt-node`).

mod api;
mod controller;
mod launcher;
mod lifecycle;

use anyhow::{bail, Context, Result};
use oxivirt_testkit::cleanup::{self, TempDir};
use oxivirt_testkit::TestNs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Run {
    time: Duration,
    max_rss_kib: i64,
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    /// A successful run known only by its time and peak RSS.
    fn timed(time: Duration, max_rss_kib: i64) -> Self {
        Self {
            time,
            max_rss_kib,
            ok: true,
            stdout: String::new(),
            stderr: String::new(),
        }
    }
}

/// Runs a plugin and reports its wall time and peak RSS (from wait4's rusage).
fn run_plugin(bin: &Path, env: &[(&str, String)], stdin: &str) -> Result<Run> {
    let start = Instant::now();
    // Registered until reaped: an interrupt kills its process group before removing the
    // files the plugin writes.
    let (mut child, _running) = cleanup::spawn(
        Command::new(bin)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if env.iter().any(|(k, _)| *k == "OXIVIRT_CNI_TRACE") {
                Stdio::piped()
            } else {
                Stdio::null()
            }),
    )
    .with_context(|| format!("spawn {}", bin.display()))?;
    if let Some(mut s) = child.stdin.take() {
        // VERSION does not read its stdin.
        match s.write_all(stdin.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => {}
        }
    }
    let mut stdout = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut stdout)?;
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr)?;
    }
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; status and usage are valid pointers. std's Child is
    // not waited on afterwards (dropping it does not wait).
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let time = start.elapsed();
    if pid < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    Ok(Run {
        time,
        max_rss_kib: usage.ru_maxrss,
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        stdout,
        stderr,
    })
}

/// (phase, microseconds since start) from `OXIVIRT_CNI_TRACE` output.
fn trace_phases(stderr: &str) -> Vec<(String, u128)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("oxivirt-cni trace:"))
        // Delegates inherit the trace switch; keep the meta plugin's own phases.
        .filter(|l| l.contains("multus:"))
        .filter_map(|l| {
            let mut it = l.trim().splitn(2, " us ");
            let us = it.next()?.trim().parse().ok()?;
            Some((it.next()?.trim().to_string(), us))
        })
        .collect()
}

/// Median time of each phase of the meta plugin's ADD (Kubernetes backend).
fn print_phases(what: &str, runs: &[Vec<(String, u128)>]) {
    let Some(first) = runs.first() else { return };
    println!("meta plugin ADD with the Kubernetes backend ({what}), median time at each phase (us since process start):");
    for (name, _) in first {
        let mut v: Vec<u128> = runs
            .iter()
            .filter_map(|r| r.iter().find(|(n, _)| n == name).map(|(_, t)| *t))
            .collect();
        v.sort_unstable();
        if let Some(m) = v.get(v.len() / 2) {
            println!("  {m:>6} us  {name}");
        }
    }
    println!();
}

/// Set-up and teardown of the VM network bindings (no reference to compare with).
type BindingTimes = (Stats, Stats);

/// A benchmark line: name, ours, the reference's.
type Row = (String, Stats, Stats);

#[derive(Clone)]
struct Stats {
    median: Duration,
    rss: i64,
}

fn stats(mut runs: Vec<Run>) -> Stats {
    runs.sort_by_key(|r| r.time);
    let rss = runs.iter().map(|r| r.max_rss_kib).max().unwrap_or(0);
    Stats {
        median: runs.get(runs.len() / 2).map(|r| r.time).unwrap_or_default(),
        rss,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Args {
    samples: usize,
    big_samples: usize,
    plugins: PathBuf,
    reference: PathBuf,
    /// Runs only the named groups (seed, multus, store, bindings, launcher); all but
    /// launcher when empty.
    only: Vec<String>,
    /// Launcher samples (each boots the guest) and the accelerator they ask for.
    launcher_samples: usize,
    launcher_accel: String,
    /// The test guest's OCI layout; `scripts/guest.sh` finds or builds it otherwise.
    guest: Option<PathBuf>,
    /// Hidden `--skip-idle-wait`, for tests that interrupt the bench: no waiting for an
    /// idle machine first.
    skip_idle_wait: bool,
    /// `--compare-multus DIR`: another build's `oxivirt-multus` and `oxivirt-cni`, whose
    /// meta plugin ADD and DEL the multus group runs interleaved with this build's.
    compare_multus: Option<PathBuf>,
    /// Links to our binary under every plugin name, made for this run (without --plugins).
    _own_plugins: Option<TempDir>,
    /// Our host-local index for this run (see [`index_base`]).
    index: TempDir,
}

impl Args {
    fn wants(&self, group: &str) -> bool {
        (self.only.is_empty() && !["launcher", "api", "lifecycle", "controller"].contains(&group))
            || self.only.iter().any(|g| g == group)
    }

    fn cni_env(
        &self,
        cmd: &str,
        id: &str,
        netns: &Path,
        ifname: &str,
        path: &Path,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", cmd.to_string()),
            ("CNI_CONTAINERID", id.to_string()),
            ("CNI_NETNS", netns.display().to_string()),
            ("CNI_IFNAME", ifname.to_string()),
            ("CNI_PATH", path.display().to_string()),
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_string()),
            (
                "OXIVIRT_IPAM_INDEX_DIR",
                self.index.path().display().to_string(),
            ),
        ]
    }
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        samples: 30,
        big_samples: 5,
        plugins: PathBuf::new(),
        reference: PathBuf::from("/usr/lib/cni"),
        only: Vec::new(),
        launcher_samples: 5,
        launcher_accel: "tcg".into(),
        guest: None,
        skip_idle_wait: false,
        compare_multus: None,
        _own_plugins: None,
        index: TempDir::new_in(&index_base(), "bench-index")?,
    };
    let exe = std::env::current_exe()?;
    let home = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let (ours, multus) = (home.join("oxivirt-cni"), home.join("oxivirt-multus"));
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().context("missing value");
        match arg.as_str() {
            "--samples" => a.samples = val()?.parse()?,
            "--big-samples" => a.big_samples = val()?.parse()?,
            "--plugins" => a.plugins = PathBuf::from(val()?),
            "--reference" => a.reference = PathBuf::from(val()?),
            "--only" => a.only = val()?.split(',').map(str::to_string).collect(),
            "--launcher-samples" => a.launcher_samples = val()?.parse()?,
            "--launcher-accel" => a.launcher_accel = val()?,
            "--guest" => a.guest = Some(PathBuf::from(val()?)),
            "--skip-idle-wait" => a.skip_idle_wait = true,
            "--compare-multus" => a.compare_multus = Some(PathBuf::from(val()?)),
            other => bail!("unknown argument {other}"),
        }
    }
    if a.plugins.as_os_str().is_empty() {
        let dir = TempDir::new("bench-bin")?;
        for p in ["bridge", "host-local", "static", "macvlan"] {
            let _ = std::os::unix::fs::symlink(&ours, dir.path().join(p));
        }
        let _ = std::os::unix::fs::symlink(&multus, dir.path().join("multus"));
        a.plugins = dir.path().to_path_buf();
        a._own_plugins = Some(dir);
    }
    Ok(a)
}

/// Waits (at most 15 s) until the machine is idle: a previous run's namespaces are torn
/// down by the kernel in the background, holding the rtnl lock in bursts, and that would
/// land on this run's calls (ours, mostly netlink, more than the reference's).
fn wait_until_idle() -> Duration {
    let busy_idle = || -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let idle = cpu.get(3)? + cpu.get(4).copied().unwrap_or(0);
        Some((cpu.iter().sum::<u64>() - idle, idle))
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        let Some((b0, i0)) = busy_idle() else { break };
        std::thread::sleep(Duration::from_millis(250));
        let Some((b1, i1)) = busy_idle() else { break };
        let (busy, idle) = (b1.saturating_sub(b0), i1.saturating_sub(i0));
        if busy * 20 <= busy + idle {
            break;
        }
    }
    start.elapsed()
}

/// Enters the "node" namespace with this (main) thread for the rest of the run.
fn enter_node(node: &TestNs) -> Result<()> {
    let f = std::fs::File::open(node.path())?;
    // SAFETY: setns on a valid namespace fd; it moves only the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The seed's multus-br network as the bench runs it.
fn seed_conf(data: &Path) -> String {
    oxivirt_testkit::seed::multus_br_conf("0.3.1", data).to_string()
}

/// Where our host-local index goes for a run. In production it lives in /run, which is a
/// tmpfs on a systemd node; where /run is not (as on some CI machines), the bench keeps it
/// on /dev/shm so it measures what a node would see.
fn index_base() -> PathBuf {
    let on_tmpfs = |p: &str| {
        let c = std::ffi::CString::new(p).unwrap_or_default();
        // SAFETY: statfs with a valid path and a zeroed out-struct.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type == libc::TMPFS_MAGIC }
    };
    PathBuf::from(if on_tmpfs("/run") { "/run" } else { "/dev/shm" })
}

/// Runs `call` for every implementation `k` on its pod of every round, all ADDs and then
/// all DELs, alternating the order of the implementations so that none always follows
/// another; returns each one's ADD and DEL runs but those of the first two rounds (they
/// warm the page cache and create the bridge).
fn add_then_del<const N: usize>(
    pods: &[[TestNs; N]],
    mut call: impl FnMut(&str, usize, usize, &TestNs) -> Result<Run>,
) -> Result<[[Vec<Run>; N]; 2]> {
    let mut runs: [[Vec<Run>; N]; 2] = std::array::from_fn(|_| std::array::from_fn(|_| Vec::new()));
    for (phase, cmd) in ["ADD", "DEL"].into_iter().enumerate() {
        for (i, round) in pods.iter().enumerate() {
            let mut order: [usize; N] = std::array::from_fn(|k| k);
            if i % 2 == 1 {
                order.reverse();
            }
            for k in order {
                let run = call(cmd, i, k, &round[k])?;
                if cmd == "DEL" {
                    settle(&round[k].name)?;
                }
                if i >= 2 {
                    runs[phase][k].push(run);
                }
            }
        }
    }
    Ok(runs)
}

/// bridge + host-local ADD and DEL of the seed network into fresh pod namespaces.
///
/// All pod namespaces are made first and removed last: the kernel tears a namespace down
/// in the background holding the rtnl lock, which would land on whichever call comes next.
fn bench_seed(args: &Args) -> Result<Vec<Row>> {
    // One data directory per implementation, as on a node that runs one of them.
    let data = [TempDir::new("bench-seed")?, TempDir::new("bench-seed")?];
    let confs = data.each_ref().map(|d| seed_conf(d.path()));
    let rounds = args.samples + 2;
    let dirs = [&args.plugins, &args.reference];
    let pods = (0..rounds)
        .map(|_| Ok([TestNs::try_new("oxbp")?, TestNs::try_new("oxbp")?]))
        .collect::<Result<Vec<_>>>()?;
    let [[oa, ra], [od, rd]] = add_then_del(&pods, |cmd, i, k, pod| {
        let dir = dirs[k];
        let bin = dir.join("bridge");
        let env = args.cni_env(cmd, &format!("bench{k}x{i}"), &pod.path(), "net1", dir);
        let run = run_plugin(&bin, &env, &confs[k])?;
        if !run.ok {
            bail!("{} {cmd} failed: {}", bin.display(), run.stdout);
        }
        Ok(run)
    })?;
    // The floor every call pays: process start, VERSION, exit.
    let mut versions: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for i in 0..rounds {
        for (k, dir) in dirs.iter().enumerate() {
            let env = [("CNI_COMMAND", "VERSION".to_string())];
            let run = run_plugin(&dir.join("bridge"), &env, "{}")?;
            if i >= 2 {
                versions[k].push(run);
            }
        }
    }
    let [ov, rv] = versions;
    Ok(vec![
        (
            "VERSION (process start and exit)".into(),
            stats(ov),
            stats(rv),
        ),
        (
            "ADD seed multus-br (bridge + host-local)".into(),
            stats(oa),
            stats(ra),
        ),
        (
            "DEL seed multus-br (bridge + host-local)".into(),
            stats(od),
            stats(rd),
        ),
    ])
}

/// A pod with the cluster network and the seed's multus-br through our meta plugin
/// (objects from the directory store), against the reference bridge + host-local run
/// directly for the same two networks: the meta plugin's own cost must be paid for.
fn bench_multus(args: &Args) -> Result<Vec<Row>> {
    let root_dir = TempDir::new("bench-multus")?;
    let root = root_dir.path();
    let conf_dir = root.join("net.d");
    let store = root.join("store");
    std::fs::create_dir_all(&conf_dir)?;
    let ipam_dir = |k: usize| root.join(format!("ipam{k}"));
    let cluster = |k: usize| {
        serde_json::json!({"cniVersion": "1.0.0", "name": "cluster", "type": "bridge", "bridge": "cni0", "isGateway": true,
        "ipam": {"type": "host-local", "subnet": "10.244.0.0/16", "dataDir": ipam_dir(k).display().to_string()}})
    };
    let secondary = |k: usize| oxivirt_testkit::seed::multus_br_conf("0.3.1", ipam_dir(k));
    std::fs::write(conf_dir.join("10-cluster.conf"), cluster(0).to_string())?;
    let nad_dir = store.join("network-attachment-definitions/default");
    std::fs::create_dir_all(&nad_dir)?;
    std::fs::write(
        nad_dir.join("multus-br.json"),
        serde_json::json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "multus-br", "namespace": "default"}, "spec": {"config": secondary(0).to_string()}})
        .to_string(),
    )?;
    let pod_dir = store.join("pods/default");
    std::fs::create_dir_all(&pod_dir)?;
    let multus_conf = serde_json::json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "clusterNetwork": "cluster", "confDir": conf_dir.display().to_string(), "cniDir": root.join("cache").display().to_string(),
        "binDir": args.plugins.display().to_string(), "oxivirtStore": store.display().to_string()})
    .to_string();
    // The same meta plugin against a (mocked) Kubernetes API service on loopback.
    let api = std::sync::Arc::new(std::sync::Mutex::new(oxivirt_testkit::mock_kube::State {
        token: "bench-token".into(),
        ..Default::default()
    }));
    let nad_text = std::fs::read_to_string(nad_dir.join("multus-br.json"))?;
    api.lock()
        .map_err(|_| anyhow::anyhow!("mock lock"))?
        .objects
        .insert(
            "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/multus-br"
                .into(),
            serde_json::from_str(&nad_text)?,
        );
    let port =
        oxivirt_testkit::mock_kube::start(api.clone(), Path::new("/proc/thread-self/ns/net"));
    std::fs::write(root.join("token"), "bench-token")?;
    std::fs::write(
        root.join("kubeconfig"),
        format!("apiVersion: v1\nkind: Config\ncurrent-context: m\nclusters:\n- name: m\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: m\n  context:\n    cluster: m\n    user: u\nusers:\n- name: u\n  user:\n    tokenFile: token\n"),
    )?;
    let k8s_conf = serde_json::json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "clusterNetwork": "cluster", "confDir": conf_dir.display().to_string(), "cniDir": root.join("cache-k8s").display().to_string(),
        "binDir": args.plugins.display().to_string(), "kubeconfig": root.join("kubeconfig").display().to_string()})
    .to_string();
    // The same objects behind the realistic mock: TLS with an RSA-2048 certificate, and
    // writes that wait for an fsync, as an etcd-backed API server's do.
    let tls = oxivirt_testkit::mock_kube::TlsMaterial::generate_rsa();
    let real_port = oxivirt_testkit::mock_kube::start_realistic(
        api.clone(),
        Path::new("/proc/thread-self/ns/net"),
        &tls,
        &root.join("wal"),
    );
    std::fs::write(root.join("ca.crt"), &tls.ca_pem)?;
    std::fs::write(
        root.join("kubeconfig-tls"),
        format!("apiVersion: v1\nkind: Config\ncurrent-context: m\nclusters:\n- name: m\n  cluster:\n    server: https://127.0.0.1:{real_port}\n    certificate-authority: ca.crt\ncontexts:\n- name: m\n  context:\n    cluster: m\n    user: u\nusers:\n- name: u\n  user:\n    tokenFile: token\n"),
    )?;
    let real_conf = serde_json::json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "clusterNetwork": "cluster", "confDir": conf_dir.display().to_string(), "cniDir": root.join("cache-real").display().to_string(),
        "binDir": args.plugins.display().to_string(), "kubeconfig": root.join("kubeconfig-tls").display().to_string()})
    .to_string();
    // The thick plugin against the realistic mock: multus-shim hands each call to a
    // multus-daemon that keeps its API connection warm from pod to pod. The daemon gets the
    // meta plugin's fields (kubeconfig, paths) from its --config, as Multus's daemon does.
    let ours_multus = std::fs::canonicalize(args.plugins.join("multus"))?;
    let shim_bin = root.join("shim-bin");
    std::fs::create_dir_all(&shim_bin)?;
    std::os::unix::fs::symlink(&ours_multus, shim_bin.join("multus-shim"))?;
    let mut thick_daemon_conf: serde_json::Value = serde_json::from_str(&real_conf)?;
    thick_daemon_conf["cniDir"] = root.join("cache-thick").display().to_string().into();
    std::fs::write(
        root.join("daemon-config.json"),
        thick_daemon_conf.to_string(),
    )?;
    let sockets = root.join("run-multus");
    let thick_daemon = oxivirt_testkit::cleanup::OwnedChild::spawn(
        std::process::Command::new(&ours_multus)
            .arg("multus-daemon")
            .arg("--socket-dir")
            .arg(&sockets)
            .arg("--config")
            .arg(root.join("daemon-config.json"))
            .env("OXIVIRT_IPAM_INDEX_DIR", args.index.path())
            .stderr(std::process::Stdio::null()),
    )?;
    let started = std::time::Instant::now();
    while !sockets.join("multus.sock").exists() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("multus-daemon did not make its socket");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let shim_conf = serde_json::json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim",
        "socketDir": sockets.display().to_string()})
    .to_string();
    // The other build (`--compare-multus`): its own plugin links, so its delegates run
    // in-process beside its own oxivirt-cni, and its own caches.
    let other_bin = root.join("other-bin");
    let other_confs: Vec<String> = match &args.compare_multus {
        Some(dir) => {
            std::fs::create_dir_all(&other_bin)?;
            for p in ["bridge", "host-local", "static", "macvlan"] {
                std::os::unix::fs::symlink(dir.join("oxivirt-cni"), other_bin.join(p))?;
            }
            std::os::unix::fs::symlink(dir.join("oxivirt-multus"), other_bin.join("multus"))?;
            [&multus_conf, &k8s_conf, &real_conf]
                .iter()
                .map(|c| -> Result<String> {
                    let mut v: serde_json::Value = serde_json::from_str(c)?;
                    v["binDir"] = other_bin.display().to_string().into();
                    let cache = format!("{}-other", v["cniDir"].as_str().unwrap_or_default());
                    v["cniDir"] = cache.into();
                    Ok(v.to_string())
                })
                .collect::<Result<_>>()?
        }
        None => Vec::new(),
    };
    let mut phases: Vec<Vec<(String, u128)>> = Vec::new();
    let mut real_phases: Vec<Vec<(String, u128)>> = Vec::new();
    let rounds = args.samples.min(20) + 2;
    let mut pods = Vec::new();
    for i in 0..rounds {
        // Eight slots: ours embedded, the reference, ours plain mock, ours realistic mock,
        // then the other build's three (unused without --compare-multus), then ours thick.
        pods.push([
            TestNs::try_new("oxbm")?,
            TestNs::try_new("oxbm")?,
            TestNs::try_new("oxbm")?,
            TestNs::try_new("oxbm")?,
            TestNs::try_new("oxbm")?,
            TestNs::try_new("oxbm")?,
            TestNs::try_new("oxbm")?,
            TestNs::try_new("oxbm")?,
        ]);
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("pod{i}"), "namespace": "default", "uid": format!("uid{i}"),
                         "annotations": {"k8s.v1.cni.cncf.io/networks": "multus-br"}}});
        std::fs::write(pod_dir.join(format!("pod{i}.json")), pod.to_string())?;
        api.lock()
            .map_err(|_| anyhow::anyhow!("mock lock"))?
            .objects
            .insert(format!("/api/v1/namespaces/default/pods/pod{i}"), pod);
    }
    let other = |k: usize| (4..7).contains(&k);
    let [[oa, ra, ka, xa, oa2, ka2, xa2, ta], [od, rd, kd, xd, od2, kd2, xd2, td]] = add_then_del(
        &pods,
        |cmd, i, k, pod| {
            let netns = pod.path();
            if other(k) && other_confs.is_empty() {
                return Ok(Run::timed(Duration::ZERO, 0));
            }
            let id = format!("mb{k}x{i}");
            if k == 1 {
                // The same two networks, the reference plugins run one after the other.
                let bin = args.reference.join("bridge");
                let a = run_plugin(
                    &bin,
                    &args.cni_env(cmd, &id, &netns, "eth0", &args.reference),
                    &cluster(1).to_string(),
                )?;
                let b = run_plugin(
                    &bin,
                    &args.cni_env(cmd, &id, &netns, "net1", &args.reference),
                    &secondary(1).to_string(),
                )?;
                if !a.ok || !b.ok {
                    bail!("reference {cmd} failed: {} {}", a.stdout, b.stdout);
                }
                return Ok(Run::timed(
                    a.time + b.time,
                    a.max_rss_kib.max(b.max_rss_kib),
                ));
            }
            let mut env = args.cni_env(cmd, &id, &netns, "eth0", &args.plugins);
            // As containerd and CRI-O pass them (K8S_POD_UID included).
            env.push(("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod{i};K8S_POD_INFRA_CONTAINER_ID={id};K8S_POD_UID=uid{i}")));
            if k >= 2 {
                env.push(("OXIVIRT_CNI_TRACE", "1".into()));
            }
            let (conf, bin) = match k {
                0 => (&multus_conf, args.plugins.join("multus")),
                2 => (&k8s_conf, args.plugins.join("multus")),
                3 => (&real_conf, args.plugins.join("multus")),
                7 => (&shim_conf, shim_bin.join("multus-shim")),
                _ => (&other_confs[k - 4], other_bin.join("multus")),
            };
            if other(k) || k == 7 {
                env.retain(|(key, _)| *key != "OXIVIRT_CNI_TRACE");
            }
            let r = run_plugin(&bin, &env, conf)?;
            if (2..4).contains(&k) && cmd == "ADD" && i >= 2 {
                let p = trace_phases(&r.stderr);
                if k == 2 {
                    phases.push(p);
                } else {
                    real_phases.push(p);
                }
            }
            if !r.ok {
                bail!("multus {cmd} failed: {}", r.stdout);
            }
            Ok(r)
        },
    )?;
    let daemon_mem = controller::Mem::of(thick_daemon.child.id())?;
    drop(thick_daemon);
    println!(
        "multus-daemon resident after the run: {}",
        daemon_mem.show()
    );
    print_phases("plain mock", &phases);
    print_phases(
        "realistic mock: TLS, RSA-2048, fsync'd writes",
        &real_phases,
    );
    let (ra, rd) = (stats(ra), stats(rd));
    let mut rows: Vec<Row> = vec![
        ("ADD pod: cluster network + multus-br via the meta plugin (embedded store) vs both reference plugins directly".into(), stats(oa), ra.clone()),
        ("ADD of that pod with the Kubernetes backend (mocked API on loopback) vs both reference plugins directly".into(), stats(ka), ra.clone()),
        ("ADD of that pod with the Kubernetes backend (realistic mock: TLS with RSA-2048, fsync'd writes) vs both reference plugins directly".into(), stats(xa), ra.clone()),
        ("DEL of that pod (embedded store)".into(), stats(od), rd.clone()),
        ("DEL of that pod (Kubernetes backend)".into(), stats(kd), rd.clone()),
        ("DEL of that pod (Kubernetes backend, realistic mock)".into(), stats(xd), rd.clone()),
        ("ADD of that pod through the thick plugin (multus-shim → multus-daemon, warm API connection; realistic mock) vs both reference plugins directly".into(), stats(ta), ra.clone()),
        ("DEL of that pod through the thick plugin (realistic mock)".into(), stats(td), rd.clone()),
    ];
    if !other_confs.is_empty() {
        rows.extend([
            (
                "--compare-multus build: ADD embedded store".into(),
                stats(oa2),
                ra.clone(),
            ),
            (
                "--compare-multus build: ADD plain mock".into(),
                stats(ka2),
                ra.clone(),
            ),
            (
                "--compare-multus build: ADD realistic mock".into(),
                stats(xa2),
                ra,
            ),
            (
                "--compare-multus build: DEL embedded store".into(),
                stats(od2),
                rd.clone(),
            ),
            (
                "--compare-multus build: DEL plain mock".into(),
                stats(kd2),
                rd.clone(),
            ),
            (
                "--compare-multus build: DEL realistic mock".into(),
                stats(xd2),
                rd,
            ),
        ]);
    }
    Ok(rows)
}

/// The seed's two bindings (masquerade on eth0, bridge on the ext-net interface) set up
/// and torn down in prepared pod namespaces (the CNI interfaces are made untimed, with
/// our plugin). There is no reference to run beside it here: KubeVirt is not packaged.
fn bench_bindings(args: &Args) -> Result<(Stats, Stats)> {
    use oxivirt_firewall::NftCli;
    use oxivirt_vm_net::bridge::{self as binding, BridgeSpec};
    use oxivirt_vm_net::masquerade::{self, MasqueradeSpec};
    use oxivirt_vm_net::naming::Names;
    let root_dir = TempDir::new("bench-bind")?;
    let root = root_dir.path();
    let data = root.join("ipam");
    let names = Names::secondary("ext-net");
    let pod_net = serde_json::json!({"cniVersion": "1.0.0", "name": "pod-net", "type": "bridge", "bridge": "cni0",
        "isDefaultGateway": true, "ipam": {"type": "host-local", "subnet": "10.244.0.0/16", "dataDir": data.display().to_string()}})
    .to_string();
    let seed = seed_conf(&data);
    let mut ups = Vec::new();
    let mut downs = Vec::new();
    let rounds = args.samples.min(20) + 2;
    for i in 0..rounds {
        let pod = TestNs::try_new("oxbb")?;
        let netns = pod.path();
        let id = format!("bind{i}");
        for (ifname, conf) in [("eth0", &pod_net), (names.pod.as_str(), &seed)] {
            let r = run_plugin(
                &args.plugins.join("bridge"),
                &args.cni_env("ADD", &id, &netns, ifname, &args.plugins),
                conf,
            )?;
            if !r.ok {
                bail!("CNI ADD for the bindings bench failed: {}", r.stdout);
            }
        }
        let ns = oxivirt_netlink::NetNs::open(&netns)?;
        let state_dir = root.join(format!("state{i}"));
        let spec = BridgeSpec {
            names: names.clone(),
            index: 1,
            mac: None,
            multiqueue: false,
        };
        let (up, down) = ns.run(|| -> Result<(Duration, Duration)> {
            let mut nl = oxivirt_netlink::Handle::new()?;
            let t = Instant::now();
            // As a launcher does: the bridge binding while nft loads the masquerade rules.
            let rules =
                masquerade::begin(&mut nl, &NftCli, &MasqueradeSpec::default(), &state_dir)?;
            binding::setup(&mut nl, &spec, &state_dir)?;
            rules.finish()?;
            let up = t.elapsed();
            let t = Instant::now();
            oxivirt_vm_net::teardown_all(
                &mut nl,
                Some(&NftCli),
                std::slice::from_ref(&names),
                &state_dir,
            )?;
            Ok((up, t.elapsed()))
        })??;
        // The detached deletion must not overlap what comes next.
        settle(&pod.name)?;
        for (ifname, conf) in [(names.pod.as_str(), &seed), ("eth0", &pod_net)] {
            let _ = run_plugin(
                &args.plugins.join("bridge"),
                &args.cni_env("DEL", &id, &netns, ifname, &args.plugins),
                conf,
            )?;
        }
        settle(&pod.name)?;
        if i >= 2 {
            ups.push(Run::timed(up, 0));
            downs.push(Run::timed(down, 0));
        }
    }
    Ok((stats(ups), stats(downs)))
}

/// Waits (untimed) until no retired link is left in `pod`: our DEL leaves the kernel's
/// slow veth teardown to a detached process, which must not overlap the next timed call.
fn settle(pod: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("ip")
            .args(["-n", pod, "-o", "link", "show"])
            .output()?;
        if !String::from_utf8_lossy(&out.stdout).contains("oxdel") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("retired link in {pod} not deleted after 5 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// host-local ADD and DEL with 60,000 addresses allocated in a /16.
fn bench_big_store(args: &Args) -> Result<Vec<Row>> {
    let mut add_runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let mut del_runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for (k, dir) in [&args.plugins, &args.reference].into_iter().enumerate() {
        let data_dir = TempDir::new("bench-big")?;
        let data = data_dir.path();
        let store = data.join("big");
        std::fs::create_dir_all(&store)?;
        // 60,000 allocations in the reference's format, allocated in order.
        let mut last = String::new();
        for n in 0..60_000u32 {
            let host = n + 2;
            let ip = format!("10.77.{}.{}", host >> 8, host & 0xff);
            std::fs::write(store.join(&ip), format!("filler{n}\r\neth0"))?;
            last = ip;
        }
        std::fs::write(store.join("last_reserved_ip.0"), &last)?;
        let conf = serde_json::json!({
            "cniVersion": "1.0.0", "name": "big", "type": "bridge",
            "ipam": {"type": "host-local", "subnet": "10.77.0.0/16", "dataDir": data.display().to_string()}
        })
        .to_string();
        let bin = dir.join("host-local");
        // One untimed round: ours builds its index here, once, as it would after the
        // reference had been in charge of the store.
        for i in 0..args.big_samples + 1 {
            let id = format!("big{i}");
            let call = |cmd: &str| -> Result<Run> {
                let env = args.cni_env(cmd, &id, Path::new("/run/netns/none"), "eth0", dir);
                let run = run_plugin(&bin, &env, &conf)?;
                if !run.ok {
                    bail!("{} {cmd} failed: {}", bin.display(), run.stdout);
                }
                Ok(run)
            };
            let (add, del) = (call("ADD")?, call("DEL")?);
            if i > 0 {
                add_runs[k].push(add);
                del_runs[k].push(del);
            }
        }
    }
    let [oa, ra] = add_runs;
    let [od, rd] = del_runs;
    Ok(vec![
        (
            "host-local ADD, 60,000 allocated in a /16".into(),
            stats(oa),
            stats(ra),
        ),
        (
            "host-local DEL, 60,000 allocated in a /16".into(),
            stats(od),
            stats(rd),
        ),
    ])
}

/// Removes what runs of the bench before names carried an owner tag left behind
/// (`oxbn-<pid>`, `oxivirt-bench-<pid>-0`, ...): only where that pid no longer exists.
fn sweep_untagged() {
    let dead_pid = |rest: &str| -> bool {
        let mut parts = rest.split('-');
        let pid = parts.next().unwrap_or("");
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        digits(pid) && parts.all(digits) && !Path::new(&format!("/proc/{pid}")).exists()
    };
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    for name in names(Path::new(cleanup::NETNS_DIR)) {
        let old = ["oxbn-", "oxbm-", "oxbp-", "oxbb-"]
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(dead_pid));
        if old {
            let _ = cleanup::delete_netns(&name);
        }
    }
    for base in [std::env::temp_dir(), index_base()] {
        for name in names(&base) {
            let Some(rest) = name.strip_prefix("oxivirt-bench-") else {
                continue;
            };
            let rest = ["multus-", "bind-", "big-", "bin-", "index-"]
                .iter()
                .find_map(|p| rest.strip_prefix(p))
                .unwrap_or(rest);
            if dead_pid(rest) {
                let _ = std::fs::remove_dir_all(base.join(&name));
            }
        }
    }
}

/// What a run measured.
type Results = (
    Vec<Row>,
    Option<BindingTimes>,
    Option<launcher::Report>,
    Option<lifecycle::Report>,
);

/// Runs the chosen groups inside a fresh "node" namespace.
fn run(args: &Args) -> Result<Results> {
    let node = TestNs::try_new("oxbn")?;
    enter_node(&node)?;
    let mut rows = Vec::new();
    if args.wants("seed") {
        rows.extend(bench_seed(args)?);
    }
    if args.wants("multus") {
        rows.extend(bench_multus(args)?);
    }
    if args.wants("store") {
        rows.extend(bench_big_store(args)?);
    }
    let bindings = if args.wants("bindings") {
        Some(bench_bindings(args)?)
    } else {
        None
    };
    let launcher = if args.wants("launcher") {
        Some(launcher::bench(args, &node)?)
    } else {
        None
    };
    let lifecycle = if args.wants("lifecycle") {
        Some(lifecycle::bench(args, &node)?)
    } else {
        None
    };
    Ok((rows, bindings, launcher, lifecycle))
}

fn main() -> Result<()> {
    // Before anything is made: sweep what killed runs left, and clean up on signals.
    cleanup::init();
    sweep_untagged();
    let args = parse_args()?;
    let needs_reference = ["seed", "multus", "store"].iter().any(|g| args.wants(g));
    if needs_reference && !args.reference.join("bridge").is_file() {
        bail!(
            "reference plugins not found in {} (install containernetworking-plugins)",
            args.reference.display()
        );
    }
    if !args.skip_idle_wait {
        let waited = wait_until_idle();
        eprintln!("machine idle after {:.1} s", waited.as_secs_f64());
    }
    // oxivirtd on loopback, outside the bench's "node" namespace.
    let api = if args.wants("api") {
        Some(api::bench())
    } else {
        None
    };
    let controller = if args.wants("controller") && !cleanup::interrupted() {
        Some(controller::bench())
    } else {
        None
    };
    let others = args.only.is_empty() || args.only.iter().any(|g| g != "api" && g != "controller");
    let result = match (&api, &controller) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => Ok((Vec::new(), None, None, None)),
        _ if others && !cleanup::interrupted() => run(&args),
        _ => Ok((Vec::new(), None, None, None)),
    };
    if cleanup::interrupted() {
        // The failure is the signal's doing; its thread removes the rest and exits.
        cleanup::await_exit();
    }
    let (rows, bindings, launcher, lifecycle) = result?;
    if let Some(report) = api {
        report?.print();
        if rows.is_empty() && bindings.is_none() && launcher.is_none() && lifecycle.is_none() {
            return Ok(());
        }
        println!();
    }
    if let Some(report) = controller {
        report?.print();
        if rows.is_empty() && bindings.is_none() && launcher.is_none() && lifecycle.is_none() {
            return Ok(());
        }
        println!();
    }
    if let Some(report) = launcher {
        report.print();
        if rows.is_empty() && bindings.is_none() && lifecycle.is_none() {
            return Ok(());
        }
    }
    if let Some(report) = lifecycle {
        report.print();
        if rows.is_empty() && bindings.is_none() {
            return Ok(());
        }
    }
    println!("| benchmark | oxivirt (median) | reference (median) | ratio | peak RSS oxivirt / reference |");
    println!("|---|---|---|---|---|");
    for (name, ours, theirs) in rows {
        let ratio = ours.median.as_secs_f64() / theirs.median.as_secs_f64().max(1e-9);
        println!(
            "| {name} | {} | {} | {ratio:.3} | {} KiB / {} KiB |",
            ms(ours.median),
            ms(theirs.median),
            ours.rss,
            theirs.rss
        );
    }
    if let Some((bind_up, bind_down)) = bindings {
        println!(
            "\n| VM network bindings (no reference here) | oxivirt (median) | target |\n|---|---|---|\n\
             | set up masquerade + bridge binding in a prepared pod | {} | < 20 ms |\n\
             | tear both down | {} | < 30 ms |",
            ms(bind_up.median),
            ms(bind_down.median)
        );
    }
    println!(
        "\nsamples: {} (seed), {} (60k store); reference: {}",
        args.samples,
        args.big_samples,
        args.reference.display()
    );
    Ok(())
}
