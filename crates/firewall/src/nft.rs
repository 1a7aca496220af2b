//! The real driver: nftables through the `nft` command (scripts on stdin, JSON listings on
//! stdout). The only code in the workspace that runs `nft`.

use crate::rules::{self, ListedRule, COMMENT_PREFIX};
use crate::{Deferred, Error, Firewall, Loading, Op, Owner, Result, Ruleset, Table};
use ipnet::IpNet;
use std::io::Write;
use std::process::{Child, Command, Stdio};

const NFT: &str = "nft";

/// nftables through the `nft` command. Runs in the network namespace of the calling
/// thread (a child process inherits it).
#[derive(Debug, Default, Clone, Copy)]
pub struct NftCli;

/// A started `nft` with `script` written to its stdin. The child is owned before the
/// write, so a failed write still reaps it.
fn start(op: &Op, args: &[&str], script: &str, stdout: Stdio) -> Result<NftRun> {
    let mut child = Command::new(NFT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Start {
            op: op.clone(),
            source,
        })?;
    let stdin = child.stdin.take();
    let run = NftRun {
        child: Some(child),
        op: op.clone(),
    };
    if let Some(mut i) = stdin {
        // Dropping `i` closes nft's stdin: the script is complete.
        i.write_all(script.as_bytes()).map_err(|source| Error::Io {
            op: op.clone(),
            source,
        })?;
    }
    Ok(run)
}

/// Runs `nft -f -` on `script` (or `nft <args>` with an empty stdin) and returns stdout.
fn run(op: Op, args: &[&str], script: &str) -> Result<String> {
    start(&op, args, script, Stdio::piped())?.wait()
}

fn is_missing_table(e: &Error) -> bool {
    matches!(e, Error::Refused { stderr, .. }
        if stderr.contains("No such file") || stderr.contains("does not exist"))
}

/// An `nft` run; waited for on drop if not waited for before.
struct NftRun {
    child: Option<Child>,
    op: Op,
}

impl NftRun {
    fn wait(mut self) -> Result<String> {
        let Some(child) = self.child.take() else {
            return Ok(String::new());
        };
        let out = child.wait_with_output().map_err(|source| Error::Io {
            op: self.op.clone(),
            source,
        })?;
        if !out.status.success() {
            return Err(Error::Refused {
                op: self.op.clone(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for NftRun {
    fn drop(&mut self) {
        // Abandoned (an error elsewhere): no zombie left behind.
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Loading for NftRun {
    fn finish(self: Box<Self>) -> Result<()> {
        self.wait().map(drop)
    }
}

impl NftCli {
    /// Every rule in the bridge plugin's tables; a missing table has none.
    fn list_rules(&self) -> Result<Vec<ListedRule>> {
        let mut out = Vec::new();
        for table in [rules::masquerade_table(), rules::spoofcheck_table()] {
            let family = table.family.as_str();
            let json = match run(
                Op::List(table.clone()),
                &["-j", "list", "table", family, &table.name],
                "",
            ) {
                Ok(j) => j,
                Err(e) if is_missing_table(&e) => continue,
                Err(e) => return Err(e),
            };
            out.extend(
                rules::parse_listing(&table, &json)
                    .map_err(|source| Error::Listing { table, source })?,
            );
        }
        Ok(out)
    }
}

impl Firewall for NftCli {
    fn add_masquerade(&self, owner: &Owner, addrs: &[IpNet]) -> Result<()> {
        let script = rules::masquerade_script(owner, addrs);
        run(Op::AddMasquerade, &["-f", "-"], &script).map(drop)
    }

    fn add_spoofcheck(&self, owner: &Owner, host_if: &str, mac: &str) -> Result<()> {
        let script = rules::spoofcheck_script(owner, host_if, mac);
        run(Op::AddSpoofcheck, &["-f", "-"], &script).map(drop)
    }

    fn remove(&self, owner: &Owner) -> Result<()> {
        self.remove_comments(&[owner.comment()])
    }

    fn comments(&self) -> Result<Vec<String>> {
        Ok(self
            .list_rules()?
            .into_iter()
            .map(|r| r.comment)
            .filter(|c| c.starts_with(COMMENT_PREFIX))
            .collect())
    }

    fn remove_comments(&self, comments: &[String]) -> Result<()> {
        let doomed: Vec<ListedRule> = self
            .list_rules()?
            .into_iter()
            .filter(|r| comments.contains(&r.comment))
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        let script = rules::delete_rules_script(&doomed);
        run(Op::RemoveRules, &["-f", "-"], &script).map(drop)
    }

    fn load(&self, ruleset: Ruleset) -> Result<Box<dyn Loading>> {
        let op = Op::Load(ruleset.tables.clone());
        let script = rules::load_script(&ruleset);
        // Only stderr is read (when finished); nft prints nothing else for a load.
        Ok(Box::new(start(&op, &["-f", "-"], &script, Stdio::null())?))
    }

    fn remove_tables(&self, tables: &[Table]) -> Result<()> {
        let script = rules::delete_tables_script(tables);
        run(Op::RemoveTables(tables.to_vec()), &["-f", "-"], &script).map(drop)
    }

    fn deferred_table_removal(&self, tables: &[Table]) -> Option<Deferred> {
        Some(Deferred {
            program: NFT,
            args: vec![rules::delete_tables_script(tables)],
        })
    }
}
