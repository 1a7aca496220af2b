//! `oxivirt-node launcher-status`: the launchers of this node's pods → their VMIs' status,
//! as KubeVirt's virt-handler reports its domains. Each cluster launcher pod keeps its state
//! dir on the host (`/var/run/oxivirt/launchers/<pod uid>/`, see the controller's cluster
//! launcher pod); this reads each one's `status.json` and merge-patches the VMI's status
//! (phase, interfaces, Ready and Paused) when it changed. The mapping is oxivirtd's own
//! (`oxivirt_pod_runtime::status::vmi_status`): one machine and a cluster say the same.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// This node's name (the DaemonSet passes spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// The host dir of the launchers' state dirs, as mounted here.
    #[arg(long, default_value = "/var/run/oxivirt/launchers")]
    state_root: PathBuf,
    /// The API [default: in-cluster, else $KUBECONFIG or ~/.kube/config].
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// How often the launchers are read, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
}

pub fn run(args: &Args) -> Result<()> {
    crate::until_stopped(async {
        let client = match &args.kubeconfig {
            Some(k) => oxivirt_pod_runtime::client_from_kubeconfig(k)
                .await
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("kubeconfig {}", k.display()))?,
            None => kube::Client::try_default()
                .await
                .context("no in-cluster config and no kubeconfig")?,
        };
        report(client, args).await
    })
}

/// A launcher pod of this node: where its VMI is and where its launcher writes.
struct Launcher {
    namespace: String,
    vmi: String,
    uid: String,
}

fn launchers(pods: Vec<Pod>) -> Vec<Launcher> {
    pods.into_iter()
        .filter_map(|p| {
            let m = p.metadata;
            Some(Launcher {
                namespace: m.namespace?,
                vmi: m.annotations?.get("kubevirt.io/domain")?.clone(),
                uid: m.uid?,
            })
        })
        .collect()
}

fn read_status(root: &Path, uid: &str) -> Option<Value> {
    // A pod uid names a directory; nothing else does.
    if uid.is_empty() || uid.contains('/') || uid.starts_with('.') {
        return None;
    }
    let text = std::fs::read(root.join(uid).join("status.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

async fn report(client: kube::Client, args: &Args) -> Result<()> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = ListParams::default()
        .labels("kubevirt.io=virt-launcher")
        .fields(&format!("spec.nodeName={}", args.node_name));
    // What was last reported per pod: the launcher's status it came from.
    let mut reported: HashMap<String, Value> = HashMap::new();
    let poll = Duration::from_millis(args.poll_ms.max(10));
    loop {
        match pods.list(&list).await {
            Ok(l) => {
                let now = launchers(l.items);
                reported.retain(|uid, _| now.iter().any(|p| &p.uid == uid));
                for p in now {
                    let Some(launcher) = read_status(&args.state_root, &p.uid) else {
                        continue;
                    };
                    if reported.get(&p.uid) == Some(&launcher) {
                        continue;
                    }
                    let Some(patch) = oxivirt_pod_runtime::status::vmi_status(
                        &launcher,
                        &args.node_name,
                        &oxivirt_pod_runtime::status::now(),
                    ) else {
                        continue;
                    };
                    match oxivirt_pod_runtime::status::patch_vmi(
                        &client,
                        &p.namespace,
                        &p.vmi,
                        &patch,
                    )
                    .await
                    {
                        Ok(()) => {
                            reported.insert(p.uid, launcher);
                        }
                        Err(e) => eprintln!(
                            "oxivirt-node launcher-status: VMI {}/{}: {e}",
                            p.namespace, p.vmi
                        ),
                    }
                }
            }
            Err(e) => {
                eprintln!("oxivirt-node launcher-status: listing this node's launcher pods: {e}")
            }
        }
        tokio::time::sleep(poll).await;
    }
}
