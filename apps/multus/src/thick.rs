//! The thick plugin: `multus-shim` (a link to this binary; the CNI plugin of a config with
//! `"type": "multus-shim"`) hands each call to `oxivirt-multus multus-daemon`, which runs
//! the meta plugin with API connections kept warm between pods. Multus's protocol on both
//! sides (see [`oxivirt_multus_core::thick`]), so either half works with Multus's other.

use oxivirt_app_multus::error::to_cni;
use oxivirt_cni_spec::plugin::Call;
use oxivirt_cni_spec::{CniError, Command, Environment, ErrorCode, Version};
use oxivirt_multus_core::config::Config;
use oxivirt_multus_core::kube::LazyKube;
use oxivirt_multus_core::source::ClusterSource;
use oxivirt_multus_core::thick::{self, Answer, HttpRequest, Request, Response, ShimConfig};
use oxivirt_multus_core::{Error, Result};
use std::collections::HashMap;
use std::io::BufReader;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// `multus-shim`: one CNI call, handed to the daemon.
pub fn shim(call: Call<'_>) -> Result<Option<String>> {
    let cfg = ShimConfig::parse(call.stdin)?;
    let socket = cfg.socket();
    let request = Request {
        // `vars_os`: a variable that is not UTF-8 is skipped, never a panic.
        env: thick::cni_env(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        ),
        config: call.stdin.to_vec(),
    };
    match thick::post(&socket, &request)? {
        Answer::Ok(Response { result }) => match (call.env.command, result) {
            (Command::Add, Some(r)) => Ok(Some(r.to_string())),
            (Command::Add, None) => Err(Error::DaemonProtocol {
                socket,
                reason: "no Result in the answer to ADD".into(),
            }),
            _ => Ok(None),
        },
        Answer::Refused { status, body } => Err(Error::Daemon {
            source: CniError::from_json(body.as_bytes()).unwrap_or_else(|| {
                // Not ours (Multus's daemon answers with plain text).
                CniError::new(
                    ErrorCode::Plugin(999),
                    format!("CNI request failed with status {status}: '{}'", body.trim()),
                )
            }),
            socket,
        }),
    }
}

/// How long a warm API client is kept before it is made again (its credentials re-read)
/// even if its files look unchanged.
const CLIENT_MAX_AGE: Duration = Duration::from_secs(600);

/// The daemon's API clients, one per kubeconfig (or in-cluster), made again when the
/// credentials they were made from change (a rotated service account token, a rewritten
/// kubeconfig), when making them failed, or when they are old.
#[derive(Default)]
struct Clients {
    warm: Mutex<HashMap<Option<PathBuf>, Warm>>,
}

struct Warm {
    credentials: Option<(i64, i64, u64, u64)>,
    made: Instant,
    client: Arc<LazyKube>,
}

/// What identifies a version of a credentials file: mtime (s, ns), size, inode.
fn fingerprint(path: &Path) -> Option<(i64, i64, u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.mtime(), m.mtime_nsec(), m.size(), m.ino()))
}

impl Clients {
    fn get(&self, kubeconfig: Option<PathBuf>) -> Arc<LazyKube> {
        let credentials = fingerprint(kubeconfig.as_deref().unwrap_or(&service_account_token()));
        let mut warm = self.warm.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = warm.get(&kubeconfig) {
            if w.credentials == credentials
                && w.made.elapsed() < CLIENT_MAX_AGE
                && !w.client.failed()
            {
                return Arc::clone(&w.client);
            }
        }
        let client =
            Arc::new(LazyKube::new(kubeconfig.clone(), crate::multus::API_TIMEOUT).long_lived());
        warm.insert(
            kubeconfig,
            Warm {
                credentials,
                made: Instant::now(),
                client: Arc::clone(&client),
            },
        );
        client
    }

    /// Drops the client of `kubeconfig`: the next call makes it again.
    fn forget(&self, kubeconfig: &Option<PathBuf>) {
        self.warm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(kubeconfig);
    }

    fn source(&self, cfg: &Config) -> Arc<dyn ClusterSource> {
        use crate::multus::SourceKind;
        match crate::multus::source_kind(cfg) {
            SourceKind::Kube(kubeconfig) => self.get(kubeconfig),
            SourceKind::Store(dir) => Arc::new(oxivirt_multus_core::source::DirSource::new(dir)),
            SourceKind::Unconfigured => Arc::new(oxivirt_multus_core::source::Unconfigured),
        }
    }
}

