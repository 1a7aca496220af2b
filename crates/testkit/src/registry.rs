//! A real OCI registry (Debian's `docker-registry`) on loopback inside a test's own
//! network namespace, and OCI image layouts built by the test to push to it with `skopeo`.

use crate::cleanup::{self, TempDir};
use crate::{eventually, TestNs};
use oxivirt_netlink::NetNs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// The port the registry listens on, on 127.0.0.1 of its namespace.
pub const PORT: u16 = 5000;

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A registry process in a namespace; killed (and reaped) on drop.
#[derive(Debug)]
pub struct Registry {
    /// The namespace made for it, if it has one of its own (removed with it).
    _ns: Option<TestNs>,
    ns_path: PathBuf,
    root: PathBuf,
    child: Option<Child>,
    _reg: cleanup::Registration,
    _dir: TempDir,
}

impl Registry {
    /// A registry in a namespace of its own; `auth` is extra YAML under `auth:` (empty
    /// for none).
    pub fn start(auth: &str) -> Self {
        let ns = TestNs::new("oxim");
        let path = ns.path();
        Self::start_at(Some(ns), path, auth)
    }

    /// A registry on 127.0.0.1 of the namespace at `ns_path` (the test's "node").
    pub fn start_in(ns_path: &Path) -> Self {
        Self::start_at(None, ns_path.to_path_buf(), "")
    }

    fn start_at(ns: Option<TestNs>, ns_path: PathBuf, auth: &str) -> Self {
        let dir = TempDir::new("imgreg").expect("registry dir");
        let root = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        let auth = if auth.is_empty() {
            String::new()
        } else {
            format!("auth:\n{auth}\n")
        };
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{PORT}\n{auth}",
                root.display()
            ),
        )
        .expect("config");
        let (child, reg) = cleanup::spawn(
            Command::new("nsenter")
                .arg(format!("--net={}", ns_path.display()))
                .args(["docker-registry", "serve"])
                .arg(&config)
                .stdout(std::process::Stdio::null())
                // Its own log (HEAD 404s while skopeo pushes) is kept for a failing test.
                .stderr(std::fs::File::create(dir.path().join("registry.log")).expect("log")),
        )
        .expect("docker-registry");
        let netns = NetNs::open(&ns_path).expect("netns");
        assert!(
            eventually(Duration::from_secs(20), || netns
                .run(|| TcpStream::connect(("127.0.0.1", PORT)).is_ok())
                .unwrap_or(false)),
            "docker-registry did not listen"
        );
        Self {
            _ns: ns,
            ns_path,
            root,
            child: Some(child),
            _reg: reg,
            _dir: dir,
        }
    }

    /// The namespace the registry listens in.
    pub fn ns_path(&self) -> &Path {
        &self.ns_path
    }

    pub fn netns(&self) -> NetNs {
        NetNs::open(&self.ns_path).expect("netns")
    }

    /// `skopeo copy` of an OCI layout (all its platforms) to `<repo>:<tag>` here.
    pub fn push(&self, layout: &Path, repo: &str, tag: &str, creds: Option<&str>) {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns_path.display()))
            .args(["skopeo", "--insecure-policy", "copy", "--all", "--quiet"])
            .args(["--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let out = cmd
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://127.0.0.1:{PORT}/{repo}:{tag}"))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The file the registry serves a blob from.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug)]
/// Builds OCI image layouts: gzip'd tar layers, manifests, an optional index.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("layout");
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        Self { dir }
    }

    pub fn blob(&self, media: &str, bytes: &[u8]) -> serde_json::Value {
        let hex = sha256_hex(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).expect("blob");
        serde_json::json!({"mediaType": media, "digest": format!("sha256:{hex}"), "size": bytes.len()})
    }

    /// A manifest over one layer holding `files`; returns its descriptor.
    pub fn image(&self, files: &[(&str, &[u8])]) -> serde_json::Value {
        let layer = self.blob(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &gz_layer(files),
        );
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": [layer],
        });
        self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).expect("json"),
        )
    }

    /// An index over `(os, arch, manifest)`; returns its descriptor.
    pub fn index(&self, entries: &[(&str, &str, serde_json::Value)]) -> serde_json::Value {
        let manifests: Vec<_> = entries
            .iter()
            .map(|(os, arch, d)| {
                let mut d = d.clone();
                d["platform"] = serde_json::json!({"os": os, "architecture": arch});
                d
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        self.blob(
            "application/vnd.oci.image.index.v1+json",
            &serde_json::to_vec(&index).expect("json"),
        )
    }

    /// Tags `top` as `latest` in the layout's index.json.
    pub fn tag(&self, top: &serde_json::Value) {
        let mut d = top.clone();
        d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "latest"});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [d]});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("index.json");
    }
}

/// A few hundred KiB of qcow2 with a pattern written into it.
pub fn small_qcow2(dir: &Path) -> Vec<u8> {
    let p = dir.join("test.img");
    crate::sh(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        &p.to_string_lossy(),
        "1M",
    ]);
    crate::sh(&[
        "qemu-io",
        "-f",
        "qcow2",
        "-c",
        "write -P 0x5a 0 4k",
        &p.to_string_lossy(),
    ]);
    std::fs::read(&p).expect("qcow2")
}

/// A gzip'd tar layer holding `files` as regular files (mode 0644).
pub fn gz_layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).expect("tar entry");
    }
    let tar = b.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip")
}

/// The test guest's OCI image layout (`scripts/guest.sh` builds it, or finds it in its
/// cache outside the repo, and prints its path last).
pub fn guest_image() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/guest.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/guest.sh");
    assert!(out.status.success(), "scripts/guest.sh failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("the OCI layout's path").trim())
}
