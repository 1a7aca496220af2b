//! The part of gRPC the device plugin API needs, over HTTP/2 (hyper): length-prefixed
//! messages, `grpc-status` trailers, unary calls and one server stream. Nothing else of
//! gRPC (compression, deadlines, metadata) is used by the kubelet here.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use std::convert::Infallible;

/// gRPC status codes used here.
pub mod code {
    pub const OK: u32 = 0;
    pub const INVALID_ARGUMENT: u32 = 3;
    pub const FAILED_PRECONDITION: u32 = 9;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
}

/// What went wrong in a gRPC exchange.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("HTTP/2")]
    Http(#[source] hyper::Error),
    #[error("a gRPC message: {0}")]
    Framing(&'static str),
    #[error("a gRPC message is not the expected protobuf")]
    Decode(#[source] prost::DecodeError),
    /// The peer answered with a gRPC error status.
    #[error("gRPC status {code}: {message}")]
    Status { code: u32, message: String },
}

/// One message with its 5-byte prefix (not compressed, 32-bit length).
pub fn frame(msg: &impl prost::Message) -> Bytes {
    let len = msg.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer with the room reserved cannot fail.
    let _ = msg.encode(&mut out);
    out.freeze()
}

/// The first message of a request or response body.
pub fn unframe<M: prost::Message + Default>(mut body: Bytes) -> Result<M, GrpcError> {
    if body.len() < 5 {
        return Err(GrpcError::Framing("shorter than its 5-byte prefix"));
    }
    if body.get_u8() != 0 {
        return Err(GrpcError::Framing(
            "compressed, and no compression was agreed",
        ));
    }
    let len = body.get_u32() as usize;
    if body.len() < len {
        return Err(GrpcError::Framing("shorter than its length"));
    }
    M::decode(body.slice(..len)).map_err(GrpcError::Decode)
}

/// The body type of every response here: frames from a channel (a stream) or one
/// message, then the trailers.
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn trailers(status: u32, message: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from(status));
    if !message.is_empty() {
        // grpc-message is percent-encoded; printable ASCII other than `%` goes as is.
        let encoded: String = message
            .bytes()
            .map(|b| {
                if (0x20..0x7f).contains(&b) && b != b'%' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            t.insert("grpc-message", v);
        }
    }
    t
}

fn grpc_response(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    r
}

/// A unary answer: the message, then `grpc-status: 0`.
pub fn ok(msg: &impl prost::Message) -> Response<Body> {
    let frames = futures_stream(vec![
        Frame::data(frame(msg)),
        Frame::trailers(trailers(code::OK, "")),
    ]);
    grpc_response(frames)
}

/// An error answer: no message, the status in the trailers.
pub fn error(status: u32, message: &str) -> Response<Body> {
    grpc_response(futures_stream(vec![Frame::trailers(trailers(
        status, message,
    ))]))
}

/// A server stream: every message sent on the returned channel is framed onto the
/// response; the stream ends (status OK) when the sender is dropped.
pub fn stream() -> (tokio::sync::mpsc::Sender<Bytes>, Response<Body>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let (ftx, frx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                b = rx.recv() => match b {
                    Some(b) => {
                        if ftx.send(Ok(Frame::data(b))).await.is_err() {
                            return;
                        }
                    }
                    None => break,
                },
                // The peer went away: dropping `rx` tells the producer at once.
                () = ftx.closed() => return,
            }
        }
        let _ = ftx.send(Ok(Frame::trailers(trailers(code::OK, "")))).await;
    });
    let body = StreamBody::new(ReceiverStream(frx));
    (tx, grpc_response(BodyExt::boxed(body)))
}

fn futures_stream(frames: Vec<Frame<Bytes>>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(frames.len().max(1));
    for f in frames {
        // The channel has room for every frame.
        let _ = tx.try_send(Ok(f));
    }
    BodyExt::boxed(StreamBody::new(ReceiverStream(rx)))
}

/// A tokio receiver as a `Stream` (tokio-stream's wrapper, without the crate).
struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_util::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// Reads a request's whole body (a unary call's one message).
pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, GrpcError> {
    req.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(GrpcError::Http)
}

/// A unary call's request: POST to `/<service>/<method>` with the framed message.
pub fn request(path: &str, msg: &impl prost::Message) -> Request<Full<Bytes>> {
    let mut r = Request::new(Full::new(frame(msg)));
    *r.method_mut() = http::Method::POST;
    *r.uri_mut() = http::Uri::builder()
        .scheme("http")
        .authority("localhost")
        .path_and_query(path)
        .build()
        .unwrap_or_default();
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert("te", HeaderValue::from_static("trailers"));
    r
}

/// The status of a finished call: from the trailers, or from the headers of a
/// trailers-only answer.
pub fn status(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Result<(), GrpcError> {
    let from = |h: &HeaderMap| -> Option<(u32, String)> {
        let code = h.get("grpc-status")?.to_str().ok()?.parse().ok()?;
        let message = h
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Some((code, message))
    };
    match trailers.and_then(from).or_else(|| from(headers)) {
        Some((0, _)) => Ok(()),
        Some((code, message)) => Err(GrpcError::Status { code, message }),
        None => Err(GrpcError::Framing("no grpc-status in the answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;

    #[test]
    fn messages_round_trip_through_their_frames() {
        let m = proto::RegisterRequest {
            version: proto::VERSION.into(),
            endpoint: "kvm.sock".into(),
            resource_name: "devices.kubevirt.io/kvm".into(),
            options: Some(proto::DevicePluginOptions::default()),
        };
        let f = frame(&m);
        assert_eq!(f[0], 0);
        assert_eq!(
            u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize,
            f.len() - 5
        );
        let back: proto::RegisterRequest = unframe(f.clone()).expect("decode");
        assert_eq!(back, m);
        assert!(matches!(
            unframe::<proto::Empty>(f.slice(..3)),
            Err(GrpcError::Framing(_))
        ));
        let mut compressed = f.to_vec();
        compressed[0] = 1;
        assert!(unframe::<proto::RegisterRequest>(Bytes::from(compressed)).is_err());
    }

    #[test]
    fn status_comes_from_trailers_or_a_trailers_only_answer() {
        let t = trailers(code::UNIMPLEMENTED, "no such method: 100%");
        assert_eq!(
            t.get("grpc-message").and_then(|v| v.to_str().ok()),
            Some("no such method: 100%25")
        );
        assert!(matches!(
            status(&HeaderMap::new(), Some(&t)),
            Err(GrpcError::Status { code: 12, .. })
        ));
        assert!(status(&trailers(0, ""), None).is_ok());
        assert!(status(&HeaderMap::new(), None).is_err());
    }
}
