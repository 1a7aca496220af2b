//! What can go wrong programming the firewall, and during which operation.

use crate::{Table, TABLE};
use std::fmt;
use std::process::ExitStatus;

/// The firewall operation an error happened in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    AddMasquerade,
    AddSpoofcheck,
    RemoveRules,
    List(Table),
    Load(Vec<Table>),
    RemoveTables(Vec<Table>),
}

fn tables(f: &mut fmt::Formatter<'_>, tables: &[Table]) -> fmt::Result {
    for (i, t) in tables.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{t}")?;
    }
    Ok(())
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddMasquerade => write!(f, "add masquerade rules to table inet {TABLE}"),
            Self::AddSpoofcheck => write!(f, "add a MAC spoof check to table bridge {TABLE}"),
            Self::RemoveRules => write!(f, "remove rules from the {TABLE} tables"),
            Self::List(t) => write!(f, "list table {t}"),
            Self::Load(t) => {
                f.write_str("load table ")?;
                tables(f, t)
            }
            Self::RemoveTables(t) => {
                f.write_str("remove table ")?;
                tables(f, t)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The firewall tool could not be started at all.
    #[error("could not start nft to {op} (is nftables installed?)")]
    Start {
        op: Op,
        #[source]
        source: std::io::Error,
    },
    /// Started, but feeding it the script or waiting for it failed.
    #[error("lost nft while it tried to {op}")]
    Io {
        op: Op,
        #[source]
        source: std::io::Error,
    },
    /// The tool ran and refused the change; `stderr` is what it said.
    #[error("nft refused to {op} ({status}): {stderr}")]
    Refused {
        op: Op,
        status: ExitStatus,
        stderr: String,
    },
    /// A rule listing that is not the JSON nft prints.
    #[error("could not read nft's listing of table {table}")]
    Listing {
        table: Table,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The operation that failed.
    pub fn op(&self) -> Op {
        match self {
            Self::Start { op, .. } | Self::Io { op, .. } | Self::Refused { op, .. } => op.clone(),
            Self::Listing { table, .. } => Op::List(table.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Family;
    use std::error::Error as _;

    #[test]
    fn messages_name_the_operation_and_leave_the_cause_to_the_chain() {
        let e = Error::Start {
            op: Op::RemoveTables(vec![
                Table::new(Family::Ip, "nat"),
                Table::new(Family::Ip6, "nat"),
            ]),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let cause = e.source().map(|s| s.to_string()).unwrap_or_default();
        assert!(!cause.is_empty());
        assert!(!e.to_string().contains(&cause), "{e}");
        assert_eq!(
            e.to_string(),
            "could not start nft to remove table ip nat, ip6 nat (is nftables installed?)"
        );
    }
}
