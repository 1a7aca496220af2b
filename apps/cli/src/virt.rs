//! virtctl's verbs over `subresources.kubevirt.io/v1`: `start`, `stop`, `restart`,
//! `pause`, `unpause` (PUTs with virtctl's bodies) and `console` (a websocket with the
//! `plain.kubevirt.io` subprotocol, on the terminal through `oxivirt_console`). What they
//! print, and how they fail, is virtctl's wording, e.g. `VM testvm-2 was scheduled to
//! start` and `Error starting VirtualMachine <the server's message>`.

use std::time::Duration;

use http::header;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::handshake;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::api::Error as ApiError;
use crate::cli::{ConsoleArgs, PauseArgs, RestartArgs, StartArgs, StopArgs, NO_GRACE_PERIOD};
use crate::cmd::Ctx;

const GROUP_VERSION: &str = "subresources.kubevirt.io/v1";

/// The websocket subprotocol virtctl's console speaks.
const PLAIN_PROTOCOL: &str = "plain.kubevirt.io";

/// How long leaving the console waits for the server to answer the close.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// A failed verb; `Display` is the whole line virtctl prints.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

/// What the server said: its `Status` message, else the transport's error as kubectl
/// words it.
fn said(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message,
        other => ApiError::from(other).to_string(),
    }
}

use oxivirt_api::report::chain;

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn subresource_path(ns: &str, plural: &str, name: &str, verb: &str) -> String {
    format!("/apis/{GROUP_VERSION}/namespaces/{ns}/{plural}/{name}/{verb}")
}

/// One PUT as virtctl sends it: a JSON body and no Content-Type.
async fn put(ctx: &Ctx<'_>, path: String, body: &Value) -> Result<(), kube::Error> {
    let req = http::Request::put(path)
        .header(header::ACCEPT, "application/json")
        .body(body.to_string().into_bytes())
        .map_err(kube::Error::HttpError)?;
    ctx.api.client().request_text(req).await.map(|_| ())
}

fn with_dry_run(mut body: Value, dry_run: bool) -> Value {
    if dry_run {
        println!("Dry Run execution");
        body["dryRun"] = json!(["All"]);
    }
    body
}

pub async fn start(ctx: &Ctx<'_>, a: &StartArgs) -> Result<(), Error> {
    let mut body = json!({});
    if a.paused {
        body["paused"] = json!(true);
    }
    let body = with_dry_run(body, a.dry_run);
    let path = subresource_path(&ctx.namespace, "virtualmachines", &a.name, "start");
    put(ctx, path, &body)
        .await
        .map_err(|e| Error(format!("Error starting VirtualMachine {}", said(e))))?;
    println!("VM {} was scheduled to start", a.name);
    Ok(())
}

pub async fn stop(ctx: &Ctx<'_>, a: &StopArgs) -> Result<(), Error> {
    let grace = (a.grace_period != NO_GRACE_PERIOD).then_some(a.grace_period);
    let body = match (a.force, grace) {
        (false, Some(_)) => {
            return Err(Error("Can not set gracePeriod without --force=true".into()))
        }
        (true, None) => return Err(Error("Can not force stop without gracePeriod".into())),
        (true, Some(g)) => json!({"gracePeriod": g}),
        (false, None) => json!({}),
    };
    let body = with_dry_run(body, a.dry_run);
    let path = subresource_path(&ctx.namespace, "virtualmachines", &a.name, "stop");
    put(ctx, path, &body).await.map_err(|e| {
        Error(if a.force {
            format!("Error force stopping VirtualMachine, {}", said(e))
        } else {
            format!("Error stopping VirtualMachine {}", said(e))
        })
    })?;
    println!("VM {} was scheduled to stop", a.name);
    Ok(())
}

pub async fn restart(ctx: &Ctx<'_>, a: &RestartArgs) -> Result<(), Error> {
    let grace = (a.grace_period != NO_GRACE_PERIOD).then_some(a.grace_period);
    let body = match (a.force, grace) {
        (false, Some(_)) => {
            return Err(Error("Can not set gracePeriod without --force=true".into()))
        }
        (true, None) => return Err(Error("Can not force restart without gracePeriod".into())),
        (true, Some(g)) => json!({"gracePeriodSeconds": g}),
        (false, None) => json!({}),
    };
    let body = with_dry_run(body, a.dry_run);
    let path = subresource_path(&ctx.namespace, "virtualmachines", &a.name, "restart");
    put(ctx, path, &body).await.map_err(|e| {
        Error(if a.force {
            format!("Error restarting VirtualMachine, {}", said(e))
        } else {
            format!("Error restarting VirtualMachine {}", said(e))
        })
    })?;
    println!("VM {} was scheduled to restart", a.name);
    Ok(())
}

