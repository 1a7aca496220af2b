//! virt-api's group, `subresources.kubevirt.io/v1`: what `virtctl` (and the `oxivirt` CLI)
//! call to act on a VM rather than edit it.
//!
//! - `start`, `stop`, `restart` on a VirtualMachine change the VM as KubeVirt's virt-api
//!   does (pkg/virt-api/rest/lifecycle.go), per run strategy: the spec (`running` /
//!   `runStrategy`) or `status.stateChangeRequests`, which the controller acts on. Every
//!   write goes through [`Api::handle`] (admission, generation, `resourceVersion`
//!   precondition) and is retried on a conflict with a concurrent writer.
//! - `pause`, `unpause` on a VirtualMachineInstance ask its launcher over `control.sock`.
//! - `console` on a VirtualMachineInstance is a websocket (subprotocol `plain.kubevirt.io`,
//!   binary frames) bridged to the launcher's `console.sock`; [`crate::server`] hands the
//!   request over before reading a body, because the connection is upgraded.
//!
//! Refusals are KubeVirt's `Status` objects with its words (virtctl prints the message),
//! e.g. `Operation cannot be fulfilled on virtualmachine.kubevirt.io "vm": VM is already
//! running`: KubeVirt names the resource in the singular there, unlike the API server.
//!
//! Everything here goes through a [`Backend`]: the objects and the launchers as this
//! process reaches them. oxivirtd's [`crate::Api`] is one (its own store, and the launcher of VMI
//! `ns/name` at `<launchers_root>/<ns>/<name>/`, see docs/lifecycle.md); on a cluster,
//! [`cluster::Cluster`] is the other (the cluster's API, and the launcher through the relay
//! of the node agent on the VMI's node).

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use oxivirt_app_launcher::control;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::error::ApiError;
use crate::handler::{Reply, Request};
use crate::resources::{self, Resource};

pub mod cluster;
mod local;

pub const GROUP: &str = "subresources.kubevirt.io";
pub const VERSION: &str = "v1";

/// The KubeVirt release whose virt-api these subresources follow; `/version` says it, and
/// virtctl compares it with its own after a failure.
pub const KUBEVIRT_VERSION: &str = "v1.6.0";

/// The websocket subprotocol of virtctl's console and VNC streams.
pub const PLAIN_PROTOCOL: &str = "plain.kubevirt.io";

/// How often a write that lost a race with another writer is tried again.
const RETRIES: usize = 8;

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Self {
        Reply::error(&e)
    }
}

type Answer = Result<Reply, Reply>;

/// The entry of `/apis` for this group.
pub fn group_entry() -> Value {
    let gv = format!("{GROUP}/{VERSION}");
    json!({
        "name": GROUP,
        "versions": [{"groupVersion": gv, "version": VERSION}],
        "preferredVersion": {"groupVersion": gv, "version": VERSION},
    })
}

fn resource_list() -> Value {
    let entry = |name: &str, kind: &str, verb: &str| json!({"name": name, "singularName": "", "namespaced": true, "kind": kind, "verbs": [verb]});
    let mut rs = Vec::new();
    for verb in ["start", "stop", "restart"] {
        rs.push(entry(
            &format!("virtualmachines/{verb}"),
            "VirtualMachine",
            "update",
        ));
    }
    for verb in ["pause", "unpause"] {
        rs.push(entry(
            &format!("virtualmachineinstances/{verb}"),
            "VirtualMachineInstance",
            "update",
        ));
    }
    rs.push(entry(
        "virtualmachineinstances/console",
        "VirtualMachineInstance",
        "get",
    ));
    json!({"kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"), "resources": rs})
}

/// virt-api's version info (`k8s.io/apimachinery/pkg/version.Info`).
pub fn version() -> Value {
    let platform = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    json!({
        "gitVersion": KUBEVIRT_VERSION,
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "",
        "goVersion": "", "compiler": format!("rustc (oxivirt {})", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{platform}", std::env::consts::OS),
    })
}

// ---- Status objects in KubeVirt's words ----------------------------------------------

/// The two kinds the subresources act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Vm,
    Vmi,
}

