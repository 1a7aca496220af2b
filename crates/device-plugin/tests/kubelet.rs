//! The plugin against a stand-in kubelet (no kubelet runs on these machines): the kubelet's
//! registration service on `kubelet.sock` in a temporary device plugin directory, and the
//! kubelet's calls to the plugin's socket (ListAndWatch, Allocate) over HTTP/2, as its
//! device manager makes them. The device is a file of the test's own.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use oxivirt_device_plugin::{grpc, proto, DeviceKind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The kubelet's registration service: records every request, refuses the first
/// `refuse` of them (as a kubelet refuses a resource name another plugin holds).
fn kubelet(
    dir: &Path,
    refuse: usize,
) -> tokio::sync::mpsc::UnboundedReceiver<proto::RegisterRequest> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::UnixListener::bind(dir.join("kubelet.sock")).expect("bind");
    let refused = Arc::new(Mutex::new(0usize));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (tx, refused) = (tx.clone(), Arc::clone(&refused));
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (tx, refused) = (tx.clone(), Arc::clone(&refused));
                        async move {
                            assert_eq!(req.uri().path(), "/v1beta1.Registration/Register");
                            let body = grpc::read_body(req).await.expect("body");
                            let r: proto::RegisterRequest = grpc::unframe(body).expect("request");
                            let _ = tx.send(r);
                            let mut n = refused.lock().expect("lock");
                            let resp = if *n < refuse {
                                *n += 1;
                                grpc::error(2, "resource name already registered")
                            } else {
                                grpc::ok(&proto::Empty {})
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    rx
}

/// The kubelet's side of the plugin's socket.
async fn connect(
    socket: &Path,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Full<Bytes>> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    send
}

async fn unary<M: prost::Message + Default>(
    send: &mut hyper::client::conn::http2::SendRequest<http_body_util::Full<Bytes>>,
    method: &str,
    msg: &impl prost::Message,
) -> Result<M, grpc::GrpcError> {
    let resp = send
        .send_request(grpc::request(
            &format!("/v1beta1.DevicePlugin/{method}"),
            msg,
        ))
        .await
        .expect("send");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/grpc")
    );
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.expect("body");
    grpc::status(&headers, collected.trailers())?;
    grpc::unframe(collected.to_bytes())
}

async fn next_list(body: &mut hyper::body::Incoming) -> proto::ListAndWatchResponse {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a list within 10 s")
            .expect("the stream goes on")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            return grpc::unframe(data).expect("list");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_lists_allocates_and_registers_again_after_a_kubelet_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_path_buf();
    let dev: PathBuf = dir.join("kvm-device");
    std::fs::write(&dev, "").expect("device");
    // The first registration is refused: the plugin retries.
    let mut registrations = kubelet(&dir, 1);
    let kind = DeviceKind {
        path: dev.clone(),
        probe: dev.clone(),
        count: 4,
        ..DeviceKind::kvm(0)
    };
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let plugin = {
        let (dir, kind, log) = (dir.clone(), kind.clone(), Arc::clone(&log));
        tokio::spawn(oxivirt_device_plugin::run(
            dir,
            kind,
            Duration::from_millis(50),
            move |l| log.lock().expect("log").push(l),
        ))
    };
    for attempt in 0..2 {
        let r = tokio::time::timeout(Duration::from_secs(10), registrations.recv())
            .await
            .expect("a registration within 10 s")
            .expect("registration");
        assert_eq!(r.version, "v1beta1", "attempt {attempt}");
        assert_eq!(r.endpoint, "oxivirt-kvm.sock");
        assert_eq!(r.resource_name, "devices.kubevirt.io/kvm");
    }
    let socket = dir.join("oxivirt-kvm.sock");
    assert!(socket.exists());
    {
        let log = log.lock().expect("log");
        assert!(
            log.iter()
                .any(|l| l.contains("resource name already registered")),
            "{log:?}"
        );
    }

    let mut send = connect(&socket).await;
    let opts: proto::DevicePluginOptions =
        unary(&mut send, "GetDevicePluginOptions", &proto::Empty {})
            .await
            .expect("options");
    assert!(!opts.pre_start_required);

    // ListAndWatch: four healthy devices; the file goes, the list says so.
    let resp = send
        .send_request(grpc::request(
            "/v1beta1.DevicePlugin/ListAndWatch",
            &proto::Empty {},
        ))
        .await
        .expect("ListAndWatch");
    let mut stream = resp.into_body();
    let list = next_list(&mut stream).await;
    assert_eq!(list.devices.len(), 4);
    assert!(
        list.devices.iter().all(|d| d.health == "Healthy"),
        "{list:?}"
    );

    let alloc: proto::AllocateResponse = unary(
        &mut send,
        "Allocate",
        &proto::AllocateRequest {
            container_requests: vec![proto::ContainerAllocateRequest {
                devices_ids: vec![list.devices[0].id.clone()],
            }],
        },
    )
    .await
    .expect("allocate");
    assert_eq!(alloc.container_responses.len(), 1);
    assert_eq!(
        alloc.container_responses[0].devices[0].host_path,
        dev.display().to_string()
    );
    assert_eq!(alloc.container_responses[0].devices[0].permissions, "rw");

    let e = unary::<proto::AllocateResponse>(
        &mut send,
        "Allocate",
        &proto::AllocateRequest {
            container_requests: vec![proto::ContainerAllocateRequest {
                devices_ids: vec!["gpu0".into()],
            }],
        },
    )
    .await
    .expect_err("an id not ours");
    assert!(
        matches!(&e, grpc::GrpcError::Status { code: 3, message } if message.contains("gpu0")),
        "{e:?}"
    );
    let e = unary::<proto::Empty>(&mut send, "Nope", &proto::Empty {})
        .await
        .expect_err("unknown method");
    assert!(
        matches!(e, grpc::GrpcError::Status { code: 12, .. }),
        "{e:?}"
    );

    std::fs::remove_file(&dev).expect("rm device");
    let list = next_list(&mut stream).await;
    assert!(
        list.devices.iter().all(|d| d.health == "Unhealthy"),
        "{list:?}"
    );

    // The kubelet restarts: it removes the plugin sockets; the plugin comes back.
    std::fs::remove_file(&socket).expect("rm socket");
    let r = tokio::time::timeout(Duration::from_secs(10), registrations.recv())
        .await
        .expect("registered again within 10 s")
        .expect("registration");
    assert_eq!(r.endpoint, "oxivirt-kvm.sock");
    assert!(socket.exists());
    plugin.abort();
}
