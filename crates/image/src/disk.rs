//! containerDisk semantics (KubeVirt): the image's layers applied in order (OCI whiteouts
//! honoured), the disk is the one entry under `/disk` (or the volume's `path`), extracted
//! once per manifest into the cache, read-only; its format is qcow2 when it starts with
//! qcow2's magic, else raw.

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::puller::PulledImage;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where KubeVirt looks when the volume gives no `path`.
pub const DISK_DIR: &str = "disk";
const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// A disk's format, as QEMU and `qemu-img -f` / `-F` name it: the hypervisor crate's.
pub use oxivirt_qemu::DiskFormat;

/// A disk image file ready for QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFile {
    pub path: PathBuf,
    pub format: DiskFormat,
}

/// What a path in the merged layers is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    /// A regular file: its layer and its ordinal among that layer's tar entries.
    File {
        layer: usize,
        entry: usize,
    },
    Symlink(String),
    Other,
}

/// Normalises a tar path: no leading `/` or `./`, no `.` components, `..` clamped at root.
fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn parent_of(p: &str) -> &str {
    p.rfind('/').map_or("", |i| &p[..i])
}

/// The merged view of the layers: path → node.
#[derive(Debug, Default)]
struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    fn remove_subtree(&mut self, path: &str) {
        self.nodes.remove(path);
        self.remove_children(path);
    }

    fn remove_children(&mut self, path: &str) {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
    }

    fn insert(&mut self, path: String, node: Node) {
        // A non-directory replaces whatever was below it; ancestors become directories.
        if node != Node::Dir {
            self.remove_children(&path);
        }
        let mut anc = parent_of(&path);
        while !anc.is_empty() {
            if self.nodes.get(anc).is_some_and(|n| *n != Node::Dir) {
                self.nodes.insert(anc.to_string(), Node::Dir);
            }
            anc = parent_of(anc);
        }
        self.nodes.insert(path, node);
    }

    /// The names directly under `dir` (explicit entries or implied by deeper ones).
    fn children(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        let mut names: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| k[prefix.len()..].split('/').next().map(str::to_string))
            .collect();
        names.dedup();
        names
    }

    /// Follows symlinks (inside the image, at most 40) to a node.
    fn resolve(&self, path: &str) -> Option<(String, &Node)> {
        let mut cur = normalize(path);
        for _ in 0..40 {
            // Symlinked ancestors: resolve the first one found.
            let mut redirected = false;
            let parts: Vec<&str> = cur.split('/').collect();
            for i in 1..parts.len() {
                let anc = parts[..i].join("/");
                if let Some(Node::Symlink(t)) = self.nodes.get(&anc) {
                    let base = if t.starts_with('/') {
                        ""
                    } else {
                        parent_of(&anc)
                    };
                    cur = normalize(&format!("{base}/{t}/{}", parts[i..].join("/")));
                    redirected = true;
                    break;
                }
            }
            if redirected {
                continue;
            }
            match self.nodes.get(&cur) {
                Some(Node::Symlink(t)) => {
                    let base = if t.starts_with('/') {
                        ""
                    } else {
                        parent_of(&cur)
                    };
                    cur = normalize(&format!("{base}/{t}"));
                }
                Some(n) => return Some((cur, n)),
                None if !self.children(&cur).is_empty() => return Some((cur, &Node::Dir)),
                None => return None,
            }
        }
        None
    }
}

/// Opens a layer blob as a tar stream, gzip or not (sniffed: media types lie).
fn open_layer(path: &Path) -> io::Result<tar::Archive<Box<dyn Read>>> {
    let mut f = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    f.seek(SeekFrom::Start(0))?;
    let reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    Ok(tar::Archive::new(reader))
}

