//! The [`Backend`] of a cluster (`oxivirt-api`, behind the APIService): VMs and VMIs read
//! and written through the cluster's API (whose admission and preconditions apply), and a
//! VMI's launcher reached through the node relay (`crate::relay`) of the node agent on
//! the launcher pod's node: the pod is the VMI's running launcher pod (labels
//! `kubevirt.io: virt-launcher`, `kubevirt.io/created-by: <vmi uid>`), the agent the pod
//! of `agent_selector` in `agent_namespace` on that node, dialled at its pod IP (the
//! host's, it runs on the host network) and its container port named `relay`.

use std::net::{IpAddr, SocketAddr};

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use oxivirt_app_launcher::control;
use serde_json::{json, Value};

use super::{internal, status, Backend, ConsoleStream, Kind, Put};
use crate::handler::Reply;
use crate::relay::RelayClient;

/// The relay port when the agent pod names none.
pub const DEFAULT_RELAY_PORT: u16 = 8186;

/// A cluster's API and its node relays.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    relay: RelayClient,
    agent_namespace: String,
    agent_selector: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("agent_namespace", &self.agent_namespace)
            .field("agent_selector", &self.agent_selector)
            .finish_non_exhaustive()
    }
}

/// The reply for an error of the cluster's API: its own `Status` when it sent one.
fn api_error(e: kube::Error) -> Reply {
    match e {
        kube::Error::Api(s) => {
            let code = if s.code == 0 { 500 } else { s.code };
            let mut body = serde_json::to_value(&*s).unwrap_or_else(|_| json!({}));
            body["kind"] = json!("Status");
            body["apiVersion"] = json!("v1");
            Reply::Json {
                status: code,
                body: serde_json::to_vec(&body).unwrap_or_default(),
                warnings: Vec::new(),
            }
        }
        other => status(
            503,
            "ServiceUnavailable",
            format!("the cluster's API did not answer: {other}"),
            None,
        ),
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn path(kind: Kind, ns: &str, name: &str) -> String {
    let r = kind.resource();
    format!(
        "/apis/{}/namespaces/{ns}/{}/{name}",
        r.api_version(),
        r.plural
    )
}

fn no_launcher(name: &str, why: String) -> Reply {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io {name:?}: {why}"
        ),
        None,
    )
}

/// The relay port an agent pod declares (the container port named `relay`).
fn relay_port(pod: &Pod) -> u16 {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("relay"))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(DEFAULT_RELAY_PORT)
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

impl Cluster {
    pub fn new(
        client: kube::Client,
        relay: RelayClient,
        agent_namespace: impl Into<String>,
        agent_selector: impl Into<String>,
    ) -> Self {
        Cluster {
            client,
            relay,
            agent_namespace: agent_namespace.into(),
            agent_selector: agent_selector.into(),
        }
    }

    /// The running launcher pod of `vmi`, if any.
    async fn launcher_pod(&self, ns: &str, vmi: &Value) -> Result<Option<Pod>, Reply> {
        let Some(uid) = vmi["metadata"]["uid"].as_str() else {
            return Ok(None);
        };
        let pods: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), ns);
        let lp = ListParams::default().labels(&format!(
            "kubevirt.io=virt-launcher,kubevirt.io/created-by={uid}"
        ));
        let list = pods.list(&lp).await.map_err(api_error)?;
        Ok(list.items.into_iter().find(running))
    }

    /// The relay address and launcher pod uid for the running VMI `vmi`.
    async fn relay_target(
        &self,
        ns: &str,
        name: &str,
        vmi: &Value,
    ) -> Result<(SocketAddr, String), Reply> {
        let pod = self
            .launcher_pod(ns, vmi)
            .await?
            .ok_or_else(|| no_launcher(name, "it has no running launcher pod".into()))?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| no_launcher(name, "its launcher pod is on no node".into()))?;
        let agents: kube::Api<Pod> =
            kube::Api::namespaced(self.client.clone(), &self.agent_namespace);
        let lp = ListParams::default()
            .labels(&self.agent_selector)
            .fields(&format!("spec.nodeName={node}"));
        let list = agents.list(&lp).await.map_err(api_error)?;
        let agent = list.items.into_iter().filter(running).find_map(|p| {
            let ip: IpAddr = p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
            Some(SocketAddr::new(ip, relay_port(&p)))
        });
        let addr = agent.ok_or_else(|| {
            status(
                503,
                "ServiceUnavailable",
                format!(
                    "no running node agent ({}) in namespace {} on node {node}",
                    self.agent_selector, self.agent_namespace
                ),
                None,
            )
        })?;
        Ok((addr, uid))
    }
}

