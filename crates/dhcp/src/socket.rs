//! The server's socket: UDP port 67 bound to one bridge, replies broadcast to port 68.

use crate::error::{socket, Result};
use crate::server::{Counters, Server};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Serves `server` on `bridge` until `stop` is set (checked every 200 ms). Run it on a
/// thread that is in the pod's network namespace.
pub fn serve(bridge: &str, server: &mut Server, stop: &AtomicBool) -> Result<()> {
    serve_observed(bridge, server, stop, |_| {})
}

/// [`serve`], calling `observe` with the counters after each datagram is handled and
/// before its reply is sent (so a caller can tell when a lease was acknowledged; it must
/// be quick, the guest waits for the reply).
pub fn serve_observed(
    bridge: &str,
    server: &mut Server,
    stop: &AtomicBool,
    mut observe: impl FnMut(&Counters),
) -> Result<()> {
    let sock = bridge_socket(bridge, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67).into())?;
    sock.set_broadcast(true)
        .map_err(socket(bridge, "allow broadcasts"))?;
    let to = SockAddr::from(SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    serve_datagrams(&sock, stop, |data, _| {
        let reply = server.handle(data);
        observe(&server.counters);
        reply.map(|r| (r, to.clone()))
    })
    .map_err(socket(bridge, "receive"))
}

/// A UDP socket on `addr` that sees only `bridge`'s traffic. Each binding runs its own
/// server on the same well-known port, one per bridge, hence the shared address.
pub(crate) fn bridge_socket(bridge: &str, addr: SocketAddr) -> Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(socket(bridge, "open a UDP socket"))?;
    sock.set_reuse_address(true)
        .and_then(|()| match addr.is_ipv6() {
            true => sock.set_only_v6(true),
            false => Ok(()),
        })
        .map_err(socket(bridge, "set socket options"))?;
    sock.bind_device(Some(bridge.as_bytes()))
        .map_err(socket(bridge, "bind to the bridge"))?;
    sock.bind(&addr.into())
        .map_err(socket(bridge, "bind its port"))?;
    Ok(sock)
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
