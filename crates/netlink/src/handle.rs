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

        // A dump or an acknowledged request ends with a message of its own; any other
        // ends with its one reply.
        let until_end = flags & NLM_F_DUMP == NLM_F_DUMP || flags & NLM_F_ACK != 0;
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
            if take_replies(&rbuf[..n], op, seq, until_end, &mut out)? {
                return Ok(out);
            }
        }
    }

    /// [`Self::request`] for a request whose only reply is the acknowledgement.
    pub(crate) fn ack(&mut self, req: Request) -> Result<()> {
        self.request(req).map(|_| ())
    }
}

/// Parses one datagram of replies into `out`, skipping messages of other requests.
/// `Ok(true)` once the reply to request `seq` is complete: at the end of a dump, at the
/// acknowledgement, or (without `until_end`) at the first reply message.
fn take_replies(
    buf: &[u8],
    op: &str,
    seq: u32,
    until_end: bool,
    out: &mut Vec<RouteNetlinkMessage>,
) -> Result<bool> {
    let n = buf.len();
    let mut off = 0;
    while off + 16 <= n {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > n {
            return Err(Error::Decode {
                op: op.into(),
                source: format!("message length {len} out of bounds").into(),
            });
        }
        let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..off + len])
            .map_err(|e| Error::Decode {
                op: op.into(),
                source: Box::new(e),
            })?;
        off += (len + 3) & !3;
        if parsed.header.sequence_number != seq {
            continue;
        }
        match parsed.payload {
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(e) => match e.code {
                None => return Ok(true),
                Some(code) => {
                    return Err(Error::kernel(
                        op,
                        std::io::Error::from_raw_os_error(-code.get()),
                    ))
                }
            },
            NetlinkPayload::InnerMessage(m) => {
                out.push(m);
                if !until_end {
                    return Ok(true);
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DoneMessage, ErrorMessage, NLM_F_MULTIPART};
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};
    use std::num::NonZeroI32;

    fn link_named(name: &str) -> RouteNetlinkMessage {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        RouteNetlinkMessage::NewLink(msg)
    }

    /// A datagram as the kernel would send it: `payloads` in order, each with `seq`.
    fn datagram(seq: u32, payloads: Vec<NetlinkPayload<RouteNetlinkMessage>>) -> Vec<u8> {
        let mut out = Vec::new();
        for payload in payloads {
            let mut header = NetlinkHeader::default();
            header.sequence_number = seq;
            header.flags = NLM_F_MULTIPART;
            let mut packet = NetlinkMessage::new(header, payload);
            packet.finalize();
            let mut buf = vec![0u8; packet.buffer_len()];
            packet.serialize(&mut buf);
            out.extend(buf);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        out
    }

    fn errno(code: i32) -> NetlinkPayload<RouteNetlinkMessage> {
        let mut e = ErrorMessage::default();
        e.code = NonZeroI32::new(-code);
        NetlinkPayload::Error(e)
    }

    #[test]
    fn encode_sets_request_flags_sequence_and_length() {
        let buf = encode(link_named("eth0"), NLM_F_ACK, 42);
        let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf).expect("parses");
        assert_eq!(parsed.header.length as usize, buf.len());
        assert_eq!(parsed.header.sequence_number, 42);
        assert_eq!(parsed.header.flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(
            parsed.payload,
            NetlinkPayload::InnerMessage(link_named("eth0"))
        );
    }

    #[test]
    fn a_dump_is_collected_until_done() {
        let mut out = Vec::new();
        let first = datagram(
            7,
            vec![link_named("a"), link_named("b")]
                .into_iter()
                .map(NetlinkPayload::InnerMessage)
                .collect(),
        );
        assert!(!take_replies(&first, "list links", 7, true, &mut out).expect("first part"));
        let last = datagram(
            7,
            vec![
                NetlinkPayload::InnerMessage(link_named("c")),
                NetlinkPayload::Done(DoneMessage::default()),
            ],
        );
        assert!(take_replies(&last, "list links", 7, true, &mut out).expect("last part"));
        assert_eq!(out, [link_named("a"), link_named("b"), link_named("c")]);
    }

    #[test]
    fn replies_to_other_requests_are_skipped() {
        let mut out = Vec::new();
        let buf = datagram(3, vec![NetlinkPayload::InnerMessage(link_named("old"))]);
        assert!(!take_replies(&buf, "get link", 4, false, &mut out).expect("parses"));
        assert!(out.is_empty());
    }

    #[test]
    fn without_ack_the_first_reply_ends_the_request() {
        let mut out = Vec::new();
        let buf = datagram(
            5,
            vec![
                NetlinkPayload::InnerMessage(link_named("a")),
                NetlinkPayload::InnerMessage(link_named("b")),
            ],
        );
        assert!(take_replies(&buf, "get link a", 5, false, &mut out).expect("parses"));
        assert_eq!(out, [link_named("a")]);
    }

    #[test]
    fn an_ack_ends_the_request_and_a_nack_is_the_errno() {
        let mut out = Vec::new();
        let ack = datagram(9, vec![NetlinkPayload::Error(ErrorMessage::default())]);
        assert!(take_replies(&ack, "set link #3 up", 9, true, &mut out).expect("ack"));

        let nack = datagram(9, vec![errno(libc::EEXIST)]);
        let e = take_replies(&nack, "create veth a (peer b)", 9, true, &mut out)
            .expect_err("the kernel said no");
        assert!(e.is_exists(), "{e:?}");
        assert_eq!(e.to_string(), "create veth a (peer b)");
    }

    #[test]
    fn a_truncated_message_is_a_decode_error() {
        let mut buf = datagram(1, vec![NetlinkPayload::InnerMessage(link_named("eth0"))]);
        buf.truncate(buf.len() - 8);
        let e =
            take_replies(&buf, "get link eth0", 1, true, &mut Vec::new()).expect_err("truncated");
        assert!(matches!(e, Error::Decode { .. }), "{e:?}");
        assert_eq!(e.to_string(), "get link eth0: malformed netlink reply");
    }
}
