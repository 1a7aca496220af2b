//! `oxivirt-bench`: times oxivirt's CNI plugins and Debian's reference plugins on the same
//! work in one run and prints the ratios (the table in BENCHMARKS.md).
//!
//! Needs root: it makes a "node" namespace, enters it, and makes one fresh pod namespace
//! per sample (namespace creation is not timed).
//!
//! Usage: `oxivirt-bench [--samples N] [--big-samples N] [--plugins DIR] [--reference DIR]
//! [--only seed,multus,store,bindings]`

use anyhow::{bail, Context, Result};
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

/// Runs a plugin and reports its wall time and peak RSS (from wait4's rusage).
fn run_plugin(bin: &Path, env: &[(&str, String)], stdin: &str) -> Result<Run> {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if env.iter().any(|(k, _)| *k == "OXIVIRT_CNI_TRACE") {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
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

fn sh(args: &[&str]) -> Result<()> {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .with_context(|| format!("{args:?}"))?;
    if !st.success() {
        bail!("{args:?} failed");
    }
    Ok(())
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
fn print_phases(runs: &[Vec<(String, u128)>]) {
    let Some(first) = runs.first() else { return };
    println!("meta plugin ADD with the Kubernetes backend, median time at each phase (us since process start):");
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
    /// Runs only the named groups (seed, multus, store, bindings); all when empty.
    only: Vec<String>,
}

impl Args {
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        samples: 30,
        big_samples: 5,
        plugins: PathBuf::new(),
        reference: PathBuf::from("/usr/lib/cni"),
        only: Vec::new(),
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
            other => bail!("unknown argument {other}"),
        }
    }
    if a.plugins.as_os_str().is_empty() {
        let dir = own_plugins_dir();
        std::fs::create_dir_all(&dir)?;
        for p in ["bridge", "host-local", "static", "macvlan"] {
            let _ = std::os::unix::fs::symlink(&ours, dir.join(p));
        }
        let _ = std::os::unix::fs::symlink(&multus, dir.join("multus"));
        a.plugins = dir;
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

/// Links to our binary under every plugin name, made for this run and removed after it.
fn own_plugins_dir() -> PathBuf {
    std::env::temp_dir().join(format!("oxivirt-bench-bin-{}", std::process::id()))
}

/// Enters a fresh "node" namespace for the rest of the process (single-threaded here).
fn enter_node(name: &str) -> Result<()> {
    sh(&["ip", "netns", "add", name])?;
    sh(&["ip", "-n", name, "link", "set", "lo", "up"])?;
    let f = std::fs::File::open(format!("/run/netns/{name}"))?;
    // SAFETY: setns on a valid namespace fd; the process has one thread at this point.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn seed_conf(data: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.3.1", "name": "multus-br", "type": "bridge", "bridge": "multus-bridge",
        "ipam": {"type": "host-local", "subnet": "192.168.100.0/24", "dataDir": data.display().to_string()}
    })
    .to_string()
}

fn cni_env(
    cmd: &str,
    id: &str,
    netns: &str,
    ifname: &str,
    path: &Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", cmd.to_string()),
        ("CNI_CONTAINERID", id.to_string()),
        ("CNI_NETNS", netns.to_string()),
        ("CNI_IFNAME", ifname.to_string()),
        ("CNI_PATH", path.display().to_string()),
        ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_string()),
        ("OXIVIRT_IPAM_INDEX_DIR", index_dir()),
    ]
}

/// Our host-local index for this run, removed at the end. In production it lives in /run,
/// which is a tmpfs on a systemd node; where /run is not (as on some CI machines), the
/// bench keeps it on /dev/shm so it measures what a node would see.
fn index_dir() -> String {
    let on_tmpfs = |p: &str| {
        let c = std::ffi::CString::new(p).unwrap_or_default();
        // SAFETY: statfs with a valid path and a zeroed out-struct.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type == libc::TMPFS_MAGIC }
    };
    let base = if on_tmpfs("/run") { "/run" } else { "/dev/shm" };
    format!("{base}/oxivirt-bench-index-{}", std::process::id())
}

