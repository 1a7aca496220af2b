//! Pulls from a real registry: Debian's `docker-registry` on 127.0.0.1 inside a network
//! namespace of the test's own, images built here as OCI layouts and pushed with `skopeo`,
//! the pulls made from a thread in that namespace (`quay.io` mirrored to the local
//! registry), so no packet leaves it.

use oxivirt_image::{
    overlay, DiskFormat, Error, Mirror, PullPolicy, PulledImage, Puller, Reference,
};
use oxivirt_netlink::NetNs;
use oxivirt_testkit::cleanup::TempDir;
use oxivirt_testkit::registry::{sha256_hex, small_qcow2, Layout, Registry, PORT};
use oxivirt_testkit::root_test;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const REPO: &str = "kubevirt/cirros-container-disk-demo";
const QUAY_REF: &str = "quay.io/kubevirt/cirros-container-disk-demo:latest";

/// One pull made from a thread in the registry's namespace.
fn pull_in(ns: &NetNs, puller: &Puller, r: &str, policy: PullPolicy) -> Result<PulledImage, Error> {
    let r = Reference::parse(r).expect("reference");
    ns.run(|| puller.pull(&r, policy))
        .expect("thread in namespace")
}

fn mirror() -> Vec<Mirror> {
    vec![format!("quay.io=http://127.0.0.1:{PORT}")
        .parse()
        .expect("mirror")]
}

fn qemu_img_info(p: &Path) -> serde_json::Value {
    let out = oxivirt_testkit::sh(&[
        "qemu-img",
        "info",
        "-U",
        "--output=json",
        &p.to_string_lossy(),
    ]);
    serde_json::from_str(&out).expect("qemu-img info json")
}

/// Through the `quay.io` mirror: the disk arrives intact; the second pull asks for no
/// blob; with the registry gone, the cache still serves the image (IfNotPresent), and
/// `Always` says the registry is unreachable.
#[root_test("docker-registry", "skopeo", "qemu-img", "qemu-io", "nsenter")]
fn pull_through_a_mirror_then_from_the_cache() {
    let mut reg = Registry::start("");
    let work = TempDir::new("imgwork").expect("work");
    let disk = small_qcow2(work.path());
    let layout = Layout::new(work.path().join("layout"));
    let m = layout.image(&[("disk/test.img", &disk)]);
    layout.tag(&m);
    reg.push(&layout.dir, REPO, "latest", None);

    let cache = work.path().join("cache");
    let puller = Puller::new(&cache, mirror()).expect("puller");
    let ns = reg.netns();
    let img = pull_in(&ns, &puller, QUAY_REF, PullPolicy::Always).expect("pull");
    assert_eq!(img.reference.registry, "quay.io");
    assert_eq!(img.digest, m["digest"].as_str().expect("digest"));
    assert_eq!(
        (img.stats.manifest_requests, img.stats.blob_requests),
        (1, 2)
    );
    let d = puller.container_disk(&img, None).expect("disk");
    assert_eq!(d.format, DiskFormat::Qcow2);
    assert_eq!(std::fs::read(&d.path).expect("disk"), disk);
    assert!(d.path.starts_with(cache.join("disks")));
    assert!(std::fs::metadata(&d.path)
        .expect("meta")
        .permissions()
        .readonly());

    let again = pull_in(&ns, &puller, QUAY_REF, PullPolicy::Always).expect("again");
    assert_eq!(
        (again.stats.manifest_requests, again.stats.blob_requests),
        (1, 0)
    );
    assert_eq!(puller.container_disk(&again, None).expect("disk"), d);

    reg.stop();
    let started = std::time::Instant::now();
    let offline = pull_in(&ns, &puller, QUAY_REF, PullPolicy::IfNotPresent).expect("cache");
    assert_eq!(puller.container_disk(&offline, None).expect("disk"), d);
    // What a launcher start pays with the image cached (informational, not a bound).
    eprintln!("cached pull + disk lookup: {:?}", started.elapsed());
    assert_eq!(offline.stats, Default::default());
    assert_eq!(offline.manifest_digest, img.manifest_digest);
    let e = pull_in(&ns, &puller, QUAY_REF, PullPolicy::Always).expect_err("registry gone");
    assert!(
        matches!(e, Error::Unreachable { .. }) && e.is_transient(),
        "{e:?}"
    );
    assert!(oxivirt_testkit::dir_names(&cache.join("tmp")).is_empty());
}

