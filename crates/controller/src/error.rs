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
}

pub fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

/// The error and its sources, `: `-joined.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
