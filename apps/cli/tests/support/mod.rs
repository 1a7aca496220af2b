//! A small stand-in Kubernetes API on loopback (plain HTTP) for the CLI's tests until they
//! run against oxivirtd: objects by URL, Tables for `Accept: …as=Table…`, merge patches,
//! `Status` errors, and a log of the requests so tests can say nothing was sent.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

#[derive(Default)]
pub struct State {
    /// `plural/namespace/name` → object (namespace empty for cluster-scoped kinds).
    pub objects: BTreeMap<String, Value>,
    /// `METHOD path` of every request.
    pub requests: Vec<String>,
    next_rv: u64,
}

pub struct Fake {
    pub state: Arc<Mutex<State>>,
    pub port: u16,
}

impl Fake {
    pub fn start() -> Fake {
        let state = Arc::new(Mutex::new(State {
            next_rv: 1,
            ..Default::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let st = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let st = st.clone();
                std::thread::spawn(move || serve(stream, &st));
            }
        });
        Fake { state, port }
    }

    /// A kubeconfig for this server in `dir`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\n    namespace: default\ncurrent-context: c\n",
            self.port
        );
        std::fs::write(&path, text).expect("kubeconfig");
        path
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().expect("state").requests.clone()
    }

    pub fn object(&self, key: &str) -> Option<Value> {
        self.state.lock().expect("state").objects.get(key).cloned()
    }

    pub fn insert(&self, key: &str, v: Value) {
        self.state
            .lock()
            .expect("state")
            .objects
            .insert(key.into(), v);
    }
}

/// Runs `oxivirt ARGS` with `kubeconfig`.
pub fn oxivirt(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oxivirt"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run oxivirt")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Req {
    method: String,
    path: String,
    query: String,
    accept: String,
    body: Vec<u8>,
}

fn read_req(r: &mut BufReader<TcpStream>) -> Option<Req> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let (mut len, mut accept) = (0usize, String::new());
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().ok()?,
                "accept" => accept = v.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Req {
        method,
        path,
        query,
        accept,
        body,
    })
}

fn serve(stream: TcpStream, st: &Arc<Mutex<State>>) {
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    while let Some(req) = read_req(&mut r) {
        let (code, body) = {
            let mut s = st.lock().expect("state");
            s.requests.push(format!("{} {}", req.method, req.path));
            handle(&mut s, &req)
        };
        let body = body.to_string();
        let head = format!(
            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if w.write_all(head.as_bytes()).is_err() || w.write_all(body.as_bytes()).is_err() {
            return;
        }
    }
}

/// What a URL names: the resource (`virtualmachines.kubevirt.io`), plural, namespace, name.
struct Target {
    resource: String,
    kind: String,
    plural: String,
    ns: Option<String>,
    name: Option<String>,
}

fn target(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _v, rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name) = match rest {
        [p] => (p.to_string(), None),
        [p, n] => (p.to_string(), Some(n.to_string())),
        _ => return None,
    };
    let kind = match plural.as_str() {
        "virtualmachines" => "VirtualMachine",
        "virtualmachineinstances" => "VirtualMachineInstance",
        "network-attachment-definitions" => "NetworkAttachmentDefinition",
        "pods" => "Pod",
        "events" => "Event",
        "namespaces" => "Namespace",
        _ => return None,
    };
    let resource = if group.is_empty() {
        plural.clone()
    } else {
        format!("{plural}.{group}")
    };
    let kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    Some(Target {
        resource,
        kind,
        plural,
        ns,
        name,
    })
}

fn status(code: u16, reason: &str, message: String) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn table(objs: &[&Value]) -> Value {
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            json!({"cells": [o["metadata"]["name"], "1m", o["status"]["printableStatus"], o["metadata"]["uid"]],
                   "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "1"},
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "priority": 0},
            {"name": "Age", "type": "date", "priority": 0},
            {"name": "Status", "type": "string", "priority": 0},
            {"name": "UID", "type": "string", "priority": 1},
        ],
        "rows": rows})
}