/// One layer's effect: whiteouts (applied to the layers below) and entries.
fn apply_layer(tree: &mut Tree, index: usize, path: &Path) -> io::Result<()> {
    let mut ar = open_layer(path)?;
    let mut whiteouts = Vec::new();
    let mut opaque = Vec::new();
    let mut entries = Vec::new();
    for (ordinal, e) in ar.entries()?.enumerate() {
        let e = e?;
        let raw = e.path_bytes();
        let name = normalize(&String::from_utf8_lossy(&raw));
        if name.is_empty() {
            continue;
        }
        let base = name.rsplit('/').next().unwrap_or(&name);
        if base == OPAQUE {
            opaque.push(parent_of(&name).to_string());
            continue;
        }
        if let Some(hidden) = base.strip_prefix(WHITEOUT) {
            let dir = parent_of(&name);
            whiteouts.push(if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            });
            continue;
        }
        let node = match e.header().entry_type() {
            tar::EntryType::Directory => Node::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                Node::File {
                    layer: index,
                    entry: ordinal,
                }
            }
            tar::EntryType::Symlink => Node::Symlink(
                e.link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default(),
            ),
            // A hard link is the file it names (in this layer or below).
            tar::EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .map(|l| normalize(&String::from_utf8_lossy(&l)))
                    .unwrap_or_default();
                entries.push((name, None, Some(target)));
                continue;
            }
            _ => Node::Other,
        };
        entries.push((name, Some(node), None));
    }
    for d in opaque {
        tree.remove_children(&d);
    }
    for w in whiteouts {
        tree.remove_subtree(&w);
    }
    for (name, node, link) in entries {
        let node = match (node, link) {
            (Some(n), _) => n,
            (None, Some(t)) => tree.nodes.get(&t).cloned().unwrap_or(Node::Other),
            (None, None) => Node::Other,
        };
        tree.insert(name, node);
    }
    Ok(())
}

fn layer_err(image: &PulledImage, layer: usize) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Layer {
        reference: image.reference.to_string(),
        digest: image
            .layers
            .get(layer)
            .map(|l| l.digest.clone())
            .unwrap_or_default(),
        source,
    }
}

/// Finds the disk in `image` (`/disk/<the one file>`, or `path`), extracts it into the
/// cache once, and returns it. Later calls for the same manifest return at once.
pub fn container_disk(cache: &Cache, image: &PulledImage, path: Option<&str>) -> Result<DiskFile> {
    let dir = cache.disk_dir(&image.manifest_digest);
    let cache_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Cache { path: p, source }
    };
    let wanted = path.map(normalize);
    // Files keep their path in the image under `fs/`, apart from the `default` link.
    let files = dir.join("fs");
    let known = match &wanted {
        Some(p) => Some(files.join(p)),
        None => fs::read_link(dir.join("default")).ok().map(|l| dir.join(l)),
    };
    if let Some(k) = known.filter(|k| k.is_file()) {
        return finish(k);
    }
    let _lock = cache.lock(&format!(
        "disk-{}",
        image.manifest_digest.trim_start_matches("sha256:")
    ))?;
    let mut tree = Tree::default();
    for (i, l) in image.layers.iter().enumerate() {
        apply_layer(&mut tree, i, &l.path).map_err(layer_err(image, i))?;
    }
    let found = match &wanted {
        Some(p) => tree.resolve(p).ok_or_else(|| Error::NoImageOnPath {
            path: path.unwrap_or_default().to_string(),
        })?,
        None => {
            let names = tree.children(DISK_DIR);
            match names.len() {
                0 => return Err(Error::NoDisk),
                1 => {}
                _ => return Err(Error::SeveralDisks { found: names }),
            }
            let p = format!("{DISK_DIR}/{}", names[0]);
            tree.resolve(&p).ok_or(Error::DiskNotRegularFile {
                path: format!("/{p}"),
            })?
        }
    };
    let (in_image, node) = found;
    let Node::File { layer, entry } = *node else {
        return Err(Error::DiskNotRegularFile {
            path: format!("/{in_image}"),
        });
    };
    let dest = files.join(wanted.as_deref().unwrap_or(&in_image));
    if !dest.is_file() {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(cache_err(parent))?;
        }
        let mut tmp = cache.temp("disk")?;
        let lp = &image.layers[layer].path;
        let mut ar = open_layer(lp).map_err(layer_err(image, layer))?;
        let mut e = ar
            .entries()
            .map_err(layer_err(image, layer))?
            .nth(entry)
            .ok_or_else(|| layer_err(image, layer)(io::ErrorKind::UnexpectedEof.into()))?
            .map_err(layer_err(image, layer))?;
        copy_sparse(&mut e, &mut tmp.file).map_err(layer_err(image, layer))?;
        tmp.commit(&dest, 0o444)?;
    }
    if wanted.is_none() {
        // The default disk's name, so a later call needs no layer scan.
        let link = dir.join("default");
        let tmp_link = dir.join(format!(".default-{}", std::process::id()));
        let _ = fs::remove_file(&tmp_link);
        std::os::unix::fs::symlink(Path::new("fs").join(&in_image), &tmp_link)
            .map_err(cache_err(&tmp_link))?;
        fs::rename(&tmp_link, &link).map_err(cache_err(&link))?;
    }
    finish(dest)
}

