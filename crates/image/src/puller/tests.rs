//! The client against a fake transport: token dance, error mapping, digest checks, the
//! cache, and the disk found in layers built here.

use super::*;
use crate::disk::DiskFormat;
use std::path::Path;
use std::sync::Arc;

type Reply = (u16, Vec<(String, String)>, Vec<u8>);
type Handler = Box<dyn Fn(&str, &[(&str, &str)]) -> Reply + Send + Sync>;
type Log = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

struct Fake {
    handler: Handler,
    log: Log,
}

impl Transport for Fake {
    fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        _allow_http: bool,
    ) -> Result<HttpResponse, ureq::Error> {
        self.log.lock().expect("log").push((
            url.to_string(),
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        let (status, headers, body) = (self.handler)(url, headers);
        Ok(HttpResponse {
            status,
            headers,
            body: Box::new(std::io::Cursor::new(body)),
        })
    }
}

/// A gzip'd tar layer with the given regular files (and `.wh.` names as whiteouts).
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    oxivirt_testkit::registry::gz_layer(files)
}

fn desc(media: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": media, "digest": crate::cache::sha256(bytes), "size": bytes.len()})
}

/// A registry in memory: path → body; manifests by tag or digest.
struct Image {
    blobs: HashMap<String, Vec<u8>>,
    manifest: Vec<u8>,
}

fn image(layers: &[Vec<u8>]) -> Image {
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let mut blobs = HashMap::new();
    blobs.insert(crate::cache::sha256(&config), config.clone());
    let lds: Vec<_> = layers
        .iter()
        .map(|l| {
            blobs.insert(crate::cache::sha256(l), l.clone());
            desc("application/vnd.oci.image.layer.v1.tar+gzip", l)
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": lds,
    }))
    .expect("manifest");
    Image { blobs, manifest }
}

