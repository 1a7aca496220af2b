//! The files a VM's disks live in: the qcow2 overlay on a cached containerDisk (the VM's
//! writes go there and are lost with it, as in KubeVirt), `emptyDisk` and a local
//! `hostDisk`. The `qemu-img` command lines are plain data ([`overlay_args`],
//! [`empty_disk_args`]); [`run_qemu_img`] runs one.

use crate::disk::{DiskFile, DiskFormat};
use crate::error::{Error, Result};
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// KubeVirt's default toleration for a DiskOrCreate hostDisk bigger than the free space.
pub const HOST_DISK_TOLERATION_PERCENT: u64 = 10;

/// `qemu-img create -f qcow2 -F <fmt> -b <backing> <target>`.
pub fn overlay_args(backing: &DiskFile, target: &Path) -> Vec<OsString> {
    vec![
        "create".into(),
        "-q".into(),
        "-f".into(),
        "qcow2".into(),
        "-F".into(),
        backing.format.as_str().into(),
        "-b".into(),
        backing.path.clone().into_os_string(),
        target.as_os_str().to_owned(),
    ]
}

/// `qemu-img create -f qcow2 <target> <bytes>`.
pub fn empty_disk_args(target: &Path, capacity: u64) -> Vec<OsString> {
    vec![
        "create".into(),
        "-q".into(),
        "-f".into(),
        "qcow2".into(),
        target.as_os_str().to_owned(),
        capacity.to_string().into(),
    ]
}

/// Runs `qemu-img` with `args`.
pub fn run_qemu_img(args: &[OsString]) -> Result<()> {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .map_err(|source| Error::QemuImgSpawn { source })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::QemuImg {
        args: args
            .iter()
            .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned())
            .collect(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// A sibling temp name for `target` (same directory: the rename is atomic).
fn temp_beside(target: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(target.file_name().unwrap_or_default());
    name.push(format!(".tmp-{}", std::process::id()));
    target.with_file_name(name)
}

/// Makes `target` with `args_for(temp)`, then renames it into place (replacing a stale
/// one); nothing is left at either name when it fails.
fn create_atomically(target: &Path, args_for: impl FnOnce(&Path) -> Vec<OsString>) -> Result<()> {
    let tmp = temp_beside(target);
    let _ = fs::remove_file(&tmp);
    let made = run_qemu_img(&args_for(&tmp)).and_then(|()| {
        fs::rename(&tmp, target).map_err(|source| Error::Cache {
            path: target.to_path_buf(),
            source,
        })
    });
    if made.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    made
}

/// The VM's overlay at `target` (e.g. `<state-dir>/<volume>.qcow2`) backed by `backing`.
pub fn overlay(backing: &DiskFile, target: &Path) -> Result<DiskFile> {
    create_atomically(target, |tmp| overlay_args(backing, tmp))?;
    Ok(DiskFile {
        path: target.to_path_buf(),
        format: DiskFormat::Qcow2,
    })
}

/// An `emptyDisk`: a sparse qcow2 of `capacity` bytes.
pub fn empty_disk(target: &Path, capacity: u64) -> Result<DiskFile> {
    create_atomically(target, |tmp| empty_disk_args(tmp, capacity))?;
    Ok(DiskFile {
        path: target.to_path_buf(),
        format: DiskFormat::Qcow2,
    })
}

/// `hostDisk.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostDiskType {
    /// The file must exist.
    Disk,
    /// Created as a sparse raw file of the capacity when missing.
    DiskOrCreate,
}

/// A local `hostDisk`. Always raw, as KubeVirt has it: the guest writes this file, so its
/// format must never be guessed from its content.
pub fn host_disk(path: &Path, kind: HostDiskType, capacity: Option<u64>) -> Result<DiskFile> {
    let done = || DiskFile {
        path: path.to_path_buf(),
        format: DiskFormat::Raw,
    };
    match fs::metadata(path) {
        Ok(m) if m.is_file() => return Ok(done()),
        Ok(_) => {
            return Err(Error::HostDiskNotFile {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Cache {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    if kind == HostDiskType::Disk {
        return Err(Error::HostDiskMissing {
            path: path.to_path_buf(),
        });
    }
    let requested = capacity.ok_or_else(|| Error::HostDiskNoCapacity {
        path: path.to_path_buf(),
    })?;
    let io_err = |source| Error::Cache {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err)?;
    let available = available_bytes(dir).map_err(io_err)?;
    let size = if requested > available {
        let tolerated = requested / 100 * (100 - HOST_DISK_TOLERATION_PERCENT);
        if tolerated > available {
            return Err(Error::HostDiskNoSpace {
                path: path.to_path_buf(),
                requested,
                available,
                toleration: HOST_DISK_TOLERATION_PERCENT,
            });
        }
        available
    } else {
        requested
    };
    // O_EXCL: a file someone else made meanwhile is theirs, and is used as it is.
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(f) => {
            if let Err(e) = f.set_len(size) {
                let _ = fs::remove_file(path);
                return Err(io_err(e));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(e)),
    }
    Ok(done())
}

fn available_bytes(dir: &Path) -> io::Result<u64> {
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs with a valid NUL-terminated path and a zeroed out-struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_img_command_lines() {
        let backing = DiskFile {
            path: "/var/lib/oxivirt/images/disks/ab/disk/cirros.img".into(),
            format: DiskFormat::Qcow2,
        };
        let show = |v: Vec<OsString>| {
            v.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        insta::assert_snapshot!(
            show(overlay_args(&backing, Path::new("/run/vm/containerdisk.qcow2"))),
            @"create -q -f qcow2 -F qcow2 -b /var/lib/oxivirt/images/disks/ab/disk/cirros.img /run/vm/containerdisk.qcow2"
        );
        insta::assert_snapshot!(
            show(empty_disk_args(Path::new("/run/vm/scratch.qcow2"), 1 << 30)),
            @"create -q -f qcow2 /run/vm/scratch.qcow2 1073741824"
        );
    }
}