impl Kind {
    /// KubeVirt's `v1.Resource(...)`: singular, as its errors name it.
    fn name(self) -> &'static str {
        match self {
            Kind::Vm => "virtualmachine",
            Kind::Vmi => "virtualmachineinstance",
        }
    }

    /// The served resource of this kind.
    pub fn resource(self) -> &'static Resource {
        match self {
            Kind::Vm => &resources::VM,
            Kind::Vmi => &resources::VMI,
        }
    }
}

/// A byte stream to a launcher's serial console.
pub trait ConsoleStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ConsoleStream for T {}

/// How a write through the API went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Done,
    /// Another writer got there first: read again and decide again.
    Raced,
}

/// What the subresources act through: the API's VMs, VMIs and launcher pods, and the
/// launchers themselves. Errors are the replies the caller gets (`Status` objects).
pub trait Backend: Send + Sync {
    /// The object of `kind` named `ns/name`, if there is one.
    fn get<'a>(
        &'a self,
        kind: Kind,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, Reply>>;

    /// Replaces the object (or, with `status_only`, its status) with `obj`, whose
    /// `resourceVersion` is the precondition: [`Put::Raced`] when it is stale.
    fn put<'a>(
        &'a self,
        kind: Kind,
        ns: &'a str,
        name: &'a str,
        obj: &'a Value,
        status_only: bool,
    ) -> BoxFuture<'a, Result<Put, Reply>>;

    /// Deletes the running launcher Pod of `vmi` (labels `kubevirt.io: virt-launcher`,
    /// `kubevirt.io/created-by: <vmi uid>`) with a 1 s grace period; none is no error.
    fn delete_launcher_pod<'a>(
        &'a self,
        ns: &'a str,
        vmi: &'a Value,
    ) -> BoxFuture<'a, Result<(), Reply>>;

    /// One request to the launcher of the running VMI `vmi` (`ns/name`).
    fn launcher_control<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        vmi: &'a Value,
        req: control::Request,
    ) -> BoxFuture<'a, Result<control::Response, Reply>>;

    /// A stream to the serial console of the launcher of the running VMI `vmi`. Dialling
    /// takes the console over from whoever has it.
    fn launcher_console<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        vmi: &'a Value,
    ) -> BoxFuture<'a, Result<Box<dyn ConsoleStream>, Reply>>;
}

pub(crate) fn status(code: u16, reason: &str, message: String, details: Option<Value>) -> Reply {
    let mut s = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    Reply::Json {
        status: code,
        body: serde_json::to_vec(&s).unwrap_or_default(),
        warnings: Vec::new(),
    }
}

fn conflict(r: Kind, name: &str, why: &str) -> Reply {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {}.kubevirt.io {name:?}: {why}",
            r.name()
        ),
        Some(json!({"name": name, "group": "kubevirt.io", "kind": r.name()})),
    )
}

fn not_found(r: Kind, name: &str) -> Reply {
    status(
        404,
        "NotFound",
        format!("{}.kubevirt.io {name:?} not found", r.name()),
        Some(json!({"name": name, "group": "kubevirt.io", "kind": r.name()})),
    )
}

pub(crate) fn bad_request(message: String) -> Reply {
    status(400, "BadRequest", message, None)
}

pub(crate) fn internal(message: String) -> Reply {
    status(
        500,
        "InternalError",
        format!("Internal error occurred: {message}"),
        Some(json!({"causes": [{"message": message}]})),
    )
}

/// What virt-api answers a lifecycle request it carried out.
fn accepted() -> Reply {
    Reply::Json {
        status: 202,
        body: Vec::new(),
        warnings: Vec::new(),
    }
}

// ---- routing --------------------------------------------------------------------------

