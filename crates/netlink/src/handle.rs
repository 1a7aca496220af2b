//! One rtnetlink socket and the request/acknowledge loop.

use crate::error::{Error, Result};
use crate::netns::NetNs;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// An rtnetlink socket bound to the namespace it was opened in.
#[derive(Debug)]
pub struct Handle {
    socket: Socket,
    seq: u32,
    /// Reused for every reply: a fresh zeroed buffer per request costs page faults.
    rbuf: Vec<u8>,
}

/// Replies are read into a buffer this big: the kernel sizes dump datagrams to the reader's
/// buffer up to just under 32 KiB, and single replies here are a few KiB.
const RECV_BUF: usize = 32 * 1024;

impl Handle {
    /// A socket in the calling thread's namespace.
    pub fn new() -> Result<Self> {
        let op = "open netlink socket";
        let kernel = |source| Error::Kernel {
            op: op.into(),
            source,
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(kernel)?;
        socket.bind_auto().map_err(kernel)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(kernel)?;
        // Extended acks give the kernel's own reason in some errors; optional.
        let _ = socket.set_ext_ack(true);
        Ok(Self {
            socket,
            seq: 0,
            rbuf: Vec::new(),
        })
    }

    /// A socket that lives in `ns`, usable from this thread afterwards.
    pub fn in_netns(ns: &NetNs) -> Result<Self> {
        ns.run(Self::new)?
    }

    /// Serialises a request with the next sequence number.
    pub(crate) fn encode(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        buf
    }

    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.socket)
    }

    /// Sends one request and collects the reply messages (dump) or the acknowledgement.
    pub(crate) fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let buf = self.encode(msg, flags);
        let kernel = |source| Error::Kernel {
            op: op.to_string(),
            source,
        };
        self.socket.send(&buf, 0).map_err(kernel)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let acked = flags & NLM_F_ACK != 0;
        let mut out = Vec::new();
        let seq = self.seq;
        let (socket, rbuf) = (&self.socket, &mut self.rbuf);
        if rbuf.capacity() < RECV_BUF {
            *rbuf = Vec::with_capacity(RECV_BUF);
        }
        loop {
            // Received into the spare capacity: nothing is zeroed, and only the pages the
            // kernel writes are touched.
            rbuf.clear();
            let n = socket.recv(rbuf, 0).map_err(kernel)?.min(rbuf.len());
            let mut off = 0;
            while off + 16 <= n {
                let len =
                    u32::from_ne_bytes([rbuf[off], rbuf[off + 1], rbuf[off + 2], rbuf[off + 3]])
                        as usize;
                if len < 16 || off + len > n {
                    return Err(Error::Decode {
                        op: op.into(),
                        detail: format!("bad length {len}"),
                    });
                }
                let parsed =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[off..off + len])
                        .map_err(|e| Error::Decode {
                            op: op.into(),
                            detail: e.to_string(),
                        })?;
                off += (len + 3) & !3;
                if parsed.header.sequence_number != seq {
                    continue;
                }
                match parsed.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(out),
                        Some(code) => {
                            return Err(Error::Kernel {
                                op: op.into(),
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            })
                        }
                    },
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && !acked {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
