//! The container image `deploy/` names, written by our own code: an OCI image layout (a
//! directory, or the same as a tar archive that `ctr images import`, `podman load` and
//! `skopeo copy oci-archive:` take) with one layer holding the binaries under `/usr/bin`.
//! The binaries are static (see `.cargo/config.toml`), so nothing else goes in. Everything
//! is reproducible: owners 0, times 0, entries sorted, gzip without a timestamp; the same
//! binaries give the same digests.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What goes wrong building the image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{}: {op}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("image name {0:?} is not `name:tag`")]
    Name(String),
}

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_path_buf();
    move |source| ImageError::Io { path, op, source }
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A blob's descriptor fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

fn sha256(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The layer: `usr/`, `usr/bin/` and each file (mode 0755) as `usr/bin/<name>`.
fn layer_tar(files: &[PathBuf]) -> Result<Vec<u8>, ImageError> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = |name: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, std::io::empty())
    };
    dir("usr/").map_err(io(Path::new("usr/"), "add to the layer"))?;
    dir("usr/bin/").map_err(io(Path::new("usr/bin/"), "add to the layer"))?;
    let mut sorted: Vec<&PathBuf> = files.iter().collect();
    sorted.sort_by_key(|p| p.file_name().map(|n| n.to_os_string()));
    for f in sorted {
        let data = std::fs::read(f).map_err(io(f, "read"))?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o755);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, format!("usr/bin/{name}"), data.as_slice())
            .map_err(io(f, "add to the layer"))?;
    }
    b.into_inner()
        .map_err(io(Path::new("layer"), "finish the tar"))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    // No name and mtime 0 in the header: the same input, the same bytes.
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    e.write_all(bytes)
        .and_then(|()| e.finish())
        .map_err(io(Path::new("layer"), "compress"))
}

/// Writes `bytes` as a blob of the layout at `dir`.
fn put_blob(dir: &Path, bytes: &[u8]) -> Result<Blob, ImageError> {
    let digest = sha256(bytes);
    let hex = digest.trim_start_matches("sha256:");
    let path = dir.join("blobs/sha256").join(hex);
    std::fs::write(&path, bytes).map_err(io(&path, "write"))?;
    Ok(Blob {
        digest,
        size: bytes.len() as u64,
    })
}

/// The image as built: its manifest's digest (what a registry or containerd will call it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub manifest: Blob,
    pub layer: Blob,
    pub config: Blob,
}

/// Writes the OCI layout of an image named `name` (`oxivirt:0.1.0`) holding `files` under
/// `/usr/bin` into `dir` (made if missing; an earlier layout there is replaced).
pub fn build(files: &[PathBuf], name: &str, dir: &Path) -> Result<Built, ImageError> {
    let (_, tag) = name
        .rsplit_once(':')
        .filter(|(n, t)| !n.is_empty() && !t.is_empty() && !t.contains('/'))
        .ok_or_else(|| ImageError::Name(name.to_string()))?;
    let blobs = dir.join("blobs/sha256");
    if blobs.exists() {
        std::fs::remove_dir_all(&blobs).map_err(io(&blobs, "remove the old blobs"))?;
    }
    std::fs::create_dir_all(&blobs).map_err(io(&blobs, "create"))?;

    let tar = layer_tar(files)?;
    let diff_id = sha256(&tar);
    let layer = put_blob(dir, &gzip(&tar)?)?;
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "oxivirt-deploygen image", "comment": "the oxivirt binaries, static"}],
    });
    let config = put_blob(dir, config.to_string().as_bytes())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": LAYER, "digest": layer.digest, "size": layer.size}],
    });
    let manifest = put_blob(dir, manifest.to_string().as_bytes())?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MANIFEST, "digest": manifest.digest, "size": manifest.size,
            "platform": {"architecture": "amd64", "os": "linux"},
            // The tag, as OCI tools read it, and the whole name, as containerd's import does.
            "annotations": {
                "org.opencontainers.image.ref.name": tag,
                "io.containerd.image.name": containerd_name(name),
            },
        }],
    });
    let write = |file: &str, text: String| {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(io(&path, "write"))
    };
    write("index.json", index.to_string())?;
    write("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#.into())?;
    Ok(Built {
        manifest,
        layer,
        config,
    })
}

/// `oxivirt:0.1.0` as containerd names it (`docker.io/library/oxivirt:0.1.0`); a name with
/// a registry stays as it is.
fn containerd_name(name: &str) -> String {
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            name.to_string()
        }
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    }
}

/// The layout at `dir` as one tar archive at `out` (entries sorted, owners and times 0).
pub fn archive(dir: &Path, out: &Path) -> Result<(), ImageError> {
    let mut b = tar::Builder::new(Vec::new());
    let mut entries = vec!["oci-layout".to_string(), "index.json".to_string()];
    let blobs = dir.join("blobs/sha256");
    let mut names: Vec<String> = std::fs::read_dir(&blobs)
        .map_err(io(&blobs, "list"))?
        .filter_map(|e| e.ok())
        .map(|e| format!("blobs/sha256/{}", e.file_name().to_string_lossy()))
        .collect();
    names.sort();
    entries.extend(names);
    for d in ["blobs/", "blobs/sha256/"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, d, std::io::empty())
            .map_err(io(out, "write"))?;
    }
    for e in entries {
        let path = dir.join(&e);
        let data = std::fs::read(&path).map_err(io(&path, "read"))?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, &e, data.as_slice())
            .map_err(io(out, "write"))?;
    }
    let bytes = b.into_inner().map_err(io(out, "write"))?;
    std::fs::write(out, bytes).map_err(io(out, "write"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_containerd_imports_them() {
        assert_eq!(
            containerd_name("oxivirt:0.1.0"),
            "docker.io/library/oxivirt:0.1.0"
        );
        assert_eq!(containerd_name("me/oxivirt:1"), "docker.io/me/oxivirt:1");
        assert_eq!(
            containerd_name("registry.example:5000/oxivirt:1"),
            "registry.example:5000/oxivirt:1"
        );
        assert_eq!(
            containerd_name("localhost/oxivirt:1"),
            "localhost/oxivirt:1"
        );
    }

    #[test]
    fn the_same_binaries_give_the_same_image_and_bad_names_are_refused() {
        let src = tempfile::tempdir().expect("tmp");
        let a = src.path().join("oxivirt-a");
        std::fs::write(&a, b"#!/bin/true\n").expect("a");
        let one = tempfile::tempdir().expect("tmp");
        let two = tempfile::tempdir().expect("tmp");
        let x = build(std::slice::from_ref(&a), "oxivirt:t", one.path()).expect("build");
        let y = build(std::slice::from_ref(&a), "oxivirt:t", two.path()).expect("build");
        assert_eq!(x, y);
        for bad in ["oxivirt", "oxivirt:", ":t", "oxivirt:a/b"] {
            assert!(
                matches!(build(&[], bad, one.path()), Err(ImageError::Name(_))),
                "{bad}"
            );
        }
        let e = build(&[src.path().join("missing")], "oxivirt:t", one.path())
            .expect_err("missing file");
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
