//! `oxivirt-api` as a cluster runs it, with everything around it real but the cluster:
//!
//! - the cluster's Kubernetes API is `oxivirtd --api-only` (a Kubernetes API: Secrets,
//!   ConfigMaps, APIServices, Pods, VMs and VMIs with the API server's semantics; no
//!   cluster runs on these machines). It holds what a cluster would: the ConfigMap
//!   `kube-system/extension-apiserver-authentication`, the APIService of `deploy/`, the
//!   VM, its VMI, its launcher pod on node `node-a` and the node agent's pod there;
//! - the test plays the cluster's API server in front (the front proxy): it calls with a
//!   front-proxy client certificate and `X-Remote-User`, as kube-apiserver proxies an
//!   APIService's requests, and verifies the server against the APIService's caBundle;
//! - the node relay is the real `oxivirt-node relay` with the certificate oxivirt-api put
//!   into the Secret the DaemonSet mounts; the launcher behind it is the stand-in
//!   (`oxivirt_app_launcher::fake`: the real control and console servers over a fake VM,
//!   no QEMU), in `<state root>/<launcher pod uid>/` as a cluster launcher pod keeps it.

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use oxivirt_apiserver::pki::{self, Ca, Issued, Usage};
use oxivirt_app_launcher::fake::FakeLauncher;
use oxivirt_testkit::cleanup::{OwnedChild, TempDir};
use oxivirt_testkit::oxivirtd::Oxivirtd;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};

const SERVICE_NAME: &str = "oxivirt-api.oxivirt.svc";
const SUB: &str = "/apis/subresources.kubevirt.io/v1/namespaces/default";
const FRONT_PROXY_CN: &str = "front-proxy-client";

/// curl's `-w "\n%{http_code}"` output: (status, JSON body or Null).
fn split(out: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// A process whose first stdout line carries its address (`… on https://ADDR` or `… on ADDR`).
fn start_serving(cmd: &mut Command) -> (OwnedChild, String) {
    let mut child =
        OwnedChild::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::inherit())).expect("start");
    let stdout = child.child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    let addr = line
        .split_whitespace()
        .last()
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_start_matches("https://")
        .to_string();
    assert!(addr.contains(':'), "no address in {line:?}");
    (child, addr)
}

fn write_pem(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).expect("write PEM");
    p
}

/// The front proxy's side: a caller with `cert` (or none) and a user header (or none).
struct Caller<'a> {
    server: &'a str,
    ca: &'a Path,
    cert: Option<(&'a Path, &'a Path)>,
    user: Option<&'a str>,
}

impl Caller<'_> {
    /// curl to the server by its Service name (verified against `ca`), pinned to loopback.
    fn curl(&self, method: &str, path: &str) -> (u16, Value, bool) {
        let port = self.server.rsplit(':').next().expect("port");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .args(["--resolve", &format!("{SERVICE_NAME}:{port}:127.0.0.1")])
            .arg("--cacert")
            .arg(self.ca)
            // virtctl sends its JSON body without a Content-Type.
            .args(["-H", "Content-Type:"]);
        if let Some((c, k)) = self.cert {
            cmd.arg("--cert").arg(c).arg("--key").arg(k);
        }
        if let Some(u) = self.user {
            cmd.args(["-H", &format!("X-Remote-User: {u}")]);
            cmd.args(["-H", "X-Remote-Group: system:authenticated"]);
        }
        if method == "PUT" {
            cmd.args(["--data-binary", "{}"]);
        }
        let out = cmd
            .arg(format!("https://{SERVICE_NAME}:{port}{path}"))
            .output()
            .expect("curl");
        let (code, v) = split(&out.stdout);
        (code, v, out.status.success())
    }
}

fn vm_object() -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "testvm-2", "namespace": "default"},
        "spec": {"runStrategy": "Halted", "template": {"spec": {
            "domain": {"devices": {}, "resources": {"requests": {"memory": "64M"}}}}}}})
}

fn vmi_object() -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "testvm-2", "namespace": "default"},
        "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64M"}}}}})
}

fn pod(ns: &str, name: &str, labels: Value, node: &str, port: Option<u16>) -> Value {
    let mut c = json!({"name": "main", "image": "oxivirt:test"});
    if let Some(p) = port {
        c["ports"] = json!([{"name": "relay", "containerPort": p, "protocol": "TCP"}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node, "containers": [c]}})
}

fn message(v: &Value) -> String {
    v["message"].as_str().unwrap_or_default().to_string()
}

