//! `--only api`: `oxivirtd` (the Kubernetes API for VMs on one machine) under load, from
//! a client of its own over HTTPS with the admin's certificate:
//!
//! - its resident memory once it is serving, before any request;
//! - 1,000 creates of the seed's VirtualMachine (distinct names) from 8 threads, each
//!   with its own keep-alive connection (a `ureq` agent), acknowledged as 201 only once
//!   the store's group commit is on disk: creates per second over the burst;
//! - a watch opened before the burst: the delay from each create's acknowledgement to
//!   the watch delivering it (median, p99), and that it delivered every one;
//! - lists of the 1,000 (full JSON, client-side time to the last byte), median of several;
//! - its resident memory after the burst;
//! - then `kill -9` and a restart on the same data dir: every acknowledged VM is there.
//!
//! The daemon is the release `oxivirtd` beside this binary. Everything it makes is
//! registered with testkit's cleanup, like the rest of the bench.

use anyhow::{bail, Context, Result};
use oxivirt_testkit::cleanup::{self, TempDir};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

const VMS: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines";
const CREATES: usize = 1_000;
const CLIENTS: usize = 8;
const LISTS: usize = 15;

/// What one run measured.
pub struct Report {
    idle_rss_kib: u64,
    after_rss_kib: u64,
    creates: usize,
    burst: Duration,
    list_median: Duration,
    list_min: Duration,
    list_bytes: usize,
    watch_seen: usize,
    /// Milliseconds, negative when the watch delivered before the client had read its 201.
    watch_median: f64,
    watch_p99: f64,
    survived_kill: usize,
    /// `oxivirt get vm` and `kubectl get vm`, process start to output (medians).
    cli_get: Duration,
    kubectl_get: Option<Duration>,
}

/// The seed's VM (`examples/seed/vm-2.yaml`) named `name`.
pub(crate) fn seed_vm(name: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": name},
        "spec": {"running": false, "template": {
            "metadata": {"labels": {"kubevirt.io/size": "small", "kubevirt.io/domain": name}},
            "spec": {
                "domain": {
                    "devices": {
                        "disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}},
                                  {"name": "cloudinitdisk", "disk": {"bus": "virtio"}}],
                        "interfaces": [{"name": "default", "masquerade": {}},
                                       {"name": "ext-net", "bridge": {}}]},
                    "resources": {"requests": {"memory": "64M"}}},
                "networks": [{"name": "default", "pod": {}},
                             {"name": "ext-net", "multus": {"default": null, "networkName": "multus-br"}}],
                "volumes": [{"name": "containerdisk", "containerDisk": {"image": "quay.io/kubevirt/cirros-container-disk-demo"}},
                            {"name": "cloudinitdisk", "cloudInitNoCloud": {"userDataBase64": "SGkuXG4="}}]}}}
    })
}

/// A running `oxivirtd`, killed (its process group) when dropped.
pub(crate) struct Daemon {
    child: Child,
    _reg: cleanup::Registration,
    pub(crate) url: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(bin: &Path, data: &Path) -> Result<Daemon> {
    let (mut child, reg) = cleanup::spawn(
        Command::new(bin)
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            // The API alone, as the kube-apiserver it is compared with (no controller
            // adds finalizers and statuses to the 1,000 VMs).
            .arg("--api-only")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .with_context(|| format!("start {}", bin.display()))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .map(|u| u.trim_end_matches(';').to_string())
        .with_context(|| format!("no URL in oxivirtd's ready line {line:?}"))?;
    Ok(Daemon {
        child,
        _reg: reg,
        url,
    })
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}

/// One keep-alive HTTPS client with the admin's certificate (one connection per agent
/// when used from one thread).
pub(crate) fn agent(data: &Path) -> Result<ureq::Agent> {
    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
    let read = |f: &str| std::fs::read(data.join("pki").join(f)).with_context(|| f.to_string());
    let certs = |pem: &[u8]| -> Vec<Certificate<'static>> {
        ureq::tls::parse_pem(pem)
            .filter_map(|i| match i {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect()
    };
    let key = PrivateKey::from_pem(&read("admin.key")?).context("admin.key")?;
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&certs(&read("ca.crt")?)))
        .client_cert(Some(ClientCert::new_with_certs(
            &certs(&read("admin.crt")?),
            key,
        )))
        .build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_idle_connections_per_host(1)
        .build()
        .into())
}

