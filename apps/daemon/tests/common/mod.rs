//! A real `oxivirtd` for a test: its own data dir, a free loopback port, killed with the
//! test; `curl` with the admin's client certificate, and the real `kubectl`.

#![allow(dead_code)]

pub mod node;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use oxivirt_testkit::cleanup::{OwnedChild, TempDir};

pub fn daemon_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_oxivirtd"))
}

/// The kubectl the machines carry (1.27–1.33 beside the default one), if present.
pub fn kubectl() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/lib/google-cloud-sdk/bin/kubectl");
    p.is_file().then_some(p)
}

pub struct Daemon {
    pub child: OwnedChild,
    pub url: String,
    pub data: PathBuf,
}

impl Daemon {
    /// Starts `oxivirtd` on `data` (port 0: the kernel picks), waiting for its ready line.
    pub fn start(data: &Path) -> Daemon {
        Self::start_on(data, "127.0.0.1:0")
    }

    pub fn start_on(data: &Path, listen: &str) -> Daemon {
        // The API's contract alone: no controller writes to the objects.
        let d = oxivirt_testkit::oxivirtd::Oxivirtd::start(
            &daemon_bin(),
            data,
            listen,
            &["--api-only"],
        );
        Daemon {
            child: d.child,
            url: d.url,
            data: d.data,
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data.join("kubeconfig")
    }

    pub fn pki(&self, f: &str) -> String {
        self.data.join("pki").join(f).display().to_string()
    }

    /// `curl` as the admin: returns (HTTP status, body).
    pub fn curl(&self, method: &str, path: &str, body: Option<&str>, ctype: &str) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .args(["--cacert", &self.pki("ca.crt")])
            .args([
                "--cert",
                &self.pki("admin.crt"),
                "--key",
                &self.pki("admin.key"),
            ])
            .args(["-H", &format!("Content-Type: {ctype}")]);
        if let Some(b) = body {
            cmd.args(["--data-binary", b]);
        }
        cmd.arg(format!("{}{path}", self.url));
        split_status(cmd.output().expect("curl"))
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let (code, body) = self.curl("GET", path, None, "application/json");
        (
            code,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        let k = kubectl().expect("kubectl");
        Command::new(k)
            .env("KUBECONFIG", self.kubeconfig())
            .args(args)
            .output()
            .expect("kubectl")
    }

    /// SIGKILL and wait.
    pub fn kill9(&mut self) {
        let _ = self.child.child.kill();
        let _ = self.child.child.wait();
    }
}

pub fn split_status(out: Output) -> (u16, String) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn tmp(what: &str) -> TempDir {
    TempDir::new(what).expect("temp dir")
}

pub fn seed(file: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed")).join(file)
}

/// The seed's NAD with its unclosed quote closed.
pub fn fixed_nad(dir: &Path) -> PathBuf {
    let s = std::fs::read_to_string(seed("multus-bridge.yaml")).expect("seed NAD");
    let p = dir.join("multus-bridge.yaml");
    std::fs::write(&p, format!("{}'\n", s.trim_end())).expect("write");
    p
}

pub const WAIT: Duration = Duration::from_secs(10);

/// An HTTPS client of the API (ureq over rustls), keeping its connection alive between
/// requests: the admin's certificate, another one, or none.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    pub base: String,
}

