//! The Kubernetes API backend of [`ClusterSource`]: pods and NetworkAttachmentDefinitions
//! from the API server, network-status written back with a JSON merge patch.
//!
//! A small synchronous client: each CNI call is a fresh process doing two or three
//! requests, where an async runtime and a generated client would cost more to start than
//! the requests themselves. Credentials (kubeconfig, or the in-cluster service account)
//! are read on every process start, so a rotated token is picked up by the next call.

use crate::error::{Error, Result};
use crate::source::{ClusterSource, NetworkAttachmentDefinition, Pod};
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

pub const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

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

/// Whether a request failed the way a pooled connection the server closed while it was
/// idle fails (reset, broken pipe, EOF): worth one resend. A timeout or a refused
/// connection is not: resending would only double the wait of an ADD with the API down.
fn stale(e: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(e, ureq::Error::Io(io) if matches!(
        io.kind(),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof
    ))
}

/// How long an idle connection is kept for the next request.
const IDLE_CONNECTION_AGE: Duration = Duration::from_secs(90);

/// A connection to one API server.
pub struct KubeSource {
    server: String,
    token: Option<String>,
    agent: ureq::Agent,
    /// Resend once after a connection dropped under the request ([`stale`]): a
    /// long-lived process's pooled connection may have been closed by the server while
    /// idle (every request here is idempotent: GETs and a merge patch of one annotation).
    retry_stale: bool,
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
) -> Result<Option<Vec<u8>>> {
    if let Some(d) = data {
        return base64::engine::general_purpose::STANDARD
            .decode(d.trim())
            .map(Some)
            .map_err(|source| Error::CredentialBase64 {
                what: what.to_string(),
                source,
            });
    }
    if let Some(f) = file {
        let path = if f.is_absolute() {
            f.to_path_buf()
        } else {
            base.join(f)
        };
        return std::fs::read(&path)
            .map(Some)
            .map_err(|source| Error::CredentialRead { path, source });
    }
    Ok(None)
}

