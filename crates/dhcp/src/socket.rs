//! The server's socket: UDP port 67 bound to one bridge, replies broadcast to port 68.

use crate::server::Server;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Serves `server` on `bridge` until `stop` is set (checked every 200 ms). Run it on a
/// thread that is in the pod's network namespace.
pub fn serve(bridge: &str, server: &mut Server, stop: &AtomicBool) -> std::io::Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // One server per bridge, all on port 67: each socket sees only its bridge.
    sock.set_reuse_address(true)?;
    sock.set_broadcast(true)?;
    sock.bind_device(Some(bridge.as_bytes()))?;
    sock.bind(&SockAddr::from(SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        67,
    )))?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let to = SockAddr::from(SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // SAFETY: recv initialised the first n bytes.
        let data: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        if let Some(reply) = server.handle(&data) {
            let _ = sock.send_to(&reply, &to);
        }
    }
    Ok(())
}
