//! The CNI boundary of the interface and IPAM plugins: the one place where their errors
//! become the spec's error codes. The meta plugin uses the same mapping for the delegates
//! it runs in-process, so an in-process delegate fails exactly as the exec'd one would.

use oxivirt_cni_spec::{CniError, ErrorCode};

/// oxivirt's own codes (the spec reserves 100 and above for plugins).
pub mod codes {
    /// A netlink or kernel operation failed.
    pub const NETLINK: u32 = 100;
    /// IP address allocation failed (pool exhausted, address taken).
    pub const IPAM: u32 = 101;
    /// A delegate plugin failed without a spec error.
    pub const DELEGATE: u32 = 102;
    /// Firewall (nftables) programming failed.
    pub const FIREWALL: u32 = 103;
    /// CHECK found the interface state differs from the result.
    pub const CHECK_MISMATCH: u32 = 104;
}

/// The wire error for a plugin's error: the code of its innermost cause that has one, the
/// message of the whole chain (errno included), a delegate's own code and details kept.
pub fn to_cni(e: &oxivirt_pod_net::Error) -> CniError {
    CniError::from_error(pod_net_code(e), e)
}

/// The spec's code for what the spec layer reports.
pub fn spec_code(e: &oxivirt_cni_spec::Error) -> ErrorCode {
    use oxivirt_cni_spec::Error as E;
    match e {
        E::Json { .. } if e.is_malformed_json() => ErrorCode::DecodingFailure,
        E::Json { .. } | E::Field { .. } | E::PluginName(_) | E::PluginNotFound { .. } => {
            ErrorCode::InvalidNetworkConfig
        }
        E::Version { .. } | E::CheckNotAllowed(_) => ErrorCode::IncompatibleVersion,
        E::Env { .. } => ErrorCode::InvalidEnvironment,
        E::Stdin(_) | E::Exec { .. } => ErrorCode::IoFailure,
        E::Delegate { source, .. } => source.code,
        E::DelegateCrashed { .. } => ErrorCode::Plugin(codes::DELEGATE),
        E::Context { source, .. } => spec_code(source),
    }
}

/// The code for what address management reports.
pub fn ipam_code(e: &oxivirt_ipam::Error) -> ErrorCode {
    use oxivirt_ipam::Error as E;
    match e {
        E::Spec(s) => spec_code(s),
        E::Config(_) | E::ResolvConf { .. } => ErrorCode::InvalidNetworkConfig,
        E::NodePolicy { .. } | E::Store { .. } => ErrorCode::IoFailure,
        E::Allocation(_) => ErrorCode::Plugin(codes::IPAM),
        E::NotAllocated { .. } => ErrorCode::Plugin(codes::CHECK_MISMATCH),
        E::Exhausted { .. } => ErrorCode::PluginNotAvailable,
        E::Cleanup(c) => ipam_code(&c.error),
    }
}

/// The code for what the interface plugins report.
pub fn pod_net_code(e: &oxivirt_pod_net::Error) -> ErrorCode {
    use oxivirt_pod_net::Error as E;
    match e {
        E::Spec(s) => spec_code(s),
        E::Ipam(i) => ipam_code(i),
        E::Config(_) => ErrorCode::InvalidNetworkConfig,
        E::UnknownContainer { .. } => ErrorCode::UnknownContainer,
        E::Netlink(_) | E::IfnameTaken(_) => ErrorCode::Plugin(codes::NETLINK),
        E::Firewall(_) => ErrorCode::Plugin(codes::FIREWALL),
        E::IpamResult(_) => ErrorCode::Plugin(codes::IPAM),
        E::CheckMismatch(_) => ErrorCode::Plugin(codes::CHECK_MISMATCH),
        E::Thread { .. } => ErrorCode::IoFailure,
        E::Context { source, .. } => pod_net_code(source),
        E::Cleanup(c) => pod_net_code(&c.error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxivirt_cni_spec::parse_json;

    #[test]
    fn spec_errors_get_the_spec_codes() {
        let malformed = parse_json::<serde_json::Value>(b"{", "network config").expect_err("eof");
        assert_eq!(spec_code(&malformed), ErrorCode::DecodingFailure);
        let shape = parse_json::<Vec<u8>>(b"{}", "network config").expect_err("shape");
        assert_eq!(spec_code(&shape), ErrorCode::InvalidNetworkConfig);
        let env = oxivirt_cni_spec::Error::Env {
            var: "CNI_IFNAME".into(),
            reason: "is empty".into(),
        };
        assert_eq!(
            spec_code(&env.context("outer")),
            ErrorCode::InvalidEnvironment
        );
    }

    #[test]
    fn a_delegates_code_and_details_pass_through() {
        let delegate = CniError::new(ErrorCode::TryAgainLater, "busy").with_details("lock");
        let e = oxivirt_pod_net::Error::from(oxivirt_ipam::Error::from(
            oxivirt_cni_spec::Error::Delegate {
                plugin: "/opt/cni/bin/dhcp".into(),
                source: delegate,
            },
        ));
        let wire = to_cni(&e);
        assert_eq!(wire.code, ErrorCode::TryAgainLater);
        assert_eq!(wire.msg, "plugin /opt/cni/bin/dhcp: busy");
        assert_eq!(wire.details, "lock");
    }

    #[test]
    fn errno_and_cleanup_failures_survive() {
        let io = std::io::Error::from_raw_os_error(libc::EBUSY);
        let store = oxivirt_ipam::Error::Store {
            op: "write",
            path: "/var/lib/cni/networks/n/10.0.0.2".into(),
            source: io,
        };
        let e = oxivirt_pod_net::Error::with_cleanup(
            oxivirt_pod_net::Error::CheckMismatch("eth0: address gone".into()),
            vec![store.into()],
        );
        let wire = to_cni(&e);
        assert_eq!(wire.code, ErrorCode::Plugin(codes::CHECK_MISMATCH));
        assert!(wire.msg.contains("eth0: address gone"), "{}", wire.msg);
        assert!(wire.msg.contains("1 cleanup step failed ("), "{}", wire.msg);
        assert!(
            wire.msg.contains("Device or resource busy"),
            "errno lost: {}",
            wire.msg
        );
    }
}
