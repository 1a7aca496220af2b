//! A kubelet device plugin that hands a host device file to the containers that ask for
//! it, as KubeVirt's node agent does for `devices.kubevirt.io/kvm` (`/dev/kvm`) and
//! `devices.kubevirt.io/tun` (`/dev/net/tun`): launcher pods then get the device in their
//! device cgroup and run unprivileged (a hostPath mount of `/dev/kvm` gives an
//! unprivileged container EPERM).
//!
//! The kubelet's side (`deviceplugin/v1beta1`): the plugin serves gRPC on a unix socket in
//! the kubelet's device plugin directory, registers that socket through the kubelet's
//! `kubelet.sock`, advertises `count` interchangeable devices (one file, shared: a node
//! runs as many VMs as that), and answers `Allocate` with the device file. When the
//! kubelet restarts it removes every plugin socket; the plugin notices and registers again.

pub mod grpc;
pub mod proto;

use grpc::{code, GrpcError};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The kubelet's device plugin directory and its registration socket.
pub const KUBELET_DIR: &str = "/var/lib/kubelet/device-plugins";
pub const KUBELET_SOCKET: &str = "kubelet.sock";
/// How many devices one file is advertised as (KubeVirt's count for kvm and tun).
pub const DEFAULT_COUNT: usize = 1000;

/// What the plugin reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("device plugin socket {}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kubelet registration socket {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Grpc {
        what: String,
        #[source]
        source: GrpcError,
    },
}

/// One kind of device: a host file served under a resource name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKind {
    /// The extended resource pods ask for (`devices.kubevirt.io/kvm`).
    pub resource: String,
    /// The device file, the same path on the host and in the container.
    pub path: PathBuf,
    /// Where this process sees that file (the node agent in its container sees the
    /// host's `/dev` elsewhere): its health is whether this exists.
    pub probe: PathBuf,
    /// Cgroup permissions given with it.
    pub permissions: String,
    /// How many devices it is advertised as.
    pub count: usize,
}

impl DeviceKind {
    pub fn kvm(count: usize) -> Self {
        Self {
            resource: "devices.kubevirt.io/kvm".into(),
            path: "/dev/kvm".into(),
            probe: "/dev/kvm".into(),
            permissions: "rw".into(),
            count,
        }
    }

    pub fn tun(count: usize) -> Self {
        Self {
            resource: "devices.kubevirt.io/tun".into(),
            path: "/dev/net/tun".into(),
            probe: "/dev/net/tun".into(),
            permissions: "rwm".into(),
            count,
        }
    }

    /// The resource's last part (`kvm`): device ids and the socket name come from it.
    fn short(&self) -> &str {
        self.resource.rsplit('/').next().unwrap_or(&self.resource)
    }

    /// The plugin's socket file name in the kubelet's directory.
    pub fn endpoint(&self) -> String {
        format!("oxivirt-{}.sock", self.short())
    }

    fn device_id(&self, i: usize) -> String {
        format!("{}{i}", self.short())
    }

    fn healthy(&self) -> bool {
        self.probe.exists()
    }

    /// The same device seen under `root` (the host's `/` as mounted here).
    pub fn seen_under(mut self, root: &Path) -> Self {
        self.probe = root.join(self.path.strip_prefix("/").unwrap_or(&self.path));
        self
    }

    /// The device list as ListAndWatch sends it.
    pub fn devices(&self) -> proto::ListAndWatchResponse {
        let health = if self.healthy() {
            proto::HEALTHY
        } else {
            proto::UNHEALTHY
        };
        proto::ListAndWatchResponse {
            devices: (0..self.count)
                .map(|i| proto::Device {
                    id: self.device_id(i),
                    health: health.into(),
                })
                .collect(),
        }
    }

    /// The answer to Allocate: the device file for every container that asked, once each
    /// (its ids all stand for the one file). Unknown ids and a missing file are refused.
    pub fn allocate(
        &self,
        req: &proto::AllocateRequest,
    ) -> Result<proto::AllocateResponse, (u32, String)> {
        let mut out = proto::AllocateResponse::default();
        for c in &req.container_requests {
            if let Some(bad) = c.devices_ids.iter().find(|id| {
                id.strip_prefix(self.short())
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_none_or(|n| n >= self.count)
            }) {
                return Err((
                    code::INVALID_ARGUMENT,
                    format!("{}: no device {bad:?}", self.resource),
                ));
            }
            if !self.healthy() {
                return Err((
                    code::FAILED_PRECONDITION,
                    format!(
                        "{}: {} does not exist on this node",
                        self.resource,
                        self.path.display()
                    ),
                ));
            }
            let path = self.path.display().to_string();
            out.container_responses
                .push(proto::ContainerAllocateResponse {
                    envs: Default::default(),
                    devices: vec![proto::DeviceSpec {
                        container_path: path.clone(),
                        host_path: path,
                        permissions: self.permissions.clone(),
                    }],
                });
        }
        Ok(out)
    }
}