pub(crate) fn get(a: &ureq::Agent, url: &str) -> Result<(u16, Vec<u8>)> {
    let resp = a.get(url).header("Accept", "application/json").call()?;
    let code = resp.status().as_u16();
    let mut body = Vec::new();
    resp.into_body().into_reader().read_to_end(&mut body)?;
    Ok((code, body))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn bench() -> Result<Report> {
    let exe = std::env::current_exe()?;
    let bin: PathBuf = exe.parent().map(|d| d.join("oxivirtd")).unwrap_or_default();
    if !bin.is_file() {
        bail!(
            "{} not found: build it beside the bench (cargo build --release -p oxivirt-app-daemon -p oxivirt-app-bench)",
            bin.display()
        );
    }
    let dir = TempDir::new("bench-api")?;
    let data = dir.path().join("data");
    let daemon = start(&bin, &data)?;
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss_kib = rss_kib(daemon.child.id())?;
    let base = daemon.url.clone();

    // The watch, from the (empty) list's version, before the burst.
    let watcher = agent(&data)?;
    let (code, list) = get(&watcher, &format!("{base}{VMS}"))?;
    if code != 200 {
        bail!("list: {code} {}", String::from_utf8_lossy(&list));
    }
    let list: Value = serde_json::from_slice(&list)?;
    let from = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let resp = watcher
        .get(format!("{base}{VMS}?watch=true&resourceVersion={from}"))
        .call()?;
    let (seen_tx, seen_rx) = mpsc::channel::<(String, Instant)>();
    let watch_thread = std::thread::spawn(move || {
        let reader = BufReader::new(resp.into_body().into_reader());
        let mut count = 0;
        for line in reader.lines() {
            let Ok(line) = line else { return };
            let at = Instant::now();
            let Ok(ev) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if ev["type"] != "ADDED" {
                continue;
            }
            let name = ev["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if seen_tx.send((name, at)).is_err() {
                return;
            }
            count += 1;
            if count == CREATES {
                return;
            }
        }
    });

    // The burst: 8 threads, each its own connection, opened before the clock starts.
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let mut clients = Vec::new();
    for t in 0..CLIENTS {
        let a = agent(&data)?;
        let (code, _) = get(&a, &format!("{base}/version"))?;
        if code != 200 {
            bail!("client {t}: /version {code}");
        }
        let bodies: Vec<(String, Vec<u8>)> = (t..CREATES)
            .step_by(CLIENTS)
            .map(|i| {
                let name = format!("testvm-{i:04}");
                let body = serde_json::to_vec(&seed_vm(&name)).unwrap_or_default();
                (name, body)
            })
            .collect();
        let (barrier, url) = (Arc::clone(&barrier), format!("{base}{VMS}"));
        clients.push(std::thread::spawn(
            move || -> Result<Vec<(String, Instant)>> {
                barrier.wait();
                let mut acks = Vec::with_capacity(bodies.len());
                for (name, body) in bodies {
                    let resp = a
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(&body[..])?;
                    let code = resp.status().as_u16();
                    let mut text = Vec::new();
                    resp.into_body().into_reader().read_to_end(&mut text)?;
                    if code != 201 {
                        bail!("create {name}: {code} {}", String::from_utf8_lossy(&text));
                    }
                    acks.push((name, Instant::now()));
                }
                Ok(acks)
            },
        ));
    }
    barrier.wait();
    let t0 = Instant::now();
    let mut acks = std::collections::HashMap::new();
    for c in clients {
        for (name, at) in c.join().map_err(|_| anyhow::anyhow!("client panicked"))?? {
            acks.insert(name, at);
        }
    }
    let burst = acks.values().max().map_or(Duration::ZERO, |m| *m - t0);
    let creates = acks.len();

    // What the watch saw, and how long after each acknowledgement.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delays = Vec::with_capacity(CREATES);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < creates {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((name, at)) = seen_rx.recv_timeout(left) else {
            break;
        };
        if let Some(ack) = acks.get(&name) {
            // The event may be read before the client has read its 201: negative then.
            let ms = if at >= *ack {
                (at - *ack).as_secs_f64()
            } else {
                -(*ack - at).as_secs_f64()
            } * 1000.0;
            delays.push(ms);
            seen.insert(name);
        }
    }
    drop(seen_rx);
    drop(watch_thread);
    delays.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        let i = ((delays.len() as f64 - 1.0) * p).round().max(0.0) as usize;
        delays.get(i).copied().unwrap_or(f64::NAN)
    };

    let after_rss_kib = rss_kib(daemon.child.id())?;

    // Lists of all of them, full JSON, on a warm connection.
    let lister = agent(&data)?;
    let url = format!("{base}{VMS}");
    let (code, body) = get(&lister, &url)?;
    let n = serde_json::from_slice::<Value>(&body)?["items"]
        .as_array()
        .map_or(0, Vec::len);
    if code != 200 || n != creates {
        bail!("list: {code}, {n} items of {creates}");
    }
    let mut lists = Vec::with_capacity(LISTS);
    for _ in 0..LISTS {
        let t = Instant::now();
        let (code, b) = get(&lister, &url)?;
        lists.push(t.elapsed());
        if code != 200 || b.len() != body.len() {
            bail!("list: {code}, {} bytes of {}", b.len(), body.len());
        }
    }
    lists.sort();

    // kill -9, restart on the same data dir: every acknowledged VM is there.
    drop(daemon);
    let daemon = start(&bin, &data)?;
    let (code, body) = get(&agent(&data)?, &format!("{}{VMS}", daemon.url))?;
    let names: std::collections::HashSet<String> = serde_json::from_slice::<Value>(&body)?["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if code != 200 {
        bail!("list after the restart: {code}");
    }
    let survived_kill = acks.keys().filter(|k| names.contains(*k)).count();
    drop(daemon);
    let (cli_get, kubectl_get) = cli_get_times(&bin)?;

    Ok(Report {
        idle_rss_kib,
        after_rss_kib,
        creates,
        burst,
        list_median: percentile(&lists, 0.5),
        list_min: lists.first().copied().unwrap_or_default(),
        list_bytes: body.len(),
        watch_seen: delays.len(),
        watch_median: pick(0.5),
        watch_p99: pick(0.99),
        survived_kill,
        cli_get,
        kubectl_get,
    })
}

