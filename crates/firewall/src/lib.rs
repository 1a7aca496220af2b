//! The host firewall as the pod and VM networks use it, behind one [`Firewall`] trait.
//!
//! Two kinds of users:
//! - the bridge plugin's `ipMasq` and `macspoofchk`: rules in tables of our own
//!   (`inet oxivirt-cni`, `bridge oxivirt-cni`), each carrying a comment naming its
//!   attachment ([`Owner`]), which is how DEL and GC find them again;
//! - the masquerade VM binding: a whole ruleset in tables it owns (KubeVirt's `nat`
//!   tables), loaded while the links are made ([`Firewall::load`]) and removed at teardown.
//!
//! What the rules say is pure data ([`rules`]); [`NftCli`] (in `nft.rs`, the only code that
//! runs `nft`) is the real driver; [`fake::RecordingFirewall`] records calls for unit tests.
//! Callers pick a driver once, at their entry point, and hand `&dyn Firewall` down.

mod error;
pub mod fake;
mod nft;
pub mod rules;

pub use error::{Error, Op};
pub use nft::NftCli;

use ipnet::IpNet;
use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The name of the bridge plugin's tables (one per family it uses).
pub const TABLE: &str = "oxivirt-cni";

/// Who a rule belongs to: one attachment of a network to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

impl Owner {
    /// The rule comment naming this owner.
    pub fn comment(&self) -> String {
        sanitise(&format!(
            "{}{}:{}:{}",
            rules::COMMENT_PREFIX,
            self.network,
            self.container_id,
            self.ifname
        ))
    }

    /// What the comments of every owner on `network` start with (for GC).
    pub fn network_prefix(network: &str) -> String {
        sanitise(&format!("{}{network}:", rules::COMMENT_PREFIX))
    }
}

/// Quotes, backslashes and control characters become `_`: a comment cannot break out of
/// the nft script.
fn sanitise(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// An nftables address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ip,
    Ip6,
    Inet,
    Bridge,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Ip6 => "ip6",
            Self::Inet => "inet",
            Self::Bridge => "bridge",
        }
    }
}

/// A table: family and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
}

impl Table {
    pub fn new(family: Family, name: impl Into<String>) -> Self {
        Self {
            family,
            name: name.into(),
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family.as_str(), self.name)
    }
}

/// A ruleset owning whole tables: loading it replaces `tables` (whatever they held before
/// is gone) with what `body` declares, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub tables: Vec<Table>,
    /// nft script text declaring the tables' contents.
    pub body: String,
}

/// A ruleset load still running (see [`Firewall::load`]). Dropped unfinished, it waits
/// for the load and ignores its outcome.
pub trait Loading: Send {
    /// Waits for the load and reports what the firewall refused.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// A command that does a firewall change when run later by someone else (a detached
/// clean-up process), so the caller waits for it not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    /// Looked up in `PATH`.
    pub program: &'static str,
    pub args: Vec<String>,
}

/// What the pod and VM networks ask of the host firewall.
pub trait Firewall: Send + Sync {
    /// Masquerades traffic from `addrs` leaving their subnets (`ipMasq`).
    fn add_masquerade(&self, owner: &Owner, addrs: &[IpNet]) -> Result<()>;
    /// Drops frames entering on `host_if` whose source MAC is not `mac` (`macspoofchk`).
    fn add_spoofcheck(&self, owner: &Owner, host_if: &str, mac: &str) -> Result<()>;
    /// Removes every rule of `owner` (masquerade and spoof check); none is success.
    fn remove(&self, owner: &Owner) -> Result<()>;
    /// The comments of every rule in our tables, for GC.
    fn comments(&self) -> Result<Vec<String>>;
    /// Removes every rule whose comment is in `comments`.
    fn remove_comments(&self, comments: &[String]) -> Result<()>;
    /// Starts loading `ruleset` and returns at once: the caller does other work while it
    /// loads and then waits with [`Loading::finish`].
    fn load(&self, ruleset: Ruleset) -> Result<Box<dyn Loading>>;
    /// Removes `tables`; missing ones are no error.
    fn remove_tables(&self, tables: &[Table]) -> Result<()>;
    /// The command that removes `tables`, for a process that runs it later; `None` when the
    /// driver has none (the caller then uses [`Firewall::remove_tables`]).
    fn deferred_table_removal(&self, _tables: &[Table]) -> Option<Deferred> {
        None
    }
}
