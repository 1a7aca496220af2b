//! The image build checked by a tool that is not ours: skopeo (an OCI implementation)
//! inspects the layout and its archive and copies the image out, verifying every digest;
//! the layer, unpacked by the system's tar, holds our static binary, which runs as it would
//! in the image's otherwise empty root.

use std::path::Path;
use std::process::Command;

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_image_is_an_oci_image_skopeo_copies_and_its_binary_runs() {
    if oxivirt_testkit::which("skopeo").is_none() {
        oxivirt_testkit::skip(
            "the_image_is_an_oci_image_skopeo_copies_and_its_binary_runs",
            "skopeo is not installed (scripts/deps.sh installs it)",
        );
        return;
    }
    let bin = oxivirt_testkit::built_binary("oxivirt-cni", "oxivirt-app-cni");
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = tmp.path().join("layout");
    let archive = tmp.path().join("oxivirt.tar");
    let built = oxivirt_deploy::image::build(std::slice::from_ref(&bin), "oxivirt:test", &layout)
        .expect("build");
    oxivirt_deploy::image::archive(&layout, &archive).expect("archive");

    for source in [
        format!("oci:{}:test", layout.display()),
        format!("oci-archive:{}:test", archive.display()),
    ] {
        let v: serde_json::Value =
            serde_json::from_str(&skopeo(&["inspect", &source])).expect("inspect JSON");
        assert_eq!(v["Digest"], built.manifest.digest, "{source}: {v}");
        assert_eq!(v["Architecture"], "amd64");
        assert_eq!(v["Os"], "linux");
        assert_eq!(v["Layers"], serde_json::json!([built.layer.digest]));
    }
    // A copy checks each blob against its digest.
    let copied = tmp.path().join("copied");
    skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{}:test", layout.display()),
        &format!("dir:{}", copied.display()),
    ]);
    let layer = copied.join(built.layer.digest.trim_start_matches("sha256:"));
    assert!(layer.is_file(), "{}", layer.display());

    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&root)
        .status()
        .expect("tar");
    assert!(st.success());
    let inside = root.join("usr/bin/oxivirt-cni");
    assert_eq!(
        std::fs::read(&inside).expect("the binary in the image"),
        std::fs::read(&bin).expect("the built binary")
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&inside)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    // Static: it runs with nothing else of the image's root (there is nothing else).
    let out = Command::new(&inside)
        .arg("bridge")
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("VERSION JSON");
    assert!(v["supportedVersions"].is_array(), "{v}");
    assert!(!Path::new(&root.join("lib")).exists());
}

/// Unpacks the one layer of the layout at `layout` into `root` with the system's tar.
fn unpack(layout: &Path, built: &oxivirt_deploy::image::Built, root: &Path) {
    std::fs::create_dir_all(root).expect("root");
    let layer = layout
        .join("blobs/sha256")
        .join(built.layer.digest.trim_start_matches("sha256:"));
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(root)
        .status()
        .expect("tar");
    assert!(st.success());
}

/// `--qemu`: the host's QEMU, qemu-img and nft with what they load, and QEMU's firmware.
/// In a chroot of the unpacked image (nothing of the host's root), QEMU starts a q35
/// machine with a virtio NIC (its BIOS and the NIC's option ROM found), answers QMP and
/// quits; qemu-img makes a disk; nft runs. The same image without the closure cannot even
/// start QEMU.
#[oxivirt_testkit::root_test("qemu-system-x86_64", "qemu-img", "nft", "chroot", "ldd")]
fn the_image_with_qemu_runs_qemu_qemu_img_and_nft_in_its_own_root() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ours = oxivirt_deploy::image::binaries(&[oxivirt_testkit::built_binary(
        "oxivirt-cni",
        "oxivirt-app-cni",
    )]);
    let mut entries = ours.clone();
    entries.extend(oxivirt_deploy::image::qemu_closure().expect("closure"));

    let layout = tmp.path().join("layout");
    let built =
        oxivirt_deploy::image::build_entries(&entries, "oxivirt:qemu", &layout).expect("build");
    let root = tmp.path().join("root");
    unpack(&layout, &built, &root);
    std::fs::create_dir_all(root.join("tmp")).expect("tmp in the image");
    let chroot = |args: &[&str]| {
        Command::new("chroot")
            .arg(&root)
            .args(args)
            .output()
            .expect("chroot")
    };

    let qmp = "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-status\"}\n{\"execute\":\"quit\"}\n";
    let mut qemu = Command::new("chroot")
        .arg(&root)
        .args([
            "/usr/bin/qemu-system-x86_64",
            "-nodefaults",
            "-display",
            "none",
            "-machine",
            "q35,accel=tcg",
            "-m",
            "64",
            "-device",
            "virtio-net-pci",
            "-S",
            "-qmp",
            "stdio",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("QEMU in the image");
    std::io::Write::write_all(&mut qemu.stdin.take().expect("stdin"), qmp.as_bytes()).expect("QMP");
    let out = qemu.wait_with_output().expect("QEMU");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"prelaunch\"") && text.contains("host-qmp-quit"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = chroot(&[
        "/usr/bin/qemu-img",
        "create",
        "-f",
        "qcow2",
        "/tmp/d.qcow2",
        "1M",
    ]);
    assert!(
        img.status.success(),
        "{}",
        String::from_utf8_lossy(&img.stderr)
    );
    assert!(root.join("tmp/d.qcow2").is_file());
    let nft = chroot(&["/usr/sbin/nft", "--version"]);
    assert!(
        nft.status.success() && String::from_utf8_lossy(&nft.stdout).contains("nftables"),
        "{}",
        String::from_utf8_lossy(&nft.stderr)
    );

    // Our binaries alone: QEMU's program is not even there.
    let bare_layout = tmp.path().join("bare");
    let bare =
        oxivirt_deploy::image::build_entries(&ours, "oxivirt:bare", &bare_layout).expect("build");
    let bare_root = tmp.path().join("bare-root");
    unpack(&bare_layout, &bare, &bare_root);
    let out = Command::new("chroot")
        .arg(&bare_root)
        .args(["/usr/bin/qemu-system-x86_64", "--version"])
        .output()
        .expect("chroot");
    assert!(!out.status.success());
}
