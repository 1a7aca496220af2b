//! The Kubernetes API backend of [`ClusterSource`]: pods and NetworkAttachmentDefinitions
//! from the API server, network-status written back with a JSON merge patch.
//!
//! A small synchronous client: each CNI call is a fresh process doing two or three
//! requests, where an async runtime and a generated client would cost more to start than
//! the requests themselves. Credentials (kubeconfig, or the in-cluster service account)
//! are read on every process start, so a rotated token is picked up by the next call.

use crate::source::{ClusterSource, NetworkAttachmentDefinition, Pod, SourceError};
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, Deserialize, Default)]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
    #[serde(default, rename = "current-context")]
    current_context: String,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    item: T,
}

#[derive(Debug, Deserialize, Default)]
struct ClusterEntry {
    server: String,
    #[serde(rename = "certificate-authority")]
    ca_file: Option<PathBuf>,
    #[serde(rename = "certificate-authority-data")]
    ca_data: Option<String>,
    #[serde(default, rename = "insecure-skip-tls-verify")]
    insecure: bool,
}

#[derive(Debug, Deserialize, Default)]
struct ContextEntry {
    cluster: String,
    #[serde(default)]
    user: String,
}

#[derive(Debug, Deserialize, Default)]
struct UserEntry {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(rename = "client-certificate")]
    cert_file: Option<PathBuf>,
    #[serde(rename = "client-certificate-data")]
    cert_data: Option<String>,
    #[serde(rename = "client-key")]
    key_file: Option<PathBuf>,
    #[serde(rename = "client-key-data")]
    key_data: Option<String>,
}

fn invalid(what: impl Into<String>, reason: impl std::fmt::Display) -> SourceError {
    SourceError::Invalid {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// A connection to one API server.
pub struct KubeSource {
    server: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fn read_pem(
    what: &str,
    data: Option<&str>,
    file: Option<&Path>,
    base: &Path,
) -> Result<Option<Vec<u8>>, SourceError> {
    if let Some(d) = data {
        return base64::engine::general_purpose::STANDARD
            .decode(d.trim())
            .map(Some)
            .map_err(|e| invalid(what, format!("not base64: {e}")));
    }
    if let Some(f) = file {
        let path = if f.is_absolute() {
            f.to_path_buf()
        } else {
            base.join(f)
        };
        return std::fs::read(&path)
            .map(Some)
            .map_err(|e| invalid(path.display().to_string(), e));
    }
    Ok(None)
}

impl KubeSource {
    /// From a kubeconfig file (its current context).
    pub fn from_kubeconfig(path: &Path, timeout: Duration) -> Result<Self, SourceError> {
        let what = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| invalid(&what, e))?;
        let kc: Kubeconfig = serde_saphyr::from_str(&text).map_err(|e| invalid(&what, e))?;
        let ctx_name = if kc.current_context.is_empty() {
            kc.contexts
                .first()
                .map(|c| c.name.clone())
                .unwrap_or_default()
        } else {
            kc.current_context.clone()
        };
        let ctx = kc
            .contexts
            .iter()
            .find(|c| c.name == ctx_name)
            .ok_or_else(|| invalid(&what, format!("context {ctx_name:?} not found")))?;
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == ctx.item.cluster)
            .ok_or_else(|| invalid(&what, format!("cluster {:?} not found", ctx.item.cluster)))?;
        let user = kc
            .users
            .iter()
            .find(|u| u.name == ctx.item.user)
            .map(|u| &u.item);
        let base = path.parent().unwrap_or(Path::new("/"));
        let ca = read_pem(
            &format!("{what}: certificate-authority"),
            cluster.item.ca_data.as_deref(),
            cluster.item.ca_file.as_deref(),
            base,
        )?;
        let mut token = None;
        let mut client = None;
        if let Some(u) = user {
            token = match (&u.token, &u.token_file) {
                (Some(t), _) => Some(t.clone()),
                (None, Some(f)) => {
                    let p = if f.is_absolute() {
                        f.clone()
                    } else {
                        base.join(f)
                    };
                    Some(
                        std::fs::read_to_string(&p)
                            .map_err(|e| invalid(p.display().to_string(), e))?
                            .trim()
                            .to_string(),
                    )
                }
                _ => None,
            };
            // The certificate and its key: each inline (`-data`) or from a file.
            let pem = |field: &str, data: &Option<String>, file: &Option<PathBuf>| {
                read_pem(
                    &format!("{what}: {field}"),
                    data.as_deref(),
                    file.as_deref(),
                    base,
                )
            };
            let cert = pem("client-certificate", &u.cert_data, &u.cert_file)?;
            let key = pem("client-key", &u.key_data, &u.key_file)?;
            if let (Some(c), Some(k)) = (cert, key) {
                client = Some((c, k));
            }
        }
        Self::new(
            &cluster.item.server,
            ca,
            client,
            token,
            cluster.item.insecure,
            timeout,
        )
    }

    /// From the pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT`).
    pub fn in_cluster(timeout: Duration) -> Result<Self, SourceError> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
            SourceError::Unreachable("not in a cluster: KUBERNETES_SERVICE_HOST is not set".into())
        })?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        // The service account's files; another directory only where tests stand in for it.
        let dir = std::env::var_os("OXIVIRT_SERVICEACCOUNT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(SA_DIR));
        let token = std::fs::read_to_string(dir.join("token"))
            .map_err(|e| invalid(dir.join("token").display().to_string(), e))?;
        let ca = std::fs::read(dir.join("ca.crt"))
            .map_err(|e| invalid(dir.join("ca.crt").display().to_string(), e))?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Self::new(
            &format!("https://{host}:{port}"),
            Some(ca),
            None,
            Some(token.trim().to_string()),
            false,
            timeout,
        )
    }

    fn new(
        server: &str,
        ca: Option<Vec<u8>>,
        client: Option<(Vec<u8>, Vec<u8>)>,
        token: Option<String>,
        insecure: bool,
        timeout: Duration,
    ) -> Result<Self, SourceError> {
        let mut tls = TlsConfig::builder().disable_verification(insecure);
        if let Some(pem) = ca {
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(invalid("certificate-authority", "no PEM certificate in it"));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        if let Some((cert, key)) = client {
            let chain: Vec<Certificate<'static>> = ureq::tls::parse_pem(&cert)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            let key = PrivateKey::from_pem(&key).map_err(|e| invalid("client-key", e))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Ok(Self {
            server: server.trim_end_matches('/').to_string(),
            token,
            agent,
        })
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Value), SourceError> {
        let url = format!("{}{path}", self.server);
        let unreachable =
            |e: ureq::Error| SourceError::Unreachable(format!("API server {}: {e}", self.server));
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let resp = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url).header("Accept", "application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call().map_err(unreachable)?
            }
            (_, b) => {
                let mut r = self
                    .agent
                    .patch(&url)
                    .header("Content-Type", "application/merge-patch+json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(b.unwrap_or("{}")).map_err(unreachable)?
            }
        };
        let status = resp.status().as_u16();
        let text = resp.into_body().read_to_string().map_err(unreachable)?;
        let v = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, v))
    }

    fn get(
        &self,
        kind: &'static str,
        path: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, SourceError> {
        let (status, v) = self.request("GET", path, None)?;
        match status {
            200 => Ok(Some(v)),
            404 => Ok(None),
            401 | 403 => Err(invalid(
                format!("{kind} {namespace}/{name}"),
                format!(
                    "the API server refused access ({status}): {}",
                    v["message"].as_str().unwrap_or("")
                ),
            )),
            _ => Err(SourceError::Unreachable(format!(
                "API server {}: {kind} {namespace}/{name}: HTTP {status} {}",
                self.server,
                v["message"].as_str().unwrap_or("")
            ))),
        }
    }
}

