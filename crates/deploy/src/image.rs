//! The container image `deploy/` names, written by our own code: an OCI image layout (a
//! directory, or the same as a tar archive that `ctr images import`, `podman load` and
//! `skopeo copy oci-archive:` take) with one layer holding the binaries under `/usr/bin`.
//! The binaries are static (see `.cargo/config.toml`), so nothing else goes in for them;
//! launcher pods also run QEMU, qemu-img and nft, which [`host_closure`] takes from the
//! building host with their libraries and firmware. Everything is reproducible: owners 0,
//! times 0, entries sorted, gzip without a timestamp; the same files give the same digests.

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

/// One entry of the layer, by its path in the image (no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entry {
    /// A file copied from `src`, with `mode`.
    File {
        dest: String,
        src: PathBuf,
        mode: u32,
    },
    /// A symbolic link to `target`, as the host has it.
    Symlink { dest: String, target: String },
}

impl Entry {
    fn dest(&self) -> &str {
        match self {
            Entry::File { dest, .. } | Entry::Symlink { dest, .. } => dest,
        }
    }
}

/// Our binaries as image entries: `usr/bin/<name>`, mode 0755.
pub fn binaries(files: &[PathBuf]) -> Vec<Entry> {
    files
        .iter()
        .map(|f| Entry::File {
            dest: format!(
                "usr/bin/{}",
                f.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            src: f.clone(),
            mode: 0o755,
        })
        .collect()
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// The layer: every entry's parent directories (0755), then the entries, by path.
fn layer_tar(entries: &[Entry]) -> Result<Vec<u8>, ImageError> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.dest().cmp(b.dest()));
    sorted.dedup_by(|a, b| a.dest() == b.dest());
    let mut dirs = std::collections::BTreeSet::new();
    for e in &sorted {
        let mut p = Path::new(e.dest()).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(format!("{}/", d.display()));
            p = d.parent();
        }
    }
    let mut b = tar::Builder::new(Vec::new());
    for d in &dirs {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, d, std::io::empty())
            .map_err(io(Path::new(d), "add to the layer"))?;
    }
    for e in sorted {
        match e {
            Entry::File { dest, src, mode } => {
                let data = std::fs::read(src).map_err(io(src, "read"))?;
                let mut h = header(tar::EntryType::Regular, *mode, data.len() as u64);
                b.append_data(&mut h, dest, data.as_slice())
                    .map_err(io(src, "add to the layer"))?;
            }
            Entry::Symlink { dest, target } => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, dest, target)
                    .map_err(io(Path::new(dest), "add to the layer"))?;
            }
        }
    }
    b.into_inner()
        .map_err(io(Path::new("layer"), "finish the tar"))
}

/// Host files as image entries at the same paths, with everything they need to be found
/// there: every symbolic link on the way (`/lib` → `usr/lib` on a merged-/usr Debian) as a
/// link, and for an ELF program or library what `ldd` lists (its interpreter included).
/// `dirs` are taken whole (QEMU's firmware). For an image of host programs (QEMU, nft)
/// beside ours.
pub fn host_closure(programs: &[PathBuf], dirs: &[PathBuf]) -> Result<Vec<Entry>, ImageError> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo: Vec<PathBuf> = programs.to_vec();
    for d in dirs {
        walk(d, &mut todo)?;
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Some(p) = todo.pop() {
        if !seen.insert(p.clone()) {
            continue;
        }
        let real = resolve(&p, &mut out)?;
        if is_elf(&real) {
            todo.extend(ldd(&real)?);
        }
    }
    Ok(out.into_values().collect())
}

fn walk(dir: &Path, into: &mut Vec<PathBuf>) -> Result<(), ImageError> {
    for e in std::fs::read_dir(dir).map_err(io(dir, "list"))? {
        let e = e.map_err(io(dir, "list"))?;
        let p = e.path();
        let t = e.file_type().map_err(io(&p, "stat"))?;
        if t.is_dir() {
            walk(&p, into)?;
        } else {
            into.push(p);
        }
    }
    Ok(())
}