/// `pause`/`unpause vm|vmi NAME`. For a VM, virtctl reads the VM first (it must exist)
/// and explains a missing VMI by the VM's run strategy.
pub async fn pause(ctx: &Ctx<'_>, a: &PauseArgs, pausing: bool) -> Result<(), Error> {
    let (verb, doing) = if pausing {
        ("pause", "pausing")
    } else {
        ("unpause", "unpausing")
    };
    let ns = &ctx.namespace;
    let vm = if matches!(
        a.kind.to_ascii_lowercase().as_str(),
        "vm" | "virtualmachine"
    ) {
        let req = http::Request::get(format!(
            "/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines/{}",
            a.name
        ))
        .header(header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| Error(e.to_string()))?;
        let text = ctx.api.client().request_text(req).await.map_err(|e| {
            Error(format!(
                "Error getting VirtualMachine {}: {}",
                a.name,
                said(e)
            ))
        })?;
        Some(serde_json::from_str::<Value>(&text).unwrap_or(Value::Null))
    } else {
        None
    };
    let body = with_dry_run(json!({}), a.dry_run);
    let path = subresource_path(ns, "virtualmachineinstances", &a.name, verb);
    match put(ctx, path, &body).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) && vm.is_some() => {
            let halted = vm.as_ref().is_some_and(|v| {
                v["spec"]["runStrategy"] == "Halted"
                    || (v["spec"]["runStrategy"].is_null() && v["spec"]["running"] != true)
            });
            return Err(Error(if halted {
                format!(
                    "Error {doing} VirtualMachineInstance {0}. VirtualMachine {0} is not set to run",
                    a.name
                )
            } else {
                format!(
                    "Error {doing} VirtualMachineInstance {}, it was not found",
                    a.name
                )
            }));
        }
        Err(e) => {
            return Err(Error(format!(
                "Error {doing} VirtualMachineInstance {}: {}",
                a.name,
                said(e)
            )))
        }
    }
    println!("VMI {} was scheduled to {verb}", a.name);
    Ok(())
}

/// `console NAME`: opens the websocket on kube's connection (its TLS and credentials),
/// then hands the terminal to `oxivirt_console::attach` over a socket pair whose other
/// end this task bridges to the websocket.
pub async fn console(ctx: &Ctx<'_>, a: &ConsoleArgs) -> Result<(), Error> {
    let path = subresource_path(
        &ctx.namespace,
        "virtualmachineinstances",
        &a.name,
        "console",
    );
    let key = handshake::client::generate_key();
    let req = http::Request::get(path)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, &key)
        .header(header::SEC_WEBSOCKET_PROTOCOL, PLAIN_PROTOCOL)
        .body(kube::client::Body::from(Vec::new()))
        .map_err(|e| Error(e.to_string()))?;
    let resp = ctx
        .api
        .client()
        .send(req)
        .await
        .map_err(|e| Error(ApiError::from(e).to_string()))?;
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let code = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|s| s["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        // virtctl's words for a refused websocket.
        return Err(Error(format!(
            "Can't connect to websocket ({code}): {message}"
        )));
    }
    let expected = handshake::derive_accept_key(key.as_bytes());
    if resp
        .headers()
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .is_none_or(|v| v.as_bytes() != expected.as_bytes())
    {
        return Err(Error(
            "error: the server's websocket handshake does not match the request".into(),
        ));
    }
    let upgraded = hyper::upgrade::on(resp)
        .await
        .map_err(|e| Error(format!("error: switching to the websocket: {e}")))?;
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;

    let (terminal_end, bridge_end) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| Error(format!("error: a socket pair for the console: {e}")))?;
    let bridge_end = bridge_end
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(bridge_end))
        .map_err(|e| Error(format!("error: a socket pair for the console: {e}")))?;
    let pump = tokio::spawn(oxivirt_console::ws::bridge(ws, bridge_end));
    let name = a.name.clone();
    let session = tokio::task::spawn_blocking(move || oxivirt_console::attach(&name, terminal_end))
        .await
        .map_err(|e| Error(format!("error: the console session failed: {e}")))?;
    // The session dropped its end: the bridge closes the websocket (1000) and ends.
    let _ = tokio::time::timeout(CLOSE_WAIT, pump).await;
    session
        .map(|_| ())
        .map_err(|e| Error(format!("error: {}", chain(&e))))
}
