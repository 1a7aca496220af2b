//! The transport: TLS on a TCP listener, HTTP/1.1 and HTTP/2, client-certificate
//! authentication (no anonymous access but to the health checks), and the mapping of
//! HTTP requests and replies onto [`crate::handler`]'s.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::error::ApiError;
use crate::handler::{Api, Reply, Request};

type Body = BoxBody<Bytes, Infallible>;

/// Decodes `%XX` and `+` of a query component (a bad escape stays as written).
fn decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            (b'+', _, _) => out.push(b' '),
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn full(status: u16, body: Vec<u8>, warnings: &[String]) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    for w in warnings {
        // The API server's `Warning: 299 - "<text>"`, which kubectl prints.
        let text = format!("299 - {:?}", w);
        if let Ok(v) = hyper::header::HeaderValue::from_str(&text) {
            h.append("warning", v);
        }
    }
    r
}

const HEALTH: &[&str] = &["/healthz", "/livez", "/readyz"];

async fn serve_request(
    api: Api,
    authenticated: bool,
    req: hyper::Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    if !authenticated && !HEALTH.contains(&path.as_str()) {
        return Ok(to_response(Reply::error(&ApiError::Unauthorized)));
    }
    // The console is a websocket: its request is upgraded, not read as a body.
    if let Some((ns, name)) = crate::subresources::console_target(&path) {
        return Ok(
            match crate::subresources::console(&api, &ns, &name, req).await {
                Ok(switching) => switching.map(|()| Full::new(Bytes::new()).boxed()),
                Err(reply) => to_response(reply),
            },
        );
    }
    let request = match read_request(path, req).await {
        Ok(r) => r,
        Err(e) => return Ok(to_response(Reply::error(&e))),
    };
    Ok(to_response(api.handle(request).await))
}

/// The handler's view of a request: its method, path, query, media types and body.
async fn read_request(path: String, req: hyper::Request<Incoming>) -> Result<Request, ApiError> {
    let header = |n: hyper::header::HeaderName| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (accept, content_type) = (
        header(hyper::header::ACCEPT),
        header(hyper::header::CONTENT_TYPE),
    );
    let method = req.method().as_str().to_string();
    let query = query(req.uri().query());
    let body = read_body(req.into_body()).await?;
    Ok(Request {
        method,
        path,
        query,
        accept,
        content_type,
        body,
    })
}

/// How much of a too-large body is read and dropped so the client, still sending, gets
/// the 413 instead of a broken pipe; beyond it the connection is cut.
const DRAIN_LIMIT: usize = 64 << 20;

/// The request body, at most [`crate::admission::MAX_OBJECT_BYTES`].
async fn read_body(mut body: Incoming) -> Result<Bytes, ApiError> {
    let limit = crate::admission::MAX_OBJECT_BYTES;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(ApiError::BadRequest(
                "the request body was cut short".into(),
            ));
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= limit {
            buf.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(ApiError::TooLarge { limit });
    }
    Ok(buf.freeze())
}

fn to_response(reply: Reply) -> Response<Body> {
    match reply {
        Reply::Json {
            status,
            body,
            warnings,
        } => full(status, body, &warnings),
        Reply::Other {
            status,
            content_type,
            body,
        } => {
            let mut r = full(status, body, &[]);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(content_type),
            );
            r
        }
        Reply::Stream(rx) => {
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            let mut r = Response::new(StreamBody::new(stream).boxed());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
    }
}

/// The client certificate a connection presented (verified by the TLS configuration's
/// client verifier), if any.
type Peer = Option<Arc<rustls::pki_types::CertificateDer<'static>>>;

