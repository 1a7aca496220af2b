//! Multus's thick-plugin protocol: a `multus-shim` CNI binary hands each call to a
//! long-lived daemon over a root-only unix socket (`<socketDir>/multus.sock`), as JSON in
//! an HTTP/1.1 `POST /cni` (`{"env": {CNI_*…}, "config": <stdin, base64>}`), and gets
//! `{"Result": …}` back, or an error status with the error as the body. The daemon keeps
//! its API connections warm, so a pod's ADD pays no TLS handshake and no process start of
//! the meta plugin. This module owns the wire format on both sides; the shim and the
//! daemon themselves live in the binary.

use crate::error::{Error, Result};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The socket's file name in its directory, as Multus names it.
pub const SOCKET_NAME: &str = "multus.sock";
/// Where Multus's shim looks when its config names no `socketDir`.
pub const DEFAULT_SOCKET_DIR: &str = "/run/multus/";
/// The CNI endpoint and the liveness endpoint, Multus's paths.
pub const CNI_PATH: &str = "/cni";
pub const HEALTH_PATH: &str = "/healthz";
/// A request larger than this is refused: a CNI config with its env is a few KiB.
pub const MAX_BODY: usize = 1 << 20;

/// The fields of the shim's own CNI config (`"type": "multus-shim"`) it reads itself; the
/// whole config goes to the daemon.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ShimConfig {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(rename = "socketDir", alias = "daemonSocketDir", default)]
    pub socket_dir: Option<PathBuf>,
}

impl ShimConfig {
    pub fn parse(stdin: &[u8]) -> Result<Self> {
        serde_json::from_slice(stdin).map_err(shim_config_error)
    }

    /// `<socketDir>/multus.sock`.
    pub fn socket(&self) -> PathBuf {
        self.socket_dir
            .as_deref()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new(DEFAULT_SOCKET_DIR))
            .join(SOCKET_NAME)
    }
}

fn shim_config_error(source: serde_json::Error) -> Error {
    Error::Spec(oxivirt_cni_spec::Error::Json {
        what: "multus-shim config".into(),
        path: String::new(),
        source,
    })
}

/// One CNI call, as the shim sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The `CNI_*` environment of the call.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The CNI config from stdin; Go encodes bytes as base64, so does this.
    #[serde(default, with = "b64")]
    pub config: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// The daemon's answer to a successful call.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    #[serde(rename = "Result", default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// What the daemon said to a call.
#[derive(Debug)]
pub enum Answer {
    Ok(Response),
    /// An error status: the body is the daemon's error (a CNI error object from ours).
    Refused {
        status: u16,
        body: String,
    },
}