fn serve(img: Image, bearer: bool) -> (Box<Fake>, Log) {
    let log: Log = Arc::default();
    let handler = move |url: &str, headers: &[(&str, &str)]| -> Reply {
        if url.starts_with("https://auth.example/token") {
            let ok = url.contains("scope=repository%3Akubevirt%2Fdemo%3Apull")
                && url.contains("service=reg");
            return if ok {
                (200, vec![], br#"{"token":"t0k"}"#.to_vec())
            } else {
                (400, vec![], vec![])
            };
        }
        let authed = headers
            .iter()
            .any(|(k, v)| *k == "Authorization" && *v == "Bearer t0k");
        if bearer && !authed {
            let ch = r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:kubevirt/demo:pull""#;
            return (401, vec![("www-authenticate".into(), ch.into())], vec![]);
        }
        let path = url
            .split_once("/v2/kubevirt/demo/")
            .map(|x| x.1)
            .unwrap_or("");
        if let Some(r) = path.strip_prefix("manifests/") {
            if r == "latest" || r == crate::cache::sha256(&img.manifest) {
                return (
                    200,
                    vec![("content-type".into(), manifest::OCI_MANIFEST.into())],
                    img.manifest.clone(),
                );
            }
            return (
                404,
                vec![],
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                    .to_vec(),
            );
        }
        if let Some(d) = path.strip_prefix("blobs/") {
            if let Some(b) = img.blobs.get(d) {
                return (200, vec![], b.clone());
            }
        }
        (
            404,
            vec![],
            br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#.to_vec(),
        )
    };
    (
        Box::new(Fake {
            handler: Box::new(handler),
            log: log.clone(),
        }),
        log,
    )
}

fn puller(dir: &Path, t: Box<Fake>) -> Puller {
    Puller::new(dir, vec![])
        .expect("cache")
        .with_progress(false)
        .with_transport(t)
}

fn demo() -> Reference {
    Reference::parse("quay.io/kubevirt/demo").expect("ref")
}

fn leftovers(dir: &Path) -> Vec<String> {
    oxivirt_testkit::dir_names(&dir.join("tmp"))
}

#[test]
fn anonymous_token_then_pull_then_cache_hit() {
    let dir = tempfile::tempdir().expect("tmp");
    let qcow = b"QFI\xfb\0\0\0\x03rest-of-a-tiny-qcow2".to_vec();
    let (t, log) = serve(image(&[layer(&[("disk/test.img", &qcow)])]), true);
    let p = puller(dir.path(), t);
    let img = p.pull(&demo(), PullPolicy::IfNotPresent).expect("pull");
    assert_eq!(img.stats.blob_requests, 2, "config and one layer");
    assert_eq!(img.layers.len(), 1);
    // The token was asked for once and then sent on every request.
    let l = log.lock().expect("log").clone();
    assert_eq!(
        l.iter().filter(|(u, _)| u.contains("auth.example")).count(),
        1
    );
    assert!(l
        .last()
        .is_some_and(|(_, h)| h.iter().any(|(k, _)| k == "Authorization")));
    let disk = p.container_disk(&img, None).expect("disk");
    assert_eq!(disk.format, DiskFormat::Qcow2);
    assert_eq!(std::fs::read(&disk.path).expect("read"), qcow);
    assert!(disk.path.ends_with("disk/test.img"));
    // Again: nothing asked of the network, same disk.
    let before = log.lock().expect("log").len();
    let again = p.pull(&demo(), PullPolicy::IfNotPresent).expect("cached");
    assert_eq!(again.stats, PullStats::default());
    assert_eq!(log.lock().expect("log").len(), before);
    assert_eq!(p.container_disk(&again, None).expect("disk"), disk);
    // Always: the manifest is asked for, the blobs are not.
    let always = p.pull(&demo(), PullPolicy::Always).expect("always");
    assert_eq!(
        (always.stats.manifest_requests, always.stats.blob_requests),
        (1, 0)
    );
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn a_tampered_blob_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut img = image(&[layer(&[("disk/a.img", b"raw bytes")])]);
    let layer_digest = img
        .blobs
        .keys()
        .find(|k| img.blobs[*k][0] == 0x1f)
        .cloned()
        .expect("layer");
    // Same size, other bytes.
    if let Some(b) = img.blobs.get_mut(&layer_digest) {
        let last = b.len() - 1;
        b[last] ^= 0xff;
    }
    let (t, _) = serve(img, false);
    let p = puller(dir.path(), t);
    match p.pull(&demo(), PullPolicy::IfNotPresent) {
        Err(Error::DigestMismatch {
            expected,
            actual,
            registry,
            ..
        }) => {
            assert_eq!(expected, layer_digest);
            assert_ne!(actual, expected);
            assert_eq!(registry, "quay.io");
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(p.cache().blob(&layer_digest, None).is_none());
    assert!(leftovers(dir.path()).is_empty());
    assert!(p
        .cache()
        .read_ref("quay.io", "kubevirt/demo", "latest")
        .is_none());
}

#[test]
fn refusals_are_typed() {
    let dir = tempfile::tempdir().expect("tmp");
    let (t, _) = serve(image(&[]), false);
    let p = puller(dir.path(), t);
    let missing = Reference::parse("quay.io/kubevirt/demo:nope").expect("ref");
    let e = p.pull(&missing, PullPolicy::IfNotPresent).expect_err("404");
    assert!(
        matches!(&e, Error::NotFound { status: 404, code: Some(c), .. } if c == "MANIFEST_UNKNOWN"),
        "{e:?}"
    );
    assert_eq!(e.kubelet_reason(), Some("ErrImagePull"));
    let e = p.pull(&missing, PullPolicy::Never).expect_err("never");
    assert_eq!(e.kubelet_reason(), Some("ErrImageNeverPull"));

    // A Basic challenge: no credentials to offer.
    let log: Log = Arc::default();
    let basic = Fake {
        handler: Box::new(|_, _| {
            (
                401,
                vec![("www-authenticate".into(), r#"Basic realm="x""#.into())],
                vec![],
            )
        }),
        log,
    };
    let p = puller(dir.path(), Box::new(basic));
    let e = p.pull(&demo(), PullPolicy::Always).expect_err("401");
    assert!(
        matches!(e, Error::Unauthorized { status: 401, .. }),
        "{e:?}"
    );
}

#[test]
fn kubevirt_disk_rules() {
    let dir = tempfile::tempdir().expect("tmp");
    let lower = layer(&[
        ("disk/a.img", b"A"),
        ("disk/b.img", b"B"),
        ("other/x.img", b"X"),
    ]);
    let two = image(std::slice::from_ref(&lower));
    let (t, _) = serve(two, false);
    let p = puller(dir.path(), t);
    let img = p.pull(&demo(), PullPolicy::Always).expect("pull");
    let e = p.container_disk(&img, None).expect_err("two disks");
    assert_eq!(
        e.to_string(),
        "more than one file found in folder /disk, only one disk is allowed"
    );
    let x = p
        .container_disk(&img, Some("/other/x.img"))
        .expect("custom path");
    assert_eq!(
        (std::fs::read(&x.path).expect("read"), x.format),
        (b"X".to_vec(), DiskFormat::Raw)
    );
    let e = p
        .container_disk(&img, Some("/nope.img"))
        .expect_err("no such path");
    assert!(matches!(e, Error::NoImageOnPath { .. }), "{e:?}");

    // A whiteout in an upper layer leaves one disk.
    let dir = tempfile::tempdir().expect("tmp");
    let upper = layer(&[("disk/.wh.b.img", b"")]);
    let (t, _) = serve(image(&[lower.clone(), upper]), false);
    let p = puller(dir.path(), t);
    let img = p.pull(&demo(), PullPolicy::Always).expect("pull");
    let d = p.container_disk(&img, None).expect("one disk");
    assert_eq!(std::fs::read(&d.path).expect("read"), b"A");

    // An opaque directory hides everything below.
    let dir = tempfile::tempdir().expect("tmp");
    let opaque = layer(&[("disk/.wh..wh..opq", b"")]);
    let (t, _) = serve(image(&[lower, opaque]), false);
    let p = puller(dir.path(), t);
    let img = p.pull(&demo(), PullPolicy::Always).expect("pull");
    let e = p.container_disk(&img, None).expect_err("no disk");
    assert_eq!(
        e.to_string(),
        "no file found in folder /disk, no disk present"
    );
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn a_qcow2_with_a_backing_file_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut q = vec![0u8; 128];
    q[..4].copy_from_slice(b"QFI\xfb");
    q[7] = 3;
    q[15] = 104; // backing file name at offset 104
    q[19] = 11; // 11 bytes long
    q[104..115].copy_from_slice(b"/etc/shadow");
    let (t, _) = serve(image(&[layer(&[("disk/evil.qcow2", &q)])]), false);
    let p = puller(dir.path(), t);
    let img = p.pull(&demo(), PullPolicy::Always).expect("pull");
    let e = p.container_disk(&img, None).expect_err("backing file");
    assert!(
        matches!(&e, Error::DiskHasBackingFile { backing, .. } if backing == "/etc/shadow"),
        "{e:?}"
    );
}

#[test]
fn challenges_mirrors_and_endpoints() {
    assert_eq!(
        parse_bearer(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#
        ),
        Some(Challenge {
            realm: "https://auth.docker.io/token".into(),
            service: Some("registry.docker.io".into()),
            scope: Some("repository:a/b:pull,push".into()),
        })
    );
    assert_eq!(parse_bearer(r#"Basic realm="x""#), None);
    let m: Mirror = "quay.io=http://127.0.0.1:5000/".parse().expect("mirror");
    assert_eq!(m.endpoint, "http://127.0.0.1:5000");
    for bad in ["quay.io", "quay.io=ftp://x", "=http://x", "quay.io=http://"] {
        assert!(bad.parse::<Mirror>().is_err(), "{bad}");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let p = Puller::new(dir.path(), vec![m]).expect("puller");
    assert_eq!(
        p.endpoints("quay.io"),
        vec![Endpoint {
            base: "http://127.0.0.1:5000".into(),
            allow_http: true
        }]
    );
    assert_eq!(
        p.endpoints("docker.io"),
        vec![Endpoint {
            base: "https://registry-1.docker.io".into(),
            allow_http: false
        }]
    );
    assert_eq!(p.endpoints("ghcr.io")[0].base, "https://ghcr.io");
    assert!(p.endpoints("127.0.0.1:5000")[0].allow_http);
    assert!(p.endpoints("localhost:5000")[0].allow_http);
    let p = p.with_insecure_registries(vec!["reg.lan:5000".into()]);
    assert_eq!(p.endpoints("reg.lan:5000")[0].base, "http://reg.lan:5000");
}

/// Mirrors are tried in order while unreachable; the first that answers serves the pull.
#[test]
fn an_unreachable_mirror_moves_on_to_the_next() {
    let dir = tempfile::tempdir().expect("tmp");
    let (inner, log) = serve(image(&[layer(&[("disk/d.img", b"D")])]), false);
    struct Down(Box<Fake>);
    impl Transport for Down {
        fn get(
            &self,
            url: &str,
            headers: &[(&str, &str)],
            allow_http: bool,
        ) -> Result<HttpResponse, ureq::Error> {
            if url.starts_with("http://down.example") {
                return Err(ureq::Error::Io(
                    std::io::ErrorKind::ConnectionRefused.into(),
                ));
            }
            self.0.get(url, headers, allow_http)
        }
    }
    let mirrors = [
        "quay.io=http://down.example",
        "quay.io=http://up.example:5000",
    ]
    .iter()
    .map(|m| m.parse().expect("mirror"))
    .collect();
    let p = Puller::new(dir.path(), mirrors)
        .expect("cache")
        .with_progress(false)
        .with_transport(Box::new(Down(inner)));
    let img = p.pull(&demo(), PullPolicy::Always).expect("second mirror");
    assert_eq!(img.stats.blob_requests, 2);
    assert!(log
        .lock()
        .expect("log")
        .iter()
        .all(|(u, _)| u.starts_with("http://up.example:5000/v2/kubevirt/demo/")));
}

/// A gzip'd tar layer of links: `(name, link type, target)`.
fn link_layer(files: &[(&str, &[u8])], links: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).expect("tar entry");
    }
    for (name, kind, target) in links {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(*kind);
        b.append_link(&mut h, name, target).expect("tar link");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().expect("tar")).expect("gzip");
    gz.finish().expect("gzip")
}

/// The one entry under /disk may be a hard link or a symlink (resolved inside the image);
/// a symlink that leads nowhere is not a disk.
#[test]
fn disks_behind_links() {
    for (kind, target) in [
        (tar::EntryType::Link, "images/real.img"),
        (tar::EntryType::Symlink, "../images/real.img"),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let l = link_layer(
            &[("images/real.img", b"REAL")],
            &[("disk/disk.img", kind, target)],
        );
        let (t, _) = serve(image(&[l]), false);
        let p = puller(dir.path(), t);
        let img = p.pull(&demo(), PullPolicy::Always).expect("pull");
        let d = p.container_disk(&img, None).expect("disk");
        assert_eq!(std::fs::read(&d.path).expect("read"), b"REAL", "{kind:?}");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let l = link_layer(
        &[],
        &[("disk/disk.img", tar::EntryType::Symlink, "/nowhere")],
    );
    let (t, _) = serve(image(&[l]), false);
    let p = puller(dir.path(), t);
    let img = p.pull(&demo(), PullPolicy::Always).expect("pull");
    let e = p.container_disk(&img, None).expect_err("dangling");
    assert!(matches!(e, Error::DiskNotRegularFile { .. }), "{e:?}");
}
