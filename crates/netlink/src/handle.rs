//! One rtnetlink socket and the request/acknowledge loop. The modules beside this one
//! build their requests as [`Request`] values (pure, testable without a kernel) and hand
//! them to [`Handle::request`].

use crate::error::{Error, Result};
use crate::netns::NetNs;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::borrow::Cow;

/// Flags of a request that creates something and fails if it exists.
pub(crate) const CREATE: u16 = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;

/// One request as built, before a sequence number is given to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// What the request does, in words: the message of the error if it fails.
    pub op: Cow<'static, str>,
    pub msg: RouteNetlinkMessage,
    /// `NLM_F_*` flags besides `NLM_F_REQUEST`.
    pub flags: u16,
}

impl Request {
    pub fn new(op: impl Into<Cow<'static, str>>, msg: RouteNetlinkMessage, flags: u16) -> Self {
        Self {
            op: op.into(),
            msg,
            flags,
        }
    }
}

/// Serialises `msg` as one netlink datagram.
pub(crate) fn encode(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

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
        let kernel = |source| Error::kernel("open netlink socket", source);
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
        encode(msg, flags, self.seq)
    }

    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.socket)
    }

    /// Sends one request and collects the reply messages (dump) or the acknowledgement.
    pub(crate) fn request(&mut self, req: Request) -> Result<Vec<RouteNetlinkMessage>> {
        let Request { op, msg, flags } = req;
        let op = &*op;
        let buf = self.encode(msg, flags);
        let kernel = |source| Error::kernel(op, source);
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
                        source: format!("message length {len} out of bounds").into(),
                    });
                }
                let parsed =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[off..off + len])
                        .map_err(|e| Error::Decode {
                            op: op.into(),
                            source: Box::new(e),
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
                            return Err(Error::kernel(
                                op,
                                std::io::Error::from_raw_os_error(-code.get()),
                            ))
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

    /// [`Self::request`] for a request whose only reply is the acknowledgement.
    pub(crate) fn ack(&mut self, req: Request) -> Result<()> {
        self.request(req).map(|_| ())
    }
}
