//! `kubectl apply --dry-run=client -f deploy/` with the real kubectl.
//!
//! What a client-side dry run needs, found out: kubectl maps every kind to its resource
//! through the server's discovery even in a client dry run (without a server: "unable to
//! recognize ...: connection refused"), and its default validation downloads the server's
//! OpenAPI. There is no cluster here, and `oxivirtd` does not serve apps, RBAC,
//! apiextensions or apiregistration, so the test answers discovery itself (a mocked API
//! service with the built-in groups these manifests use, 404 for every object, so apply
//! takes the create path) and runs with `--validate=false` (the schemas are checked by
//! the other tests: the CRDs' structurally, and each object's kind against discovery here).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");

fn kubectl() -> PathBuf {
    let p = PathBuf::from("/usr/lib/google-cloud-sdk/bin/kubectl");
    assert!(p.is_file(), "kubectl is not at {}", p.display());
    p
}

fn resources(gv: &str, list: &[Res]) -> Value {
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
        "resources": list.iter().map(|(plural, kind, namespaced)| json!({
            "name": plural, "singularName": "", "namespaced": namespaced, "kind": kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        })).collect::<Vec<_>>(),
    })
}

/// (plural, kind, namespaced).
type Res = (&'static str, &'static str, bool);

const GROUPS: &[(&str, &[Res])] = &[
    (
        "apps",
        &[
            ("deployments", "Deployment", true),
            ("daemonsets", "DaemonSet", true),
        ],
    ),
    (
        "rbac.authorization.k8s.io",
        &[
            ("clusterroles", "ClusterRole", false),
            ("clusterrolebindings", "ClusterRoleBinding", false),
            ("roles", "Role", true),
            ("rolebindings", "RoleBinding", true),
        ],
    ),
    (
        "apiextensions.k8s.io",
        &[(
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        )],
    ),
    (
        "apiregistration.k8s.io",
        &[("apiservices", "APIService", false)],
    ),
];

/// The answer to `GET path`: discovery of the built-in kinds, else 404.
fn answer(path: &str, addr: &str) -> (u16, Value) {
    let path = path.split('?').next().unwrap_or("");
    let core = [
        ("namespaces", "Namespace", false),
        ("serviceaccounts", "ServiceAccount", true),
        ("services", "Service", true),
    ];
    match path {
        "/api" => (
            200,
            json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]}),
        ),
        "/api/v1" => (200, resources("v1", &core)),
        "/apis" => (
            200,
            json!({"kind": "APIGroupList", "apiVersion": "v1",
            "groups": GROUPS.iter().map(|(g, _)| json!({
                "name": g, "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}],
                "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"},
            })).collect::<Vec<_>>()}),
        ),
        p => match GROUPS.iter().find(|(g, _)| p == format!("/apis/{g}/v1")) {
            Some((g, list)) => (200, resources(&format!("{g}/v1"), list)),
            None => (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": format!("{p} not found"), "reason": "NotFound", "code": 404}),
            ),
        },
    }
}

/// Serves discovery on loopback (one request per connection); returns the URL and the
/// paths requested.
fn discovery_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let a = addr.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut h = String::new();
            while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
                h.clear();
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            log.lock().expect("log").push(format!("{method} {path}"));
            let (code, body) = if method == "GET" {
                answer(&path, &a)
            } else {
                (405, json!({"kind": "Status", "code": 405}))
            };
            let body = body.to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://{addr}"), seen)
}

fn run(args: &[&str], server: &str, home: &std::path::Path) -> std::process::Output {
    Command::new(kubectl())
        .args(args)
        .args(["--server", server])
        .env("KUBECONFIG", "/dev/null")
        .env("HOME", home)
        .output()
        .expect("kubectl")
}

#[test]
fn kubectl_apply_dry_run_client_passes() {
    let (server, seen) = discovery_server();
    let home = std::env::temp_dir().join(format!("oxivirt-deploy-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("home");
    let o = run(
        &[
            "apply",
            "--dry-run=client",
            "--validate=false",
            "-f",
            DEPLOY,
        ],
        &server,
        &home,
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let mut want: Vec<String> = oxivirt_deploy::manifests::objects()
        .iter()
        .map(|x| {
            let kind = x["kind"].as_str().unwrap_or("").to_lowercase();
            let group = x["apiVersion"]
                .as_str()
                .and_then(|v| v.rsplit_once('/'))
                .map(|(g, _)| format!(".{g}"))
                .unwrap_or_default();
            format!(
                "{kind}{group}/{} created (dry run)",
                x["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    want.sort();
    let mut got: Vec<String> = stdout.lines().map(str::to_string).collect();
    got.sort();
    assert_eq!(got, want, "stderr:\n{stderr}");
    // A client dry run writes nothing.
    let seen = seen.lock().expect("seen").clone();
    assert!(seen.iter().all(|r| r.starts_with("GET ")), "{seen:#?}");

    // Without discovery it cannot work: kubectl needs the server to map kinds.
    let o = run(
        &[
            "apply",
            "--dry-run=client",
            "--validate=false",
            "-f",
            DEPLOY,
        ],
        "http://127.0.0.1:1",
        &home,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unable to recognize"));
    let _ = std::fs::remove_dir_all(&home);
}
