//! virtctl's API (`subresources.kubevirt.io/v1`) against a real `oxivirtd`: start, stop and
//! restart sent exactly as virtctl 1.6 sends them (PUT, a JSON body, no Content-Type) and
//! through `oxivirt`, with the VM's spec and `status.stateChangeRequests` checked per run
//! strategy, KubeVirt's refusals, pause/unpause and the console websocket.
//!
//! Pause, unpause and console reach a FAKE launcher this test starts at the state dir
//! convention (`<data-dir>/launchers/default/testvm-2/`): the launcher's own control server
//! (`ControlServer`) over a fake VM, and the console crate's `ConsoleServer` fed by a socket
//! pair standing in for the guest's serial port. The fake stands in for QEMU because the
//! real launcher is exercised in the launcher's own tests and the lifecycle's end-to-end
//! test; here what matters is the API's side. The VMI is made through the API and its
//! `status.phase` set through `/status`, as the pod runtime would.

mod common;

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{split_status, text, tmp, Daemon};
use oxivirt_app_launcher::fake::FakeLauncher;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

const SUB: &str = "/apis/subresources.kubevirt.io/v1/namespaces/default";
const VM_PATH: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/testvm-2";
const VMI_PATH: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances";

/// `curl` as virtctl sends: PUT with the body and no Content-Type.
fn virtctl_put(d: &Daemon, path: &str, body: &str) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "PUT"])
        .args(["--cacert", &d.pki("ca.crt")])
        .args(["--cert", &d.pki("admin.crt"), "--key", &d.pki("admin.key")])
        // curl adds a form Content-Type to --data; an empty header removes it.
        .args(["-H", "Content-Type:", "--data-binary", body])
        .arg(format!("{}{path}", d.url))
        .output()
        .expect("curl");
    let (code, body) = split_status(out);
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn vm(d: &Daemon) -> Value {
    let (code, v) = d.get(VM_PATH);
    assert_eq!(code, 200, "{v}");
    v
}

fn merge(d: &Daemon, path: &str, patch: Value) {
    let (code, body) = d.curl(
        "PATCH",
        path,
        Some(&patch.to_string()),
        "application/merge-patch+json",
    );
    assert_eq!(code, 200, "{path}: {body}");
}

fn message(v: &Value) -> &str {
    v["message"].as_str().unwrap_or("")
}

fn refused(r: (u16, Value), code: u16, msg: &str) {
    assert_eq!(r.0, code, "{}", r.1);
    assert_eq!(message(&r.1), msg, "{}", r.1);
}

/// The VMI of the VM's template, created through the API, with `phase` set via /status.
fn make_vmi(d: &Daemon, phase: &str) -> String {
    let template = &vm(d)["spec"]["template"];
    let mut vmi = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": template["metadata"].clone(), "spec": template["spec"].clone()});
    vmi["metadata"]["name"] = json!("testvm-2");
    let (code, body) = d.curl("POST", VMI_PATH, Some(&vmi.to_string()), "application/json");
    assert_eq!(code, 201, "{body}");
    set_phase(d, phase);
    let created: Value = serde_json::from_str(&body).expect("vmi");
    created["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string()
}

fn set_phase(d: &Daemon, phase: &str) {
    merge(
        d,
        &format!("{VMI_PATH}/testvm-2/status"),
        json!({"status": {"phase": phase}}),
    );
}

fn delete_vmi(d: &Daemon) {
    let (code, body) = d.curl(
        "DELETE",
        &format!("{VMI_PATH}/testvm-2"),
        None,
        "application/json",
    );
    assert_eq!(code, 200, "{body}");
}

fn clear_requests(d: &Daemon) {
    merge(
        d,
        &format!("{VM_PATH}/status"),
        json!({"status": {"stateChangeRequests": null}}),
    );
}

/// `oxivirt` is built beside `oxivirtd` by a workspace build; built here when it is not.
fn oxivirt_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_oxivirtd")).with_file_name("oxivirt");
    if !bin.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "oxivirt-app-cli"])
            .status()
            .expect("cargo build oxivirt");
        assert!(status.success(), "building oxivirt failed");
    }
    bin
}