impl Backend for Cluster {
    fn get<'a>(
        &'a self,
        kind: Kind,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, Reply>> {
        Box::pin(async move {
            let req = http::Request::get(path(kind, ns, name))
                .body(Vec::new())
                .map_err(|e| internal(e.to_string()))?;
            match self.client.request::<Value>(req).await {
                Ok(v) => Ok(Some(v)),
                Err(e) if is_status(&e, 404) => Ok(None),
                Err(e) => Err(api_error(e)),
            }
        })
    }

    fn put<'a>(
        &'a self,
        kind: Kind,
        ns: &'a str,
        name: &'a str,
        obj: &'a Value,
        status_only: bool,
    ) -> BoxFuture<'a, Result<Put, Reply>> {
        Box::pin(async move {
            let mut p = path(kind, ns, name);
            if status_only {
                p.push_str("/status");
            }
            let req = http::Request::put(p)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(obj).unwrap_or_default())
                .map_err(|e| internal(e.to_string()))?;
            match self.client.request::<Value>(req).await {
                Ok(_) => Ok(Put::Done),
                Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "Conflict" => {
                    Ok(Put::Raced)
                }
                Err(e) => Err(api_error(e)),
            }
        })
    }

    fn delete_launcher_pod<'a>(
        &'a self,
        ns: &'a str,
        vmi: &'a Value,
    ) -> BoxFuture<'a, Result<(), Reply>> {
        Box::pin(async move {
            let Some(pod) = self.launcher_pod(ns, vmi).await? else {
                return Ok(());
            };
            let Some(name) = pod.metadata.name else {
                return Ok(());
            };
            let pods: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), ns);
            let dp = DeleteParams {
                grace_period_seconds: Some(1),
                ..DeleteParams::default()
            };
            match pods.delete(&name, &dp).await {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, 404) => Ok(()),
                Err(e) => Err(api_error(e)),
            }
        })
    }

    fn launcher_control<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        vmi: &'a Value,
        req: control::Request,
    ) -> BoxFuture<'a, Result<control::Response, Reply>> {
        Box::pin(async move {
            let (addr, uid) = self.relay_target(ns, name, vmi).await?;
            let resp = self
                .relay
                .control(addr, &uid, &req)
                .await
                .map_err(|e| internal(format!("{e}: {}", source_text(&e))))?;
            if resp.ok {
                Ok(resp)
            } else {
                Err(internal(format!(
                    "the launcher refused: {}",
                    resp.error.as_deref().unwrap_or("no reason given")
                )))
            }
        })
    }

    fn launcher_console<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        vmi: &'a Value,
    ) -> BoxFuture<'a, Result<Box<dyn ConsoleStream>, Reply>> {
        Box::pin(async move {
            let (addr, uid) = self.relay_target(ns, name, vmi).await?;
            let stream = self
                .relay
                .console(addr, &uid)
                .await
                .map_err(|e| internal(format!("{e}: {}", source_text(&e))))?;
            Ok(Box::new(stream) as Box<dyn ConsoleStream>)
        })
    }
}

/// The chain of causes under `e`, for a message that says why.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    if out.is_empty() {
        "no further cause".into()
    } else {
        out.join(": ")
    }
}