/// `oxivirt get vm` from process start to its output, against a daemon holding the
/// seed's VM, interleaved with `kubectl get vm` (when the machine has kubectl) on the same
/// daemon and kubeconfig: medians of 21.
fn cli_get_times(daemon_bin: &Path) -> Result<(Duration, Option<Duration>)> {
    let cli = daemon_bin.with_file_name("oxivirt");
    if !cli.is_file() {
        bail!(
            "{} not found: build it (cargo build --release -p oxivirt-app-cli)",
            cli.display()
        );
    }
    let kubectl = Path::new("/usr/lib/google-cloud-sdk/bin/kubectl");
    let dir = TempDir::new("bench-cli")?;
    let data = dir.path().join("data");
    let _daemon = start(daemon_bin, &data)?;
    let a = agent(&data)?;
    let url = format!("{}{VMS}", _daemon.url);
    a.post(&url)
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(&seed_vm("testvm-2"))?)?;
    let kubeconfig = data.join("kubeconfig");
    let time = |cmd: &Path| -> Result<Duration> {
        let t = Instant::now();
        let out = Command::new(cmd)
            .args(["get", "vm"])
            .env("KUBECONFIG", &kubeconfig)
            .output()?;
        let e = t.elapsed();
        if !out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("testvm-2") {
            bail!(
                "{} get vm: {}",
                cmd.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(e)
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        ours.push(time(&cli)?);
        if kubectl.is_file() {
            theirs.push(time(kubectl)?);
        }
    }
    ours.sort();
    theirs.sort();
    Ok((
        percentile(&ours, 0.5),
        (!theirs.is_empty()).then(|| percentile(&theirs, 0.5)),
    ))
}

impl Report {
    pub fn print(&self) {
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        let rate = self.creates as f64 / self.burst.as_secs_f64().max(1e-9);
        println!("| oxivirtd (the API over the embedded store) | measured | target | kube-apiserver 1.28 + etcd 3.4 (elsewhere) |");
        println!("|---|---|---|---|");
        println!(
            "| {} creates of the seed VM, 8 keep-alive HTTPS clients | {rate:.0} creates/s ({} in total) | ≥ 2,700/s | 270/s |",
            self.creates,
            ms(self.burst)
        );
        println!(
            "| list of the {} (full JSON, {} KiB, client-side, median of {LISTS}) | {} (min {}) | ≤ 45 ms | 455 ms |",
            self.creates,
            self.list_bytes / 1024,
            ms(self.list_median),
            ms(self.list_min)
        );
        println!(
            "| watch: create acknowledged → event delivered (median / p99; negative: before the 201 was read) | {:.2} ms / {:.2} ms ({} of {} seen) | every one | — |",
            self.watch_median,
            self.watch_p99,
            self.watch_seen,
            self.creates
        );
        println!(
            "| resident memory, idle after start | {:.1} MiB | ≤ 20 MiB | 422 MiB |",
            self.idle_rss_kib as f64 / 1024.0
        );
        println!(
            "| resident memory after the burst | {:.1} MiB | — | — |",
            self.after_rss_kib as f64 / 1024.0
        );
        println!(
            "| acknowledged creates present after kill -9 and a restart | {} of {} | all | — |",
            self.survived_kill, self.creates
        );
        println!(
            "| `oxivirt get vm`, process start to output (median of 21; `kubectl get vm` on the same daemon: {}) | {} | ≤ 20 ms | — |",
            self.kubectl_get.map_or("no kubectl here".to_string(), ms),
            ms(self.cli_get)
        );
    }
}
