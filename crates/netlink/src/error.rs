use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: {source}")]
    Kernel { op: String, source: io::Error },
    #[error("{op}: malformed netlink reply: {detail}")]
    Decode { op: String, detail: String },
    #[error("network namespace {path}: {source}")]
    Netns { path: String, source: io::Error },
    #[error("sysctl {key}: {source}")]
    Sysctl { key: String, source: io::Error },
}

impl Error {
    /// The errno behind a kernel error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { source, .. }
            | Error::Netns { source, .. }
            | Error::Sysctl { source, .. } => source.raw_os_error(),
            Error::Decode { .. } => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH)
        )
    }

    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