fn pem_certs(pem: &[u8]) -> Vec<ureq::tls::Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|i| match i {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

impl Client {
    /// As the admin of `d` (its kubeconfig's certificate).
    pub fn admin(d: &Daemon) -> Client {
        Client::new(&d.url, &d.data, Some(&d.data))
    }

    /// Trusting the CA of the daemon whose data dir is `ca_of`, presenting the admin
    /// certificate of the daemon whose data dir is `cert_of` (if any).
    pub fn new(url: &str, ca_of: &Path, cert_of: Option<&Path>) -> Client {
        use ureq::tls::{ClientCert, PrivateKey, RootCerts, TlsConfig};
        let read = |dir: &Path, f: &str| std::fs::read(dir.join("pki").join(f)).expect(f);
        let mut tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&pem_certs(
            &read(ca_of, "ca.crt"),
        )));
        if let Some(dir) = cert_of {
            let chain = pem_certs(&read(dir, "admin.crt"));
            let key = PrivateKey::from_pem(&read(dir, "admin.key")).expect("admin key");
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        Client {
            agent,
            base: url.to_string(),
        }
    }

    /// One request: (HTTP status, body as text). `Err` when no HTTP answer came.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        ctype: &str,
    ) -> Result<(u16, String), ureq::Error> {
        let b = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("Accept", "application/json")
            .header("Content-Type", ctype);
        let resp = match body {
            Some(body) => self.agent.run(b.body(body).expect("request"))?,
            None => self.agent.run(b.body(()).expect("request"))?,
        };
        let code = resp.status().as_u16();
        let text = resp
            .into_body()
            .with_config()
            .limit(64 << 20)
            .read_to_string()?;
        Ok((code, text))
    }

    /// A request that must be answered: (status, JSON body or `Null`).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("encode"));
        self.call_raw(method, path, bytes.as_deref(), "application/json")
    }

    pub fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        ctype: &str,
    ) -> (u16, Value) {
        let (code, text) = self
            .send(method, path, body, ctype)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("PUT", path, Some(body))
    }

    pub fn patch(&self, path: &str, ctype: &str, body: &Value) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).expect("encode");
        self.call_raw("PATCH", path, Some(&bytes), ctype)
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None)
    }

    /// Names of the items of a list at `path`.
    pub fn names(&self, path: &str) -> Vec<String> {
        let (code, list) = self.get(path);
        assert_eq!(code, 200, "GET {path}: {list}");
        list["items"]
            .as_array()
            .unwrap_or_else(|| panic!("no items in {list}"))
            .iter()
            .map(|i| i["metadata"]["name"].as_str().expect("name").to_string())
            .collect()
    }

    /// A watch at `path` (with `watch=true` in it): its events, one JSON value each, as
    /// they come, read by a thread of its own that ends with the stream.
    pub fn watch(&self, path: &str) -> WatchStream {
        let req = ureq::http::Request::builder()
            .method("GET")
            .uri(format!("{}{path}", self.base))
            .header("Accept", "application/json")
            .body(())
            .expect("request");
        let resp = self.agent.run(req).expect("watch");
        assert_eq!(resp.status().as_u16(), 200, "watch {path}");
        let reader = resp.into_body().into_reader();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { return };
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        WatchStream { rx }
    }
}

pub struct WatchStream {
    rx: std::sync::mpsc::Receiver<Value>,
}

impl WatchStream {
    /// The next event, or `None` when none came within `wait` (or the stream ended).
    pub fn next(&self, wait: Duration) -> Option<Value> {
        self.rx.recv_timeout(wait).ok()
    }

    /// The next event, which must come within [`WAIT`].
    pub fn expect(&self) -> Value {
        self.next(WAIT).expect("a watch event within the wait")
    }
}

pub const VMS: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines";
pub const PODS: &str = "/api/v1/namespaces/default/pods";
pub const EVENTS: &str = "/api/v1/namespaces/default/events";
pub const NADS: &str = "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions";

/// The seed article's VM (`examples/seed/vm-2.yaml`) as JSON, named `name`.
pub fn seed_vm(name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "running": false,
            "template": {
                "metadata": {"labels": {"kubevirt.io/size": "small", "kubevirt.io/domain": name}},
                "spec": {
                    "domain": {
                        "devices": {
                            "disks": [
                                {"name": "containerdisk", "disk": {"bus": "virtio"}},
                                {"name": "cloudinitdisk", "disk": {"bus": "virtio"}}
                            ],
                            "interfaces": [
                                {"name": "default", "masquerade": {}},
                                {"name": "ext-net", "bridge": {}}
                            ]
                        },
                        "resources": {"requests": {"memory": "64M"}}
                    },
                    "networks": [
                        {"name": "default", "pod": {}},
                        {"name": "ext-net", "multus": {"default": null, "networkName": "multus-br"}}
                    ],
                    "volumes": [
                        {"name": "containerdisk", "containerDisk": {"image": "quay.io/kubevirt/cirros-container-disk-demo"}},
                        {"name": "cloudinitdisk", "cloudInitNoCloud": {"userDataBase64": "SGkuXG4="}}
                    ]
                }
            }
        }
    })
}

/// The resourceVersion of an object (or list) as a number.
pub fn rv(o: &Value) -> u64 {
    o["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {o}"))
}
