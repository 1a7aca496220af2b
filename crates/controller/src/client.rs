//! What the binaries that talk to a Kubernetes API share: the client, from a kubeconfig
//! file when given, else in-cluster (the service account), else `$KUBECONFIG` or
//! `~/.kube/config`; and the runtime their work runs on, with its exit code.

use std::path::Path;

use crate::error::{kube as kube_error, Error};

/// The client for `kubeconfig`, or the inferred configuration without one.
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, Error> {
    let config = match kubeconfig {
        Some(p) => {
            let bad = |source| Error::Kubeconfig {
                path: p.display().to_string(),
                source,
            };
            let kc = kube::config::Kubeconfig::read_from(p).map_err(bad)?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(bad)?
        }
        None => kube::Config::infer().await.map_err(Error::NoConfig)?,
    };
    kube::Client::try_from(config).map_err(kube_error("API client"))
}

/// Runs `work` on a two-worker runtime and turns its outcome into the process's exit
/// code, printing a failure (its whole chain, with `{:#}`) prefixed with `program`.
pub fn run_to_exit<E: std::fmt::Display>(
    program: &str,
    work: impl std::future::Future<Output = Result<(), E>>,
) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{program}: start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(work) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
