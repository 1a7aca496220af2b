//! What the request-building tests of every module need: the message inside a [`Request`],
//! with a panic that names what it was instead when it is of another kind, and addresses
//! written as text.

use crate::handle::Request;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::RouteMessage;

/// The message of `$req` (a [`Request`]) if it is one of the listed
/// `RouteNetlinkMessage` variants; a test that names a single variant checks the
/// request's kind with the same call.
macro_rules! message_of {
    ($req:expr, $($variant:ident)|+) => {
        match &$req.msg {
            $(netlink_packet_route::RouteNetlinkMessage::$variant(m))|+ => m,
            other => panic!("not {}: {other:?}", stringify!($($variant)|+)),
        }
    };
}
pub(crate) use message_of;

impl Request {
    pub(crate) fn link_message(&self) -> &LinkMessage {
        message_of!(self, NewLink | SetLink | DelLink | GetLink)
    }

    pub(crate) fn route_message(&self) -> &RouteMessage {
        message_of!(self, NewRoute | DelRoute | GetRoute)
    }

    pub(crate) fn address_message(&self) -> &AddressMessage {
        message_of!(self, NewAddress | DelAddress)
    }
}

/// An address written in a test.
pub(crate) fn ip(s: &str) -> std::net::IpAddr {
    s.parse().expect("a test address")
}

/// A prefix written in a test.
pub(crate) fn net(s: &str) -> ipnet::IpNet {
    s.parse().expect("a test prefix")
}