const SERVICE: &str = "/v1beta1.DevicePlugin/";

async fn handle(
    req: Request<Incoming>,
    kind: Arc<DeviceKind>,
    health_interval: Duration,
) -> Response<grpc::Body> {
    let method = req
        .uri()
        .path()
        .strip_prefix(SERVICE)
        .unwrap_or_default()
        .to_string();
    match method.as_str() {
        "GetDevicePluginOptions" => grpc::ok(&proto::DevicePluginOptions::default()),
        "ListAndWatch" => {
            let (tx, resp) = grpc::stream();
            tokio::spawn(async move {
                let mut sent = None;
                loop {
                    let list = kind.devices();
                    if sent.as_ref() != Some(&list) {
                        if tx.send(grpc::frame(&list)).await.is_err() {
                            return;
                        }
                        sent = Some(list);
                    }
                    tokio::select! {
                        () = tx.closed() => return,
                        () = tokio::time::sleep(health_interval) => {}
                    }
                }
            });
            resp
        }
        "Allocate" => {
            let body = match grpc::read_body(req).await {
                Ok(b) => b,
                Err(e) => return grpc::error(code::INTERNAL, &e.to_string()),
            };
            match grpc::unframe::<proto::AllocateRequest>(body) {
                Ok(r) => match kind.allocate(&r) {
                    Ok(a) => grpc::ok(&a),
                    Err((c, m)) => grpc::error(c, &m),
                },
                Err(e) => grpc::error(code::INVALID_ARGUMENT, &e.to_string()),
            }
        }
        "PreStartContainer" => grpc::ok(&proto::PreStartContainerResponse {}),
        other => grpc::error(
            code::UNIMPLEMENTED,
            &format!("method {other:?} is not implemented"),
        ),
    }
}

/// Serves the plugin's gRPC API on `listener` until the task is dropped; ListAndWatch
/// streams check the device every `health_interval` and send the list when it changes.
pub async fn serve(
    listener: tokio::net::UnixListener,
    kind: Arc<DeviceKind>,
    health_interval: Duration,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors, say: try again shortly rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let kind = Arc::clone(&kind);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let kind = Arc::clone(&kind);
                async move {
                    Ok::<_, std::convert::Infallible>(handle(req, kind, health_interval).await)
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Registers `kind`'s socket with the kubelet at `kubelet_socket`.
pub async fn register(kubelet_socket: &Path, kind: &DeviceKind) -> Result<(), Error> {
    let stream = tokio::net::UnixStream::connect(kubelet_socket)
        .await
        .map_err(|source| Error::Connect {
            path: kubelet_socket.to_path_buf(),
            source,
        })?;
    let what = |e: GrpcError| Error::Grpc {
        what: format!("registering {} with the kubelet", kind.resource),
        source: e,
    };
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| what(GrpcError::Http(e)))?;
    tokio::spawn(conn);
    let req = grpc::request(
        "/v1beta1.Registration/Register",
        &proto::RegisterRequest {
            version: proto::VERSION.into(),
            endpoint: kind.endpoint(),
            resource_name: kind.resource.clone(),
            options: Some(proto::DevicePluginOptions::default()),
        },
    );
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| what(GrpcError::Http(e)))?;
    let headers = resp.headers().clone();
    let collected = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map_err(|e| what(GrpcError::Http(e)))?;
    grpc::status(&headers, collected.trailers()).map_err(what)
}

/// Binds the plugin's socket in `dir` (a stale one from an earlier run replaced).
pub fn bind(dir: &Path, kind: &DeviceKind) -> Result<(tokio::net::UnixListener, PathBuf), Error> {
    let path = dir.join(kind.endpoint());
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).map_err(|source| Error::Bind {
        path: path.clone(),
        source,
    })?;
    Ok((listener, path))
}

