//! The controller's failures; each reconcile that fails is retried with back-off.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// An object that does not parse as its kind (it was admitted, so this is a bug or a
    /// foreign writer).
    #[error("{kind} {name}: does not parse")]
    Parse {
        kind: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// A kubeconfig that cannot be read or used.
    #[error("kubeconfig {path}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no in-cluster config and no kubeconfig")]
    NoConfig(#[source] kube::config::InferConfigError),
}

pub fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

pub use oxivirt_api::report::chain;