/// A websocket to the VMI's console through the server, as kube-apiserver proxies
/// virtctl's.
fn console(
    server: &str,
    ca_pem: &str,
    cert: &Issued,
) -> tungstenite::WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let config = pki::tls_client(ca_pem, cert).expect("TLS client");
    let tcp = TcpStream::connect(server).expect("connect");
    let conn = rustls::ClientConnection::new(
        config,
        rustls::pki_types::ServerName::try_from(SERVICE_NAME).expect("name"),
    )
    .expect("TLS");
    let tls = rustls::StreamOwned::new(conn, tcp);
    let url = format!("wss://{SERVICE_NAME}{SUB}/virtualmachineinstances/testvm-2/console");
    let mut req = url.into_client_request().expect("request");
    let h = req.headers_mut();
    h.insert(
        "Sec-WebSocket-Protocol",
        "plain.kubevirt.io".parse().expect("header"),
    );
    h.insert("X-Remote-User", "alice".parse().expect("header"));
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

fn ws_reads<S: Read + Write>(ws: &mut tungstenite::WebSocket<S>, want: &[u8]) {
    let mut got = Vec::new();
    while !got.windows(want.len()).any(|w| w == want) {
        match ws.read().expect("websocket read") {
            Message::Binary(b) => got.extend_from_slice(&b),
            Message::Close(c) => panic!(
                "closed ({c:?}) waiting for {:?}, got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            ),
            _ => {}
        }
    }
}

fn secret_text(s: &Value, key: &str) -> String {
    let b64 = s["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {s}"));
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64"),
    )
    .expect("PEM")
}

