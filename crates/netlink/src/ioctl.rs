//! Interface ioctls (`SIOCGIF*`) on the netlink socket: a link's index, flags, MAC and MTU
//! without a netlink round trip through the rtnl lock, which is much cheaper while the
//! kernel is busy with link events.

use crate::error::{Error, Result};
use crate::handle::Handle;

/// What the interface ioctls tell about a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfInfo {
    pub index: u32,
    pub up: bool,
    pub promisc: bool,
    pub mac: [u8; 6],
    pub mtu: u32,
}

const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCGIFMTU: libc::c_ulong = 0x8921;
const SIOCGIFHWADDR: libc::c_ulong = 0x8927;
const SIOCGIFINDEX: libc::c_ulong = 0x8933;

impl Handle {
    /// Index, flags, MAC and MTU of `name` in this handle's namespace, by ioctl on the
    /// netlink socket; `None` if there is no such link.
    pub fn if_info(&self, name: &str) -> Result<Option<IfInfo>> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Ok(None);
        }
        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        let fd = self.raw_fd();
        let call = |cmd: libc::c_ulong, req: &mut libc::ifreq| -> Result<bool> {
            // SAFETY: a valid socket fd and a properly sized, initialised ifreq.
            let rc = unsafe { libc::ioctl(fd, cmd as _, req as *mut libc::ifreq) };
            if rc == 0 {
                return Ok(true);
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENODEV) {
                return Ok(false);
            }
            Err(Error::kernel(format!("query link {name}"), e))
        };
        if !call(SIOCGIFINDEX, &mut req)? {
            return Ok(None);
        }
        // SAFETY: the kernel filled the union member this request returns.
        let index = unsafe { req.ifr_ifru.ifru_ifindex } as u32;
        if !call(SIOCGIFFLAGS, &mut req)? {
            return Ok(None);
        }
        // SAFETY: as above.
        let flags = unsafe { req.ifr_ifru.ifru_flags } as i32;
        if !call(SIOCGIFHWADDR, &mut req)? {
            return Ok(None);
        }
        let mut mac = [0u8; 6];
        // SAFETY: as above; sa_data holds at least 6 bytes of hardware address.
        let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
        for (d, s) in mac.iter_mut().zip(data.iter()) {
            *d = *s as u8;
        }
        if !call(SIOCGIFMTU, &mut req)? {
            return Ok(None);
        }
        // SAFETY: as above.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu } as u32;
        Ok(Some(IfInfo {
            index,
            up: flags & libc::IFF_UP != 0,
            promisc: flags & libc::IFF_PROMISC != 0,
            mac,
            mtu,
        }))
    }
}
