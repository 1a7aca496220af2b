//! The node relay: how the aggregated API server of a cluster reaches a launcher on some
//! node. The node agent (`oxivirt-node relay`, host network) serves, over mutual TLS,
//!
//! - `PUT /v1/launchers/<pod uid>/control`: one launcher control request (JSON), answered
//!   with the launcher's response;
//! - `GET /v1/launchers/<pod uid>/console` with `Upgrade: oxivirt-console`: after the
//!   `101`, the connection is the launcher's serial console, bytes both ways;
//! - `GET /healthz`.
//!
//! A launcher pod keeps its state dir at `<state root>/<pod uid>/` on its node (the
//! controller's cluster launcher pod). Only clients whose certificate the relay CA signed
//! for client use get in (the aggregated API server's); the relay's own certificate, for
//! server use only, cannot act as one. Errors are `{"message": …}` with a status: 400 a
//! bad request, 404 no such launcher, 502 the launcher did not answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use oxivirt_app_launcher::control;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream, UnixStream};

/// The name in the relay's serving certificate, which its clients verify (one certificate
/// for every node's relay: they are reached by pod IP).
pub const SERVER_NAME: &str = "oxivirt-node-relay";

/// The `Upgrade` token of the console stream.
pub const CONSOLE_UPGRADE: &str = "oxivirt-console";

/// The largest control request body taken.
const MAX_BODY: usize = 64 << 10;

/// How long a control request may take end to end (the launcher's own limit is 30 s).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(35);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the relay's client.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("connecting to the node relay at {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to the node relay at {addr}: timed out")]
    ConnectTimeout { addr: SocketAddr },
    #[error("talking to the node relay at {addr}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("the node relay at {addr} did not answer in time")]
    Timeout { addr: SocketAddr },
    #[error("the node relay at {addr} answered {status}: {message}")]
    Refused {
        addr: SocketAddr,
        status: u16,
        message: String,
    },
    #[error("the node relay at {addr} sent a response that is not the launcher's")]
    Decode {
        addr: SocketAddr,
        #[source]
        source: serde_json::Error,
    },
}

// ---- the server (on each node) ----------------------------------------------------------

type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn refuse(status: StatusCode, message: String) -> Response<Body> {
    reply(
        status,
        serde_json::to_vec(&json!({ "message": message })).unwrap_or_default(),
    )
}

/// A pod uid, as a directory name: a UUID's characters and nothing that walks a path.
fn pod_dir(root: &Path, uid: &str) -> Option<PathBuf> {
    let ok = !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then(|| root.join(uid))
}

/// Serves the relay on `listener` until the task is dropped. Each connection is accepted
/// with the TLS configuration `tls` holds then (its certificate renewed without a restart).
pub async fn serve(
    listener: TcpListener,
    tls: tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>,
    state_root: PathBuf,
) {
    let root = Arc::new(state_root);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.borrow().clone());
        let root = root.clone();
        tokio::spawn(async move {
            // The verifier requires a client certificate: no handshake, no request.
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| handle(root.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn handle(
    root: Arc<PathBuf>,
    req: hyper::Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let resp = match (req.method(), segs.as_slice()) {
        (&Method::GET, ["healthz"]) => reply(StatusCode::OK, b"{\"status\":\"ok\"}".to_vec()),
        (&Method::PUT, ["v1", "launchers", uid, "control"]) => match pod_dir(&root, uid) {
            None => refuse(StatusCode::BAD_REQUEST, format!("not a pod uid: {uid:?}")),
            Some(dir) => control_request(dir, req).await,
        },
        (&Method::GET, ["v1", "launchers", uid, "console"]) => match pod_dir(&root, uid) {
            None => refuse(StatusCode::BAD_REQUEST, format!("not a pod uid: {uid:?}")),
            Some(dir) => console_request(dir, req).await,
        },
        (_, ["v1", "launchers", _, "control" | "console"]) => refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not served on {path}", req.method()),
        ),
        _ => refuse(StatusCode::NOT_FOUND, format!("no such path: {path}")),
    };
    Ok(resp)
}

fn no_launcher(dir: &Path) -> Response<Body> {
    refuse(
        StatusCode::NOT_FOUND,
        format!("no launcher on this node at {}", dir.display()),
    )
}

async fn control_request(dir: PathBuf, req: hyper::Request<Incoming>) -> Response<Body> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let request: control::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("not a launcher control request: {e}"),
            )
        }
    };
    if !dir.is_dir() {
        return no_launcher(&dir);
    }
    let sock = dir.join("control.sock");
    let answer = tokio::task::spawn_blocking(move || control::request(&sock, &request)).await;
    match answer {
        Ok(Ok(r)) => reply(StatusCode::OK, serde_json::to_vec(&r).unwrap_or_default()),
        Ok(Err(e)) => refuse(
            StatusCode::BAD_GATEWAY,
            format!("the launcher at {} did not answer: {e}", dir.display()),
        ),
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the launcher request did not finish: {e}"),
        ),
    }
}

