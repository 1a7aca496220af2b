//! A mocked Kubernetes API service on loopback, for tests and the bench (there is no API
//! server on these machines): answers GET for pods and NetworkAttachmentDefinitions and
//! merge-PATCH on pods, checks the bearer token, and records every request.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct State {
    pub objects: HashMap<String, Value>,
    pub token: String,
    pub requests: Vec<(String, String, String)>,
    pub patches: Vec<Value>,
}

/// Serves on 127.0.0.1 of the namespace at `netns` (where the plugin runs), plain HTTP.
pub fn start(state: Arc<Mutex<State>>, netns: &std::path::Path) -> u16 {
    listen(state, netns, None)
}

/// Like [`start`], over TLS with `tls`'s server certificate.
pub fn start_tls(state: Arc<Mutex<State>>, netns: &std::path::Path, tls: &TlsMaterial) -> u16 {
    listen(state, netns, Some(tls.server_config()))
}

fn listen(
    state: Arc<Mutex<State>>,
    netns: &std::path::Path,
    tls: Option<Arc<rustls::ServerConfig>>,
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
            let state = state.clone();
            let tls = tls.clone();
            std::thread::spawn(move || match tls {
                None => serve_conn(stream, &state),
                Some(cfg) => {
                    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                        return;
                    };
                    serve_conn(rustls::StreamOwned::new(conn, stream), &state)
                }
            });
        }
    });
    rx.recv().expect("mock API port")
}

fn serve_conn<S: Read + Write>(stream: S, state: &Arc<Mutex<State>>) {
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
        let (code, reply) = {
            let mut s = state.lock().expect("lock");
            s.requests
                .push((method.clone(), path.clone(), auth.clone()));
            if auth != format!("Bearer {}", s.token) {
                (401, serde_json::json!({"message": "Unauthorized"}))
            } else if method == "GET" {
                match s.objects.get(&path) {
                    Some(v) => (200, v.clone()),
                    None => (404, serde_json::json!({"message": "not found"})),
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
                        (200, obj.clone())
                    }
                    None => (404, serde_json::json!({"message": "not found"})),
                }
            }
        };
        let text = reply.to_string();
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
    pub fn generate() -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "oxivirt test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("server key");
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        Self {
            ca_pem: ca_cert.pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
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
        Arc::new(cfg)
    }
}

fn enter_netns(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).expect("open netns");
    // SAFETY: setns on a valid namespace fd; only this dedicated thread moves.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {}", path.display());
}
