//! The crate's error: which operation failed, with the kernel's errno (or the decoder's
//! complaint) as its `source`. Display shows only this crate's step, so a boundary that
//! prints the whole chain (`step: source: …`) never says the same thing twice.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused a request (or a socket call failed); the errno is the source.
    #[error("{op}")]
    Kernel {
        op: String,
        #[source]
        source: io::Error,
    },
    /// A reply did not parse.
    #[error("{op}: malformed netlink reply")]
    Decode {
        op: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("network namespace {path}")]
    Netns {
        path: String,
        #[source]
        source: io::Error,
    },
    /// A thread that visited namespace `visited` could not get back to `home`.
    #[error("could not return from network namespace {visited} to {home}")]
    NetnsReturn {
        visited: String,
        home: String,
        #[source]
        source: io::Error,
    },
    #[error("sysctl {key}")]
    Sysctl {
        key: String,
        #[source]
        source: io::Error,
    },
    /// The program that follows a link deletion (run here where nothing detached would
    /// survive) could not run or failed.
    #[error("running {program} after deleting links")]
    Program {
        program: String,
        #[source]
        source: io::Error,
    },
    /// A sysctl that must change where `/proc/sys` is read-only: an unprivileged
    /// container's, where a container runtime mounts it so.
    #[error(
        "sysctl {key} is {found}, {wanted} is needed, and /proc/sys is read-only here (an \
         unprivileged container): the pod's CNI meta plugin (oxivirt-multus) sets it for \
         KubeVirt launcher pods"
    )]
    SysctlReadOnly {
        key: String,
        found: String,
        wanted: String,
    },
}

impl Error {
    /// The errno behind a kernel error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { source, .. }
            | Error::Netns { source, .. }
            | Error::NetnsReturn { source, .. }
            | Error::Sysctl { source, .. }
            | Error::Program { source, .. } => source.raw_os_error(),
            Error::SysctlReadOnly { .. } => Some(libc::EROFS),
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

    pub(crate) fn kernel(op: impl Into<String>, source: io::Error) -> Self {
        Error::Kernel {
            op: op.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn display_leaves_the_errno_to_the_source() {
        let e = Error::kernel(
            "create veth a (peer b)",
            io::Error::from_raw_os_error(libc::EEXIST),
        );
        assert_eq!(e.to_string(), "create veth a (peer b)");
        let source = e.source().map(|s| s.to_string()).unwrap_or_default();
        assert!(source.contains("File exists"), "{source}");
        assert_eq!(e.errno(), Some(libc::EEXIST));
        assert!(e.is_exists());
        assert!(!e.is_not_found());
    }

    #[test]
    fn not_found_covers_the_errnos_the_kernel_uses_for_missing_objects() {
        for errno in [libc::ENODEV, libc::ENOENT, libc::ESRCH] {
            let e = Error::kernel("get link x", io::Error::from_raw_os_error(errno));
            assert!(e.is_not_found(), "{errno}");
        }
        let e = Error::Netns {
            path: "/run/netns/x".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "network namespace /run/netns/x");
    }

    #[test]
    fn a_decode_error_has_no_errno_but_keeps_its_cause() {
        let e = Error::Decode {
            op: "list links".into(),
            source: "bad length 3".into(),
        };
        assert_eq!(e.errno(), None);
        assert_eq!(e.to_string(), "list links: malformed netlink reply");
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("bad length 3")
        );
    }
}
