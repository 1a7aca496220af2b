//! Persistent tap devices through `/dev/net/tun`. The caller's thread must be in the
//! namespace the tap belongs in.

use crate::{Error, Result};
use std::os::fd::AsRawFd;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;

/// Creates tap `name` (persistent, no packet info, vnet header for virtio) in the calling
/// thread's namespace; an existing tap of that name is reused.
pub fn create(name: &str, multiqueue: bool) -> Result<()> {
    let err = |op: &'static str, source: std::io::Error| Error::Tap {
        name: name.to_string(),
        op,
        source,
    };
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(Error::TapName(name.to_string()));
    }
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| err("open /dev/net/tun", e))?;
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    let mut flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if multiqueue {
        flags |= IFF_MULTI_QUEUE;
    }
    req.ifr_ifru.ifru_flags = flags;
    // SAFETY: valid fd and ifreq; TUNSETIFF reads and writes the ifreq.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, &mut req) } != 0 {
        return Err(err("TUNSETIFF", std::io::Error::last_os_error()));
    }
    // SAFETY: valid fd; TUNSETPERSIST takes an integer argument.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETPERSIST as _, 1 as libc::c_ulong) } != 0 {
        return Err(err("TUNSETPERSIST", std::io::Error::last_os_error()));
    }
    Ok(())
}