fn handle(s: &mut State, req: &Req) -> (u16, Value) {
    let Some(t) = target(&req.path) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    };
    let ns = t.ns.clone().unwrap_or_default();
    let as_table = req.accept.contains("as=Table");
    match (req.method.as_str(), &t.name) {
        ("GET", None) => {
            let prefix = format!("{}/", t.plural);
            let field = req
                .query
                .split('&')
                .find_map(|kv| kv.strip_prefix("fieldSelector="))
                .map(|f| f.replace("%3D", "=").replace("%2C", ","));
            let objs: Vec<&Value> = s
                .objects
                .iter()
                .filter(|(k, o)| {
                    k.starts_with(&prefix)
                        && (t.ns.is_none() || o["metadata"]["namespace"] == ns.as_str())
                        && field.as_deref().is_none_or(|f| {
                            f.split(',').all(|c| match c.split_once('=') {
                                Some(("involvedObject.name", v)) => {
                                    o["involvedObject"]["name"] == v
                                }
                                _ => true,
                            })
                        })
                })
                .map(|(_, o)| o)
                .collect();
            if as_table {
                (200, table(&objs))
            } else {
                (
                    200,
                    json!({"kind": format!("{}List", t.kind.split('.').next().unwrap_or_default()), "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": objs}),
                )
            }
        }
        ("GET", Some(name)) => {
            let key = format!("{}/{ns}/{name}", t.plural);
            match s.objects.get(&key) {
                Some(o) if as_table => (200, table(&[o])),
                Some(o) => (200, o.clone()),
                None => status(
                    404,
                    "NotFound",
                    format!("{} \"{name}\" not found", t.resource),
                ),
            }
        }
        ("POST", None) => {
            let Ok(mut obj) = serde_json::from_slice::<Value>(&req.body) else {
                return status(400, "BadRequest", "invalid JSON".into());
            };
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if obj["spec"]["running"].is_string() {
                return status(
                    422,
                    "Invalid",
                    format!("{} \"{name}\" is invalid: spec.running: Invalid value: \"string\": spec.running in body must be of type boolean: \"string\"", t.kind),
                );
            }
            let key = format!("{}/{ns}/{name}", t.plural);
            if s.objects.contains_key(&key) {
                return status(
                    409,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", t.resource),
                );
            }
            let rv = s.next_rv;
            s.next_rv += 1;
            obj["metadata"]["uid"] = json!(format!("uid-{rv}"));
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            obj["metadata"]["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
            obj["metadata"]["namespace"] = json!(ns);
            if t.plural == "virtualmachines" {
                obj["status"] = json!({"printableStatus": "Stopped"});
            }
            s.objects.insert(key, obj.clone());
            (201, obj)
        }
        ("PATCH", Some(name)) => {
            let key = format!("{}/{ns}/{name}", t.plural);
            let Ok(patch) = serde_json::from_slice::<Value>(&req.body) else {
                return status(400, "BadRequest", "invalid JSON".into());
            };
            let rv = s.next_rv;
            s.next_rv += 1;
            match s.objects.get_mut(&key) {
                Some(o) => {
                    merge_patch(o, &patch);
                    o["metadata"]["resourceVersion"] = json!(rv.to_string());
                    (200, o.clone())
                }
                None => status(
                    404,
                    "NotFound",
                    format!("{} \"{name}\" not found", t.resource),
                ),
            }
        }
        ("DELETE", Some(name)) => {
            let key = format!("{}/{ns}/{name}", t.plural);
            match s.objects.remove(&key) {
                Some(o) => (200, o),
                None => status(
                    404,
                    "NotFound",
                    format!("{} \"{name}\" not found", t.resource),
                ),
            }
        }
        _ => status(405, "MethodNotAllowed", "not supported".into()),
    }
}
