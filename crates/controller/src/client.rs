//! A client of a Kubernetes API, as the cluster binaries make one: from a kubeconfig file
//! when given, else in-cluster (the service account), else `$KUBECONFIG` or
//! `~/.kube/config`.

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
