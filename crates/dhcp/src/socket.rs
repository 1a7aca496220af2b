//! The server's socket: UDP port 67 bound to one bridge, replies broadcast to port 68.

use crate::error::{socket, Result};
use crate::server::Server;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Serves `server` on `bridge` until `stop` is set (checked every 200 ms). Run it on a
/// thread that is in the pod's network namespace.
pub fn serve(bridge: &str, server: &mut Server, stop: &AtomicBool) -> Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(socket(bridge, "open a UDP socket"))?;
    // One server per bridge, all on port 67: each socket sees only its bridge.
    sock.set_reuse_address(true)
        .and_then(|()| sock.set_broadcast(true))
        .map_err(socket(bridge, "set socket options"))?;
    sock.bind_device(Some(bridge.as_bytes()))
        .map_err(socket(bridge, "bind to the bridge"))?;
    sock.bind(&SockAddr::from(SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        67,
    )))
    .map_err(socket(bridge, "bind port 67"))?;
    let to = SockAddr::from(SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    serve_datagrams(&sock, stop, |data, _| {
        server.handle(data).map(|r| (r, to.clone()))
    })
    .map_err(socket(bridge, "receive"))
}

/// Receives datagrams until `stop` (checked every 200 ms) and sends what `answer`
/// returns, to where it says.
pub(crate) fn serve_datagrams(
    sock: &Socket,
    stop: &AtomicBool,
    mut answer: impl FnMut(&[u8], SockAddr) -> Option<(Vec<u8>, SockAddr)>,
) -> std::io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        // SAFETY: recv_from initialised the first n bytes.
        let data: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        if let Some((reply, to)) = answer(&data, from) {
            let _ = sock.send_to(&reply, &to);
        }
    }
    Ok(())
}
