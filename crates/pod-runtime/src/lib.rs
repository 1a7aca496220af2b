//! The pod runtime inside `oxivirtd` (the kubelet and container runtime of one machine,
//! and KubeVirt's virt-handler for VMI status): for every launcher Pod bound to this node,
//! a network namespace, the CNI chain through `oxivirt-multus`, the containerDisk pull and
//! `oxivirt-launcher`; their state back into the Pod and VMI status; graceful deletion.
//! Launchers run in sessions of their own and outlive the daemon, which re-adopts them on
//! start and cleans up what a crash left half-done. See `docs/lifecycle.md`.

pub mod cni;
pub mod error;
pub mod launcher;
pub mod netns;
mod pod;
pub mod status;

pub use error::{Error, Result};

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::Api;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// How the runtime is set up (the daemon's flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// `spec.nodeName` of the pods this runtime runs.
    pub node_name: String,
    /// The daemon's data dir: `images/`, `launchers/`, `pods/`, `cni/`, `kubeconfig`.
    pub data_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dir: PathBuf,
    /// `HOST=URL`, as the launcher takes them.
    pub registry_mirrors: Vec<String>,
    pub launcher: PathBuf,
    /// `auto`, `kvm` or `tcg` for the launcher; its own default when `None`.
    pub accel: Option<String>,
}

impl Config {
    pub fn images(&self) -> PathBuf {
        self.data_dir.join("images")
    }
    pub fn records(&self) -> PathBuf {
        self.data_dir.join("pods")
    }
    /// The launcher's state dir of VMI `name` in `namespace` (docs/lifecycle.md).
    pub fn state_dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.data_dir.join("launchers").join(namespace).join(name)
    }
}

/// The node's name by default: the machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `oxivirt-launcher` beside the running binary.
pub fn default_launcher() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("oxivirt-launcher")))
        .unwrap_or_else(|| PathBuf::from("oxivirt-launcher"))
}

/// A client for the daemon's own API through the kubeconfig it wrote.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, String> {
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    kube::Client::try_from(cfg).map_err(|e| e.to_string())
}

/// Runs the pod runtime until the future is dropped (the launchers keep running).
pub async fn run(config: Config, client: kube::Client) -> Result<()> {
    let mirrors = config
        .registry_mirrors
        .iter()
        .map(|m| {
            m.parse::<oxivirt_image::Mirror>()
                .map_err(|source| Error::Mirror {
                    spec: m.clone(),
                    source: Box::new(source),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let puller = oxivirt_image::Puller::new(config.images(), mirrors).map_err(|source| {
        Error::ImageCache {
            dir: config.images(),
            source: Box::new(source),
        }
    })?;
    let ctx = Arc::new(pod::Ctx {
        pods: Api::all(client.clone()),
        recorder: status::Recorder {
            client: client.clone(),
            node: config.node_name.clone(),
        },
        client: client.clone(),
        puller: Arc::new(puller),
        default_network: tokio::sync::Mutex::new(()),
        config,
    });
    let selector = format!("spec.nodeName={}", ctx.config.node_name);
    let mut stream = std::pin::pin!(watcher(
        ctx.pods.clone(),
        watcher::Config::default().fields(&selector)
    ));
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    // The pods of the current list, with their state dirs (for the orphan sweep).
    let mut listed: HashMap<String, PathBuf> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut first_list = true;
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                // The watcher retries by itself on the next poll; a pause keeps a dead API
                // from spinning the loop.
                eprintln!("oxivirtd: watch pods: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        workers.retain(|_, tx| !tx.is_closed());
        while tasks.try_join_next().is_some() {}
        match ev {
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                let Some(uid) = p.metadata.uid.clone() else {
                    continue;
                };
                let ns = p.metadata.namespace.clone().unwrap_or_default();
                listed.insert(uid.clone(), ctx.config.state_dir(&ns, &pod::vmi_name(&p)));
                match workers.get(&uid) {
                    Some(tx) => {
                        let _ = tx.send(Some(p));
                    }
                    None => {
                        let (tx, rx) = watch::channel(Some(p));
                        // In the set: dropping the runtime's future ends its workers (the
                        // launchers keep running and are adopted on the next start).
                        tasks.spawn(pod::worker(ctx.clone(), rx));
                        workers.insert(uid, tx);
                    }
                }
            }
            watcher::Event::Delete(p) => {
                if let Some(tx) = p.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                    let _ = tx.send(None);
                }
            }
            watcher::Event::InitDone => {
                // A pod that went while the watch was down gets no Delete event.
                for (uid, tx) in &workers {
                    if !listed.contains_key(uid) {
                        let _ = tx.send(None);
                    }
                }
                if first_list {
                    first_list = false;
                    tasks.spawn(pod::clean_orphans(ctx.clone(), listed.clone()));
                }
            }
        }
    }
    Ok(())
}
