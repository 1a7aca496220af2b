//! The console over a websocket, as virtctl speaks it (`plain.kubevirt.io`: binary frames
//! both ways, close 1000 at the end): one bridge for the API server's end (websocket ↔
//! the launcher's `console.sock`) and the client's (websocket ↔ the terminal).

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long a close waits for the other side's answer.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Copies websocket frames to the console stream and the stream's bytes to binary
/// frames, until either side ends; then closes the websocket with 1000 (normal), which
/// virtctl takes as a clean end. When the launcher hands the console to a newer client
/// it sends its notice first, so the old client sees why.
pub async fn bridge<S, C>(ws: WebSocketStream<S>, console: C)
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut frames) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(console);
    let mut buf = vec![0u8; 16 * 1024];
    let client_closed = loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => break false,
                Ok(n) => {
                    let frame = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if sink.send(frame).await.is_err() {
                        break true;
                    }
                }
            },
            m = frames.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    if wr.write_all(&b).await.is_err() {
                        break false;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    if wr.write_all(t.as_bytes()).await.is_err() {
                        break false;
                    }
                }
                // Pings are answered by the websocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break true,
            },
        }
    };
    let _ = wr.shutdown().await;
    if client_closed {
        // The close reply is queued by the websocket layer; this sends it.
        let _ = sink.close().await;
        return;
    }
    let bye = Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }));
    if sink.send(bye).await.is_ok() {
        // Gives the client the moment it takes to answer the close, so it sees a clean
        // close rather than a reset.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(m)) = frames.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
    }
}