/// Accepts TLS connections on `listener` and serves each request with `handle`, which
/// learns the connection's client certificate; HTTP/1.1 and HTTP/2, upgrades allowed.
async fn accept_loop<H, F>(listener: TcpListener, tls: Arc<rustls::ServerConfig>, handle: H)
where
    H: Fn(Peer, hyper::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, handle) = (acceptor.clone(), handle.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let peer: Peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(c.clone().into_owned()));
            let service = hyper::service::service_fn(move |req| handle(peer.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Serves `api` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, api: Api) {
    accept_loop(listener, tls, move |peer: Peer, req| {
        serve_request(api.clone(), peer.is_some(), req)
    })
    .await
}

/// Who an aggregated API server takes requests from: the front proxy (the cluster's API
/// server), known by its client certificate, speaking for the user it names in a header.
/// The configuration of `kube-system/extension-apiserver-authentication`.
#[derive(Debug, Clone)]
pub struct FrontProxy {
    /// The common names a front-proxy certificate may have; empty takes any the
    /// requestheader CA signed (the TLS configuration verifies the chain).
    pub allowed_names: Vec<String>,
    /// The headers that carry the user's name (`X-Remote-User`).
    pub username_headers: Vec<String>,
}

impl FrontProxy {
    /// The user a request speaks for, when it came through the front proxy.
    fn user(&self, peer: &Peer, headers: &hyper::HeaderMap) -> Option<String> {
        let cert = peer.as_ref()?;
        if !self.allowed_names.is_empty() {
            let cn = crate::pki::common_name(cert)?;
            if !self.allowed_names.contains(&cn) {
                return None;
            }
        }
        self.username_headers.iter().find_map(|h| {
            headers
                .get(h.as_str())
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        })
    }
}

/// Serves virtctl's `subresources.kubevirt.io` group through `backend`, as an aggregated
/// API server behind the cluster's (an APIService): every request but the health checks
/// must come through the front proxy. The cluster's API server authorized the user for
/// the subresource before proxying it; the front-proxy certificate proves it did.
pub async fn serve_aggregated<B>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    backend: Arc<B>,
    front: Arc<FrontProxy>,
) where
    B: crate::subresources::Backend + 'static,
{
    accept_loop(listener, tls, move |peer: Peer, req| {
        let (backend, front) = (backend.clone(), front.clone());
        async move {
            let path = req.uri().path().to_string();
            if HEALTH.contains(&path.as_str()) {
                return Ok(full(200, b"ok".to_vec(), &[]));
            }
            if front.user(&peer, req.headers()).is_none() {
                return Ok(to_response(Reply::error(&ApiError::Unauthorized)));
            }
            if let Some((ns, name)) = crate::subresources::console_target(&path) {
                return Ok(
                    match crate::subresources::console(&*backend, &ns, &name, req).await {
                        Ok(switching) => switching.map(|()| Full::new(Bytes::new()).boxed()),
                        Err(reply) => to_response(reply),
                    },
                );
            }
            let request = match read_request(path.clone(), req).await {
                Ok(r) => r,
                Err(e) => return Ok(to_response(Reply::error(&e))),
            };
            let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let reply = match segs.as_slice() {
                // The aggregator's discovery of this server: its one group.
                ["apis"] if request.method == "GET" => {
                    let mut g = crate::subresources::group_entry();
                    g["kind"] = serde_json::json!("APIGroup");
                    g["apiVersion"] = serde_json::json!("v1");
                    Reply::Json {
                        status: 200,
                        body: serde_json::to_vec(&serde_json::json!({
                            "kind": "APIGroupList", "apiVersion": "v1", "groups": [g],
                        }))
                        .unwrap_or_default(),
                        warnings: Vec::new(),
                    }
                }
                _ => crate::subresources::route(&*backend, &request, &segs)
                    .await
                    .unwrap_or_else(|| Reply::error(&ApiError::NoRoute)),
            };
            Ok(to_response(reply))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_proxy_is_its_certificate_and_names_the_user() {
        let ca = crate::pki::Ca::generate("front-proxy-ca").expect("CA");
        let der = |cn: &str| -> Peer {
            use rustls::pki_types::pem::PemObject as _;
            let pem = ca
                .issue(cn, &[], crate::pki::Usage::Client)
                .expect("cert")
                .cert_pem;
            Some(Arc::new(
                rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("DER"),
            ))
        };
        let mut headers = hyper::HeaderMap::new();
        headers.insert("x-remote-user", "alice".parse().expect("header"));
        let front = FrontProxy {
            allowed_names: vec!["front-proxy-client".into()],
            username_headers: vec!["X-Remote-User".into()],
        };
        let proxy = der("front-proxy-client");
        assert_eq!(front.user(&proxy, &headers).as_deref(), Some("alice"));
        assert_eq!(front.user(&der("someone-else"), &headers), None);
        assert_eq!(front.user(&None, &headers), None);
        assert_eq!(front.user(&proxy, &hyper::HeaderMap::new()), None);
        let mut empty = hyper::HeaderMap::new();
        empty.insert("x-remote-user", "".parse().expect("header"));
        assert_eq!(front.user(&proxy, &empty), None);
        // No allowed names: any certificate the TLS layer verified.
        let any = FrontProxy {
            allowed_names: Vec::new(),
            ..front
        };
        assert_eq!(
            any.user(&der("someone-else"), &headers).as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn query_decoding() {
        let q = query(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&x"));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["watch"], "1");
        assert_eq!(q["x"], "");
        assert_eq!(decode("%zz%4"), "%zz%4");
    }
}
