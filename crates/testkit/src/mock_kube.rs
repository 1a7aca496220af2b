//! A mocked Kubernetes API service on loopback, for tests and the bench (there is no API
//! server on these machines): answers GET for pods and NetworkAttachmentDefinitions and
//! merge-PATCH on pods, checks the bearer token, and records every request.
//!
//! Two flavours: the plain one ([`start`], [`start_tls`] with a P-256 certificate) costs
//! next to nothing; the realistic one ([`start_realistic`]) costs what a real API server
//! does where it is not the plugin's doing: a TLS handshake against an RSA-2048
//! certificate (the kubeadm default) with stateless session tickets (Go's default), and
//! writes that return only after the object is fsync'd to a log on disk, as etcd's WAL is
//! before it acknowledges a write. The API server's own per-request work (authentication,
//! admission, conversion) is not modelled: only costs the mock can actually incur are.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct State {
    pub objects: HashMap<String, Value>,
    pub token: String,
    pub requests: Vec<(String, String, String)>,
    pub patches: Vec<Value>,
    /// Connections accepted (each a TCP connect and, over TLS, a handshake).
    pub connections: usize,
}

/// Serves on 127.0.0.1 of the namespace at `netns` (where the plugin runs), plain HTTP.
pub fn start(state: Arc<Mutex<State>>, netns: &Path) -> u16 {
    listen(state, netns, None, None)
}

/// Like [`start`], over TLS with `tls`'s server certificate.
pub fn start_tls(state: Arc<Mutex<State>>, netns: &Path, tls: &TlsMaterial) -> u16 {
    listen(state, netns, Some(tls.server_config(false)), None)
}

/// Like [`start_tls`] (give it [`TlsMaterial::generate_rsa`]), with session tickets, and
/// every successful write appended to `wal` and fsync'd before it is answered.
pub fn start_realistic(
    state: Arc<Mutex<State>>,
    netns: &Path,
    tls: &TlsMaterial,
    wal: &Path,
) -> u16 {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(wal)
        .expect("open the write-ahead log");
    listen(
        state,
        netns,
        Some(tls.server_config(true)),
        Some(Arc::new(Mutex::new(Wal { file: log }))),
    )
}

/// The store's log: one writer at a time, each write on disk before it is acknowledged.
struct Wal {
    file: std::fs::File,
}

impl Wal {
    fn commit(&mut self, record: &[u8]) {
        let _ = self.file.write_all(record);
        let _ = self.file.write_all(b"\n");
        let _ = self.file.sync_data();
    }
}

fn listen(
    state: Arc<Mutex<State>>,
    netns: &Path,
    tls: Option<Arc<rustls::ServerConfig>>,
    wal: Option<Arc<Mutex<Wal>>>,
) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        // A thread of its own, moved into the node namespace for good.
        enter_netns(&netns);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let _ = tx.send(listener.local_addr().expect("addr").port());
        for stream in listener.incoming().flatten() {
            let _ = stream.set_nodelay(true);
            if let Ok(mut s) = state.lock() {
                s.connections += 1;
            }
            let state = state.clone();
            let tls = tls.clone();
            let wal = wal.clone();
            std::thread::spawn(move || match tls {
                None => serve_conn(stream, &state, wal.as_deref()),
                Some(cfg) => {
                    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                        return;
                    };
                    serve_conn(
                        rustls::StreamOwned::new(conn, stream),
                        &state,
                        wal.as_deref(),
                    )
                }
            });
        }
    });
    rx.recv().expect("mock API port")
}

fn serve_conn<S: Read + Write>(stream: S, state: &Arc<Mutex<State>>, wal: Option<&Mutex<Wal>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut len = 0;
        let mut auth = String::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("authorization:") {
                auth = h["authorization:".len()..].trim().to_string();
            }
        }
        let mut body = vec![0; len];
        let _ = reader.read_exact(&mut body);
        let (code, reply, written) = {
            let mut s = state.lock().expect("lock");
            s.requests
                .push((method.clone(), path.clone(), auth.clone()));
            if auth != format!("Bearer {}", s.token) {
                (401, serde_json::json!({"message": "Unauthorized"}), false)
            } else if method == "GET" {
                match s.objects.get(&path) {
                    Some(v) => (200, v.clone(), false),
                    None => (404, serde_json::json!({"message": "not found"}), false),
                }
            } else {
                let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                s.patches.push(patch.clone());
                match s.objects.get_mut(&path) {
                    Some(obj) => {
                        if let (Some(a), Some(p)) = (
                            obj["metadata"]["annotations"].as_object_mut(),
                            patch["metadata"]["annotations"].as_object(),
                        ) {
                            for (k, v) in p {
                                a.insert(k.clone(), v.clone());
                            }
                        }
                        (200, obj.clone(), true)
                    }
                    None => (404, serde_json::json!({"message": "not found"}), false),
                }
            }
        };
        let text = reply.to_string();
        if let (true, Some(w)) = (written, wal) {
            w.lock().expect("wal lock").commit(text.as_bytes());
        }
        // One write: small pieces would meet Nagle and delayed ACKs (40 ms).
        let response = format!(
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
        let _ = reader.get_mut().write_all(response.as_bytes());
        let _ = reader.get_mut().flush();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
pub struct TlsMaterial {
    pub ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl TlsMaterial {
    /// P-256 keys (cheap handshakes).
    pub fn generate() -> Self {
        Self::with_keys(
            rcgen::KeyPair::generate().expect("ca key"),
            rcgen::KeyPair::generate().expect("server key"),
        )
    }

    /// RSA-2048 keys, as kubeadm makes a cluster's CA and API server certificate. ring
    /// signs with RSA but cannot make RSA keys, so `openssl genpkey` makes them.
    pub fn generate_rsa() -> Self {
        let rsa = || {
            let out = std::process::Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ])
                .output()
                .expect("run openssl genpkey");
            assert!(out.status.success(), "openssl genpkey failed");
            let pem = String::from_utf8(out.stdout).expect("PEM");
            rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
                .expect("RSA key")
        };
        Self::with_keys(rsa(), rsa())
    }

    fn with_keys(ca_key: rcgen::KeyPair, key: rcgen::KeyPair) -> Self {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "oxivirt test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        Self {
            ca_pem: ca_cert.pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }

    fn server_config(&self, tickets: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(
                    self.cert_der.clone(),
                )],
                rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into()),
            )
            .expect("server config");
        if tickets {
            cfg.ticketer = rustls::crypto::ring::Ticketer::new().expect("ticketer");
        }
        Arc::new(cfg)
    }
}

fn enter_netns(path: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).expect("open netns");
    // SAFETY: setns on a valid namespace fd; only this dedicated thread moves.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {}", path.display());
}
