//! The guest's serial console, as KubeVirt's `virtctl console` shows it.
//!
//! - [`server`]: runs in the launcher. Relays the guest's first serial port (a stream to
//!   QEMU's chardev socket) to `console.sock`, keeps the newest output in a backlog
//!   ([`DEFAULT_BACKLOG`] bytes) so boot output is not lost while nobody is attached, and
//!   serves one client at a time: a new client takes over, the old one is told why.
//! - [`client`]: the CLI side. Attaches a terminal (raw mode when it is a TTY) to a console
//!   stream until the user types `^]` or the server hangs up.
//!
//! The wire is the plain byte stream in both directions (no framing), so `socat` works too.

pub mod client;
mod ring;
pub mod server;
pub mod term;
#[cfg(feature = "websocket")]
pub mod ws;

pub use client::{
    attach, connect, connected_message, run_session, Input, SessionEnd, Stdin, Transport, Waker,
};
pub use server::{connect_chardev, ConsoleServer, Options};
pub use term::RawMode;

use std::io;
use std::path::PathBuf;

/// The byte `^]` (Ctrl+]) sends, which leaves a session (as in virtctl).
pub const ESCAPE: u8 = 0x1d;

/// The backlog kept for a client that attaches late: 1 MiB.
pub const DEFAULT_BACKLOG: usize = 1 << 20;

/// What the server tells a client that another client took over, before it hangs up.
/// KubeVirt's virtctl prints this text when virt-handler closes its console websocket with
/// "going away" because a second `virtctl console` connected (pkg/virtctl/console); our
/// stream has no close codes, so the server sends the text itself (CR LF: the client's
/// terminal is raw).
pub const TAKEOVER_MESSAGE: &str = "\r\nYou were disconnected from the console. \
This has one of the following reasons:\r\n - another user connected to the console of the target vm\r\n";

/// What the client prints when the server hangs up without a takeover (the guest or the
/// launcher stopped): virtctl's text for an abnormal closure of its console websocket
/// (pkg/virtctl/console in KubeVirt). Printed after the terminal is restored, so plain LF.
pub const DISCONNECTED_MESSAGE: &str = "\nYou were disconnected from the console. \
This has one of the following reasons:\n - network issues\n - machine restart\n";

/// The longest path a unix socket address holds: `sun_path` is 108 bytes with the NUL.
pub const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the console socket path {path:?} is {len} bytes long; a unix socket path holds at most \
         {MAX_SOCKET_PATH} bytes (sun_path is 108 with its NUL): use a shorter state dir"
    )]
    PathTooLong { path: PathBuf, len: usize },
    #[error("another console server is listening on {path:?}")]
    InUse { path: PathBuf },
    #[error("{path:?} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("cannot inspect {path:?}")]
    Inspect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove the stale console socket {path:?}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {path:?}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot make {path:?} private (mode 0600)")]
    Chmod {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to {path:?}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot use the guest's serial stream")]
    Guest(#[source] io::Error),
    #[error("cannot start the console's {what} thread")]
    Spawn {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot put the terminal in raw mode")]
    RawMode(#[source] io::Error),
    #[error("the console stream failed")]
    Stream(#[source] io::Error),
}
