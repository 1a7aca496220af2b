//! `emptyDisk` and `hostDisk` files, checked with the real `qemu-img`.

use oxivirt_image::{empty_disk, host_disk, DiskFormat, Error, HostDiskType};
use oxivirt_testkit::cleanup::TempDir;
use std::os::unix::fs::MetadataExt;

fn have_qemu_img(test: &str) -> bool {
    let ok = oxivirt_testkit::which("qemu-img").is_some();
    if !ok {
        oxivirt_testkit::skip(test, "`qemu-img` is not installed");
    }
    ok
}

/// An emptyDisk is a qcow2 of the asked capacity that takes almost no space.
#[test]
fn empty_disk_is_a_sparse_qcow2_of_the_capacity() {
    if !have_qemu_img("empty_disk_is_a_sparse_qcow2_of_the_capacity") {
        return;
    }
    let dir = TempDir::new("imgvol").expect("dir");
    let target = dir.path().join("scratch.qcow2");
    let d = empty_disk(&target, 2 << 30).expect("emptyDisk");
    assert_eq!(d.format, DiskFormat::Qcow2);
    let info: serde_json::Value = serde_json::from_str(&oxivirt_testkit::sh(&[
        "qemu-img",
        "info",
        "--output=json",
        &target.to_string_lossy(),
    ]))
    .expect("json");
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 2u64 << 30);
    assert!(std::fs::metadata(&target).expect("meta").len() < 1 << 20);
    // A failing qemu-img leaves nothing behind.
    let e = empty_disk(&dir.path().join("no/such/dir/x.qcow2"), 1 << 20).expect_err("no dir");
    assert!(matches!(e, Error::QemuImg { .. }), "{e:?}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
}

/// hostDisk: `Disk` needs the file; `DiskOrCreate` makes a sparse raw file of the
/// capacity, once; a directory, a missing capacity and an impossible size are refused.
#[test]
fn host_disk_types() {
    let dir = TempDir::new("imgvol").expect("dir");
    let path = dir.path().join("sub/disk.img");
    let e = host_disk(&path, HostDiskType::Disk, None).expect_err("missing");
    assert!(matches!(e, Error::HostDiskMissing { .. }), "{e:?}");
    let e = host_disk(&path, HostDiskType::DiskOrCreate, None).expect_err("no capacity");
    assert!(matches!(e, Error::HostDiskNoCapacity { .. }), "{e:?}");
    let e = host_disk(&path, HostDiskType::DiskOrCreate, Some(u64::MAX / 2)).expect_err("too big");
    assert!(e.to_string().contains("not enough space"), "{e}");
    assert!(!path.exists());

    let d = host_disk(&path, HostDiskType::DiskOrCreate, Some(64 << 20)).expect("created");
    assert_eq!(
        (d.path.as_path(), d.format),
        (path.as_path(), DiskFormat::Raw)
    );
    let m = std::fs::metadata(&path).expect("meta");
    assert_eq!(m.len(), 64 << 20);
    assert!(m.blocks() * 512 < 1 << 20, "sparse");
    // What the guest wrote stays: an existing file is used as it is.
    std::fs::write(&path, b"guest data").expect("write");
    host_disk(&path, HostDiskType::DiskOrCreate, Some(64 << 20)).expect("exists");
    assert_eq!(std::fs::read(&path).expect("read"), b"guest data");
    host_disk(&path, HostDiskType::Disk, None).expect("exists");

    let e = host_disk(dir.path(), HostDiskType::Disk, None).expect_err("a directory");
    assert!(matches!(e, Error::HostDiskNotFile { .. }), "{e:?}");
}