/// Sends one request to the daemon at `socket` and reads its answer. No timeout: the
/// daemon runs the delegates, and the runtime bounds the whole call.
pub fn post(socket: &Path, request: &Request) -> Result<Answer> {
    let unreachable = |source| Error::DaemonUnreachable {
        socket: socket.to_path_buf(),
        source,
    };
    let body = serde_json::to_vec(request).map_err(|e| Error::DaemonProtocol {
        socket: socket.to_path_buf(),
        reason: format!("request not encodable: {e}"),
    })?;
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    let head = format!(
        "POST {CNI_PATH} HTTP/1.1\r\nHost: dummy\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(&body))
        .map_err(unreachable)?;
    let mut reader = BufReader::new(stream);
    let (status, body) = read_response(&mut reader).map_err(|e| match e {
        HttpError::Io(source) => unreachable(source),
        other => Error::DaemonProtocol {
            socket: socket.to_path_buf(),
            reason: other.to_string(),
        },
    })?;
    if status != 200 {
        return Ok(Answer::Refused {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    if body.is_empty() {
        return Ok(Answer::Ok(Response::default()));
    }
    serde_json::from_slice(&body)
        .map(Answer::Ok)
        .map_err(|e| Error::DaemonProtocol {
            socket: socket.to_path_buf(),
            reason: format!("answer is not a Multus response: {e}"),
        })
}

/// What is wrong with an HTTP message on the socket.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("malformed HTTP {0}")]
    Malformed(&'static str),
    #[error("a body of {0} bytes is over the {MAX_BODY}-byte limit")]
    TooLarge(usize),
    #[error("a body without Content-Length (chunked bodies are not supported)")]
    NoLength,
}

impl HttpError {
    /// The status the daemon answers it with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::TooLarge(_) => 413,
            HttpError::NoLength => 411,
            _ => 400,
        }
    }
}

/// One request as the daemon reads it.
#[derive(Debug)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// The headers after a start line: `Content-Length` and whether the body is chunked.
fn read_headers(r: &mut impl BufRead) -> std::result::Result<(Option<usize>, bool), HttpError> {
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if r.by_ref().take(8192).read_line(&mut line)? == 0 {
            return Err(HttpError::Malformed("headers (connection closed)"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok((length, chunked));
        }
        let (name, value) = line.split_once(':').ok_or(HttpError::Malformed("header"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse()
                    .map_err(|_| HttpError::Malformed("Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = !value.eq_ignore_ascii_case("identity");
        }
    }
}

fn read_body(
    r: &mut impl BufRead,
    length: Option<usize>,
) -> std::result::Result<Vec<u8>, HttpError> {
    let n = length.unwrap_or(0);
    if n > MAX_BODY {
        return Err(HttpError::TooLarge(n));
    }
    let mut body = vec![0; n];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Reads one request (start line, headers, a `Content-Length` body).
pub fn read_request(r: &mut impl BufRead) -> std::result::Result<HttpRequest, HttpError> {
    let mut start = String::new();
    r.by_ref().take(8192).read_line(&mut start)?;
    let mut parts = start.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed("request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("version"));
    }
    let (method, path) = (method.to_string(), path.to_string());
    let (length, chunked) = read_headers(r)?;
    if chunked || (length.is_none() && method == "POST") {
        return Err(HttpError::NoLength);
    }
    let body = read_body(r, length)?;
    Ok(HttpRequest { method, path, body })
}

/// Reads one response: the status and the body (by `Content-Length`, else to the end).
fn read_response(r: &mut impl BufRead) -> std::result::Result<(u16, Vec<u8>), HttpError> {
    let mut start = String::new();
    r.by_ref().take(8192).read_line(&mut start)?;
    let status = start
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(HttpError::Malformed("status line"))?;
    let (length, chunked) = read_headers(r)?;
    if chunked {
        return Err(HttpError::NoLength);
    }
    let body = match length {
        Some(_) => read_body(r, length)?,
        None => {
            let mut b = Vec::new();
            r.by_ref().take(MAX_BODY as u64).read_to_end(&mut b)?;
            b
        }
    };
    Ok((status, body))
}

/// Writes one response and closes the exchange (`Connection: close`).
pub fn write_response(
    w: &mut impl Write,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        _ => "Internal Server Error",
    };
    write!(
        w,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )?;
    w.write_all(body)?;
    w.flush()
}

/// The `CNI_*` variables of `vars` (the shim's own environment), for a [`Request`].
pub fn cni_env(vars: impl Iterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.filter(|(k, _)| k.starts_with("CNI_")).collect()
}

/// The daemon's `--config` over the shim's config: every top-level field of the daemon's
/// file wins (as Multus's daemon config does), the rest of the shim's config stays.
pub fn overlay(shim: &[u8], daemon: &serde_json::Value) -> Result<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(shim).map_err(shim_config_error)?;
    if let (Some(out), Some(over)) = (v.as_object_mut(), daemon.as_object()) {
        for (k, val) in over {
            out.insert(k.clone(), val.clone());
        }
    }
    // The delegating config is the meta plugin's own from here on.
    if v.get("type").and_then(|t| t.as_str()) == Some("multus-shim") {
        v["type"] = "multus".into();
    }
    Ok(serde_json::to_vec(&v).unwrap_or_default())
}

/// Encodes bytes as the protocol does (for tests and tools that build requests by hand).
pub fn encode_config(config: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_multus_json_with_base64_config() {
        let req = Request {
            env: cni_env(
                [
                    ("CNI_COMMAND".to_string(), "ADD".to_string()),
                    ("PATH".to_string(), "/bin".to_string()),
                ]
                .into_iter(),
            ),
            config: br#"{"type":"multus-shim"}"#.to_vec(),
        };
        let wire = serde_json::to_value(&req).expect("encode");
        assert_eq!(
            wire,
            serde_json::json!({
                "env": {"CNI_COMMAND": "ADD"},
                "config": encode_config(br#"{"type":"multus-shim"}"#),
            })
        );
        let back: Request = serde_json::from_value(wire).expect("decode");
        assert_eq!(back, req);
        let bad = serde_json::from_str::<Request>(r#"{"config": "not base64!"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn the_socket_is_multus_default_unless_the_config_names_a_dir() {
        let c = ShimConfig::parse(br#"{"type":"multus-shim"}"#).expect("parse");
        assert_eq!(c.socket(), Path::new("/run/multus/multus.sock"));
        let c = ShimConfig::parse(br#"{"socketDir":"/tmp/x"}"#).expect("parse");
        assert_eq!(c.socket(), Path::new("/tmp/x/multus.sock"));
        let e = ShimConfig::parse(b"{").expect_err("bad JSON");
        assert!(e.to_string().contains("multus-shim config"), "{e}");
    }

    #[test]
    fn http_requests_and_responses_round_trip_and_bad_ones_are_named() {
        let raw = b"POST /cni HTTP/1.1\r\nHost: dummy\r\nContent-Length: 2\r\n\r\n{}";
        let r = read_request(&mut &raw[..]).expect("request");
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/cni"));
        assert_eq!(r.body, b"{}");

        let chunked =
            b"POST /cni HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        let e = read_request(&mut &chunked[..]).expect_err("chunked");
        assert_eq!(e.status(), 411);
        let big = format!(
            "POST /cni HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(
            read_request(&mut big.as_bytes())
                .expect_err("too big")
                .status(),
            413
        );
        let e = read_request(&mut &b"hello\r\n\r\n"[..]).expect_err("garbage");
        assert_eq!(e.status(), 400);

        let mut out = Vec::new();
        write_response(&mut out, 500, "application/json", b"{\"code\":11}").expect("write");
        let (status, body) = read_response(&mut &out[..]).expect("response");
        assert_eq!(status, 500);
        assert_eq!(body, b"{\"code\":11}");
    }

    #[test]
    fn the_daemon_config_wins_and_the_shim_type_becomes_multus() {
        let shim = br#"{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus-shim","socketDir":"/run/multus","kubeconfig":"/etc/a"}"#;
        let daemon =
            serde_json::json!({"kubeconfig": "/etc/b", "clusterNetwork": "k8s-pod-network"});
        let v: serde_json::Value =
            serde_json::from_slice(&overlay(shim, &daemon).expect("overlay")).expect("json");
        assert_eq!(v["type"], "multus");
        assert_eq!(v["kubeconfig"], "/etc/b");
        assert_eq!(v["clusterNetwork"], "k8s-pod-network");
        assert_eq!(v["name"], "multus-cni-network");
    }
}