fn oxivirt_cmd(d: &Daemon, args: &[&str]) -> Command {
    let mut c = Command::new(oxivirt_bin());
    c.args(args)
        .env("KUBECONFIG", d.kubeconfig())
        .env("HOME", "/nonexistent");
    c
}

fn oxivirt(d: &Daemon, args: &[&str]) -> Output {
    oxivirt_cmd(d, args).output().expect("oxivirt")
}

/// `oxivirtd` with the seed's `vm-2.yaml` applied (through `oxivirt apply`).
fn start_daemon(data: &Path) -> Daemon {
    let d = Daemon::start(data);
    let seed = common::seed("vm-2.yaml");
    let o = oxivirt(&d, &["apply", "-f", &seed.display().to_string()]);
    assert!(o.status.success(), "{}", text(&o));
    d
}

#[test]
fn start_stop_restart_per_run_strategy_as_virtctl_sends_them() {
    let dir = tmp("subres-lifecycle");
    let d = start_daemon(dir.path());
    let vm_put = |verb: &str, body: &str| {
        virtctl_put(&d, &format!("{SUB}/virtualmachines/testvm-2/{verb}"), body)
    };
    let not_running = "Operation cannot be fulfilled on virtualmachine.kubevirt.io \"testvm-2\": VM is not running";

    // running: false (Halted): nothing to stop; a dry run changes nothing; start sets
    // running: true.
    refused(vm_put("stop", "{}"), 409, not_running);
    assert_eq!(vm_put("start", r#"{"dryRun":["All"]}"#).0, 202);
    assert_eq!(vm(&d)["spec"]["running"], false);
    assert_eq!(vm_put("start", "{}").0, 202);
    let v = vm(&d);
    assert_eq!(v["spec"]["running"], true);
    assert_eq!(v["metadata"]["generation"], 2, "a spec change");

    // Always without a VMI yet: not a start virt-api takes; restart needs a VMI.
    refused(
        vm_put("start", "{}"),
        409,
        "Operation cannot be fulfilled on virtualmachine.kubevirt.io \"testvm-2\": Always does not support manual start requests",
    );
    refused(
        vm_put("restart", "{}"),
        409,
        "Operation cannot be fulfilled on virtualmachine.kubevirt.io \"testvm-2\": VM is not running: Halted",
    );

    // With a VMI: already running; restart asks the controller for Stop (this VMI) then
    // Start; a second restart meets the pending one.
    let uid = make_vmi(&d, "Running");
    refused(
        vm_put("start", "{}"),
        409,
        "Operation cannot be fulfilled on virtualmachine.kubevirt.io \"testvm-2\": VM is already running",
    );
    refused(
        vm_put("restart", r#"{"gracePeriodSeconds":5}"#),
        400,
        "For force restart, only gracePeriod=0 is supported for now",
    );
    assert_eq!(vm_put("restart", "{}").0, 202);
    assert_eq!(
        vm(&d)["status"]["stateChangeRequests"],
        json!([{"action": "Stop", "uid": uid}, {"action": "Start"}])
    );
    refused(
        vm_put("restart", "{}"),
        500,
        "Internal error occurred: unable to complete request: stop/start already underway",
    );
    clear_requests(&d);

    // A force stop of Always: the VMI gets the grace period, the VM running: false.
    assert_eq!(vm_put("stop", r#"{"gracePeriod":0}"#).0, 202);
    let (_, vmi) = d.get(&format!("{VMI_PATH}/testvm-2"));
    assert_eq!(vmi["spec"]["terminationGracePeriodSeconds"], 0);
    assert_eq!(vm(&d)["spec"]["running"], false);

    // Halted with the VMI still there (stopping): only a shorter grace period is taken.
    refused(
        vm_put("stop", "{}"),
        409,
        "Operation cannot be fulfilled on virtualmachine.kubevirt.io \"testvm-2\": Halted only supports manual stop requests with a shorter graceperiod",
    );
    refused(
        vm_put("restart", "{}"),
        409,
        "Operation cannot be fulfilled on virtualmachine.kubevirt.io \"testvm-2\": RunStategy Halted does not support manual restart requests",
    );

    // Manual: stop and start are requests to the controller; the strategy stays.
    merge(
        &d,
        VM_PATH,
        json!({"spec": {"running": null, "runStrategy": "Manual"}}),
    );
    assert_eq!(vm_put("stop", "{}").0, 202);
    let v = vm(&d);
    assert_eq!(v["spec"]["runStrategy"], "Manual");
    assert_eq!(
        v["status"]["stateChangeRequests"],
        json!([{"action": "Stop", "uid": uid}])
    );
    clear_requests(&d);
    delete_vmi(&d);
    refused(vm_put("stop", "{}"), 409, not_running);
    assert_eq!(vm_put("start", r#"{"paused":true}"#).0, 202);
    assert_eq!(
        vm(&d)["status"]["stateChangeRequests"],
        json!([{"action": "Start", "data": {"paused": "true"}}])
    );
    clear_requests(&d);

    // Halted by runStrategy: start → Always; a paused start is a request instead.
    merge(&d, VM_PATH, json!({"spec": {"runStrategy": "Halted"}}));
    assert_eq!(vm_put("start", r#"{"paused":true}"#).0, 202);
    let v = vm(&d);
    assert_eq!(v["spec"]["runStrategy"], "Halted");
    assert_eq!(
        v["status"]["stateChangeRequests"],
        json!([{"action": "Start", "data": {"paused": "true"}}])
    );
    clear_requests(&d);
    assert_eq!(vm_put("start", "{}").0, 202);
    assert_eq!(vm(&d)["spec"]["runStrategy"], "Always");
    assert_eq!(vm_put("stop", "{}").0, 202);
    assert_eq!(vm(&d)["spec"]["runStrategy"], "Halted");

    // Bad input and missing objects, as virt-api words them.
    let (code, _) = vm_put("start", "{not json");
    assert_eq!(code, 400);
    refused(
        virtctl_put(&d, &format!("{SUB}/virtualmachines/nope/start"), "{}"),
        404,
        "virtualmachine.kubevirt.io \"nope\" not found",
    );

    // Discovery and version, which virtctl reads after a failure.
    let (code, list) = d.get("/apis/subresources.kubevirt.io/v1");
    assert_eq!(code, 200);
    let names: Vec<&str> = list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for n in [
        "virtualmachines/start",
        "virtualmachines/stop",
        "virtualmachines/restart",
        "virtualmachineinstances/pause",
        "virtualmachineinstances/unpause",
        "virtualmachineinstances/console",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let (code, v) = d.get("/apis/subresources.kubevirt.io/v1/version");
    assert_eq!(code, 200);
    assert!(v["gitVersion"]
        .as_str()
        .is_some_and(|s| s.starts_with("v1.")));
    let (_, groups) = d.get("/apis");
    assert!(groups.to_string().contains("subresources.kubevirt.io/v1"));
    let (code, _) = d.get("/apis/subresources.kubevirt.io");
    assert_eq!(code, 200);
}

#[test]
fn the_cli_verbs_print_what_virtctl_prints() {
    let dir = tmp("subres-cli");
    let d = start_daemon(dir.path());
    let o = oxivirt(&d, &["start", "testvm-2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "VM testvm-2 was scheduled to start\n"
    );
    make_vmi(&d, "Running");
    let o = oxivirt(&d, &["start", "testvm-2"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "Error starting VirtualMachine Operation cannot be fulfilled on virtualmachine.kubevirt.io \"testvm-2\": VM is already running\n"
    );
    let o = oxivirt(&d, &["stop", "testvm-2", "--grace-period", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("Can not set gracePeriod without --force=true"));
    let o = oxivirt(&d, &["restart", "testvm-2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "VM testvm-2 was scheduled to restart\n"
    );
    clear_requests(&d);
    let o = oxivirt(&d, &["stop", "testvm-2", "--force", "--grace-period", "0"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "VM testvm-2 was scheduled to stop\n"
    );
    assert_eq!(vm(&d)["spec"]["running"], false);
    delete_vmi(&d);
    let o = oxivirt(&d, &["stop", "testvm-2"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "Error stopping VirtualMachine Operation cannot be fulfilled on virtualmachine.kubevirt.io \"testvm-2\": VM is not running\n"
    );
    // pause vm with no VMI: virtctl's explanation from the run strategy.
    let o = oxivirt(&d, &["pause", "vm", "testvm-2"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "Error pausing VirtualMachineInstance testvm-2. VirtualMachine testvm-2 is not set to run\n"
    );
    let o = oxivirt(&d, &["console", "testvm-2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("virtualmachineinstance.kubevirt.io \"testvm-2\" not found"),
        "{}",
        text(&o)
    );
}

fn fake_launcher(data: &Path) -> FakeLauncher {
    FakeLauncher::start(&data.join("launchers/default/testvm-2")).expect("fake launcher")
}

#[test]
fn pause_and_unpause_reach_the_launcher() {
    let dir = tmp("subres-pause");
    let d = start_daemon(dir.path());
    let put = |verb: &str| {
        virtctl_put(
            &d,
            &format!("{SUB}/virtualmachineinstances/testvm-2/{verb}"),
            "{}",
        )
    };
    refused(
        put("pause"),
        404,
        "virtualmachineinstance.kubevirt.io \"testvm-2\" not found",
    );
    make_vmi(&d, "Scheduling");
    refused(
        put("pause"),
        409,
        "Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io \"testvm-2\": VM is not running",
    );
    set_phase(&d, "Running");
    let launcher = fake_launcher(dir.path());
    assert_eq!(put("pause").0, 200);
    refused(
        put("pause"),
        409,
        "Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io \"testvm-2\": VMI is already paused",
    );
    assert_eq!(put("unpause").0, 200);
    refused(
        put("unpause"),
        409,
        "Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io \"testvm-2\": VMI is not paused",
    );
    // Through the CLI, by the VM's name and by the VMI's.
    let o = oxivirt(&d, &["pause", "vm", "testvm-2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "VMI testvm-2 was scheduled to pause\n"
    );
    let o = oxivirt(&d, &["unpause", "vmi", "testvm-2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "VMI testvm-2 was scheduled to unpause\n"
    );
    // A dry run does not reach the launcher.
    assert_eq!(
        virtctl_put(
            &d,
            &format!("{SUB}/virtualmachineinstances/testvm-2/pause"),
            r#"{"dryRun":["All"]}"#
        )
        .0,
        200
    );
    assert_eq!(
        launcher.vm.calls(),
        ["pause", "unpause", "pause", "unpause"]
    );
}

/// A websocket client over TLS with the admin's certificate, as virtctl connects.
fn ws_connect(d: &Daemon) -> WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let read = |f: &str| std::fs::read(d.data.join("pki").join(f)).expect("pki file");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&read("ca.crt")).expect("ca"))
        .expect("root");
    let cert = CertificateDer::from_pem_slice(&read("admin.crt")).expect("cert");
    let key = PrivateKeyDer::from_pem_slice(&read("admin.key")).expect("key");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(vec![cert], key)
    .expect("client auth");
    let addr = d.url.trim_start_matches("https://").to_string();
    let tcp = TcpStream::connect(&addr).expect("connect");
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from("127.0.0.1").expect("name"),
    )
    .expect("tls");
    let tls = rustls::StreamOwned::new(conn, tcp);
    let url = format!("wss://{addr}{SUB}/virtualmachineinstances/testvm-2/console");
    let mut req = url.into_client_request().expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "plain.kubevirt.io".parse().expect("header"),
    );
    let (ws, resp) = tungstenite::client(req, tls).expect("websocket handshake");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"plain.kubevirt.io"[..])
    );
    ws.get_ref()
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    ws
}

/// Binary frames until `want` has come; the close frame's code if one comes instead.
fn ws_reads<S: Read + Write>(ws: &mut WebSocket<S>, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    while !got.windows(want.len()).any(|w| w == want) {
        match ws.read().expect("websocket read") {
            Message::Binary(b) => got.extend_from_slice(&b),
            Message::Close(f) => panic!(
                "closed ({f:?}) before {:?}; got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            ),
            _ => {}
        }
    }
    got
}

#[test]
fn the_console_websocket_bridges_the_launcher_console() {
    let dir = tmp("subres-console");
    let d = start_daemon(dir.path());
    make_vmi(&d, "Scheduling");
    // Not running: refused before any upgrade, with virt-api's reason.
    let (code, body) = {
        let out = Command::new("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
            .args(["--cacert", &d.pki("ca.crt")])
            .args(["--cert", &d.pki("admin.crt"), "--key", &d.pki("admin.key")])
            .args(["-H", "Connection: Upgrade", "-H", "Upgrade: websocket"])
            .args([
                "-H",
                "Sec-WebSocket-Version: 13",
                "-H",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ])
            .arg(format!(
                "{}{SUB}/virtualmachineinstances/testvm-2/console",
                d.url
            ))
            .output()
            .expect("curl");
        split_status(out)
    };
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("Unable to connect to VirtualMachineInstance because phase is Scheduling instead of Running"),
        "{body}"
    );
    let o = oxivirt(&d, &["console", "testvm-2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "Can't connect to websocket (400): Unable to connect to VirtualMachineInstance because phase is Scheduling instead of Running"
        ),
        "{}",
        text(&o)
    );

    set_phase(&d, "Running");
    let mut launcher = fake_launcher(dir.path());
    launcher.guest.write_all(b"boot banner\r\n").expect("guest");

    // Bytes both ways: the backlog first, then what the guest says now.
    let mut a = ws_connect(&d);
    ws_reads(&mut a, b"boot banner");
    a.send(Message::Binary(b"root\r".to_vec().into()))
        .expect("send");
    launcher.guest_reads(b"root\r").expect("guest");
    launcher.guest.write_all(b"login ok\r\n").expect("guest");
    ws_reads(&mut a, b"login ok");

    // A second client takes over: the first is told why and closed with 1000.
    let mut b = ws_connect(&d);
    ws_reads(&mut b, b"login ok");
    ws_reads(&mut a, oxivirt_console::TAKEOVER_MESSAGE.as_bytes());
    let code = loop {
        match a.read() {
            Ok(Message::Close(f)) => break f.map(|f| f.code),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Normal));
    b.send(Message::Binary(b"uname\r".to_vec().into()))
        .expect("send");
    launcher.guest_reads(b"uname\r").expect("guest");
    b.close(None).expect("close");
    let _ = b.flush();

    // `oxivirt console`: the connected line, the guest's output, typing, and ^] leaves.
    let mut child = oxivirt_cmd(&d, &["console", "testvm-2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("oxivirt console");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut r = BufReader::new(stdout);
        let mut line = Vec::new();
        while r.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            all.push_str(&String::from_utf8_lossy(&line));
            let _ = tx.send(all.clone());
            line.clear();
        }
        all
    });
    stdin.write_all(b"hello").expect("type");
    stdin.flush().expect("flush");
    launcher.guest_reads(b"hello").expect("guest");
    launcher
        .guest
        .write_all(b"guest says hi\r\n")
        .expect("guest");
    let deadline = Instant::now() + common::WAIT;
    loop {
        let seen = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the guest's output on stdout");
        if seen.contains("guest says hi") {
            break;
        }
    }
    stdin.write_all(&[oxivirt_console::ESCAPE]).expect("^]");
    stdin.flush().expect("flush");
    let status = child.wait().expect("wait");
    let out = reader.join().expect("reader");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(status.success(), "{err}");
    assert!(out.contains("boot banner"), "{out}");
    assert!(
        err.contains("Successfully connected to testvm-2 console. The escape sequence is ^]"),
        "{err}"
    );
}