/// An index with linux/arm64 and linux/amd64: the amd64 manifest's disk is the one.
#[root_test("docker-registry", "skopeo", "nsenter")]
fn an_index_resolves_to_linux_amd64() {
    let reg = Registry::start("");
    let work = TempDir::new("imgwork").expect("work");
    let layout = Layout::new(work.path().join("layout"));
    let arm = layout.image(&[("disk/arm.img", b"arm64 disk")]);
    let amd = layout.image(&[("disk/amd.img", b"amd64 disk")]);
    let idx = layout.index(&[("linux", "arm64", arm), ("linux", "amd64", amd.clone())]);
    layout.tag(&idx);
    reg.push(&layout.dir, REPO, "latest", None);

    let puller = Puller::new(work.path().join("cache"), mirror()).expect("puller");
    let img = pull_in(&reg.netns(), &puller, QUAY_REF, PullPolicy::Always).expect("pull");
    assert_eq!(img.digest, idx["digest"].as_str().expect("digest"));
    assert_eq!(img.manifest_digest, amd["digest"].as_str().expect("digest"));
    let d = puller.container_disk(&img, None).expect("disk");
    assert_eq!(std::fs::read(&d.path).expect("disk"), b"amd64 disk");
    assert_eq!(d.format, DiskFormat::Raw);
    assert!(d.path.ends_with("disk/amd.img"));
}

