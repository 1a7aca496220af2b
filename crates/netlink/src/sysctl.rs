//! Writing and reading `/proc/sys`. `/proc/sys/net` shows the namespace of the thread
//! that opens the file, so namespaced keys go through [`crate::NetNs::run`].

use crate::error::{Error, Result};

fn path_of(key: &[&str]) -> String {
    let mut p = String::from("/proc/sys");
    for part in key {
        p.push('/');
        p.push_str(part);
    }
    p
}

/// Writes a sysctl. The file is opened for writing only: no create or truncate, which make
/// the kernel take the directory's lock and try to resize a /proc file.
pub fn write(key: &[&str], value: &str) -> Result<()> {
    write_to(open_for_write(key)?, value)
}

/// Opens a sysctl for a later [`write_to`]. The file stays bound to the network namespace
/// of the thread that opened it, whichever namespace the writer is in by then.
pub fn open_for_write(key: &[&str]) -> Result<Sysctl> {
    let path = path_of(key);
    match std::fs::OpenOptions::new().write(true).open(&path) {
        Ok(file) => Ok(Sysctl { path, file }),
        Err(source) => Err(Error::Sysctl { key: path, source }),
    }
}

/// A sysctl opened by [`open_for_write`].
#[derive(Debug)]
pub struct Sysctl {
    path: String,
    file: std::fs::File,
}

/// Writes `value` to a sysctl opened earlier.
pub fn write_to(mut sysctl: Sysctl, value: &str) -> Result<()> {
    std::io::Write::write_all(&mut sysctl.file, value.as_bytes()).map_err(|source| Error::Sysctl {
        key: sysctl.path,
        source,
    })
}

/// Makes a sysctl `value`: written only when it is not that already, so a key another
/// party set beforehand (the CNI meta plugin, for a launcher pod whose container sees
/// `/proc/sys` read-only) needs no write.
pub fn ensure(key: &[&str], value: &str) -> Result<()> {
    let found = read(key)?;
    if found == value {
        return Ok(());
    }
    match write(key, value) {
        Err(Error::Sysctl { key, source }) if source.raw_os_error() == Some(libc::EROFS) => {
            Err(Error::SysctlReadOnly {
                key,
                found,
                wanted: value.to_string(),
            })
        }
        other => other,
    }
}

pub fn read(key: &[&str]) -> Result<String> {
    let path = path_of(key);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|source| Error::Sysctl { key: path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_paths_under_proc_sys() {
        assert_eq!(
            path_of(&["net", "ipv4", "conf", "eth0", "arp_notify"]),
            "/proc/sys/net/ipv4/conf/eth0/arp_notify"
        );
        assert_eq!(
            read(&["kernel", "ostype"]).expect("readable").as_str(),
            "Linux"
        );
        let e = read(&["net", "oxivirt-no-such-key"]).expect_err("missing");
        assert!(e.is_not_found(), "{e:?}");
        assert_eq!(e.to_string(), "sysctl /proc/sys/net/oxivirt-no-such-key");
    }
}
