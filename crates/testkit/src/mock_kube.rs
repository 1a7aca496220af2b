//! A mocked Kubernetes API service on loopback, for tests and the bench (there is no API
//! server on these machines): answers GET for pods and NetworkAttachmentDefinitions and
//! merge-PATCH on pods, checks the bearer token, and records every request.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct State {
    pub objects: HashMap<String, Value>,
    pub token: String,
    pub requests: Vec<(String, String, String)>,
    pub patches: Vec<Value>,
}

/// Serves on 127.0.0.1 of the namespace at `netns` (where the plugin runs).
pub fn start(state: Arc<Mutex<State>>, netns: &std::path::Path) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        // A thread of its own, moved into the node namespace for good.
        enter_netns(&netns);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let _ = tx.send(listener.local_addr().expect("addr").port());
        for stream in listener.incoming().flatten() {
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let path = parts.next().unwrap_or("").to_string();
                    let mut len = 0;
                    let mut auth = String::new();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                        let lower = h.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if lower.starts_with("authorization:") {
                            auth = h["authorization:".len()..].trim().to_string();
                        }
                    }
                    let mut body = vec![0; len];
                    let _ = reader.read_exact(&mut body);
                    let (code, reply) = {
                        let mut s = state.lock().expect("lock");
                        s.requests
                            .push((method.clone(), path.clone(), auth.clone()));
                        if auth != format!("Bearer {}", s.token) {
                            (401, serde_json::json!({"message": "Unauthorized"}))
                        } else if method == "GET" {
                            match s.objects.get(&path) {
                                Some(v) => (200, v.clone()),
                                None => (404, serde_json::json!({"message": "not found"})),
                            }
                        } else {
                            let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            s.patches.push(patch.clone());
                            match s.objects.get_mut(&path) {
                                Some(obj) => {
                                    if let (Some(a), Some(p)) = (
                                        obj["metadata"]["annotations"].as_object_mut(),
                                        patch["metadata"]["annotations"].as_object(),
                                    ) {
                                        for (k, v) in p {
                                            a.insert(k.clone(), v.clone());
                                        }
                                    }
                                    (200, obj.clone())
                                }
                                None => (404, serde_json::json!({"message": "not found"})),
                            }
                        }
                    };
                    let text = reply.to_string();
                    // One write: small pieces would meet Nagle and delayed ACKs (40 ms).
                    let response = format!(
                        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = stream.write_all(response.as_bytes());
                }
            });
        }
    });
    rx.recv().expect("mock API port")
}

fn enter_netns(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).expect("open netns");
    // SAFETY: setns on a valid namespace fd; only this dedicated thread moves.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {}", path.display());
}