fn service_account_token() -> PathBuf {
    std::env::var_os("OXIVIRT_SERVICEACCOUNT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(oxivirt_multus_core::kube::SA_DIR))
        .join("token")
}

const DAEMON_USAGE: &str =
    "usage: oxivirt-multus multus-daemon [--socket-dir DIR] [--config FILE] [--chroot ROOT]\n\
     Serves multus-shim's calls on DIR/multus.sock (default /run/multus). FILE (JSON) holds \
     meta plugin fields that win over the shim's config (kubeconfig, clusterNetwork, …). \
     ROOT: the host's root as mounted in this container; the daemon reads FILE, then \
     changes its root to ROOT, so DIR, the delegates, their state and the pods' namespaces \
     are the host's, as the thin plugin sees them.";

/// `oxivirt-multus multus-daemon …`. Returns the exit code.
pub fn daemon_command(args: Vec<String>) -> i32 {
    let mut socket_dir = PathBuf::from(thick::DEFAULT_SOCKET_DIR);
    let mut config_file = None;
    let mut root = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .map(PathBuf::from)
                .ok_or(format!("{name} needs a value"))
        };
        let r = match a.as_str() {
            "--socket-dir" => value("--socket-dir").map(|v| socket_dir = v),
            "--config" => value("--config").map(|v| config_file = Some(v)),
            "--chroot" => value("--chroot").map(|v| root = Some(v)),
            "-h" | "--help" => {
                println!("{DAEMON_USAGE}");
                return 0;
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(e) = r {
            eprintln!("multus-daemon: {e}\n{DAEMON_USAGE}");
            return 2;
        }
    }
    let overlay = match config_file.as_deref().map(read_daemon_config).transpose() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("multus-daemon: {e}");
            return 2;
        }
    };
    if let Some(root) = &root {
        // Everything after this is the host's view: the socket, the delegates and their
        // state, the kubeconfig the shim's config names, the pods' namespaces.
        let entered = std::os::unix::fs::chroot(root).and_then(|()| std::env::set_current_dir("/"));
        if let Err(e) = entered {
            eprintln!(
                "multus-daemon: cannot change the root to {}: {e}",
                root.display()
            );
            return 1;
        }
    }
    match serve(&socket_dir, overlay) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("multus-daemon: {e}");
            1
        }
    }
}

fn read_daemon_config(path: &Path) -> std::result::Result<serde_json::Value, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "{}: line {} column {}: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    if !v.is_object() {
        return Err(format!("{}: not a JSON object", path.display()));
    }
    Ok(v)
}

/// Binds the socket (root-only: whoever can write to it runs CNI as root) and serves until
/// SIGTERM/SIGINT, then lets calls in progress finish and removes the socket.
fn serve(dir: &Path, overlay: Option<serde_json::Value>) -> std::result::Result<(), String> {
    let signals = block_stop_signals()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let socket = dir.join(thick::SOCKET_NAME);
    if socket.exists() {
        if UnixStream::connect(&socket).is_ok() {
            return Err(format!(
                "{}: another daemon is serving it",
                socket.display()
            ));
        }
        std::fs::remove_file(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    }
    // Bound under another name, made root-only, then renamed into place: the socket never
    // exists with other modes, and once it exists it is served.
    let bound = dir.join(format!(".{}.tmp", thick::SOCKET_NAME));
    let _ = std::fs::remove_file(&bound);
    let listener = UnixListener::bind(&bound).map_err(|e| format!("{}: {e}", bound.display()))?;
    std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&bound, &socket))
        .map_err(|e| {
            let _ = std::fs::remove_file(&bound);
            format!("{}: {e}", socket.display())
        })?;
    eprintln!("multus-daemon: serving {}", socket.display());

    let state = Arc::new(Daemon {
        overlay,
        clients: Clients::default(),
        active: AtomicUsize::new(0),
    });
    {
        let state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let state = Arc::clone(&state);
                    state.active.fetch_add(1, Ordering::SeqCst);
                    // One thread per call: delegates enter the pod's namespace on their
                    // own threads, and nothing of one call can stay with the next.
                    let spawned = std::thread::Builder::new().name("cni".into()).spawn({
                        let state = Arc::clone(&state);
                        move || {
                            state.serve_connection(conn);
                            state.active.fetch_sub(1, Ordering::SeqCst);
                        }
                    });
                    if spawned.is_err() {
                        state.active.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            })
            .map_err(|e| format!("accept thread: {e}"))?;
    }
    let signal = wait_for_signal(&signals);
    // New calls fail to connect from here (the shim says: try again later).
    let _ = std::fs::remove_file(&socket);
    let deadline = Instant::now() + Duration::from_secs(30);
    while state.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("multus-daemon: stopped by signal {signal}");
    Ok(())
}