/// bridge + host-local ADD and DEL of the seed network into fresh pod namespaces.
///
/// All pod namespaces are made first and removed last: the kernel tears a namespace down
/// in the background holding the rtnl lock, which would land on whichever call comes next.
fn bench_seed(args: &Args, tag: &str) -> Result<Vec<Row>> {
    // One data directory per implementation, as on a node that runs one of them.
    let data = [0, 1].map(|k| std::env::temp_dir().join(format!("oxivirt-bench-{tag}-{k}")));
    let confs = [seed_conf(&data[0]), seed_conf(&data[1])];
    let rounds = args.samples + 2;
    let dirs = [&args.plugins, &args.reference];
    let pods: Vec<[String; 2]> = (0..rounds)
        .map(|i| [format!("oxbp-{tag}-0-{i}"), format!("oxbp-{tag}-1-{i}")])
        .collect();
    let result = (|| -> Result<Vec<Row>> {
        for pair in &pods {
            for p in pair {
                sh(&["ip", "netns", "add", p])?;
            }
        }
        let mut adds: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
        let mut dels: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
        for (phase, cmd) in ["ADD", "DEL"].into_iter().enumerate() {
            for (i, pair) in pods.iter().enumerate() {
                // Alternate which implementation goes first, so neither always follows the other.
                let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
                for k in order {
                    let dir = dirs[k];
                    let bin = dir.join("bridge");
                    let netns = format!("/run/netns/{}", pair[k]);
                    let id = format!("bench{k}x{i}");
                    let run = run_plugin(&bin, &cni_env(cmd, &id, &netns, "net1", dir), &confs[k])?;
                    if !run.ok {
                        bail!("{} {cmd} failed: {}", bin.display(), run.stdout);
                    }
                    if cmd == "DEL" {
                        settle(&pair[k])?;
                    }
                    // The first two rounds warm the page cache and create the bridge.
                    if i >= 2 {
                        if phase == 0 {
                            &mut adds[k]
                        } else {
                            &mut dels[k]
                        }
                        .push(run);
                    }
                }
            }
        }
        let [oa, ra] = adds;
        let [od, rd] = dels;
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
    })();
    for pair in &pods {
        for p in pair {
            let _ = sh(&["ip", "netns", "del", p]);
        }
    }
    for d in &data {
        let _ = std::fs::remove_dir_all(d);
    }
    result
}

