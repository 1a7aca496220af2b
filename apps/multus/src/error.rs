//! The CNI boundary of the meta plugin: the one place where its errors become the spec's
//! error codes. Errors of the delegates keep the code the delegate chose (exec'd, or run
//! in-process through `oxivirt-cni`'s own mapping).

use oxivirt_app_cni::error::{codes, spec_code};
use oxivirt_cni_spec::{CniError, ErrorCode};
use oxivirt_multus_core::Error;

/// The wire error: the code of the error's cause, the whole chain as the message (errno
/// and every cleanup step that failed too included).
pub fn to_cni(e: &Error) -> CniError {
    CniError::from_error(code(e), e)
}

/// The CNI code for a meta plugin error.
pub fn code(e: &Error) -> ErrorCode {
    use Error as E;
    match e {
        E::Spec(s) | E::Delegate { source: s, .. } | E::DelegateResult { source: s, .. } => {
            spec_code(s)
        }
        E::Network { source, .. } => code(source),
        E::Daemon { source, .. } => source.code,
        E::Cleanup(c) => code(&c.error),
        E::NoClusterNetwork
        | E::LogLevel(_)
        | E::ConfRead { .. }
        | E::NoNetworkConfig { .. }
        | E::Annotation { .. }
        | E::NamespaceIsolation { .. }
        | E::NadNotFound { .. }
        | E::NadNoConfig { .. }
        | E::NadConfigJson { .. }
        | E::NadConfigNotObject { .. }
        | E::NetworkNotFound { .. }
        | E::PodNotFound { .. }
        | E::ObjectRead { .. }
        | E::ObjectParse { .. }
        | E::ObjectInvalid { .. }
        | E::ObjectWrite { .. }
        | E::DelegateConfig { .. } => ErrorCode::InvalidNetworkConfig,
        E::ApiStatus {
            status: 401 | 403, ..
        } => ErrorCode::InvalidNetworkConfig,
        E::StoreUnreachable { .. }
        | E::NoClusterSource
        | E::NotInCluster
        | E::CredentialRead { .. }
        | E::KubeconfigParse { .. }
        | E::Kubeconfig { .. }
        | E::CredentialBase64 { .. }
        | E::CredentialPem { .. }
        | E::ApiClient(_)
        | E::ApiUnreachable { .. }
        | E::ApiStatus { .. }
        | E::DaemonUnreachable { .. }
        | E::NotReady { .. } => ErrorCode::TryAgainLater,
        E::ApiResponse { .. } | E::DaemonProtocol { .. } => ErrorCode::DecodingFailure,
        E::NotAvailable { .. } => ErrorCode::PluginNotAvailable,
        E::ConfDir { .. }
        | E::ConfWrite { .. }
        | E::Cache { .. }
        | E::CacheJson { .. }
        | E::LauncherPod { .. } => ErrorCode::IoFailure,
        E::Netlink { .. } | E::NoInterface { .. } => ErrorCode::Plugin(codes::NETLINK),
        E::NoClusterResult | E::NetworkStatus { .. } => ErrorCode::Plugin(codes::DELEGATE),
        E::NotCached { .. } => ErrorCode::Plugin(codes::CHECK_MISMATCH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delegates_code_survives_the_network_context_and_cleanup() {
        let delegate = oxivirt_cni_spec::Error::Delegate {
            plugin: "/opt/cni/bin/bridge".into(),
            source: CniError::new(ErrorCode::UnknownContainer, "no netns"),
        };
        let e = oxivirt_multus_core::error::with_cleanup(
            Error::Delegate {
                network: "default/multus-br".into(),
                source: delegate,
            },
            vec![Error::NoInterface {
                ifname: "net1".into(),
            }],
        );
        let wire = to_cni(&e);
        assert_eq!(wire.code, ErrorCode::UnknownContainer);
        assert!(wire.msg.contains("no netns"), "{}", wire.msg);
        assert!(wire.msg.contains("1 cleanup step failed"), "{}", wire.msg);
        assert!(wire.msg.contains("net1"), "{}", wire.msg);
    }

    #[test]
    fn api_errors_ask_to_try_again_unless_access_is_refused() {
        let status = |status| Error::ApiStatus {
            server: "https://127.0.0.1:6443".into(),
            what: "pod default/p".into(),
            status,
            message: String::new(),
        };
        assert_eq!(code(&status(503)), ErrorCode::TryAgainLater);
        assert_eq!(code(&status(403)), ErrorCode::InvalidNetworkConfig);
    }
}
