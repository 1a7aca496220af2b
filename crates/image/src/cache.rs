//! The content-addressed cache on disk:
//!
//! ```text
//! <cache>/blobs/sha256/<hex>                   manifests, configs, layers (read-only, verified)
//! <cache>/refs/<registry>/<repository>:<tag>   the digest a tag resolved to at the last pull
//! <cache>/disks/<manifest hex>/fs/<path>       the extracted disk, at its path in the image
//!                                              (read-only), e.g. `fs/disk/cirros.img`
//! <cache>/disks/<manifest hex>/default         symlink to `fs/disk/<name>` (the /disk lookup)
//! <cache>/tmp/                                 files being written (renamed into place)
//! <cache>/locks/                               one flock file per blob / per disk
//! ```
//!
//! Every file reaches its final name by `rename` from `tmp/` (same filesystem, atomic) after
//! its digest and size were checked, so a reader never sees a partial file. A writer holds
//! an `flock` on its temp file: whoever opens the cache removes temp files nobody holds (a
//! killed pull), and leaves the others alone.

use crate::error::{Error, Result};
use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Cache {
        path: path.to_path_buf(),
        source,
    }
}

/// An opened cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Creates the layout if missing and removes abandoned temp files.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let cache = Self { root: root.into() };
        for d in ["blobs/sha256", "refs", "disks", "tmp", "locks"] {
            let p = cache.root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        cache.sweep_temp();
        Ok(cache)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `blobs/sha256/<hex>` for `sha256:<hex>` (the digest was validated by the caller).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs/sha256").join(hex)
    }

    /// The blob if it is there with the expected size.
    pub fn blob(&self, digest: &str, size: Option<u64>) -> Option<PathBuf> {
        let p = self.blob_path(digest);
        let m = fs::metadata(&p).ok()?;
        (m.is_file() && !matches!(size, Some(s) if s != m.len())).then_some(p)
    }

    pub fn disk_dir(&self, manifest_digest: &str) -> PathBuf {
        let hex = manifest_digest
            .strip_prefix("sha256:")
            .unwrap_or(manifest_digest);
        self.root.join("disks").join(hex)
    }

    fn ref_path(&self, registry: &str, repository: &str, tag: &str) -> PathBuf {
        self.root
            .join("refs")
            .join(registry)
            .join(format!("{repository}:{tag}"))
    }

    /// The digest a tag resolved to when it was last pulled.
    pub fn read_ref(&self, registry: &str, repository: &str, tag: &str) -> Option<String> {
        let text = fs::read_to_string(self.ref_path(registry, repository, tag)).ok()?;
        let d = text.trim();
        crate::reference::valid_sha256(d).then(|| d.to_string())
    }

    /// Records what a tag resolved to (replacing the file atomically).
    pub fn write_ref(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
        digest: &str,
    ) -> Result<()> {
        let path = self.ref_path(registry, repository, tag);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let mut tmp = self.temp("ref")?;
        tmp.file
            .write_all(format!("{digest}\n").as_bytes())
            .map_err(io_err(&tmp.path))?;
        tmp.commit(&path, 0o644)
    }

    /// A new temp file in `tmp/`, locked, removed on drop unless committed.
    pub fn temp(&self, what: &str) -> Result<TempFile> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        flock(&file, libc::LOCK_EX).map_err(io_err(&path))?;
        Ok(TempFile {
            file,
            path,
            committed: false,
        })
    }

    /// An exclusive lock on `locks/<name>`, held until the guard is dropped: one pull
    /// downloads a blob (or extracts a disk) while a concurrent one waits, then finds it.
    pub fn lock(&self, name: &str) -> Result<File> {
        let path = self.root.join("locks").join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        flock(&file, libc::LOCK_EX).map_err(io_err(&path))?;
        Ok(file)
    }

    /// Removes temp files whose writer is gone (its lock can be taken).
    fn sweep_temp(&self) {
        let Ok(rd) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if let Ok(f) = File::open(&p) {
                if flock(&f, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
                    let _ = fs::remove_file(&p);
                }
            }
        }
    }
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a valid, owned descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A file being written in `tmp/`.
#[derive(Debug)]
pub struct TempFile {
    pub file: File,
    pub path: PathBuf,
    committed: bool,
}

impl TempFile {
    /// Flushes to disk, sets `mode` and renames onto `dest` (atomic, replaces).
    pub fn commit(mut self, dest: &Path, mode: u32) -> Result<()> {
        self.file.sync_all().map_err(io_err(&self.path))?;
        fs::set_permissions(&self.path, fs::Permissions::from_mode(mode))
            .map_err(io_err(&self.path))?;
        fs::rename(&self.path, dest).map_err(io_err(dest))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A writer that hashes and counts what passes through.
pub struct HashingWriter<W> {
    pub inner: W,
    hasher: Sha256,
    pub written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// `sha256:<hex>` of everything written.
    pub fn digest(self) -> String {
        format!("sha256:{}", hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `sha256:<hex>` of a byte slice.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temp file nobody holds (its writer was killed) goes when the cache is opened; a
    /// held one stays; a committed one has its final name and mode.
    #[test]
    fn abandoned_temp_files_are_swept() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = Cache::open(dir.path()).expect("cache");
        let abandoned = dir.path().join("tmp/blob-1-1");
        fs::write(&abandoned, b"partial").expect("write");
        let held = cache.temp("blob").expect("temp");
        let again = Cache::open(dir.path()).expect("reopen");
        assert!(!abandoned.exists());
        assert!(held.path.exists());
        let d = sha256(b"");
        let dest = again.blob_path(&d);
        held.commit(&dest, 0o444).expect("commit");
        assert_eq!(again.blob(&d, Some(0)), Some(dest.clone()));
        assert_eq!(again.blob(&d, Some(1)), None);
        assert_eq!(
            fs::metadata(&dest).expect("meta").permissions().mode() & 0o777,
            0o444
        );
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
    }
}