/// Answers a request under `/apis/subresources.kubevirt.io`; `None` for any other path.
pub async fn route<B: Backend + ?Sized>(api: &B, req: &Request, segs: &[&str]) -> Option<Reply> {
    let ["apis", GROUP, rest @ ..] = segs else {
        return None;
    };
    let (get, put) = (req.method == "GET", req.method == "PUT");
    let ok = |v: Value| Reply::Json {
        status: 200,
        body: serde_json::to_vec(&v).unwrap_or_default(),
        warnings: Vec::new(),
    };
    let reply = match rest {
        [] if get => {
            let mut g = group_entry();
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            ok(g)
        }
        [VERSION] if get => ok(resource_list()),
        [VERSION, "version"] if get => ok(version()),
        [VERSION, "healthz"] if get => ok(json!({"apiserver": "ok", "restapi": "ok"})),
        [VERSION, "namespaces", ns, "virtualmachines", name, verb] if put => {
            let answer = match *verb {
                "start" => start(api, req, ns, name).await,
                "stop" => stop(api, req, ns, name).await,
                "restart" => restart(api, req, ns, name).await,
                _ => Err(ApiError::NoRoute.into()),
            };
            answer.unwrap_or_else(|e| e)
        }
        [VERSION, "namespaces", ns, "virtualmachineinstances", name, verb @ ("pause" | "unpause")]
            if put =>
        {
            pause(api, req, ns, name, *verb == "pause")
                .await
                .unwrap_or_else(|e| e)
        }
        // A console request reaches here only when it did not come through the server's
        // upgrade path (an in-process caller): refused as a plain GET is.
        [VERSION, "namespaces", _, "virtualmachineinstances", _, "console"] if get => {
            bad_request("the console is a websocket stream: send a GET with Upgrade: websocket (as virtctl console does)".into())
        }
        [VERSION, "namespaces", _, "virtualmachines" | "virtualmachineinstances", _, _] => {
            ApiError::MethodNotAllowed.into()
        }
        _ => ApiError::NoRoute.into(),
    };
    Some(reply)
}

// ---- reading and writing the VM and VMI ---------------------------------------------

/// KubeVirt's `vm.RunStrategy()`: `runStrategy`, else the deprecated `running`
/// (`true` is Always; `false` or neither is Halted).
fn run_strategy(vm: &Value) -> String {
    match (
        vm["spec"]["runStrategy"].as_str(),
        vm["spec"]["running"].as_bool(),
    ) {
        (Some(s), _) => s.to_string(),
        (None, Some(true)) => "Always".into(),
        _ => "Halted".into(),
    }
}

fn phase(vmi: &Value) -> &str {
    vmi["status"]["phase"].as_str().unwrap_or("")
}

/// KubeVirt's `vmi.IsFinal()`.
fn is_final(vmi: &Value) -> bool {
    matches!(phase(vmi), "Succeeded" | "Failed")
}

fn uid(o: &Value) -> Value {
    o["metadata"]["uid"].clone()
}

