//! The `CNI_*` environment a plugin is called with.

use crate::args::CniArgs;
use crate::error::Error;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "VERSION" => Self::Version,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            other => {
                return Err(Error::Env {
                    var: "CNI_COMMAND".into(),
                    reason: format!("{other:?} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"),
                })
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Version => "VERSION",
            Self::Status => "STATUS",
            Self::Gc => "GC",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Environment {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: CniArgs,
    pub path: Vec<PathBuf>,
}

impl Environment {
    /// Reads and validates the variables `command` needs, from a lookup function so tests
    /// need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let command = match get("CNI_COMMAND") {
            Some(c) => Command::parse(&c)?,
            None => {
                return Err(Error::Env {
                    var: "CNI_COMMAND".into(),
                    reason: "is not set".into(),
                })
            }
        };
        let need = |name: &str| -> Result<String, Error> {
            match get(name) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(Error::Env {
                    var: name.into(),
                    reason: format!("is required for {}", command.as_str()),
                }),
            }
        };
        let (container_id, ifname, netns) = match command {
            Command::Add | Command::Check => (
                need("CNI_CONTAINERID")?,
                need("CNI_IFNAME")?,
                Some(need("CNI_NETNS")?),
            ),
            Command::Del => (
                need("CNI_CONTAINERID")?,
                need("CNI_IFNAME")?,
                get("CNI_NETNS").filter(|s| !s.is_empty()),
            ),
            Command::Version | Command::Status | Command::Gc => (
                get("CNI_CONTAINERID").unwrap_or_default(),
                get("CNI_IFNAME").unwrap_or_default(),
                get("CNI_NETNS").filter(|s| !s.is_empty()),
            ),
        };
        if matches!(command, Command::Add | Command::Check | Command::Del) {
            validate_container_id(&container_id)?;
            validate_ifname(&ifname)?;
        }
        let args = CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?;
        let path = get("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(Self {
            command,
            container_id,
            netns: netns.map(PathBuf::from),
            ifname,
            args,
            path,
        })
    }

    pub fn from_process() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

/// Container IDs end up in file contents and names; the reference accepts `[a-z0-9_.-]`.
pub fn validate_container_id(id: &str) -> Result<(), Error> {
    let ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(Error::Env {
            var: "CNI_CONTAINERID".into(),
            reason: format!(
                "{id:?} is invalid: letters, digits, '_', '.', '-' only, starting with a letter or digit"
            ),
        });
    }
    Ok(())
}

/// Linux interface names: 1–15 bytes, no '/', ':' or whitespace, not "." or "..".
pub fn validate_ifname(name: &str) -> Result<(), Error> {
    let why = if name.is_empty() {
        Some("is empty")
    } else if name.len() > 15 {
        Some("is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("is a reserved name")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("contains '/', ':' or whitespace")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::Env {
            var: "CNI_IFNAME".into(),
            reason: format!("{name:?} {why}"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Environment, Error> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Environment::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn requires_per_command() {
        assert!(env(&[]).is_err());
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c1")]).is_err());
        let del = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .expect("del without netns");
        assert!(del.netns.is_none());
        let long = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "averyveryverylongname"),
            ("CNI_NETNS", "/x"),
        ])
        .expect_err("long");
        assert!(
            matches!(&long, Error::Env { var, .. } if var == "CNI_IFNAME"),
            "{long}"
        );
    }
}