/// The inode of a socket file, to tell ours from a new one of the same name.
fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Serves and registers `kind` in the kubelet's `dir` for good: registration is retried
/// until the kubelet answers, and when the socket disappears (the kubelet restarted and
/// removed every plugin socket) it is bound and registered again. `poll` paces all of it
/// and the device's health checks. `log` hears each step.
pub async fn run(dir: PathBuf, kind: DeviceKind, poll: Duration, log: impl Fn(String)) {
    let kind = Arc::new(kind);
    let kubelet = dir.join(KUBELET_SOCKET);
    loop {
        let (listener, path) = match bind(&dir, &kind) {
            Ok(b) => b,
            Err(e) => {
                log(format!("{}: {}", kind.resource, chain(&e)));
                tokio::time::sleep(poll).await;
                continue;
            }
        };
        let ours = inode(&path);
        let server = tokio::spawn(serve(listener, Arc::clone(&kind), poll));
        loop {
            match register(&kubelet, &kind).await {
                Ok(()) => {
                    log(format!(
                        "{}: registered {} ({} devices)",
                        kind.resource,
                        path.display(),
                        kind.count
                    ));
                    break;
                }
                Err(e) => log(format!("{}: {}", kind.resource, chain(&e))),
            }
            tokio::time::sleep(poll).await;
            if inode(&path) != ours {
                break;
            }
        }
        while inode(&path) == ours && ours.is_some() {
            tokio::time::sleep(poll).await;
        }
        log(format!(
            "{}: {} is gone (the kubelet restarted?): serving and registering again",
            kind.resource,
            path.display()
        ));
        server.abort();
    }
}

/// An error with its sources, `: `-joined.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(path: &Path) -> DeviceKind {
        DeviceKind {
            resource: "devices.kubevirt.io/kvm".into(),
            path: path.to_path_buf(),
            probe: path.to_path_buf(),
            permissions: "rw".into(),
            count: 3,
        }
    }

    #[test]
    fn devices_follow_the_file_and_allocate_gives_it_once_per_container() {
        let dir = tempfile::tempdir().expect("tmp");
        let dev = dir.path().join("kvm");
        let k = kind(&dev);
        assert_eq!(k.endpoint(), "oxivirt-kvm.sock");
        let ids: Vec<String> = k.devices().devices.iter().map(|d| d.id.clone()).collect();
        assert_eq!(ids, ["kvm0", "kvm1", "kvm2"]);
        assert!(k
            .devices()
            .devices
            .iter()
            .all(|d| d.health == proto::UNHEALTHY));
        let req = proto::AllocateRequest {
            container_requests: vec![
                proto::ContainerAllocateRequest {
                    devices_ids: vec!["kvm0".into(), "kvm2".into()],
                },
                proto::ContainerAllocateRequest {
                    devices_ids: vec!["kvm1".into()],
                },
            ],
        };
        let (c, m) = k.allocate(&req).expect_err("no file yet");
        assert_eq!(c, code::FAILED_PRECONDITION);
        assert!(m.contains("does not exist"), "{m}");

        std::fs::write(&dev, "").expect("device");
        assert!(k
            .devices()
            .devices
            .iter()
            .all(|d| d.health == proto::HEALTHY));
        let a = k.allocate(&req).expect("allocate");
        assert_eq!(a.container_responses.len(), 2);
        for r in &a.container_responses {
            assert_eq!(
                r.devices,
                [proto::DeviceSpec {
                    container_path: dev.display().to_string(),
                    host_path: dev.display().to_string(),
                    permissions: "rw".into(),
                }]
            );
        }
        for bad in ["kvm3", "tun0", "kvm", "kvm-1"] {
            let r = proto::AllocateRequest {
                container_requests: vec![proto::ContainerAllocateRequest {
                    devices_ids: vec![bad.into()],
                }],
            };
            let (c, m) = k.allocate(&r).expect_err(bad);
            assert_eq!(c, code::INVALID_ARGUMENT, "{bad}");
            assert!(m.contains(bad), "{m}");
        }
    }

    #[test]
    fn a_device_seen_under_another_root_is_probed_there_and_given_by_its_host_path() {
        let root = tempfile::tempdir().expect("tmp");
        let k = DeviceKind::kvm(1).seen_under(root.path());
        assert_eq!(k.probe, root.path().join("dev/kvm"));
        assert!(k
            .devices()
            .devices
            .iter()
            .all(|d| d.health == proto::UNHEALTHY));
        std::fs::create_dir_all(root.path().join("dev")).expect("dev");
        std::fs::write(root.path().join("dev/kvm"), "").expect("kvm");
        let req = proto::AllocateRequest {
            container_requests: vec![proto::ContainerAllocateRequest {
                devices_ids: vec!["kvm0".into()],
            }],
        };
        let a = k.allocate(&req).expect("allocate");
        assert_eq!(a.container_responses[0].devices[0].host_path, "/dev/kvm");
    }
}
