//! oxivirtd's [`Backend`]: the VMs, VMIs and launcher pods of its own store, written
//! through its own handler (admission, generation, preconditions), and the launchers of
//! this machine, whose state dir is `<launchers_root>/<ns>/<name>/`.

use std::collections::HashMap;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use oxivirt_app_launcher::control;
use oxivirt_store::Key;
use serde_json::Value;

use super::{bad_request, internal, status, Backend, ConsoleStream, Kind, Put};
use crate::error::ApiError;
use crate::handler::{Api, Reply, Request};
use crate::resources::{self, Resource};

/// The object of `r` named `name` in `ns`, if any.
fn read(api: &Api, r: &Resource, ns: &str, name: &str) -> Result<Option<Value>, Reply> {
    let key = Key::namespaced(&r.store_key(), ns, name);
    match api.store().get(&key).map_err(ApiError::from)? {
        None => Ok(None),
        Some(o) => Ok(Some(o.value().map_err(ApiError::from)?)),
    }
}

/// Replaces the object (or its status) through the API's own update, with the
/// `resourceVersion` it was read at as the precondition.
async fn put(
    api: &Api,
    r: &Resource,
    ns: &str,
    name: &str,
    obj: &Value,
    status_only: bool,
) -> Result<Put, Reply> {
    let path = format!(
        "/apis/{}/namespaces/{ns}/{}/{name}{}",
        r.api_version(),
        r.plural,
        if status_only { "/status" } else { "" }
    );
    let req = Request {
        method: "PUT".into(),
        path,
        query: HashMap::new(),
        accept: "application/json".into(),
        content_type: "application/json".into(),
        body: Bytes::from(serde_json::to_vec(obj).unwrap_or_default()),
    };
    // Boxed: this is a request inside a request (the handler's future contains ours).
    match Box::pin(api.handle(req)).await {
        Reply::Json { status: 200, .. } => Ok(Put::Done),
        Reply::Json {
            status: 409, body, ..
        } if serde_json::from_slice::<Value>(&body).is_ok_and(|s| s["reason"] == "Conflict") => {
            Ok(Put::Raced)
        }
        other => Err(other),
    }
}

/// A force restart deletes the VMI's running launcher Pod with the shortest safe grace
/// period (1 s, as virt-api), so the controller's restart does not wait for a guest
/// shutdown.
async fn delete_launcher_pod(api: &Api, ns: &str, vmi: &Value) -> Result<(), Reply> {
    let Some(vmi_uid) = vmi["metadata"]["uid"].as_str() else {
        return Ok(());
    };
    let (pods, _) = api
        .store()
        .list(&resources::POD.store_key(), Some(ns))
        .map_err(ApiError::from)?;
    for pod in pods {
        let Ok(p) = pod.value() else { continue };
        let labels = &p["metadata"]["labels"];
        if labels["kubevirt.io"] != "virt-launcher"
            || labels["kubevirt.io/created-by"] != vmi_uid
            || p["status"]["phase"] != "Running"
        {
            continue;
        }
        let req = Request {
            method: "DELETE".into(),
            path: format!("/api/v1/namespaces/{ns}/pods/{}", pod.key.name),
            query: HashMap::new(),
            accept: "application/json".into(),
            content_type: "application/json".into(),
            body: Bytes::from_static(br#"{"gracePeriodSeconds":1}"#),
        };
        match Box::pin(api.handle(req)).await {
            Reply::Json {
                status: 200 | 202 | 404,
                ..
            } => {}
            other => return Err(other),
        }
        break;
    }
    Ok(())
}

fn no_launchers() -> Reply {
    status(
        503,
        "ServiceUnavailable",
        "this API server was started without a launcher directory: pause, unpause and console are unavailable".into(),
        None,
    )
}

/// The launcher state directory of VMI `ns/name`.
fn launcher_dir(api: &Api, ns: &str, name: &str) -> Result<PathBuf, Reply> {
    // A name from the URL becomes a path: only a plain name may.
    let plain = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains('/');
    if !plain(ns) || !plain(name) {
        return Err(bad_request(format!("invalid name {ns}/{name}")));
    }
    let root = api.launchers_root().ok_or_else(no_launchers)?;
    Ok(root.join(ns).join(name))
}

/// One request on the launcher's control socket (a blocking client, off the runtime).
pub async fn control_socket(
    sock: PathBuf,
    req: control::Request,
) -> Result<control::Response, Reply> {
    let what = sock.clone();
    let answer = tokio::task::spawn_blocking(move || control::request(&sock, &req))
        .await
        .map_err(|e| internal(format!("the launcher request did not finish: {e}")))?;
    let resp = answer.map_err(|e| {
        internal(format!(
            "cannot reach the launcher at {}: {e}",
            what.display()
        ))
    })?;
    if resp.ok {
        Ok(resp)
    } else {
        Err(internal(format!(
            "the launcher refused: {}",
            resp.error.as_deref().unwrap_or("no reason given")
        )))
    }
}

impl Backend for Api {
    fn get<'a>(
        &'a self,
        kind: Kind,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, Reply>> {
        Box::pin(async move { read(self, kind.resource(), ns, name) })
    }

    fn put<'a>(
        &'a self,
        kind: Kind,
        ns: &'a str,
        name: &'a str,
        obj: &'a Value,
        status_only: bool,
    ) -> BoxFuture<'a, Result<Put, Reply>> {
        Box::pin(put(self, kind.resource(), ns, name, obj, status_only))
    }

    fn delete_launcher_pod<'a>(
        &'a self,
        ns: &'a str,
        vmi: &'a Value,
    ) -> BoxFuture<'a, Result<(), Reply>> {
        Box::pin(delete_launcher_pod(self, ns, vmi))
    }

    fn launcher_control<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        _vmi: &'a Value,
        req: control::Request,
    ) -> BoxFuture<'a, Result<control::Response, Reply>> {
        Box::pin(async move {
            let sock = launcher_dir(self, ns, name)?.join("control.sock");
            control_socket(sock, req).await
        })
    }

    fn launcher_console<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        _vmi: &'a Value,
    ) -> BoxFuture<'a, Result<Box<dyn ConsoleStream>, Reply>> {
        Box::pin(async move {
            let sock = launcher_dir(self, ns, name)?.join("console.sock");
            let stream = tokio::net::UnixStream::connect(&sock).await.map_err(|e| {
                internal(format!(
                    "dialing the launcher's console {}: {e}",
                    sock.display()
                ))
            })?;
            Ok(Box::new(stream) as Box<dyn ConsoleStream>)
        })
    }
}
