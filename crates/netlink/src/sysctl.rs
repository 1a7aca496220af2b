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

pub fn write(key: &[&str], value: &str) -> Result<()> {
    let path = path_of(key);
    std::fs::write(&path, value).map_err(|source| Error::Sysctl { key: path, source })
}

pub fn read(key: &[&str]) -> Result<String> {
    let path = path_of(key);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|source| Error::Sysctl { key: path, source })
}
