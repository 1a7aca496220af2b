//! The certificates of a cluster's oxivirt-api and what it learns of its front proxy, kept
//! in and read from the cluster: its CA (a Secret only it reads), the node relays'
//! serving certificate (a Secret the node DaemonSet mounts), the APIService's CA bundle,
//! and `kube-system/extension-apiserver-authentication`. Every replica converges on the
//! same Secrets: the first to create one wins and the others read it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use oxivirt_apiserver::pki::{Ca, Usage};
use oxivirt_apiserver::relay;
use oxivirt_apiserver::server::FrontProxy;

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "oxivirt".to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            "oxivirt-api".to_string(),
        ),
    ])
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn text(data: &BTreeMap<String, ByteString>, key: &str, secret: &str) -> anyhow::Result<String> {
    let b = data
        .get(key)
        .with_context(|| format!("Secret {secret} has no {key:?}"))?;
    String::from_utf8(b.0.clone()).with_context(|| format!("Secret {secret}: {key:?} is not PEM"))
}

/// The Secret `ns/name`, made from `make` when there is none (or read back when another
/// replica made it first).
async fn get_or_create(
    secrets: &Api<Secret>,
    name: &str,
    make: impl FnOnce() -> anyhow::Result<Secret>,
) -> anyhow::Result<Secret> {
    match secrets.get(name).await {
        Ok(s) => return Ok(s),
        Err(e) if is_status(&e, 404) => {}
        Err(e) => return Err(e).with_context(|| format!("reading Secret {name}")),
    }
    let new = make()?;
    match secrets.create(&PostParams::default(), &new).await {
        Ok(s) => Ok(s),
        Err(e) if is_status(&e, 409) => secrets
            .get(name)
            .await
            .with_context(|| format!("reading Secret {name} another replica made")),
        Err(e) => Err(e).with_context(|| format!("creating Secret {name}")),
    }
}

fn secret(ns: &str, name: &str, type_: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some(labels()),
            ..ObjectMeta::default()
        },
        type_: Some(type_.into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// oxivirt-api's CA, from the Secret `ns/name` (made on the first start).
pub async fn cluster_ca(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<Ca> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = get_or_create(&secrets, name, || {
        let ca = Ca::generate("oxivirt-api-ca").context("making the CA")?;
        Ok(secret(
            ns,
            name,
            "Opaque",
            &[("ca.crt", &ca.cert_pem), ("ca.key", &ca.key_pem)],
        ))
    })
    .await?;
    let data = s.data.unwrap_or_default();
    Ok(Ca {
        cert_pem: text(&data, "ca.crt", name)?,
        key_pem: text(&data, "ca.key", name)?,
    })
}

fn relay_tls(ns: &str, name: &str, ca: &Ca) -> anyhow::Result<Secret> {
    let cert = ca
        .issue(
            relay::SERVER_NAME,
            &[relay::SERVER_NAME.to_string()],
            Usage::Server,
        )
        .context("the relay's serving certificate")?;
    Ok(secret(
        ns,
        name,
        "kubernetes.io/tls",
        &[
            ("tls.crt", &cert.cert_pem),
            ("tls.key", &cert.key_pem),
            ("ca.crt", &ca.cert_pem),
        ],
    ))
}

/// Makes sure the Secret `ns/name` holds a relay serving certificate of `ca` (a new one
/// when the CA was made again since).
pub async fn relay_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
    ca: &Ca,
) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = get_or_create(&secrets, name, || relay_tls(ns, name, ca)).await?;
    let data = s.data.clone().unwrap_or_default();
    if text(&data, "ca.crt", name).ok().as_deref() == Some(ca.cert_pem.as_str()) {
        return Ok(());
    }
    let mut new = relay_tls(ns, name, ca)?;
    new.metadata.resource_version = s.metadata.resource_version;
    match secrets.replace(name, &PostParams::default(), &new).await {
        Ok(_) => Ok(()),
        // Another replica renewed it first, from the same CA.
        Err(e) if is_status(&e, 409) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("renewing Secret {name}")),
    }
}

/// Whom to take requests from.
pub struct Front {
    pub ca_pem: String,
    pub proxy: FrontProxy,
}

