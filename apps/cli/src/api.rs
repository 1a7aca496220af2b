//! The one path to the API server: kube-rs's client (TLS, auth from the kubeconfig) sending
//! requests we build from the static kind table, so no discovery round trip is needed.

use std::path::{Path, PathBuf};

use futures_util::io::AsyncBufReadExt;
use futures_util::{Stream, StreamExt};
use http::header::{ACCEPT, CONTENT_TYPE};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use crate::kinds::{self, Kind};

/// What went wrong talking to the server; `Display` is kubectl's line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("error loading kubeconfig {}", .path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("invalid configuration")]
    Config(#[source] kube::config::KubeconfigError),
    #[error("cannot build the client")]
    Client(#[source] kube::Error),
    /// The server's `Status`; `context` is kubectl's `error when creating "file": `.
    #[error("Error from server ({}): {context}{}", reason(.status), .status.message)]
    Server {
        status: Box<kube::core::Status>,
        context: String,
    },
    #[error("Unable to connect to the server: {}", chain(.0))]
    Transport(#[source] kube::Error),
    #[error("invalid response from the server")]
    Decode(#[source] serde_json::Error),
    #[error("building the request")]
    Request(#[source] http::Error),
}

fn reason(s: &kube::core::Status) -> &str {
    if s.reason.is_empty() {
        "Unknown"
    } else {
        &s.reason
    }
}

use oxivirt_api::report::chain;

impl Error {
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Server { status, .. } => status.code == 404 || status.reason == "NotFound",
            _ => false,
        }
    }

    /// The same error said about a file, as kubectl does: `error when creating "f": …`.
    pub fn when(self, what: &str) -> Self {
        match self {
            Error::Server { status, context } => Error::Server {
                status,
                context: format!("{what}: {context}"),
            },
            other => other,
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => Error::Server {
                status,
                context: String::new(),
            },
            other => Error::Transport(other),
        }
    }
}

/// A connected client and the namespace to use when none is given.
pub struct Api {
    client: kube::Client,
    pub default_namespace: String,
}

/// Query parameters of a list or watch.
#[derive(Debug, Default, Clone)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub resource_version: Option<String>,
}

impl ListParams {
    fn query(&self, watch: bool) -> String {
        let mut q: Vec<String> = Vec::new();
        if let Some(s) = &self.label_selector {
            q.push(format!("labelSelector={}", encode(s)));
        }
        if let Some(s) = &self.field_selector {
            q.push(format!("fieldSelector={}", encode(s)));
        }
        if watch {
            q.push("watch=1".into());
            if let Some(rv) = &self.resource_version {
                q.push(format!("resourceVersion={}", encode(rv)));
            }
        }
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    }
}

/// Percent-encodes a query value (selectors carry `=`, `,` and `!`).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Api {
    /// Loads the kubeconfig files (merged first-wins like kubectl) and builds the client.
    pub async fn connect(paths: &[PathBuf], context: Option<String>) -> Result<Api, Error> {
        let mut merged: Option<Kubeconfig> = None;
        for p in paths {
            let kc = read(p)?;
            merged = Some(match merged {
                None => kc,
                Some(m) => m.merge(kc).map_err(Error::Config)?,
            });
        }
        let kc = merged.unwrap_or_default();
        let opts = KubeConfigOptions {
            context,
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(Error::Config)?;
        let default_namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).map_err(Error::Client)?;
        Ok(Api {
            client,
            default_namespace,
        })
    }

    /// The client, for requests the verbs here do not build (virtctl's subresources).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    async fn get_path(&self, path: &str) -> Result<Value, Error> {
        let req = http::Request::get(path)
            .header(ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(Error::Request)?;
        self.json(req).await
    }

    /// The kinds of one API version (`v1`, `apps/v1`); none when the server has not got it.
    pub async fn discover_version(&self, api_version: &str) -> Result<Vec<Kind>, Error> {
        let path = if api_version.contains('/') {
            format!("/apis/{api_version}")
        } else {
            format!("/api/{api_version}")
        };
        match self.get_path(&path).await {
            Ok(list) => Ok(kinds::from_discovery(api_version, &list)),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Every kind the server serves (core and each group's preferred version), for names
    /// the static table does not know.
    pub async fn discover(&self) -> Result<Vec<Kind>, Error> {
        let mut all = self.discover_version("v1").await?;
        let groups = match self.get_path("/apis").await {
            Ok(g) => g,
            Err(e) if e.is_not_found() => Value::Null,
            Err(e) => return Err(e),
        };
        let versions = groups["groups"]
            .as_array()
            .map(|gs| {
                gs.iter()
                    .filter_map(|g| g["preferredVersion"]["groupVersion"].as_str())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for gv in versions {
            // One group whose server is down (an aggregated API) does not hide the others.
            if let Ok(mut ks) = self.discover_version(&gv).await {
                all.append(&mut ks);
            }
        }
        Ok(all)
    }

    async fn json(&self, req: http::Request<Vec<u8>>) -> Result<Value, Error> {
        let text = self.client.request_text(req).await?;
        serde_json::from_str(&text).map_err(Error::Decode)
    }

    pub async fn get(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        accept: &str,
    ) -> Result<Value, Error> {
        let req = http::Request::get(kind.object_path(namespace, name))
            .header(ACCEPT, accept)
            .body(Vec::new())
            .map_err(Error::Request)?;
        self.json(req).await
    }

    /// Lists in `namespace`, or everywhere when `None`.
    pub async fn list(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        params: &ListParams,
        accept: &str,
    ) -> Result<Value, Error> {
        let url = format!("{}{}", kind.collection_path(namespace), params.query(false));
        let req = http::Request::get(url)
            .header(ACCEPT, accept)
            .body(Vec::new())
            .map_err(Error::Request)?;
        self.json(req).await
    }

    pub async fn create(&self, kind: &Kind, namespace: &str, obj: &Value) -> Result<Value, Error> {
        let req = http::Request::post(kind.collection_path(Some(namespace)))
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(obj.to_string().into_bytes())
            .map_err(Error::Request)?;
        self.json(req).await
    }

    pub async fn merge_patch(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, Error> {
        let req = http::Request::patch(kind.object_path(namespace, name))
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/merge-patch+json")
            .body(patch.to_string().into_bytes())
            .map_err(Error::Request)?;
        self.json(req).await
    }

    pub async fn delete(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        grace_period: Option<i64>,
    ) -> Result<Value, Error> {
        let mut opts = serde_json::json!({
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
        });
        if let Some(g) = grace_period {
            opts["gracePeriodSeconds"] = g.into();
        }
        let req = http::Request::delete(kind.object_path(namespace, name))
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(opts.to_string().into_bytes())
            .map_err(Error::Request)?;
        self.json(req).await
    }

    /// The watch events (`{"type": …, "object": …}`) from `params.resource_version` on.
    pub async fn watch(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        params: &ListParams,
        accept: &str,
    ) -> Result<impl Stream<Item = Result<Value, Error>>, Error> {
        let url = format!("{}{}", kind.collection_path(namespace), params.query(true));
        let req = http::Request::get(url)
            .header(ACCEPT, accept)
            .body(Vec::new())
            .map_err(Error::Request)?;
        let body = self.client.request_stream(req).await?;
        Ok(body.lines().filter_map(|line| async move {
            match line {
                Ok(l) if l.trim().is_empty() => None,
                Ok(l) => Some(serde_json::from_str::<Value>(&l).map_err(Error::Decode)),
                Err(e) => Some(Err(Error::Transport(kube::Error::ReadEvents(e)))),
            }
        }))
    }
}

fn read(path: &Path) -> Result<Kubeconfig, Error> {
    Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded() {
        let p = ListParams {
            field_selector: Some(
                "involvedObject.name=testvm-2,involvedObject.namespace=default".into(),
            ),
            resource_version: Some("12".into()),
            ..Default::default()
        };
        assert_eq!(
            p.query(false),
            "?fieldSelector=involvedObject.name%3Dtestvm-2%2CinvolvedObject.namespace%3Ddefault"
        );
        assert!(p.query(true).ends_with("&watch=1&resourceVersion=12"));
        assert_eq!(ListParams::default().query(false), "");
    }

    #[test]
    fn server_errors_read_like_kubectl() {
        let status =
            kube::core::Status::failure("virtualmachines.kubevirt.io \"x\" not found", "NotFound")
                .with_code(404);
        let e = Error::from(kube::Error::Api(status.boxed()));
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): virtualmachines.kubevirt.io \"x\" not found"
        );
        assert_eq!(
            e.when("error when deleting \"vm.yaml\"").to_string(),
            "Error from server (NotFound): error when deleting \"vm.yaml\": virtualmachines.kubevirt.io \"x\" not found"
        );
    }
}