impl ClusterSource for KubeSource {
    fn pod(&self, namespace: &str, name: &str) -> Result<Pod, SourceError> {
        let v = self
            .get(
                "pod",
                &format!("/api/v1/namespaces/{namespace}/pods/{name}"),
                namespace,
                name,
            )?
            .ok_or_else(|| SourceError::NotFound {
                kind: "pod",
                namespace: namespace.into(),
                name: name.into(),
            })?;
        Ok(Pod::from_object(namespace, name, &v))
    }

    fn network_attachment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<NetworkAttachmentDefinition>, SourceError> {
        let path = format!(
            "/apis/k8s.cni.cncf.io/v1/namespaces/{namespace}/network-attachment-definitions/{name}"
        );
        Ok(self
            .get("NetworkAttachmentDefinition", &path, namespace, name)?
            .map(|v| NetworkAttachmentDefinition {
                namespace: namespace.into(),
                name: name.into(),
                config: v["spec"]["config"].as_str().unwrap_or_default().into(),
            }))
    }

    fn set_network_status(
        &self,
        namespace: &str,
        name: &str,
        status: &str,
    ) -> Result<(), SourceError> {
        // A merge patch of one annotation: no resourceVersion, so no conflict to retry,
        // except the API server's own transient answers.
        let body = serde_json::json!({"metadata": {"annotations": {crate::annotation::NETWORK_STATUS: status}}}).to_string();
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}");
        let mut last = String::new();
        for attempt in 0..3 {
            let (code, v) = self.request("PATCH", &path, Some(&body))?;
            match code {
                200 | 201 => return Ok(()),
                409 | 429 | 500 | 503 => {
                    last = format!("HTTP {code} {}", v["message"].as_str().unwrap_or(""));
                    std::thread::sleep(Duration::from_millis(50 << attempt));
                }
                _ => {
                    return Err(invalid(
                        format!("pod {namespace}/{name}"),
                        format!(
                            "network-status not written: HTTP {code} {}",
                            v["message"].as_str().unwrap_or("")
                        ),
                    ))
                }
            }
        }
        Err(SourceError::Unreachable(format!(
            "pod {namespace}/{name}: network-status not written: {last}"
        )))
    }
}