impl KubeSource {
    /// From a kubeconfig file (its current context).
    pub fn from_kubeconfig(path: &Path, timeout: Duration) -> Result<Self> {
        let what = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::CredentialRead {
            path: path.to_path_buf(),
            source,
        })?;
        let kc: Kubeconfig = serde_saphyr::from_str(&text).map_err(|e| Error::KubeconfigParse {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        let broken = |reason: String| Error::Kubeconfig {
            path: path.to_path_buf(),
            reason,
        };
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
            .ok_or_else(|| broken(format!("context {ctx_name:?} not found")))?;
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == ctx.item.cluster)
            .ok_or_else(|| broken(format!("cluster {:?} not found", ctx.item.cluster)))?;
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
                            .map_err(|source| Error::CredentialRead { path: p, source })?
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
    pub fn in_cluster(timeout: Duration) -> Result<Self> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| Error::NotInCluster)?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        // The service account's files; another directory only where tests stand in for it.
        let dir = std::env::var_os("OXIVIRT_SERVICEACCOUNT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(SA_DIR));
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read(&path).map_err(|source| Error::CredentialRead { path, source })
        };
        let token = String::from_utf8_lossy(&read("token")?).into_owned();
        let ca = read("ca.crt")?;
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
    ) -> Result<Self> {
        let mut tls = TlsConfig::builder().disable_verification(insecure);
        if let Some(pem) = ca {
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(Error::CredentialPem {
                    what: "certificate-authority".into(),
                    reason: "no PEM certificate in it",
                    source: None,
                });
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
            let key = PrivateKey::from_pem(&key).map_err(|e| Error::CredentialPem {
                what: "client-key".into(),
                reason: "not a PEM private key",
                source: Some(Box::new(e)),
            })?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            // Kept for a long-lived process's next pod; a process per call never reuses.
            .max_idle_age(IDLE_CONNECTION_AGE)
            .build()
            .into();
        Ok(Self {
            server: server.trim_end_matches('/').to_string(),
            token,
            agent,
            retry_stale: false,
        })
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
        match self.request_once(method, path, body) {
            Err(Error::ApiUnreachable { source, .. }) if self.retry_stale && stale(&source) => {
                self.request_once(method, path, body)
            }
            r => r,
        }
    }

    fn request_once(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
        let url = format!("{}{path}", self.server);
        let unreachable = |e: ureq::Error| Error::ApiUnreachable {
            server: self.server.clone(),
            source: Box::new(e),
        };
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
        Ok((status, text))
    }

    /// An error status, with the `message` of the Status object the server sent (if any:
    /// a proxy in between may answer with anything).
    fn status_error(&self, what: String, status: u16, body: &str) -> Error {
        let message = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        Error::ApiStatus {
            server: self.server.clone(),
            what,
            status,
            message,
        }
    }

    fn get(
        &self,
        kind: &'static str,
        path: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>> {
        let what = format!("{kind} {namespace}/{name}");
        let (status, body) = self.request("GET", path, None)?;
        match status {
            200 => serde_json::from_str(&body)
                .map(Some)
                .map_err(|source| Error::ApiResponse {
                    server: self.server.clone(),
                    what,
                    source,
                }),
            404 => Ok(None),
            _ => Err(self.status_error(what, status, &body)),
        }
    }
}

impl ClusterSource for KubeSource {
    fn pod(&self, namespace: &str, name: &str) -> Result<Pod> {
        let v = self
            .get(
                "pod",
                &format!("/api/v1/namespaces/{namespace}/pods/{name}"),
                namespace,
                name,
            )?
            .ok_or_else(|| Error::PodNotFound {
                namespace: namespace.into(),
                name: name.into(),
            })?;
        Ok(Pod::from_object(namespace, name, &v))
    }

    fn network_attachment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<NetworkAttachmentDefinition>> {
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

    fn network_attachments(
        &self,
        namespace: &str,
    ) -> Result<Option<Vec<NetworkAttachmentDefinition>>> {
        let path = format!(
            "/apis/k8s.cni.cncf.io/v1/namespaces/{namespace}/network-attachment-definitions"
        );
        let v = self
            .get("NetworkAttachmentDefinitions", &path, namespace, "*")?
            .ok_or_else(|| Error::ApiStatus {
                server: self.server.clone(),
                what: format!("NetworkAttachmentDefinitions {namespace}/*"),
                status: 404,
                message: String::new(),
            })?;
        let items = v["items"].as_array().ok_or_else(|| Error::ApiStatus {
            server: self.server.clone(),
            what: format!("NetworkAttachmentDefinitions {namespace}/*"),
            status: 200,
            message: "no items in the list".into(),
        })?;
        Ok(Some(
            items
                .iter()
                .filter_map(|i| {
                    Some(NetworkAttachmentDefinition {
                        namespace: namespace.into(),
                        name: i["metadata"]["name"].as_str()?.into(),
                        config: i["spec"]["config"].as_str().unwrap_or_default().into(),
                    })
                })
                .collect(),
        ))
    }

    fn set_network_status(&self, namespace: &str, name: &str, status: &str) -> Result<()> {
        // A merge patch of one annotation: no resourceVersion, so no conflict to retry,
        // except the API server's own transient answers.
        let body = serde_json::json!({"metadata": {"annotations": {crate::annotation::NETWORK_STATUS: status}}}).to_string();
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}");
        let what = || format!("network-status of pod {namespace}/{name}");
        let mut attempt = 0;
        loop {
            let (code, text) = self.request("PATCH", &path, Some(&body))?;
            match code {
                200 | 201 => return Ok(()),
                409 | 429 | 500 | 503 if attempt < 2 => {
                    std::thread::sleep(Duration::from_millis(50 << attempt));
                    attempt += 1;
                }
                // The last transient answer, or a refusal.
                _ => return Err(self.status_error(what(), code, &text)),
            }
        }
    }
}

/// The Kubernetes backend, connected on first use: DEL and GC served from the cache
/// never pay for reading credentials or setting up TLS. A set-up failure is kept, and
/// every lookup reports it as [`Error::ApiClient`].
pub struct LazyKube {
    kubeconfig: Option<PathBuf>,
    timeout: Duration,
    long_lived: bool,
    cell: OnceLock<Result<KubeSource, Arc<Error>>>,
}

impl LazyKube {
    /// From `kubeconfig`, else in-cluster (the service account).
    pub fn new(kubeconfig: Option<PathBuf>, timeout: Duration) -> Self {
        Self {
            kubeconfig,
            timeout,
            long_lived: false,
            cell: OnceLock::new(),
        }
    }

    /// For a process that serves many calls (the thick plugin's daemon): its pooled
    /// connections are reused, and resent on once if the server closed them while idle.
    pub fn long_lived(mut self) -> Self {
        self.long_lived = true;
        self
    }

    /// Whether setting the client up failed (a long-lived owner makes a new one).
    pub fn failed(&self) -> bool {
        matches!(self.cell.get(), Some(Err(_)))
    }

    fn get(&self) -> Result<&KubeSource> {
        let r = self.cell.get_or_init(|| {
            let r = match &self.kubeconfig {
                Some(k) => KubeSource::from_kubeconfig(k, self.timeout),
                None => KubeSource::in_cluster(self.timeout),
            }
            .map(|mut s| {
                s.retry_stale = self.long_lived;
                s
            });
            oxivirt_cni_spec::trace::mark("multus: API client set up");
            r.map_err(Arc::new)
        });
        r.as_ref().map_err(|e| Error::ApiClient(Arc::clone(e)))
    }
}

impl std::fmt::Debug for LazyKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyKube")
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl ClusterSource for LazyKube {
    fn pod(&self, ns: &str, name: &str) -> Result<Pod> {
        self.get()?.pod(ns, name)
    }
    fn network_attachment(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<NetworkAttachmentDefinition>> {
        self.get()?.network_attachment(ns, name)
    }
    fn set_network_status(&self, ns: &str, name: &str, status: &str) -> Result<()> {
        self.get()?.set_network_status(ns, name, status)
    }
    fn network_attachments(&self, ns: &str) -> Result<Option<Vec<NetworkAttachmentDefinition>>> {
        self.get()?.network_attachments(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::is_unreachable;
    use std::io::{Read, Write};

    /// An API server that answers every request with `status` and `body`.
    fn server(status: u16, body: &'static str) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = write!(
                    c,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://{addr}")
    }

    fn source(server: &str) -> KubeSource {
        KubeSource::new(server, None, None, None, false, Duration::from_secs(5)).expect("client")
    }

    /// A server that drops its first connection without an answer (as a server closing
    /// an idle keep-alive connection does under a request), or with `hang` keeps it open
    /// and silent; later connections get a pod. Counts the connections it accepted.
    fn flaky_server(hang: bool) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let n = std::sync::Arc::new(AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&n);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut c in l.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    if hang {
                        held.push(c);
                    }
                    continue;
                }
                let body = r#"{"metadata":{"uid":"u1"}}"#;
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (format!("http://{addr}"), n)
    }

    #[test]
    fn a_long_lived_client_resends_once_after_a_dropped_connection_but_not_after_a_timeout() {
        use std::sync::atomic::Ordering;
        let (url, accepted) = flaky_server(false);
        let mut s = source(&url);
        s.retry_stale = true;
        let pod = s.pod("default", "p").expect("resent on a new connection");
        assert_eq!(pod.uid, "u1");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        // A process per call does not resend.
        let (url, accepted) = flaky_server(false);
        assert!(source(&url).pod("default", "p").is_err());
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // A server that does not answer: the timeout is not doubled by a resend.
        let (url, accepted) = flaky_server(true);
        let mut s = KubeSource::new(&url, None, None, None, false, Duration::from_millis(300))
            .expect("client");
        s.retry_stale = true;
        let e = s.pod("default", "p").expect_err("timed out");
        assert!(is_unreachable(&e), "{e:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn status_and_unreachable_are_told_apart() {
        let s = server(
            403,
            r#"{"kind":"Status","message":"pods \"p\" is forbidden"}"#,
        );
        let e = source(&s).pod("ns", "p").expect_err("forbidden");
        assert!(
            matches!(&e, Error::ApiStatus { status: 403, message, what, .. }
                if message == "pods \"p\" is forbidden" && what == "pod ns/p"),
            "{e:?}"
        );
        assert!(!is_unreachable(&e));
        let s = server(503, "not json");
        let e = source(&s).pod("ns", "p").expect_err("unavailable");
        assert!(
            matches!(&e, Error::ApiStatus { status: 503, message, .. } if message.is_empty()),
            "{e:?}"
        );
        assert!(is_unreachable(&e));
        let s = server(200, "not json");
        let e = source(&s).pod("ns", "p").expect_err("garbage");
        assert!(matches!(&e, Error::ApiResponse { .. }), "{e:?}");
        let s = server(404, "{}");
        let e = source(&s).pod("ns", "p").expect_err("no pod");
        assert!(matches!(&e, Error::PodNotFound { .. }), "{e:?}");
        assert_eq!(source(&s).network_attachment("ns", "n").expect("ok"), None);
        // Nobody listening: the connection error is the source.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("addr");
        drop(closed);
        let e = source(&format!("http://{addr}"))
            .pod("ns", "p")
            .expect_err("refused");
        assert!(matches!(&e, Error::ApiUnreachable { .. }), "{e:?}");
        assert!(is_unreachable(&e));
        let msg = oxivirt_cni_spec::error::chain(&e);
        assert!(
            msg.starts_with(&format!("API server http://{addr}: ")),
            "{msg}"
        );
    }

    #[test]
    fn lists_the_nads_of_a_namespace() {
        let s = server(
            200,
            r#"{"kind":"NetworkAttachmentDefinitionList","items":[
                {"metadata":{"name":"a","namespace":"ns"},"spec":{"config":"{\"type\":\"bridge\"}"}},
                {"metadata":{"name":"b","namespace":"ns"},"spec":{}},
                {"metadata":{}}]}"#,
        );
        let got = source(&s)
            .network_attachments("ns")
            .expect("list")
            .expect("supported");
        assert_eq!(
            got,
            [
                NetworkAttachmentDefinition {
                    namespace: "ns".into(),
                    name: "a".into(),
                    config: r#"{"type":"bridge"}"#.into()
                },
                NetworkAttachmentDefinition {
                    namespace: "ns".into(),
                    name: "b".into(),
                    config: String::new()
                }
            ]
        );
        let s = server(403, r#"{"message":"list is forbidden"}"#);
        assert!(source(&s).network_attachments("ns").is_err());
        let s = server(200, r#"{"kind":"Status"}"#);
        assert!(source(&s).network_attachments("ns").is_err());
    }

    #[test]
    fn lazy_client_reports_its_set_up_error_on_every_lookup() {
        let lazy = LazyKube::new(
            Some("/nonexistent/kubeconfig".into()),
            Duration::from_secs(1),
        );
        for _ in 0..2 {
            let e = lazy.pod("ns", "p").expect_err("no kubeconfig");
            let Error::ApiClient(inner) = &e else {
                panic!("{e:?}");
            };
            assert!(
                matches!(&**inner, Error::CredentialRead { .. }),
                "{inner:?}"
            );
            assert!(is_unreachable(&e));
            let msg = oxivirt_cni_spec::error::chain(&e);
            assert!(
                msg.contains("/nonexistent/kubeconfig") && msg.contains("No such file"),
                "{msg}"
            );
        }
    }
}
