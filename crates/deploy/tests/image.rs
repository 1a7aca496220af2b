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