/// Copies leaving holes for all-zero blocks (raw disks are mostly zeros).
fn copy_sparse(r: &mut impl Read, f: &mut File) -> io::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    let mut len = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match r.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        if buf[..filled].iter().all(|&b| b == 0) {
            f.seek(SeekFrom::Current(filled as i64))?;
        } else {
            f.write_all(&buf[..filled])?;
        }
        len += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    f.set_len(len)
}

/// Format from the magic; a qcow2 that points outside itself is refused.
fn finish(path: PathBuf) -> Result<DiskFile> {
    let format = sniff(&path).map_err(|source| Error::Cache {
        path: path.clone(),
        source,
    })?;
    if let (DiskFormat::Qcow2, Some(backing)) = (format, qcow2_backing(&path)) {
        return Err(Error::DiskHasBackingFile {
            path: path.display().to_string(),
            backing,
        });
    }
    Ok(DiskFile { path, format })
}

/// Raw unless the file starts with qcow2's magic.
pub fn sniff(path: &Path) -> io::Result<DiskFormat> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path)?;
    let mut n = 0;
    while n < 4 {
        match f.read(&mut magic[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(if n == 4 && &magic == QCOW2_MAGIC {
        DiskFormat::Qcow2
    } else {
        DiskFormat::Raw
    })
}

/// The backing file (or external data file) a qcow2 header names, if any.
fn qcow2_backing(path: &Path) -> Option<String> {
    let mut h = [0u8; 104];
    let mut f = File::open(path).ok()?;
    f.read_exact(&mut h[..72]).ok()?;
    let be64 = |b: &[u8]| b.try_into().ok().map(u64::from_be_bytes);
    let be32 = |b: &[u8]| b.try_into().ok().map(u32::from_be_bytes);
    let version = be32(&h[4..8])?;
    let offset = be64(&h[8..16])?;
    let size = be32(&h[16..20])?;
    if offset != 0 && size > 0 && size <= 1023 {
        let mut name = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(offset)).ok()?;
        f.read_exact(&mut name).ok()?;
        return Some(String::from_utf8_lossy(&name).into_owned());
    }
    if offset != 0 {
        return Some(String::from("(unreadable name)"));
    }
    // Version 3: incompatible feature bit 2 = an external data file.
    if version >= 3 && f.read_exact(&mut h[72..80]).is_ok() {
        let incompatible = be64(&h[72..80])?;
        if incompatible & 0b100 != 0 {
            return Some(String::from("(external data file)"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(layers: &[&[(&str, Node)]]) -> Tree {
        let mut t = Tree::default();
        for l in layers {
            for (p, n) in l.iter() {
                t.insert(normalize(p), n.clone());
            }
        }
        t
    }

    #[test]
    fn children_counts_implied_directories() {
        let f = Node::File { layer: 0, entry: 0 };
        let t = tree(&[&[("./disk/a.img", f.clone()), ("disk/sub/b", f)]]);
        assert_eq!(
            t.children("disk"),
            vec!["a.img".to_string(), "sub".to_string()]
        );
    }

    #[test]
    fn whiteouts_and_replacements() {
        let f = Node::File { layer: 0, entry: 1 };
        let mut t = tree(&[&[
            ("disk/", Node::Dir),
            ("disk/a.img", f.clone()),
            ("disk/b.img", f.clone()),
        ]]);
        t.remove_subtree("disk/b.img");
        assert_eq!(t.children("disk"), vec!["a.img".to_string()]);
        t.remove_children("disk");
        assert!(t.children("disk").is_empty());
        // A file replacing the directory drops what was below it.
        let mut t = tree(&[&[("disk/a.img", f.clone())], &[("disk", f)]]);
        assert!(t.children("disk").is_empty());
        t.insert("disk/x".into(), Node::Dir);
        assert_eq!(t.nodes.get("disk"), Some(&Node::Dir));
    }

    #[test]
    fn resolves_symlinks_inside_the_image() {
        let f = Node::File { layer: 1, entry: 3 };
        let t = tree(&[&[
            ("images/real.qcow2", f.clone()),
            (
                "disk/disk.img",
                Node::Symlink("../images/real.qcow2".into()),
            ),
            ("alias", Node::Symlink("/images".into())),
            ("loop", Node::Symlink("loop".into())),
        ]]);
        assert_eq!(
            t.resolve("/disk/disk.img"),
            Some(("images/real.qcow2".into(), &f))
        );
        assert_eq!(
            t.resolve("alias/real.qcow2"),
            Some(("images/real.qcow2".into(), &f))
        );
        assert_eq!(t.resolve("loop"), None);
        assert_eq!(normalize("/../../etc/./x"), "etc/x");
    }
}
