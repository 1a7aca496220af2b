//! What the meta plugin's logic reports. Every variant says what is wrong and where; the
//! CNI code is chosen by the binary (`apps/multus`) from the variant, never here. Messages
//! do not repeat their source: [`oxivirt_cni_spec::error::chain`] prints an error with all
//! of its sources.
//!
//! Each variant's doc ends with the CNI situation it is (the code the binary gives it).

use crate::annotation::AnnotationError;
use oxivirt_cni_spec::error::Cleanup;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The meta plugin's own config and the network configs it reads.
    /// What the spec layer refuses: the meta plugin's own config (stdin), a config file's
    /// JSON, and (through `From`, for the binary's `plugin::run`) the `CNI_*` environment,
    /// stdin, CHECK of an old version. CNI: the spec error's own code (malformed JSON 6,
    /// wrong shape 7, version 1, environment 4, …).
    #[error(transparent)]
    Spec(#[from] oxivirt_cni_spec::Error),
    /// The meta plugin's config names neither `clusterNetwork` nor `delegates`.
    /// CNI: invalid network config (7).
    #[error("multus config: one of `clusterNetwork` or `delegates` is required")]
    NoClusterNetwork,
    /// The meta plugin's `logLevel` is not one Multus knows. CNI: invalid network config (7).
    #[error("multus config: field `logLevel` {0:?} is not one of debug, verbose, error, panic")]
    LogLevel(String),
    /// A config directory could not be listed. CNI: I/O failure (5).
    #[error("failed to list network configs in {}", dir.display())]
    ConfDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A network config file could not be read. CNI: invalid network config (7).
    #[error("failed to read network config {}", path.display())]
    ConfRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A config directory has no network config (to use or to wrap).
    /// CNI: invalid network config (7).
    #[error("no network config in {}", dir.display())]
    NoNetworkConfig { dir: PathBuf },
    /// The generated `00-multus.conf` could not be written or removed (autoconf; not a CNI
    /// call). CNI: I/O failure (5).
    #[error("failed to {op} {}", path.display())]
    ConfWrite {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },

    // Which networks the pod asks for.
    /// A pod's networks or default-network annotation is invalid.
    /// CNI: invalid network config (7).
    #[error("pod {pod}")]
    Annotation {
        /// `namespace/name`.
        pod: String,
        #[source]
        source: Box<AnnotationError>,
    },
    /// namespaceIsolation forbids the pod a network in another namespace.
    /// CNI: invalid network config (7).
    #[error(
        "pod {pod}: network {network} is in another namespace and namespaceIsolation allows \
         only {pod_namespace} and the global namespaces ({global})"
    )]
    NamespaceIsolation {
        pod: String,
        pod_namespace: String,
        /// `namespace/name`.
        network: String,
        global: String,
    },
    /// A network the pod asks for has no NetworkAttachmentDefinition.
    /// CNI: invalid network config (7).
    #[error("pod {pod}: NetworkAttachmentDefinition {network} not found")]
    NadNotFound { pod: String, network: String },
    /// A NetworkAttachmentDefinition without `spec.config` whose name is no config in
    /// `confDir`. CNI: invalid network config (7).
    #[error(
        "{}network {network}: the NetworkAttachmentDefinition has no config and {} has none named {name:?}",
        pod_prefix(pod), conf_dir.display()
    )]
    NadNoConfig {
        pod: Option<String>,
        network: String,
        name: String,
        conf_dir: PathBuf,
    },
    /// A NetworkAttachmentDefinition's `spec.config` is not JSON.
    /// CNI: invalid network config (7).
    #[error("{}network {network}: spec.config is not valid JSON", pod_prefix(pod))]
    NadConfigJson {
        pod: Option<String>,
        network: String,
        #[source]
        source: serde_json::Error,
    },
    /// A NetworkAttachmentDefinition's `spec.config` is JSON but not an object.
    /// CNI: invalid network config (7).
    #[error(
        "{}network {network}: spec.config is not a JSON object",
        pod_prefix(pod)
    )]
    NadConfigNotObject {
        pod: Option<String>,
        network: String,
    },
    /// `clusterNetwork`, a `defaultNetworks` entry or the default-network annotation names
    /// no NetworkAttachmentDefinition, no config in `confDir` and no path.
    /// CNI: invalid network config (7).
    #[error(
        "network {name:?}: no NetworkAttachmentDefinition in {namespace}, no config named so in {}, and not a path",
        conf_dir.display()
    )]
    NetworkNotFound {
        name: String,
        namespace: String,
        conf_dir: PathBuf,
    },
    /// Looking up one of the pod's networks failed (the source says why).
    /// CNI: the source's code.
    #[error("pod {pod}: network {network}")]
    Network {
        pod: String,
        /// `namespace/name`.
        network: String,
        #[source]
        source: Box<Error>,
    },

    // Where pods and NetworkAttachmentDefinitions come from.
    /// The object store directory is missing. CNI: try again later (11).
    #[error("object store {} is not reachable", root.display())]
    StoreUnreachable { root: PathBuf },
    /// No object source is configured (no store, no kubeconfig, not in a cluster).
    /// CNI: try again later (11).
    #[error("no object source configured (`oxivirtStore`, `kubeconfig`, or running in a cluster)")]
    NoClusterSource,
    /// The pod is neither in the store nor known to the API server.
    /// CNI: invalid network config (7).
    #[error("pod {namespace}/{name} not found")]
    PodNotFound { namespace: String, name: String },
    /// An object file in the store could not be read. CNI: invalid network config (7).
    #[error("failed to read {}", path.display())]
    ObjectRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An object file is not YAML/JSON; the source has the line and column.
    /// CNI: invalid network config (7).
    #[error("{}", path.display())]
    ObjectParse {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// An object that parses but is not what it should be (kind, apiVersion, shape).
    /// CNI: invalid network config (7).
    #[error("{what}: {reason}")]
    ObjectInvalid { what: String, reason: String },
    /// Writing an object (or its lock) in the store failed. CNI: invalid network config
    /// (7); only reached through [`Error::NetworkStatus`] in a CNI call.
    #[error("failed to {op} {}", path.display())]
    ObjectWrite {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// `KUBERNETES_SERVICE_HOST` is not set and no kubeconfig was given.
    /// CNI: try again later (11).
    #[error("not in a cluster: KUBERNETES_SERVICE_HOST is not set")]
    NotInCluster,
    /// A kubeconfig, service-account token or certificate file could not be read.
    /// CNI: try again later (11), as every API client set-up failure.
    #[error("failed to read {}", path.display())]
    CredentialRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A kubeconfig that is not YAML. CNI: try again later (11).
    #[error("kubeconfig {}", path.display())]
    KubeconfigParse {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A kubeconfig whose current context or cluster is missing.
    /// CNI: try again later (11).
    #[error("kubeconfig {}: {reason}", path.display())]
    Kubeconfig { path: PathBuf, reason: String },
    /// Inline certificate or key data that is not base64. CNI: try again later (11).
    #[error("{what}: not base64")]
    CredentialBase64 {
        what: String,
        #[source]
        source: base64::DecodeError,
    },
    /// A certificate authority without a PEM certificate, or a client key that does not
    /// parse. CNI: try again later (11).
    #[error("{what}: {reason}")]
    CredentialPem {
        what: String,
        reason: &'static str,
        #[source]
        source: Option<Box<ureq::Error>>,
    },
    /// Setting up the API client failed earlier in this process (the same error for every
    /// lookup). CNI: try again later (11).
    #[error("API client")]
    ApiClient(#[source] Arc<Error>),
    /// The API server could not be reached or spoken to (connection, TLS, timeout).
    /// CNI: try again later (11).
    #[error("API server {server}")]
    ApiUnreachable {
        server: String,
        #[source]
        source: Box<ureq::Error>,
    },
    /// The API server answered a request with an error status. CNI: invalid network
    /// config (7) for 401/403 (access refused), try again later (11) for any other status.
    #[error("API server {server}: {what}: HTTP {status} {message}")]
    ApiStatus {
        server: String,
        /// The object, `pod ns/name`.
        what: String,
        status: u16,
        /// The `message` of the server's Status object (empty if it sent none).
        message: String,
    },
    /// The API server answered 200 with a body that is not JSON. CNI: decoding failure (6)
    /// (new: the old code read such a body as an empty object).
    #[error("API server {server}: {what}: the response is not JSON")]
    ApiResponse {
        server: String,
        what: String,
        #[source]
        source: serde_json::Error,
    },

    // The thick plugin: the shim and its daemon.
    /// The shim could not reach the daemon's socket (or lost it mid-call): the daemon is
    /// not running yet or is restarting. CNI: try again later (11).
    #[error("multus daemon at {}", socket.display())]
    DaemonUnreachable {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The daemon's answer is not Multus's protocol. CNI: decoding failure (6).
    #[error("multus daemon at {}: {reason}", socket.display())]
    DaemonProtocol { socket: PathBuf, reason: String },
    /// The daemon ran the call and it failed: its CNI error, code and all.
    /// CNI: the daemon's code.
    #[error("multus daemon at {}", socket.display())]
    Daemon {
        socket: PathBuf,
        #[source]
        source: oxivirt_cni_spec::CniError,
    },

    // Running the delegates.
    /// The readiness indicator file does not exist yet (ADD). CNI: try again later (11).
    #[error("readiness indicator file {} does not exist yet", file.display())]
    NotReady { file: PathBuf },
    /// The readiness indicator file does not exist yet (STATUS). CNI: plugin not
    /// available (50).
    #[error("not available: readiness indicator file {} does not exist yet", file.display())]
    NotAvailable { file: PathBuf },
    /// A delegate could not be found, run, or reported an error (its own CNI error, code and
    /// details, is the source's source). CNI: the spec error's code — the delegate's own
    /// code passed through, 102 for a delegate that failed without a CNI error, 5 when it
    /// could not be run, 7 when it is not in the path.
    #[error("network {network}")]
    Delegate {
        network: String,
        #[source]
        source: oxivirt_cni_spec::Error,
    },
    /// A delegate's config is a list without plugins, or a plugin entry that is not an
    /// object. CNI: invalid network config (7).
    #[error("network {network}: {reason}")]
    DelegateConfig {
        network: String,
        reason: &'static str,
    },
    /// A delegate's ADD printed something that is not a CNI result. CNI: the spec error's
    /// code (malformed JSON 6, wrong shape 7).
    #[error("network {network}")]
    DelegateResult {
        network: String,
        #[source]
        source: oxivirt_cni_spec::Error,
    },
    /// No cluster network result after a successful ADD (cannot happen: the plan always
    /// starts with it). CNI: plugin code 102.
    #[error("no cluster network result")]
    NoClusterResult,
    /// A netlink operation for `default-route` failed. CNI: plugin code 100.
    #[error("default-route: {op} on {ifname}")]
    Netlink {
        op: String,
        ifname: String,
        #[source]
        source: oxivirt_netlink::Error,
    },
    /// The interface `default-route` is set on is not in the pod. CNI: plugin code 100.
    #[error("default-route: interface {ifname} not found")]
    NoInterface { ifname: String },
    /// Writing network-status on the pod failed (after every delegate was added).
    /// CNI: plugin code 102, whatever the source.
    #[error("setting network-status on pod {pod}")]
    NetworkStatus {
        pod: String,
        #[source]
        source: Box<Error>,
    },

    /// The sysctls a launcher pod's namespace needs could not be set. CNI: I/O failure (5).
    #[error("setting the launcher pod's sysctls in {netns}")]
    LauncherPod {
        netns: String,
        #[source]
        source: oxivirt_netlink::Error,
    },

    // The cache.
    /// Reading, writing or removing a cache entry failed. CNI: I/O failure (5).
    #[error("failed to {op} cache {}", path.display())]
    Cache {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A cache entry that cannot be encoded (a non-UTF-8 path) or decoded.
    /// CNI: I/O failure (5).
    #[error("cache {}", path.display())]
    CacheJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// CHECK for a container without a (readable) cache entry; the source says why it
    /// could not be read, if it exists. CNI: plugin code 104.
    #[error("no attachment cached for container {container_id}")]
    NotCached {
        container_id: String,
        #[source]
        source: Option<Box<Error>>,
    },

    // Several failures.
    /// `error` failed, and so did the cleanup or teardown steps in `also` (rollback of the
    /// delegates already added, DEL of every delegate, cache removal, GC). CNI: `error`'s
    /// code; the others belong in the message.
    #[error(transparent)]
    Cleanup(Cleanup<Error>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn pod_prefix(pod: &Option<String>) -> String {
    pod.as_ref()
        .map(|p| format!("pod {p}: "))
        .unwrap_or_default()
}

impl Error {
    /// The error that decides the CNI code: under [`Error::Network`] (context) and
    /// Whether the API server refused our credentials (401) anywhere in this error: a
    /// long-lived owner of the client makes it again (a rotated token).
    pub fn is_unauthorized(&self) -> bool {
        match self {
            Self::ApiStatus { status: 401, .. } => true,
            Self::ApiClient(inner) => inner.is_unauthorized(),
            Self::Network { source, .. } => source.is_unauthorized(),
            Self::Cleanup(c) => c.error.is_unauthorized(),
            _ => false,
        }
    }

    /// [`Error::Cleanup`] (the first failure).
    pub fn root(&self) -> &Error {
        match self {
            Self::Network { source, .. } => source.root(),
            Self::Cleanup(c) => c.error.root(),
            other => other,
        }
    }
}

/// Errors collected from steps that all ran (see [`Cleanup::collect`]).
pub fn collect(errors: Vec<Error>) -> Result<()> {
    Cleanup::collect(errors, Error::Cleanup)
}

/// `error`, with the cleanup steps that failed after it.
pub fn with_cleanup(error: Error, also: Vec<Error>) -> Error {
    Cleanup::or_alone(error, also, Error::Cleanup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxivirt_cni_spec::error::chain;

    #[test]
    fn a_refused_credential_is_found_through_context_and_cleanup() {
        let refused = || Error::ApiStatus {
            server: "https://127.0.0.1:6443".into(),
            what: "pod default/p".into(),
            status: 401,
            message: "Unauthorized".into(),
        };
        assert!(refused().is_unauthorized());
        let wrapped = with_cleanup(
            Error::Network {
                pod: "default/p".into(),
                network: "default/multus-br".into(),
                source: Box::new(refused()),
            },
            vec![Error::NoClusterResult],
        );
        assert!(wrapped.is_unauthorized());
        assert!(Error::ApiClient(Arc::new(refused())).is_unauthorized());
        let unavailable = Error::ApiStatus {
            server: "s".into(),
            what: "w".into(),
            status: 503,
            message: String::new(),
        };
        assert!(!unavailable.is_unauthorized());
    }

    #[test]
    fn errors_cross_threads() {
        // The daemon that comes next hands errors between threads.
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Error>();
    }

    #[test]
    fn collect_keeps_every_failure() {
        assert!(collect(Vec::new()).is_ok());
        let one = collect(vec![Error::NoClusterResult]).expect_err("one");
        assert!(matches!(one, Error::NoClusterResult));
        let io = |op| Error::Cache {
            path: "/c/x".into(),
            op,
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        let e = collect(vec![io("remove"), io("read"), Error::NoClusterResult]).expect_err("3");
        let Error::Cleanup(c) = &e else {
            panic!("{e:?}");
        };
        assert_eq!(c.also.len(), 2);
        assert!(matches!(e.root(), Error::Cache { op: "remove", .. }));
        // Every failure is in the message, with its errno.
        let msg = chain(&e);
        assert!(
            msg.starts_with("2 cleanup steps failed (failed to read cache /c/x: Permission denied")
                && msg.ends_with("after this error: failed to remove cache /c/x: Permission denied (os error 13)"),
            "{msg}"
        );
        assert!(matches!(&*c.error, Error::Cache { .. }));
        assert!(matches!(
            with_cleanup(Error::NoClusterResult, Vec::new()),
            Error::NoClusterResult
        ));
    }
}