async fn console_request(dir: PathBuf, req: hyper::Request<Incoming>) -> Response<Body> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if !header("upgrade").eq_ignore_ascii_case(CONSOLE_UPGRADE) {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("the console is a stream: send Upgrade: {CONSOLE_UPGRADE}"),
        );
    }
    if !dir.is_dir() {
        return no_launcher(&dir);
    }
    // Dialled before the 101, so a launcher that is gone is a status, not a dead stream.
    let sock = dir.join("console.sock");
    let mut launcher = match UnixStream::connect(&sock).await {
        Ok(s) => s,
        Err(e) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                format!("dialing the launcher's console {}: {e}", sock.display()),
            )
        }
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let mut client = TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut launcher).await;
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut().insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static(CONSOLE_UPGRADE),
    );
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    r
}

// ---- the client (in the aggregated API server) ------------------------------------------

/// The aggregated API server's side: one connection per request (console streams are
/// long-lived and control requests rare).
#[derive(Clone)]
pub struct RelayClient {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayClient")
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

impl RelayClient {
    /// A client trusting the relay CA and presenting the API server's client certificate.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        RelayClient {
            tls: tokio_rustls::TlsConnector::from(tls),
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Sender, RelayError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| RelayError::ConnectTimeout { addr })?
            .map_err(|source| RelayError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).map_err(|e| {
            RelayError::Connect {
                addr,
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            }
        })?;
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(name, tcp))
            .await
            .map_err(|_| RelayError::ConnectTimeout { addr })?
            .map_err(|source| RelayError::Connect { addr, source })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|source| RelayError::Http { addr, source })?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    async fn refused(addr: SocketAddr, resp: Response<Incoming>) -> RelayError {
        let status = resp.status().as_u16();
        let body = match Limited::new(resp.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        RelayError::Refused {
            addr,
            status,
            message,
        }
    }

    /// One control request to the launcher of pod `uid` through the relay at `addr`.
    pub async fn control(
        &self,
        addr: SocketAddr,
        uid: &str,
        req: &control::Request,
    ) -> Result<control::Response, RelayError> {
        let work = async {
            let mut sender = self.connect(addr).await?;
            let body = serde_json::to_vec(req).unwrap_or_default();
            let request = hyper::Request::put(format!("/v1/launchers/{uid}/control"))
                .header(hyper::header::HOST, SERVER_NAME)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| RelayError::Refused {
                    addr,
                    status: 0,
                    message: e.to_string(),
                })?;
            let resp = sender
                .send_request(request)
                .await
                .map_err(|source| RelayError::Http { addr, source })?;
            if resp.status() != StatusCode::OK {
                return Err(Self::refused(addr, resp).await);
            }
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| RelayError::Refused {
                    addr,
                    status: 200,
                    message: format!("reading the answer: {e}"),
                })?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|source| RelayError::Decode { addr, source })
        };
        tokio::time::timeout(CONTROL_TIMEOUT, work)
            .await
            .map_err(|_| RelayError::Timeout { addr })?
    }

    /// The serial console of the launcher of pod `uid`, through the relay at `addr`.
    pub async fn console(
        &self,
        addr: SocketAddr,
        uid: &str,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, RelayError> {
        let mut sender = self.connect(addr).await?;
        let request = hyper::Request::get(format!("/v1/launchers/{uid}/console"))
            .header(hyper::header::HOST, SERVER_NAME)
            .header(hyper::header::CONNECTION, "Upgrade")
            .header(hyper::header::UPGRADE, CONSOLE_UPGRADE)
            .body(Full::new(Bytes::new()))
            .map_err(|e| RelayError::Refused {
                addr,
                status: 0,
                message: e.to_string(),
            })?;
        let resp = tokio::time::timeout(CONNECT_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| RelayError::Timeout { addr })?
            .map_err(|source| RelayError::Http { addr, source })?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(Self::refused(addr, resp).await);
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|source| RelayError::Http { addr, source })?;
        Ok(TokioIo::new(upgraded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_pod_uid_names_a_launcher_dir() {
        let root = Path::new("/r");
        assert_eq!(
            pod_dir(root, "0b5c7f3e-1b2a-4c4d-9e8f-0123456789ab"),
            Some(PathBuf::from("/r/0b5c7f3e-1b2a-4c4d-9e8f-0123456789ab"))
        );
        for bad in ["", "..", ".", "a/b", "a b", "%2e%2e", &"a".repeat(65)] {
            assert_eq!(pod_dir(root, bad), None, "{bad:?}");
        }
    }
}