struct Daemon {
    overlay: Option<serde_json::Value>,
    clients: Clients,
    active: AtomicUsize,
}

impl Daemon {
    fn serve_connection(&self, conn: UnixStream) {
        // A client that connects and says nothing does not hold a thread for good.
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let mut reader = BufReader::new(&conn);
        let (status, content_type, body) = match thick::read_request(&mut reader) {
            Err(e) => (e.status(), "text/plain", e.to_string().into_bytes()),
            Ok(req) => self.route(req),
        };
        let _ = thick::write_response(&mut &conn, status, content_type, &body);
    }

    fn route(&self, req: HttpRequest) -> (u16, &'static str, Vec<u8>) {
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", thick::CNI_PATH) => self.cni(&req.body),
            ("GET", thick::HEALTH_PATH) => (200, "text/plain", b"ok".to_vec()),
            (_, thick::CNI_PATH | thick::HEALTH_PATH) => {
                (405, "text/plain", b"method not allowed".to_vec())
            }
            (_, p) => (404, "text/plain", format!("no endpoint {p}").into_bytes()),
        }
    }

    fn cni(&self, body: &[u8]) -> (u16, &'static str, Vec<u8>) {
        let request: Request = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return (
                    400,
                    "text/plain",
                    format!("the request is not a Multus CNI request: {e}").into_bytes(),
                )
            }
        };
        let none = serde_json::Value::Object(Default::default());
        let config = thick::overlay(&request.config, self.overlay.as_ref().unwrap_or(&none));
        let outcome = config.and_then(|config| {
            let env = Environment::from_lookup(|k| request.env.get(k).cloned())?;
            let out = if env.command == Command::Version {
                Ok(Some(Version::version_info_json()))
            } else {
                let used = std::cell::RefCell::new(None);
                let out = crate::multus::handle_with(
                    Call {
                        env: &env,
                        stdin: &config,
                    },
                    &|cfg| {
                        if let crate::multus::SourceKind::Kube(k) = crate::multus::source_kind(cfg)
                        {
                            *used.borrow_mut() = Some(k);
                        }
                        self.clients.source(cfg)
                    },
                );
                // Credentials the server no longer takes (a token rotated in a file we do
                // not watch): the next call makes the client again.
                if let (Err(e), Some(k)) = (&out, used.into_inner()) {
                    if e.is_unauthorized() {
                        self.clients.forget(&k);
                    }
                }
                out
            };
            Ok((out, config))
        });
        let (out, config) = match outcome {
            Ok(o) => o,
            Err(e) => (Err(e), request.config.clone()),
        };
        match out {
            Ok(result) => {
                let result = result.and_then(|r| serde_json::from_str(&r).ok());
                let body = serde_json::to_vec(&Response { result }).unwrap_or_default();
                (200, "application/json", body)
            }
            Err(e) => {
                let version = serde_json::from_slice::<serde_json::Value>(&config)
                    .ok()
                    .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
                    .unwrap_or_else(|| Version::LATEST.as_str().to_string());
                (
                    500,
                    "application/json",
                    to_cni(&e).to_json(&version).into_bytes(),
                )
            }
        }
    }
}

/// Blocks SIGTERM and SIGINT in this thread and every thread it starts, so that only
/// [`wait_for_signal`] sees them.
fn block_stop_signals() -> std::result::Result<libc::sigset_t, String> {
    // SAFETY: sigset_t is plain data, filled by sigemptyset before use; pthread_sigmask
    // changes only this thread's mask (threads started later inherit it).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err("cannot block SIGTERM/SIGINT".into());
        }
        Ok(set)
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is a valid, initialised signal set; sigwait writes the signal number.
    while unsafe { libc::sigwait(set, &mut sig) } != 0 {}
    sig
}