/// The registry serves a layer whose bytes were changed on its disk: the pull fails with
/// the digests, and the cache holds no part of it.
#[root_test("docker-registry", "skopeo", "nsenter")]
fn a_tampered_blob_is_refused_and_leaves_nothing() {
    let reg = Registry::start("");
    let work = TempDir::new("imgwork").expect("work");
    let layout = Layout::new(work.path().join("layout"));
    let m = layout.image(&[("disk/test.img", &[7u8; 4096][..])]);
    layout.tag(&m);
    reg.push(&layout.dir, REPO, "latest", None);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout.dir.join("blobs/sha256").join(
                m["digest"]
                    .as_str()
                    .expect("digest")
                    .trim_start_matches("sha256:"),
            ),
        )
        .expect("manifest"),
    )
    .expect("json");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    let served = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&served).expect("registry blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&served, bytes).expect("tamper");

    let cache = work.path().join("cache");
    let puller = Puller::new(&cache, mirror()).expect("puller");
    let e = pull_in(&reg.netns(), &puller, QUAY_REF, PullPolicy::Always).expect_err("mismatch");
    match &e {
        Error::DigestMismatch {
            registry,
            reference,
            expected,
            actual,
        } => {
            assert_eq!(registry, "quay.io");
            assert_eq!(reference, QUAY_REF);
            assert_eq!(expected, &layer);
            assert_ne!(actual, &layer);
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert_eq!(e.kubelet_reason(), Some("ErrImagePull"));
    assert!(!cache
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"))
        .exists());
    assert!(oxivirt_testkit::dir_names(&cache.join("tmp")).is_empty());
    assert!(oxivirt_testkit::dir_names(&cache.join("disks")).is_empty());
    assert!(oxivirt_testkit::dir_names(&cache.join("refs")).is_empty());
}

/// A missing repository and a missing tag are `NotFound` with the registry's code.
#[root_test("docker-registry", "nsenter")]
fn a_missing_image_is_a_typed_error() {
    let reg = Registry::start("");
    let work = TempDir::new("imgwork").expect("work");
    let puller = Puller::new(work.path().join("cache"), mirror()).expect("puller");
    for r in [QUAY_REF, "quay.io/kubevirt/nothing-here:v1"] {
        let e = pull_in(&reg.netns(), &puller, r, PullPolicy::IfNotPresent).expect_err("404");
        match &e {
            Error::NotFound {
                status: 404,
                code,
                registry,
                ..
            } => {
                assert_eq!(registry, "quay.io");
                assert!(
                    code.as_deref().is_some_and(|c| c.ends_with("_UNKNOWN")),
                    "{code:?}"
                );
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert!(!e.is_transient());
    }
}

/// A token server of the test's own: counts requests, grants or refuses.
struct TokenServer {
    stop: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    fn start(ns: &NetNs, port: u16, grant: bool) -> Self {
        let listener = ns
            .run(|| TcpListener::bind(("127.0.0.1", port)))
            .expect("thread")
            .expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (stop.clone(), hits.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::Relaxed);
                let (status, body) = if grant {
                    (
                        "200 OK",
                        r#"{"token":"anonymous","access_token":"anonymous"}"#,
                    )
                } else {
                    ("403 Forbidden", r#"{"details":"no"}"#)
                };
                let _ = write!(
                    c,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self {
            stop,
            hits,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A registry that answers 401 with a Bearer challenge (the registry's `silly` auth):
/// the client fetches an anonymous token from the realm and pulls; a realm that refuses
/// gives a `Token` error.
#[root_test("docker-registry", "skopeo", "nsenter")]
fn bearer_token_auth_against_a_real_registry() {
    let realm = format!("http://127.0.0.1:{}/token", PORT + 1);
    let reg = Registry::start(&format!(
        "  silly:\n    realm: {realm}\n    service: oxivirt-test"
    ));
    let ns = reg.netns();
    let tokens = TokenServer::start(&ns, PORT + 1, true);
    let work = TempDir::new("imgwork").expect("work");
    let layout = Layout::new(work.path().join("layout"));
    let m = layout.image(&[("disk/test.img", b"behind a token")]);
    layout.tag(&m);
    reg.push(&layout.dir, REPO, "latest", Some("any:thing"));
    let pushed = tokens.hits.load(Ordering::Relaxed);

    let puller = Puller::new(work.path().join("cache"), mirror()).expect("puller");
    let img = pull_in(&ns, &puller, QUAY_REF, PullPolicy::Always).expect("pull with a token");
    assert_eq!(
        tokens.hits.load(Ordering::Relaxed),
        pushed + 1,
        "one token for the pull"
    );
    let d = puller.container_disk(&img, None).expect("disk");
    assert_eq!(std::fs::read(&d.path).expect("disk"), b"behind a token");
    drop(tokens);

    let _refusing = TokenServer::start(&ns, PORT + 1, false);
    let fresh = Puller::new(work.path().join("cache2"), mirror()).expect("puller");
    let e = pull_in(&ns, &fresh, QUAY_REF, PullPolicy::Always).expect_err("no token");
    assert!(
        matches!(&e, Error::Token { status: 403, realm: r, .. } if *r == realm),
        "{e:?}"
    );
}

/// KubeVirt's messages for an image with no file under /disk and one with two.
#[root_test("docker-registry", "skopeo", "nsenter")]
fn no_disk_and_two_disks_give_kubevirts_messages() {
    let reg = Registry::start("");
    let work = TempDir::new("imgwork").expect("work");
    let none = Layout::new(work.path().join("none"));
    let m = none.image(&[("etc/hostname", b"not a disk")]);
    none.tag(&m);
    reg.push(&none.dir, REPO, "none", None);
    let two = Layout::new(work.path().join("two"));
    let m = two.image(&[("disk/a.img", b"a"), ("disk/b.img", b"b")]);
    two.tag(&m);
    reg.push(&two.dir, REPO, "two", None);

    let cache = work.path().join("cache");
    let puller = Puller::new(&cache, mirror()).expect("puller");
    let ns = reg.netns();
    let img = pull_in(
        &ns,
        &puller,
        &format!("quay.io/{REPO}:none"),
        PullPolicy::IfNotPresent,
    )
    .expect("pull");
    let e = puller.container_disk(&img, None).expect_err("no disk");
    assert_eq!(
        e.to_string(),
        "no file found in folder /disk, no disk present"
    );
    let img = pull_in(
        &ns,
        &puller,
        &format!("quay.io/{REPO}:two"),
        PullPolicy::IfNotPresent,
    )
    .expect("pull");
    let e = puller.container_disk(&img, None).expect_err("two disks");
    assert_eq!(
        e.to_string(),
        "more than one file found in folder /disk, only one disk is allowed"
    );
    assert_eq!(e.kubelet_reason(), None);
    // The volume's `path` picks one of them.
    let b = puller
        .container_disk(&img, Some("/disk/b.img"))
        .expect("path");
    assert_eq!(std::fs::read(&b.path).expect("disk"), b"b");
    assert!(oxivirt_testkit::dir_names(&cache.join("tmp")).is_empty());
}

/// The VM's overlay names the cached disk as its backing file; what the VM writes lands
/// in the overlay and the cached disk stays as pulled.
#[root_test("docker-registry", "skopeo", "qemu-img", "qemu-io", "nsenter")]
fn the_overlay_backs_onto_the_cached_disk() {
    let reg = Registry::start("");
    let work = TempDir::new("imgwork").expect("work");
    let disk = small_qcow2(work.path());
    let layout = Layout::new(work.path().join("layout"));
    let m = layout.image(&[("disk/test.img", &disk)]);
    layout.tag(&m);
    reg.push(&layout.dir, REPO, "latest", None);
    let puller = Puller::new(work.path().join("cache"), mirror()).expect("puller");
    let img = pull_in(&reg.netns(), &puller, QUAY_REF, PullPolicy::Always).expect("pull");
    let base = puller.container_disk(&img, None).expect("disk");
    let before = sha256_hex(&std::fs::read(&base.path).expect("base"));

    let state = work.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let target = state.join("containerdisk.qcow2");
    let ov = overlay(&base, &target).expect("overlay");
    assert_eq!(
        (ov.path.as_path(), ov.format),
        (target.as_path(), DiskFormat::Qcow2)
    );
    let info = qemu_img_info(&target);
    assert_eq!(info["format"], "qcow2");
    assert_eq!(
        info["backing-filename"],
        base.path.to_string_lossy().as_ref()
    );
    assert_eq!(info["backing-filename-format"], "qcow2");
    let t = target.to_string_lossy().into_owned();
    // The base's pattern shows through; a write lands in the overlay only.
    oxivirt_testkit::sh(&["qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 0 4k", &t]);
    oxivirt_testkit::sh(&["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 64k", &t]);
    let read = oxivirt_testkit::sh(&["qemu-io", "-f", "qcow2", "-c", "read -P 0xab 0 64k", &t]);
    assert!(!read.contains("Pattern verification failed"), "{read}");
    assert_eq!(
        sha256_hex(&std::fs::read(&base.path).expect("base")),
        before
    );
    let base_read = oxivirt_testkit::sh(&[
        "qemu-io",
        "-r",
        "-f",
        "qcow2",
        "-c",
        "read -P 0x5a 0 4k",
        &base.path.to_string_lossy(),
    ]);
    assert!(
        !base_read.contains("Pattern verification failed"),
        "{base_read}"
    );
    // A new overlay (the VM's next start) starts from the base again.
    overlay(&base, &target).expect("fresh overlay");
    oxivirt_testkit::sh(&["qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 0 4k", &t]);
    assert_eq!(
        oxivirt_testkit::dir_names(&state),
        vec!["containerdisk.qcow2".to_string()]
    );
}

/// Four pulls of one image into one cache at once: all succeed with the same files, and
/// no temp file is left.
#[root_test("docker-registry", "skopeo", "nsenter")]
fn parallel_pulls_share_the_cache() {
    let reg = Registry::start("");
    let work = TempDir::new("imgwork").expect("work");
    let layout = Layout::new(work.path().join("layout"));
    let big: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let m = layout.image(&[("disk/big.img", &big)]);
    layout.tag(&m);
    reg.push(&layout.dir, REPO, "latest", None);
    let cache = work.path().join("cache");
    let ns_path = reg.ns_path().to_path_buf();
    let disks = oxivirt_testkit::parallel(4, |_| {
        let puller = Puller::new(&cache, mirror()).expect("puller");
        let ns = NetNs::open(&ns_path).expect("netns");
        let img = pull_in(&ns, &puller, QUAY_REF, PullPolicy::Always).expect("pull");
        puller.container_disk(&img, None).expect("disk")
    });
    assert!(disks.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(std::fs::read(&disks[0].path).expect("disk"), big);
    assert!(oxivirt_testkit::dir_names(&cache.join("tmp")).is_empty());
}
