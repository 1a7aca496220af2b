//! Host firewall rules the bridge plugin owns: masquerade (`ipMasq`) and MAC spoof
//! checking (`macspoofchk`), in nftables tables of our own (`inet oxivirt-cni`,
//! `bridge oxivirt-cni`). Each rule carries a comment naming its attachment, which is how
//! DEL and GC find it. The driver is a trait; [`NftCli`] is the real one.

use ipnet::IpNet;
/// Stand-in until the firewall crate's own error lands.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);
use std::io::Write;
use std::process::{Command, Stdio};

pub const TABLE: &str = "oxivirt-cni";

/// Who a rule belongs to.
#[derive(Debug, Clone)]
pub struct Owner {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

impl Owner {
    pub fn comment(&self) -> String {
        let raw = format!(
            "oxivirt:{}:{}:{}",
            self.network, self.container_id, self.ifname
        );
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
}

pub trait Firewall {
    fn add_masquerade(&self, owner: &Owner, addrs: &[IpNet]) -> Result<(), Error>;
    fn add_spoofcheck(&self, owner: &Owner, host_if: &str, mac: &str) -> Result<(), Error>;
    /// Removes every rule of `owner` (masquerade and spoof check); none is success.
    fn remove(&self, owner: &Owner) -> Result<(), Error>;
    /// Comments of every rule we own, for GC.
    fn comments(&self) -> Result<Vec<String>, Error>;
    /// Removes every rule whose comment is in `comments`.
    fn remove_comments(&self, comments: &[String]) -> Result<(), Error>;
}

/// nftables through the `nft` command (scripts in, JSON listings out).
#[derive(Debug, Default)]
pub struct NftCli;

fn fw_err(msg: String) -> Error {
    Error(msg)
}

fn run_nft(args: &[&str], script: Option<&str>) -> Result<String, Error> {
    let mut cmd = Command::new("nft");
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if script.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| fw_err(format!("cannot run nft (is nftables installed?): {e}")))?;
    if let (Some(s), Some(mut stdin)) = (script, child.stdin.take()) {
        stdin
            .write_all(s.as_bytes())
            .map_err(|e| fw_err(format!("nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fw_err(format!("nft: {e}")))?;
    if !out.status.success() {
        return Err(fw_err(format!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The masquerade rules for `addrs`, as an nft script (snapshot-tested).
pub fn masquerade_script(owner: &Owner, addrs: &[IpNet]) -> String {
    let c = owner.comment();
    let mut s = format!(
        "add table inet {TABLE}\n\
         add chain inet {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n"
    );
    for a in addrs {
        let (fam, mcast) = if a.addr().is_ipv4() {
            ("ip", "224.0.0.0/4")
        } else {
            ("ip6", "ff00::/8")
        };
        s.push_str(&format!(
            "add rule inet {TABLE} postrouting {fam} saddr {} {fam} daddr != {} {fam} daddr != {mcast} masquerade comment \"{c}\"\n",
            a.addr(),
            a.trunc()
        ));
    }
    s
}

/// The MAC spoof-check rule, as an nft script (snapshot-tested).
pub fn spoofcheck_script(owner: &Owner, host_if: &str, mac: &str) -> String {
    let c = owner.comment();
    format!(
        "add table bridge {TABLE}\n\
         add chain bridge {TABLE} prerouting {{ type filter hook prerouting priority -300; policy accept; }}\n\
         add rule bridge {TABLE} prerouting iifname \"{host_if}\" ether saddr != {mac} drop comment \"{c}\"\n"
    )
}

/// (family, chain, handle, comment) of every rule in our tables.
fn list_rules() -> Result<Vec<(String, String, u64, String)>, Error> {
    let mut out = Vec::new();
    for family in ["inet", "bridge"] {
        let json = match run_nft(&["-j", "list", "table", family, TABLE], None) {
            Ok(j) => j,
            // No table: nothing of ours.
            Err(e) if e.0.contains("No such file") || e.0.contains("does not exist") => continue,
            Err(e) => return Err(e),
        };
        let v: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| fw_err(format!("nft JSON: {e}")))?;
        let items = v
            .get("nftables")
            .and_then(|n| n.as_array())
            .cloned()
            .unwrap_or_default();
        for item in items {
            let Some(rule) = item.get("rule") else {
                continue;
            };
            let chain = rule
                .get("chain")
                .and_then(|c| c.as_str())
                .unwrap_or_default();
            let handle = rule
                .get("handle")
                .and_then(|h| h.as_u64())
                .unwrap_or_default();
            let comment = rule
                .get("comment")
                .and_then(|c| c.as_str())
                .unwrap_or_default();
            out.push((
                family.to_string(),
                chain.to_string(),
                handle,
                comment.to_string(),
            ));
        }
    }
    Ok(out)
}

impl Firewall for NftCli {
    fn add_masquerade(&self, owner: &Owner, addrs: &[IpNet]) -> Result<(), Error> {
        run_nft(&["-f", "-"], Some(&masquerade_script(owner, addrs))).map(|_| ())
    }

    fn add_spoofcheck(&self, owner: &Owner, host_if: &str, mac: &str) -> Result<(), Error> {
        run_nft(&["-f", "-"], Some(&spoofcheck_script(owner, host_if, mac))).map(|_| ())
    }

    fn remove(&self, owner: &Owner) -> Result<(), Error> {
        self.remove_comments(&[owner.comment()])
    }

    fn comments(&self) -> Result<Vec<String>, Error> {
        Ok(list_rules()?
            .into_iter()
            .map(|r| r.3)
            .filter(|c| c.starts_with("oxivirt:"))
            .collect())
    }

    fn remove_comments(&self, comments: &[String]) -> Result<(), Error> {
        let script: String = list_rules()?
            .into_iter()
            .filter(|r| comments.contains(&r.3))
            .map(|(fam, chain, handle, _)| {
                format!("delete rule {fam} {TABLE} {chain} handle {handle}\n")
            })
            .collect();
        if script.is_empty() {
            return Ok(());
        }
        run_nft(&["-f", "-"], Some(&script)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            network: "multus-br".into(),
            container_id: "c0ffee".into(),
            ifname: "net1".into(),
        }
    }

    #[test]
    fn masquerade_rules() {
        let addrs: Vec<IpNet> = vec![
            "192.168.100.2/24".parse().expect("v4"),
            "fd00::2/64".parse().expect("v6"),
        ];
        insta::assert_snapshot!(masquerade_script(&owner(), &addrs));
    }

    #[test]
    fn spoofcheck_rule() {
        insta::assert_snapshot!(spoofcheck_script(
            &owner(),
            "veth12345678",
            "0a:58:c0:a8:64:02"
        ));
    }

    #[test]
    fn comments_are_sanitised() {
        let o = Owner {
            network: "n".into(),
            container_id: "c".into(),
            ifname: "a\"b".into(),
        };
        assert_eq!(o.comment(), "oxivirt:n:c:a_b");
    }
}