#[test]
fn virtctl_through_the_front_proxy_reaches_the_vm_and_its_launcher_on_its_node() {
    if oxivirt_testkit::which("curl").is_none() {
        oxivirt_testkit::skip(
            "virtctl_through_the_front_proxy_reaches_the_vm_and_its_launcher_on_its_node",
            "curl is not installed (scripts/deps.sh installs it)",
        );
        return;
    }
    let tmp = TempDir::new("aggregated").expect("tmp");
    let files = tmp.path().join("files");
    let state_root = tmp.path().join("launchers");
    std::fs::create_dir_all(&files).expect("files");
    std::fs::create_dir_all(&state_root).expect("state root");

    // The cluster's API and what a cluster would hold.
    // The cluster's API (oxivirtd), called as its admin.
    let cluster = Oxivirtd::start(
        &oxivirt_testkit::built_binary("oxivirtd", "oxivirt-app-daemon"),
        &tmp.path().join("api"),
        "127.0.0.1:0",
        &["--api-only"],
    );
    for ns in ["kube-system", "oxivirt"] {
        let (code, v) = cluster.call(
            "POST",
            "/api/v1/namespaces",
            Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})),
        );
        assert!(code == 201 || code == 409, "namespace {ns}: {code} {v}");
    }
    let front_ca = Ca::generate("front-proxy-ca").expect("front-proxy CA");
    let front = front_ca
        .issue(FRONT_PROXY_CN, &[], Usage::Client)
        .expect("front-proxy cert");
    let stranger = front_ca
        .issue("someone-else", &[], Usage::Client)
        .expect("stranger cert");
    let other_ca = Ca::generate("other-ca").expect("other CA");
    let forged = other_ca
        .issue(FRONT_PROXY_CN, &[], Usage::Client)
        .expect("forged cert");
    cluster.ok(
        "POST",
        "/api/v1/namespaces/kube-system/configmaps",
        Some(&json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {
            "requestheader-client-ca-file": front_ca.cert_pem,
            "requestheader-allowed-names": format!("[\"{FRONT_PROXY_CN}\"]"),
            "requestheader-username-headers": "[\"X-Remote-User\"]",
            "requestheader-group-headers": "[\"X-Remote-Group\"]",
        }})),
    );
    let apiservice = oxivirt_deploy::manifests::api()
        .into_iter()
        .find(|o| o["kind"] == "APIService")
        .expect("deploy/ has the APIService");
    cluster.ok(
        "POST",
        "/apis/apiregistration.k8s.io/v1/apiservices",
        Some(&apiservice),
    );

    // oxivirt-api, as its Deployment runs it but for the listen address and kubeconfig.
    let api_bin = PathBuf::from(env!("CARGO_BIN_EXE_oxivirt-api"));
    let start_api = || {
        start_serving(
            Command::new(&api_bin)
                .args(["--listen", "127.0.0.1:0", "--namespace", "oxivirt"])
                .args(["--resync-ms", "200"])
                .arg("--kubeconfig")
                .arg(cluster.kubeconfig()),
        )
    };
    let (_api, server) = start_api();

    // It made its CA and the relays' certificate, and published the CA to the APIService.
    let pki_secret = cluster.ok(
        "GET",
        "/api/v1/namespaces/oxivirt/secrets/oxivirt-api-pki",
        None,
    );
    let ca_pem = secret_text(&pki_secret, "ca.crt");
    let relay_secret = cluster.ok(
        "GET",
        "/api/v1/namespaces/oxivirt/secrets/oxivirt-node-relay-tls",
        None,
    );
    assert_eq!(relay_secret["type"], "kubernetes.io/tls");
    assert_eq!(secret_text(&relay_secret, "ca.crt"), ca_pem);
    let apiservice_path = "/apis/apiregistration.k8s.io/v1/apiservices/v1.subresources.kubevirt.io";
    // The bundle it keeps in the APIService, once it is there.
    let published = || -> Option<Vec<u8>> {
        let registered = cluster.ok("GET", apiservice_path, None);
        let b64 = registered["spec"]["caBundle"].as_str()?;
        (registered["spec"]["insecureSkipTLSVerify"] == false)
            .then(|| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .flatten()
    };
    assert!(
        oxivirt_testkit::eventually(Duration::from_secs(10), || published().is_some()),
        "no caBundle in the APIService"
    );
    let bundle = published().expect("caBundle");
    assert_eq!(String::from_utf8_lossy(&bundle), ca_pem);
    // The caller verifies the server with exactly the APIService's bundle.
    let bundle_file = write_pem(&files, "bundle.crt", &String::from_utf8_lossy(&bundle));
    let front_crt = write_pem(&files, "front.crt", &front.cert_pem);
    let front_key = write_pem(&files, "front.key", &front.key_pem);
    let proxy = Caller {
        server: &server,
        ca: &bundle_file,
        cert: Some((&front_crt, &front_key)),
        user: Some("alice"),
    };

    // The node relay with the certificate of the Secret the DaemonSet mounts.
    let tls_dir = files.join("relay");
    std::fs::create_dir_all(&tls_dir).expect("tls dir");
    for k in ["tls.crt", "tls.key", "ca.crt"] {
        write_pem(&tls_dir, k, &secret_text(&relay_secret, k));
    }
    let (_relay, relay_addr) = start_serving(
        Command::new(oxivirt_testkit::built_binary(
            "oxivirt-node",
            "oxivirt-app-node",
        ))
        .args(["relay", "--listen", "127.0.0.1:0"])
        .arg("--tls-dir")
        .arg(&tls_dir)
        .arg("--state-root")
        .arg(&state_root),
    );
    let relay_port: u16 = relay_addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("relay port");

    // Health needs no certificate; everything else needs the front proxy.
    let anonymous = Caller {
        cert: None,
        user: None,
        ..proxy
    };
    let (code, _, _) = anonymous.curl("GET", "/healthz");
    assert_eq!(code, 200);
    let (code, v, _) = anonymous.curl("GET", "/apis/subresources.kubevirt.io/v1");
    assert_eq!(code, 401, "{v}");
    assert_eq!(v["reason"], "Unauthorized");
    let no_user = Caller {
        user: None,
        ..proxy
    };
    assert_eq!(
        no_user.curl("GET", "/apis/subresources.kubevirt.io/v1").0,
        401
    );
    let (s_crt, s_key) = (
        write_pem(&files, "stranger.crt", &stranger.cert_pem),
        write_pem(&files, "stranger.key", &stranger.key_pem),
    );
    let not_allowed = Caller {
        cert: Some((&s_crt, &s_key)),
        ..proxy
    };
    assert_eq!(
        not_allowed
            .curl("GET", "/apis/subresources.kubevirt.io/v1")
            .0,
        401,
        "a CN outside requestheader-allowed-names is not the front proxy"
    );
    let (f_crt, f_key) = (
        write_pem(&files, "forged.crt", &forged.cert_pem),
        write_pem(&files, "forged.key", &forged.key_pem),
    );
    let forged_caller = Caller {
        cert: Some((&f_crt, &f_key)),
        ..proxy
    };
    let (code, _, ok) = forged_caller.curl("GET", "/apis/subresources.kubevirt.io/v1");
    assert!(
        !ok || code != 200,
        "a certificate of another CA got in: {code}"
    );

    // Discovery as the aggregator reads it.
    let (code, v, _) = proxy.curl("GET", "/apis");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["groups"][0]["name"], "subresources.kubevirt.io");
    let (code, v, _) = proxy.curl("GET", "/apis/subresources.kubevirt.io/v1");
    assert_eq!(code, 200, "{v}");
    assert!(v["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .any(|r| r["name"] == "virtualmachineinstances/console"));

    // start/stop write the VM through the cluster's API.
    cluster.ok(
        "POST",
        "/apis/kubevirt.io/v1/namespaces/default/virtualmachines",
        Some(&vm_object()),
    );
    let vm_path = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/testvm-2";
    let (code, v, _) = proxy.curl("PUT", &format!("{SUB}/virtualmachines/testvm-2/start"));
    assert_eq!(code, 202, "{v}");
    assert_eq!(
        cluster.ok("GET", vm_path, None)["spec"]["runStrategy"],
        "Always"
    );
    let (code, v, _) = proxy.curl("PUT", &format!("{SUB}/virtualmachines/nope/start"));
    assert_eq!(code, 404, "{v}");
    assert_eq!(message(&v), "virtualmachine.kubevirt.io \"nope\" not found");

    // The running VMI, its launcher pod on node-a, and node-a's agent.
    let vmi = cluster.ok(
        "POST",
        "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances",
        Some(&vmi_object()),
    );
    let vmi_uid = vmi["metadata"]["uid"].as_str().expect("uid").to_string();
    let vmi_path = "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm-2";
    cluster.ok(
        "PATCH",
        &format!("{vmi_path}/status"),
        Some(&json!({"status": {"phase": "Running", "nodeName": "node-a"}})),
    );
    let (code, v, _) = proxy.curl("PUT", &format!("{SUB}/virtualmachines/testvm-2/start"));
    assert_eq!(code, 409, "{v}");
    assert!(message(&v).ends_with("VM is already running"), "{v}");
    let launcher_pod = cluster.ok(
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(&pod(
            "default",
            "virt-launcher-testvm-2-abcde",
            json!({"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": vmi_uid}),
            "node-a",
            None,
        )),
    );
    let pod_uid = launcher_pod["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    cluster.ok(
        "PATCH",
        "/api/v1/namespaces/default/pods/virt-launcher-testvm-2-abcde/status",
        Some(&json!({"status": {"phase": "Running"}})),
    );
    let agent_labels =
        json!({"app.kubernetes.io/name": "oxivirt", "app.kubernetes.io/component": "oxivirt-node"});
    // An agent on another node must not be the one dialled.
    for (name, node, port) in [
        ("oxivirt-node-b", "node-b", 1),
        ("oxivirt-node-a", "node-a", relay_port),
    ] {
        cluster.ok(
            "POST",
            "/api/v1/namespaces/oxivirt/pods",
            Some(&pod(
                "oxivirt",
                name,
                agent_labels.clone(),
                node,
                Some(port),
            )),
        );
        cluster.ok(
            "PATCH",
            &format!("/api/v1/namespaces/oxivirt/pods/{name}/status"),
            Some(&json!({"status": {"phase": "Running", "podIP": "127.0.0.1"}})),
        );
    }

    // No launcher in the pod's state dir yet: the relay says so, and the API passes it on.
    let (code, v, _) = proxy.curl(
        "PUT",
        &format!("{SUB}/virtualmachineinstances/testvm-2/pause"),
    );
    assert_eq!(code, 500, "{v}");
    assert!(message(&v).contains("no launcher on this node"), "{v}");

    let mut launcher = FakeLauncher::start(&state_root.join(&pod_uid)).expect("fake launcher");
    let pause = |verb: &str| {
        proxy.curl(
            "PUT",
            &format!("{SUB}/virtualmachineinstances/testvm-2/{verb}"),
        )
    };
    let (code, v, _) = pause("pause");
    assert_eq!(code, 200, "{v}");
    let (code, v, _) = pause("pause");
    assert_eq!(code, 409, "{v}");
    assert!(message(&v).ends_with("VMI is already paused"), "{v}");
    let (code, v, _) = pause("unpause");
    assert_eq!(code, 200, "{v}");
    assert_eq!(launcher.vm.calls(), vec!["pause", "unpause"]);

    // The console, bytes both ways through the API and the relay.
    let mut ws = console(&server, &String::from_utf8_lossy(&bundle), &front);
    launcher.guest.write_all(b"login: ").expect("guest");
    ws_reads(&mut ws, b"login: ");
    ws.send(Message::Binary(b"root\r".to_vec().into()))
        .expect("send");
    launcher
        .guest_reads(b"root\r")
        .expect("the guest got the keys");
    ws.close(None).expect("close");

    // The relay only takes the API's client certificate: not the caller's of another CA,
    // not its own serving certificate (for server use only), not none.
    let relay_url = format!(
        "https://{}:{relay_port}/healthz",
        oxivirt_apiserver::relay::SERVER_NAME
    );
    let resolve = format!(
        "{}:{relay_port}:127.0.0.1",
        oxivirt_apiserver::relay::SERVER_NAME
    );
    let relay_ca = tls_dir.join("ca.crt");
    let relay_curl = |cert: Option<(&Path, &Path)>| {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--resolve",
            &resolve,
        ])
        .arg("--cacert")
        .arg(&relay_ca);
        if let Some((c, k)) = cert {
            cmd.arg("--cert").arg(c).arg("--key").arg(k);
        }
        let out = cmd.arg(&relay_url).output().expect("curl");
        out.status.success() && out.stdout == b"200"
    };
    assert!(
        !relay_curl(None),
        "the relay answered without a client certificate"
    );
    assert!(
        !relay_curl(Some((&front_crt, &front_key))),
        "the relay took another CA's client"
    );
    assert!(
        !relay_curl(Some((&tls_dir.join("tls.crt"), &tls_dir.join("tls.key")))),
        "the relay took its own serving certificate as a client"
    );
    let ca = Ca {
        cert_pem: ca_pem.clone(),
        key_pem: secret_text(&pki_secret, "ca.key"),
    };
    let client = ca
        .issue("oxivirt-api", &[], Usage::Client)
        .expect("client cert");
    let (c_crt, c_key) = (
        write_pem(&files, "api-client.crt", &client.cert_pem),
        write_pem(&files, "api-client.key", &client.key_pem),
    );
    assert!(
        relay_curl(Some((&c_crt, &c_key))),
        "the relay refused the API's CA"
    );

    // Its node's agent gone: a clear refusal, not a hang.
    cluster.ok(
        "DELETE",
        "/api/v1/namespaces/oxivirt/pods/oxivirt-node-a",
        Some(&json!({"gracePeriodSeconds": 0})),
    );
    let (code, v, _) = pause("pause");
    assert_eq!(code, 503, "{v}");
    assert!(message(&v).contains("no running node agent"), "{v}");
    assert!(message(&v).contains("node-a"), "{v}");

    // A second replica takes the same CA: the APIService's bundle verifies it too.
    let (_api2, server2) = start_api();
    let again = cluster.ok(
        "GET",
        "/api/v1/namespaces/oxivirt/secrets/oxivirt-api-pki",
        None,
    );
    assert_eq!(secret_text(&again, "ca.crt"), ca_pem);
    let second = Caller {
        server: &server2,
        ..proxy
    };
    let (code, v, _) = second.curl("GET", "/apis/subresources.kubevirt.io/v1/version");
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["gitVersion"],
        oxivirt_apiserver::subresources::KUBEVIRT_VERSION
    );

    // The APIService made again (deleted and applied anew): the bundle comes back.
    cluster.ok("DELETE", apiservice_path, None);
    cluster.ok(
        "POST",
        "/apis/apiregistration.k8s.io/v1/apiservices",
        Some(&apiservice),
    );
    assert!(
        oxivirt_testkit::eventually(Duration::from_secs(10), || published().as_deref()
            == Some(&bundle[..])),
        "the caBundle did not come back"
    );
}

#[test]
fn without_the_front_proxys_configuration_it_refuses_to_start() {
    if oxivirt_testkit::which("curl").is_none() {
        oxivirt_testkit::skip(
            "without_the_front_proxys_configuration_it_refuses_to_start",
            "curl is not installed (scripts/deps.sh installs it)",
        );
        return;
    }
    let tmp = TempDir::new("aggregated-noauth").expect("tmp");
    // The cluster's API (oxivirtd), called as its admin.
    let cluster = Oxivirtd::start(
        &oxivirt_testkit::built_binary("oxivirtd", "oxivirt-app-daemon"),
        &tmp.path().join("api"),
        "127.0.0.1:0",
        &["--api-only"],
    );
    cluster.ok(
        "POST",
        "/api/v1/namespaces",
        Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "oxivirt"}})),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_oxivirt-api"))
        .args(["--listen", "127.0.0.1:0", "--namespace", "oxivirt"])
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .stdin(Stdio::null())
        .output()
        .expect("run oxivirt-api");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kube-system/extension-apiserver-authentication"),
        "{err}"
    );
}