/// Records `path` (absolute) component by component: links as links, followed; the file
/// it ends at as a file. Returns that file's host path.
fn resolve(
    path: &Path,
    out: &mut std::collections::BTreeMap<String, Entry>,
) -> Result<PathBuf, ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let mut cur = PathBuf::from("/");
    let mut rest: Vec<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .rev()
        .collect();
    let mut hops = 0;
    while let Some(name) = rest.pop() {
        let next = if name == ".." {
            cur.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| "/".into())
        } else {
            cur.join(&name)
        };
        let meta = std::fs::symlink_metadata(&next).map_err(io(&next, "stat"))?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return Err(ImageError::Io {
                    path: next,
                    op: "follow links",
                    source: std::io::Error::other("too many levels of symbolic links"),
                });
            }
            let target = std::fs::read_link(&next).map_err(io(&next, "read the link"))?;
            let dest = next
                .display()
                .to_string()
                .trim_start_matches('/')
                .to_string();
            out.entry(dest.clone()).or_insert(Entry::Symlink {
                dest,
                target: target.display().to_string(),
            });
            // Go on from the link's target, then what was left of the path.
            if target.is_absolute() {
                cur = "/".into();
            }
            let mut more: Vec<std::ffi::OsString> = target
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(n.to_os_string()),
                    std::path::Component::ParentDir => Some("..".into()),
                    _ => None,
                })
                .collect();
            more.reverse();
            rest.extend(more);
        } else {
            cur = next;
        }
    }
    let meta = std::fs::metadata(&cur).map_err(io(&cur, "stat"))?;
    if meta.is_file() {
        let dest = cur
            .display()
            .to_string()
            .trim_start_matches('/')
            .to_string();
        out.entry(dest.clone()).or_insert(Entry::File {
            dest,
            src: cur.clone(),
            mode: meta.permissions().mode() & 0o7777,
        });
    }
    Ok(cur)
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The libraries (and interpreter) `ldd` says `elf` loads; none for a static one.
fn ldd(elf: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let out = std::process::Command::new("ldd")
        .arg(elf)
        .output()
        .map_err(io(elf, "run ldd on"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
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

/// What launcher pods run beside the launcher, from the building host (Debian's paths).
pub const QEMU_PROGRAMS: [&str; 3] = [
    "/usr/bin/qemu-system-x86_64",
    "/usr/bin/qemu-img",
    "/usr/sbin/nft",
];

/// QEMU's firmware: its own ROMs, SeaBIOS, the iPXE option ROMs of its NICs.
pub const QEMU_DATA: [&str; 3] = [
    "/usr/share/qemu",
    "/usr/share/seabios",
    "/usr/lib/ipxe/qemu",
];

/// The image's `--qemu` part: [`QEMU_PROGRAMS`] with what they load, and the
/// [`QEMU_DATA`] directories this host has.
pub fn qemu_closure() -> Result<Vec<Entry>, ImageError> {
    let programs: Vec<PathBuf> = QEMU_PROGRAMS.iter().map(PathBuf::from).collect();
    let data: Vec<PathBuf> = QEMU_DATA
        .iter()
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .collect();
    host_closure(&programs, &data)
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
    build_entries(&binaries(files), name, dir)
}

/// [`build`] with any entries.
pub fn build_entries(entries: &[Entry], name: &str, dir: &Path) -> Result<Built, ImageError> {
    let (_, tag) = name
        .rsplit_once(':')
        .filter(|(n, t)| !n.is_empty() && !t.is_empty() && !t.contains('/'))
        .ok_or_else(|| ImageError::Name(name.to_string()))?;
    let blobs = dir.join("blobs/sha256");
    if blobs.exists() {
        std::fs::remove_dir_all(&blobs).map_err(io(&blobs, "remove the old blobs"))?;
    }
    std::fs::create_dir_all(&blobs).map_err(io(&blobs, "create"))?;

    let tar = layer_tar(entries)?;
    let diff_id = sha256(&tar);
    let layer = put_blob(dir, &gzip(&tar)?)?;
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "WorkingDir": "/"},
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
