//! What can go wrong in the pod runtime. Every variant ends up in a Pod's status and an
//! Event (see `pod.rs`); nothing here panics.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network namespace {}: {what}", .path.display())]
    Netns {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no CNI network config (*.conf, *.conflist) in {}", .dir.display())]
    NoCniConfig { dir: PathBuf },
    #[error("CNI config {}: {why}", .path.display())]
    BadCniConfig { path: PathBuf, why: String },
    #[error("CNI {command} of network {network:?} through {}: {message}", .plugin.display())]
    Cni {
        command: &'static str,
        network: String,
        plugin: PathBuf,
        message: String,
    },
    #[error("the default network config")]
    DefaultNetwork(#[source] Box<oxivirt_multus_core::Error>),
    #[error("image cache {}", .dir.display())]
    ImageCache {
        dir: PathBuf,
        #[source]
        source: Box<oxivirt_image::Error>,
    },
    #[error("--registry-mirror {spec:?}")]
    Mirror {
        spec: String,
        #[source]
        source: Box<oxivirt_image::Error>,
    },
    #[error("start {}", .path.display())]
    Launcher {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("VirtualMachineInstance {namespace}/{name}: {why}")]
    Vmi {
        namespace: String,
        name: String,
        why: String,
    },
    #[error("the API")]
    Kube(#[from] Box<kube::Error>),
    #[error("a blocking task ended early")]
    Join(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use oxivirt_api::report::chain;