/// The namespace and name of the cluster's front-proxy configuration.
const AUTH_NS: &str = "kube-system";
const AUTH_CM: &str = "extension-apiserver-authentication";

fn json_list(data: &BTreeMap<String, String>, key: &str) -> anyhow::Result<Vec<String>> {
    match data.get(key) {
        None => Ok(Vec::new()),
        Some(s) if s.trim().is_empty() => Ok(Vec::new()),
        Some(s) => serde_json::from_str(s)
            .with_context(|| format!("ConfigMap {AUTH_NS}/{AUTH_CM}: {key} is not a JSON list")),
    }
}

/// The front proxy: from `ca_file` and `allowed_names` when given, else as the cluster's
/// API server publishes it in `kube-system/extension-apiserver-authentication`.
pub async fn front_proxy(
    client: &kube::Client,
    ca_file: Option<&Path>,
    allowed_names: &[String],
) -> anyhow::Result<Front> {
    if let Some(f) = ca_file {
        let ca_pem = std::fs::read_to_string(f)
            .with_context(|| format!("--requestheader-client-ca-file {}", f.display()))?;
        return Ok(Front {
            ca_pem,
            proxy: FrontProxy {
                allowed_names: allowed_names
                    .iter()
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .collect(),
                username_headers: vec!["X-Remote-User".into()],
            },
        });
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), AUTH_NS);
    let cm = cms
        .get(AUTH_CM)
        .await
        .with_context(|| format!("reading ConfigMap {AUTH_NS}/{AUTH_CM}"))?;
    let data = cm.data.unwrap_or_default();
    let Some(ca_pem) = data.get("requestheader-client-ca-file").cloned() else {
        bail!(
            "ConfigMap {AUTH_NS}/{AUTH_CM} has no requestheader-client-ca-file: the cluster's API \
             server runs without --requestheader-client-ca-file, so it cannot proxy to an \
             aggregated API server"
        );
    };
    let mut username_headers = json_list(&data, "requestheader-username-headers")?;
    if username_headers.is_empty() {
        username_headers.push("X-Remote-User".into());
    }
    Ok(Front {
        ca_pem,
        proxy: FrontProxy {
            allowed_names: json_list(&data, "requestheader-allowed-names")?,
            username_headers,
        },
    })
}

/// Keeps `ca_pem` in the APIService `name`'s caBundle (with insecureSkipTLSVerify off), so
/// the cluster's API server verifies this server: set at start, and again whenever it is
/// missing or another (the APIService applied after this server started, or made again),
/// checked every `every`. Failures are reported once until it works again: the rest of
/// the API works, and virtctl's subresources only wait for the bundle.
pub async fn keep_ca_bundle(
    client: kube::Client,
    name: String,
    ca_pem: String,
    every: std::time::Duration,
) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    let path = format!("/apis/apiregistration.k8s.io/v1/apiservices/{name}");
    let mut reported = false;
    loop {
        match sync_ca_bundle(&client, &path, &b64).await {
            Ok(changed) => {
                if changed {
                    eprintln!("oxivirt-api: set the caBundle of APIService {name}");
                }
                reported = false;
            }
            Err(e) if !reported => {
                eprintln!(
                    "oxivirt-api: WARNING: could not set the caBundle of APIService {name}: \
                     {e:#} (until it is set, the cluster's API server cannot verify this \
                     server and virtctl's subresources are unavailable; trying again every \
                     {} s)",
                    every.as_secs()
                );
                reported = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(every).await;
    }
}

/// One check: whether it had to patch.
async fn sync_ca_bundle(client: &kube::Client, path: &str, b64: &str) -> anyhow::Result<bool> {
    let get = http::Request::get(path).body(Vec::new())?;
    let current: serde_json::Value = client.request(get).await?;
    let spec = &current["spec"];
    if spec["caBundle"] == b64 && spec["insecureSkipTLSVerify"] != true {
        return Ok(false);
    }
    let patch = serde_json::json!({"spec": {"caBundle": b64, "insecureSkipTLSVerify": false}});
    let req = http::Request::patch(path)
        .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
        .body(serde_json::to_vec(&patch)?)?;
    client.request::<serde_json::Value>(req).await?;
    Ok(true)
}