fn raced_too_often(name: &str) -> Reply {
    conflict(
        Kind::Vm,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

/// `vm` with `changes` as its `status.stateChangeRequests`, by KubeVirt's rule: requests
/// already pending refuse a new one, except a lone Stop, which replaces them.
fn with_change_requests(vm: &Value, changes: Vec<Value>) -> Result<Value, Reply> {
    let pending = vm["status"]["stateChangeRequests"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    let lone_stop = changes.len() == 1 && changes[0]["action"] == "Stop";
    if pending && !lone_stop {
        return Err(internal(
            "unable to complete request: stop/start already underway".into(),
        ));
    }
    let mut new = vm.clone();
    if !new["status"].is_object() {
        new["status"] = json!({});
    }
    if let Some(st) = new["status"].as_object_mut() {
        st.insert("stateChangeRequests".into(), Value::Array(changes));
        // A new request is a new attempt: the last start's failure no longer applies.
        st.remove("startFailure");
    }
    Ok(new)
}

/// `vm` set to run or not: `runStrategy` Always/Halted when it has one, else `running`.
fn with_running(vm: &Value, running: bool) -> Value {
    let mut new = vm.clone();
    if new["spec"]["runStrategy"].is_string() {
        new["spec"]["runStrategy"] = json!(if running { "Always" } else { "Halted" });
    } else {
        new["spec"]["running"] = json!(running);
    }
    new
}

/// A request body as virt-api decodes it: none, `{}` or the options object, with or
/// without a Content-Type (virtctl sends none).
fn options<T: for<'de> Deserialize<'de> + Default>(req: &Request) -> Result<T, Reply> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&req.body).map_err(|e| {
        bad_request(format!(
            "Can not unmarshal Request body to struct, error: {e}"
        ))
    })
}

fn dry_run(v: &[String]) -> bool {
    v.first().is_some_and(|s| s == "All")
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartOptions {
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    dry_run: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopOptions {
    #[serde(default)]
    grace_period: Option<i64>,
    #[serde(default)]
    dry_run: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestartOptions {
    #[serde(default)]
    grace_period_seconds: Option<i64>,
    #[serde(default)]
    dry_run: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PauseOptions {
    #[serde(default)]
    dry_run: Vec<String>,
}

/// What a lifecycle verb decided to write.
enum Change {
    Spec(Value),
    Status(Value),
    Nothing,
}

async fn apply<B: Backend + ?Sized>(
    api: &B,
    ns: &str,
    name: &str,
    change: &Change,
) -> Result<Put, Reply> {
    match change {
        Change::Spec(vm) => api.put(Kind::Vm, ns, name, vm, false).await,
        Change::Status(vm) => api.put(Kind::Vm, ns, name, vm, true).await,
        Change::Nothing => Ok(Put::Done),
    }
}

// ---- start / stop / restart -----------------------------------------------------------

async fn start<B: Backend + ?Sized>(api: &B, req: &Request, ns: &str, name: &str) -> Answer {
    let opts: StartOptions = options(req)?;
    for _ in 0..RETRIES {
        let vm = api
            .get(Kind::Vm, ns, name)
            .await?
            .ok_or_else(|| not_found(Kind::Vm, name))?;
        let vmi = api.get(Kind::Vmi, ns, name).await?;
        if let Some(vmi) = &vmi {
            if !is_final(vmi) && !matches!(phase(vmi), "" | "Unknown") {
                return Err(conflict(Kind::Vm, name, "VM is already running"));
            }
        }
        // KubeVirt's start request data: the controller starts the VMI paused.
        let mut start_req = json!({"action": "Start"});
        if opts.paused {
            start_req["data"] = json!({"paused": "true"});
        }
        let strategy = run_strategy(&vm);
        let change = match strategy.as_str() {
            "Halted" => {
                let paused_by_template =
                    vm["spec"]["template"]["spec"]["startStrategy"] == "Paused";
                if opts.paused && !paused_by_template {
                    // The controller moves the run strategy on when it takes the request.
                    Change::Status(with_change_requests(&vm, vec![start_req])?)
                } else {
                    Change::Spec(with_running(&vm, true))
                }
            }
            "RerunOnFailure" | "Manual" => {
                let rerun = strategy == "RerunOnFailure";
                if rerun && vmi.as_ref().is_some_and(|v| phase(v) == "Failed") {
                    return Err(conflict(
                        Kind::Vm,
                        name,
                        "RerunOnFailure does not support starting VM from failed state",
                    ));
                }
                // A finished VMI is still there: stop it (by uid) before the new start.
                let restart = match &vmi {
                    Some(v) if rerun => phase(v) == "Succeeded",
                    Some(v) => is_final(v),
                    None => false,
                };
                let changes = match (&vmi, restart) {
                    (Some(v), true) => vec![json!({"action": "Stop", "uid": uid(v)}), start_req],
                    _ => vec![start_req],
                };
                Change::Status(with_change_requests(&vm, changes)?)
            }
            "Always" | "Once" => {
                return Err(conflict(
                    Kind::Vm,
                    name,
                    &format!("{strategy} does not support manual start requests"),
                ))
            }
            // WaitAsReceiver (a migration target): virt-api accepts and does nothing.
            _ => Change::Nothing,
        };
        if dry_run(&opts.dry_run) {
            return Ok(accepted());
        }
        match apply(api, ns, name, &change).await? {
            Put::Done => return Ok(accepted()),
            Put::Raced => continue,
        }
    }
    Err(raced_too_often(name))
}

async fn stop<B: Backend + ?Sized>(api: &B, req: &Request, ns: &str, name: &str) -> Answer {
    let opts: StopOptions = options(req)?;
    let dry = dry_run(&opts.dry_run);
    let mut grace_recorded = false;
    for _ in 0..RETRIES {
        let vm = api
            .get(Kind::Vm, ns, name)
            .await?
            .ok_or_else(|| not_found(Kind::Vm, name))?;
        let vmi = api.get(Kind::Vmi, ns, name).await?;
        let live = vmi.as_ref().filter(|v| !is_final(v));
        let old_grace = live.and_then(|v| v["spec"]["terminationGracePeriodSeconds"].as_i64());
        let strategy = run_strategy(&vm);
        let change = match strategy.as_str() {
            "Halted" => {
                let Some(v) = live else {
                    return Err(conflict(Kind::Vm, name, "VM is not running"));
                };
                // Halted with a VMI left is a stop under way: only a shorter grace period
                // (a force stop) adds anything.
                let shorter = match (opts.grace_period, old_grace) {
                    (None, _) => false,
                    (Some(g), Some(old)) => g < old,
                    (Some(_), None) => true,
                };
                if !shorter {
                    return Err(conflict(
                        Kind::Vm,
                        name,
                        "Halted only supports manual stop requests with a shorter graceperiod",
                    ));
                }
                Change::Status(with_change_requests(
                    &vm,
                    vec![json!({"action": "Stop", "uid": uid(v)})],
                )?)
            }
            "RerunOnFailure" | "Manual" => {
                let Some(v) = live else {
                    return Err(conflict(Kind::Vm, name, "VM is not running"));
                };
                // The controller stops it and the strategy stays as it is.
                Change::Status(with_change_requests(
                    &vm,
                    vec![json!({"action": "Stop", "uid": uid(v)})],
                )?)
            }
            "Always" | "Once" => Change::Spec(with_running(&vm, false)),
            _ => Change::Nothing,
        };
        if dry {
            return Ok(accepted());
        }
        // A force stop: the VMI's grace period is what the launcher is stopped with.
        if let (Some(g), Some(v), false) = (opts.grace_period, live, grace_recorded) {
            let mut new = v.clone();
            new["spec"]["terminationGracePeriodSeconds"] = json!(g);
            match api.put(Kind::Vmi, ns, name, &new, false).await? {
                Put::Done => grace_recorded = true,
                Put::Raced => continue,
            }
        }
        match apply(api, ns, name, &change).await? {
            Put::Done => return Ok(accepted()),
            Put::Raced => continue,
        }
    }
    Err(raced_too_often(name))
}

async fn restart<B: Backend + ?Sized>(api: &B, req: &Request, ns: &str, name: &str) -> Answer {
    let opts: RestartOptions = options(req)?;
    match opts.grace_period_seconds {
        Some(g) if g > 0 => {
            return Err(bad_request(
                "For force restart, only gracePeriod=0 is supported for now".into(),
            ))
        }
        Some(g) if g < 0 => {
            return Err(bad_request(
                "gracePeriod has to be greater or equal to 0".into(),
            ))
        }
        _ => {}
    }
    for _ in 0..RETRIES {
        let vm = api
            .get(Kind::Vm, ns, name)
            .await?
            .ok_or_else(|| not_found(Kind::Vm, name))?;
        let strategy = run_strategy(&vm);
        if strategy == "Halted" || strategy == "Once" {
            // "RunStategy" [sic]: virt-api's message, which virtctl users see.
            return Err(conflict(
                Kind::Vm,
                name,
                &format!("RunStategy {strategy} does not support manual restart requests"),
            ));
        }
        let Some(vmi) = api.get(Kind::Vmi, ns, name).await? else {
            return Err(conflict(Kind::Vm, name, "VM is not running: Halted"));
        };
        let change = Change::Status(with_change_requests(
            &vm,
            vec![
                json!({"action": "Stop", "uid": uid(&vmi)}),
                json!({"action": "Start"}),
            ],
        )?);
        if dry_run(&opts.dry_run) {
            return Ok(accepted());
        }
        match apply(api, ns, name, &change).await? {
            Put::Raced => continue,
            Put::Done => {}
        }
        if opts.grace_period_seconds == Some(0) {
            api.delete_launcher_pod(ns, &vmi).await?;
        }
        return Ok(accepted());
    }
    Err(raced_too_often(name))
}

// ---- pause / unpause (any backend) -------------------------------------------------------

async fn pause<B: Backend + ?Sized>(
    api: &B,
    req: &Request,
    ns: &str,
    name: &str,
    pausing: bool,
) -> Answer {
    let opts: PauseOptions = options(req)?;
    let vmi = api
        .get(Kind::Vmi, ns, name)
        .await?
        .ok_or_else(|| not_found(Kind::Vmi, name))?;
    if phase(&vmi) != "Running" {
        // virt-api's words differ between the two verbs.
        let why = if pausing {
            "VM is not running"
        } else {
            "VMI is not running"
        };
        return Err(conflict(Kind::Vmi, name, why));
    }
    // The launcher knows whether the guest is paused now; the VMI's Paused condition
    // follows it a moment later, so it is asked first.
    let now = api
        .launcher_control(ns, name, &vmi, control::Request::Status)
        .await?;
    let paused = now.status.is_some_and(|s| s.paused);
    match (pausing, paused) {
        (true, true) => return Err(conflict(Kind::Vmi, name, "VMI is already paused")),
        (false, false) => return Err(conflict(Kind::Vmi, name, "VMI is not paused")),
        _ => {}
    }
    if dry_run(&opts.dry_run) {
        return Ok(ok_empty());
    }
    let op = if pausing {
        control::Request::Pause
    } else {
        control::Request::Unpause
    };
    api.launcher_control(ns, name, &vmi, op).await?;
    Ok(ok_empty())
}

/// virt-api answers pause and unpause with a bare 200.
fn ok_empty() -> Reply {
    Reply::Json {
        status: 200,
        body: Vec::new(),
        warnings: Vec::new(),
    }
}

// ---- console --------------------------------------------------------------------------

/// `(namespace, name)` when `path` is a VMI's console.
pub fn console_target(path: &str) -> Option<(String, String)> {
    let segs: Vec<&str> = path
        .trim_end_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["apis", GROUP, VERSION, "namespaces", ns, "virtualmachineinstances", name, "console"] => {
            Some((ns.to_string(), name.to_string()))
        }
        _ => None,
    }
}

fn header<'a>(req: &'a hyper::Request<Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Serves `virtctl console`: checks the VMI as virt-api does (found, Running), dials the
/// launcher's console, then switches the connection to a websocket bridged to it. The
/// refusals come back as `Status` replies before any upgrade (virtctl prints them).
pub async fn console<B: Backend + ?Sized>(
    api: &B,
    ns: &str,
    name: &str,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<()>, Reply> {
    if req.method() != hyper::Method::GET {
        return Err(ApiError::MethodNotAllowed.into());
    }
    let vmi = api
        .get(Kind::Vmi, ns, name)
        .await?
        .ok_or_else(|| not_found(Kind::Vmi, name))?;
    if phase(&vmi) != "Running" {
        let p = match phase(&vmi) {
            "" => "Pending",
            p => p,
        };
        return Err(bad_request(format!(
            "Unable to connect to VirtualMachineInstance because phase is {p} instead of Running"
        )));
    }
    let upgrade = header(&req, "upgrade").eq_ignore_ascii_case("websocket")
        && header(&req, "connection")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let key = header(&req, "sec-websocket-key").to_string();
    if !upgrade || key.is_empty() {
        return Err(bad_request("the console is a websocket stream: send a GET with Upgrade: websocket (as virtctl console does)".into()));
    }
    if header(&req, "sec-websocket-version") != "13" {
        return Err(bad_request(
            "unsupported websocket version: only 13 is spoken".into(),
        ));
    }
    // Dialled only now: a connection takes the console over from whoever has it, so a
    // request that cannot become a websocket must not get this far.
    let launcher = api.launcher_console(ns, name, &vmi).await?;
    let plain = header(&req, "sec-websocket-protocol")
        .split(',')
        .any(|p| p.trim() == PLAIN_PROTOCOL);
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        // Fails when the client went away before the switch: nothing to bridge then.
        if let Ok(upgraded) = on_upgrade.await {
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            oxivirt_console::ws::bridge(ws, launcher).await;
        }
    });
    let mut resp = hyper::Response::builder()
        .status(hyper::StatusCode::SWITCHING_PROTOCOLS)
        .header(hyper::header::UPGRADE, "websocket")
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::SEC_WEBSOCKET_ACCEPT, accept);
    if plain {
        resp = resp.header(hyper::header::SEC_WEBSOCKET_PROTOCOL, PLAIN_PROTOCOL);
    }
    resp.body(())
        .map_err(|e| internal(format!("building the upgrade response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_strategies_as_kubevirt_reads_them() {
        assert_eq!(run_strategy(&json!({"spec": {"running": false}})), "Halted");
        assert_eq!(run_strategy(&json!({"spec": {"running": true}})), "Always");
        assert_eq!(run_strategy(&json!({"spec": {}})), "Halted");
        assert_eq!(
            run_strategy(&json!({"spec": {"runStrategy": "Manual"}})),
            "Manual"
        );
    }

    #[test]
    fn change_requests_follow_kubevirt() {
        let vm = json!({"spec": {}, "status": {"printableStatus": "Stopped", "startFailure": {"retries": 1}}});
        let new = with_change_requests(&vm, vec![json!({"action": "Start"})]).expect("added");
        assert_eq!(
            new["status"]["stateChangeRequests"],
            json!([{"action": "Start"}])
        );
        assert!(new["status"].get("startFailure").is_none());
        assert_eq!(new["status"]["printableStatus"], "Stopped");
        // Pending: a start is refused, a lone stop replaces.
        assert!(with_change_requests(&new, vec![json!({"action": "Start"})]).is_err());
        let stopped = with_change_requests(&new, vec![json!({"action": "Stop", "uid": "u"})])
            .expect("stop replaces");
        assert_eq!(
            stopped["status"]["stateChangeRequests"],
            json!([{"action": "Stop", "uid": "u"}])
        );
        // No status yet: one is made.
        let bare = with_change_requests(&json!({"spec": {}}), vec![json!({"action": "Start"})])
            .expect("added");
        assert_eq!(
            bare["status"],
            json!({"stateChangeRequests": [{"action": "Start"}]})
        );
    }

    #[test]
    fn running_is_set_where_the_vm_keeps_it() {
        let v = with_running(&json!({"spec": {"running": false}}), true);
        assert_eq!(v["spec"], json!({"running": true}));
        let v = with_running(&json!({"spec": {"runStrategy": "Always"}}), false);
        assert_eq!(v["spec"], json!({"runStrategy": "Halted"}));
    }

    #[test]
    fn console_paths() {
        assert_eq!(
            console_target(
                "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/vm/console"
            ),
            Some(("default".into(), "vm".into()))
        );
        assert_eq!(
            console_target("/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances/vm"),
            None
        );
    }

    #[test]
    fn refusals_read_like_virt_api() {
        let Reply::Json { status, body, .. } =
            conflict(Kind::Vm, "testvm-2", "VM is already running")
        else {
            panic!("not JSON")
        };
        assert_eq!(status, 409);
        let s: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            s["message"],
            "Operation cannot be fulfilled on virtualmachine.kubevirt.io \"testvm-2\": VM is already running"
        );
        assert_eq!(s["reason"], "Conflict");
    }
}