/// A pod with the cluster network and the seed's multus-br through our meta plugin
/// (objects from the directory store), against the reference bridge + host-local run
/// directly for the same two networks: the meta plugin's own cost must be paid for.
fn bench_multus(args: &Args, tag: &str) -> Result<Vec<Row>> {
    let root = std::env::temp_dir().join(format!("oxivirt-bench-multus-{tag}"));
    let conf_dir = root.join("net.d");
    let store = root.join("store");
    std::fs::create_dir_all(&conf_dir)?;
    let ipam = |k: usize, subnet: &str| serde_json::json!({"type": "host-local", "subnet": subnet, "dataDir": root.join(format!("ipam{k}")).display().to_string()});
    let cluster = |k: usize| serde_json::json!({"cniVersion": "1.0.0", "name": "cluster", "type": "bridge", "bridge": "cni0", "isGateway": true, "ipam": ipam(k, "10.244.0.0/16")});
    let secondary = |k: usize| serde_json::json!({"cniVersion": "0.3.1", "name": "multus-br", "type": "bridge", "bridge": "multus-bridge", "ipam": ipam(k, "192.168.100.0/24")});
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
    let mut phases: Vec<Vec<(String, u128)>> = Vec::new();
    let rounds = args.samples.min(20) + 2;
    let pods: Vec<[String; 3]> = (0..rounds)
        .map(|i| {
            [
                format!("oxbm-{tag}-0-{i}"),
                format!("oxbm-{tag}-1-{i}"),
                format!("oxbm-{tag}-2-{i}"),
            ]
        })
        .collect();
    let result = (|| -> Result<Vec<Row>> {
        for (i, pair) in pods.iter().enumerate() {
            for p in pair {
                sh(&["ip", "netns", "add", p])?;
            }
            let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("pod{i}"), "namespace": "default", "uid": format!("uid{i}"),
                             "annotations": {"k8s.v1.cni.cncf.io/networks": "multus-br"}}});
            std::fs::write(pod_dir.join(format!("pod{i}.json")), pod.to_string())?;
            api.lock()
                .map_err(|_| anyhow::anyhow!("mock lock"))?
                .objects
                .insert(format!("/api/v1/namespaces/default/pods/pod{i}"), pod);
        }
        let mut adds: [Vec<Run>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        let mut dels: [Vec<Run>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for (phase, cmd) in ["ADD", "DEL"].into_iter().enumerate() {
            for (i, pair) in pods.iter().enumerate() {
                let order = if i % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
                for k in order {
                    let netns = format!("/run/netns/{}", pair[k]);
                    let id = format!("mb{k}x{i}");
                    let run = if k != 1 {
                        let mut env = cni_env(cmd, &id, &netns, "eth0", &args.plugins);
                        env.push(("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod{i};K8S_POD_INFRA_CONTAINER_ID={id}")));
                        if k == 2 {
                            env.push(("OXIVIRT_CNI_TRACE", "1".into()));
                        }
                        let conf = if k == 0 { &multus_conf } else { &k8s_conf };
                        let r = run_plugin(&args.plugins.join("multus"), &env, conf)?;
                        if k == 2 && cmd == "ADD" && i >= 2 {
                            phases.push(trace_phases(&r.stderr));
                        }
                        if !r.ok {
                            bail!("multus {cmd} failed: {}", r.stdout);
                        }
                        r
                    } else {
                        // The same two networks, the reference plugins run one after the other.
                        let bin = args.reference.join("bridge");
                        let a = run_plugin(
                            &bin,
                            &cni_env(cmd, &id, &netns, "eth0", &args.reference),
                            &cluster(1).to_string(),
                        )?;
                        let b = run_plugin(
                            &bin,
                            &cni_env(cmd, &id, &netns, "net1", &args.reference),
                            &secondary(1).to_string(),
                        )?;
                        if !a.ok || !b.ok {
                            bail!("reference {cmd} failed: {} {}", a.stdout, b.stdout);
                        }
                        Run {
                            time: a.time + b.time,
                            max_rss_kib: a.max_rss_kib.max(b.max_rss_kib),
                            ok: true,
                            stdout: String::new(),
                            stderr: String::new(),
                        }
                    };
                    if cmd == "DEL" {
                        settle(&pair[k])?;
                    }
                    if i >= 2 {
                        if phase == 0 {
                            &mut adds[k]
                        } else {
                            &mut dels[k]
                        }
                        .push(run);
                    }
                }
            }
        }
        print_phases(&phases);
        let [oa, ra, ka] = adds;
        let [od, rd, kd] = dels;
        let (ra, rd) = (stats(ra), stats(rd));
        Ok(vec![
            ("ADD pod: cluster network + multus-br via the meta plugin (embedded store) vs both reference plugins directly".into(), stats(oa), ra.clone()),
            ("ADD of that pod with the Kubernetes backend (mocked API on loopback) vs both reference plugins directly".into(), stats(ka), ra),
            ("DEL of that pod (embedded store)".into(), stats(od), rd.clone()),
            ("DEL of that pod (Kubernetes backend)".into(), stats(kd), rd),
        ])
    })();
    for pair in &pods {
        for p in pair {
            let _ = sh(&["ip", "netns", "del", p]);
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// The seed's two bindings (masquerade on eth0, bridge on the ext-net interface) set up
/// and torn down in prepared pod namespaces (the CNI interfaces are made untimed, with
/// our plugin). There is no reference to run beside it here: KubeVirt is not packaged.
fn bench_bindings(args: &Args, tag: &str) -> Result<(Stats, Stats)> {
    use oxivirt_firewall::NftCli;
    use oxivirt_vm_net::bridge::{self as binding, BridgeSpec};
    use oxivirt_vm_net::masquerade::{self, MasqueradeSpec};
    use oxivirt_vm_net::naming::Names;
    let root = std::env::temp_dir().join(format!("oxivirt-bench-bind-{tag}"));
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
        let pod = format!("oxbb-{tag}-{i}");
        sh(&["ip", "netns", "add", &pod])?;
        let netns = format!("/run/netns/{pod}");
        let id = format!("bind{i}");
        for (ifname, conf) in [("eth0", &pod_net), (names.pod.as_str(), &seed)] {
            let r = run_plugin(
                &args.plugins.join("bridge"),
                &cni_env("ADD", &id, &netns, ifname, &args.plugins),
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
        settle(&pod)?;
        for (ifname, conf) in [(names.pod.as_str(), &seed), ("eth0", &pod_net)] {
            let _ = run_plugin(
                &args.plugins.join("bridge"),
                &cni_env("DEL", &id, &netns, ifname, &args.plugins),
                conf,
            )?;
        }
        settle(&pod)?;
        sh(&["ip", "netns", "del", &pod])?;
        if i >= 2 {
            let run = |d: Duration| Run {
                time: d,
                max_rss_kib: 0,
                ok: true,
                stdout: String::new(),
                stderr: String::new(),
            };
            ups.push(run(up));
            downs.push(run(down));
        }
    }
    let _ = std::fs::remove_dir_all(&root);
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
fn bench_big_store(args: &Args, tag: &str) -> Result<Vec<Row>> {
    let mut add_runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let mut del_runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for (k, dir) in [&args.plugins, &args.reference].into_iter().enumerate() {
        let data = std::env::temp_dir().join(format!("oxivirt-bench-big-{tag}-{k}"));
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
            let add = run_plugin(
                &bin,
                &cni_env("ADD", &id, "/run/netns/none", "eth0", dir),
                &conf,
            )?;
            if !add.ok {
                bail!("{} ADD failed: {}", bin.display(), add.stdout);
            }
            let del = run_plugin(
                &bin,
                &cni_env("DEL", &id, "/run/netns/none", "eth0", dir),
                &conf,
            )?;
            if !del.ok {
                bail!("{} DEL failed: {}", bin.display(), del.stdout);
            }
            if i > 0 {
                add_runs[k].push(add);
                del_runs[k].push(del);
            }
        }
        let _ = std::fs::remove_dir_all(&data);
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

fn main() -> Result<()> {
    let args = parse_args()?;
    if !args.reference.join("bridge").is_file() {
        bail!(
            "reference plugins not found in {} (install containernetworking-plugins)",
            args.reference.display()
        );
    }
    let waited = wait_until_idle();
    eprintln!("machine idle after {:.1} s", waited.as_secs_f64());
    let tag = format!("{}", std::process::id());
    let node = format!("oxbn-{tag}");
    enter_node(&node)?;
    let result = (|| -> Result<(Vec<Row>, Option<BindingTimes>)> {
        let mut rows = Vec::new();
        if args.wants("seed") {
            rows.extend(bench_seed(&args, &tag)?);
        }
        if args.wants("multus") {
            rows.extend(bench_multus(&args, &tag)?);
        }
        if args.wants("store") {
            rows.extend(bench_big_store(&args, &tag)?);
        }
        let bindings = if args.wants("bindings") {
            Some(bench_bindings(&args, &tag)?)
        } else {
            None
        };
        Ok((rows, bindings))
    })();
    let _ = sh(&["ip", "netns", "del", &node]);
    let _ = std::fs::remove_dir_all(index_dir());
    if args.plugins == own_plugins_dir() {
        let _ = std::fs::remove_dir_all(&args.plugins);
    }
    let (rows, bindings) = result?;
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
