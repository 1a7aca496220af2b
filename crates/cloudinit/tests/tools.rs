//! The image as other ISO 9660 readers see it: `isoinfo` (genisoimage) for the volume
//! descriptors, the Rock Ridge and Joliet trees and the files' bytes; `xorriso` and
//! `bsdtar` (libarchive) when installed. No root needed; a missing tool skips loudly.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use oxivirt_cloudinit::{NoCloud, NoCloudSource, VmiIdentity, ISO_FILE_NAME};
use oxivirt_testkit::cleanup::TempDir;

const USER_DATA: &str = "#cloud-config\nhostname: ignored\nruncmd:\n  - echo hello > /tmp/hello\n";
const NETWORK_DATA: &str = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n";

/// Whether `tool` is on PATH; prints the skip line when not.
fn have(test: &str, tool: &str) -> bool {
    if oxivirt_testkit::which(tool).is_some() {
        return true;
    }
    oxivirt_testkit::skip(test, &format!("`{tool}` is not installed"));
    false
}

fn seed() -> NoCloud {
    let source = NoCloudSource {
        user_data: Some(USER_DATA.into()),
        network_data: Some(NETWORK_DATA.into()),
        ..Default::default()
    };
    let vmi = VmiIdentity {
        name: "testvmi".into(),
        namespace: "default".into(),
        hostname: Some("myvm".into()),
        firmware_uuid: None,
    };
    NoCloud::new(&source, 1, &vmi).expect("a valid source")
}

/// Writes the seed's image into a fresh directory.
fn written(what: &str) -> (TempDir, String) {
    let dir = TempDir::new(what).expect("temp dir");
    let path = seed().write_iso(dir.path(), 0).expect("written");
    assert_eq!(path, dir.path().join(ISO_FILE_NAME));
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let p = path.to_string_lossy().into_owned();
    (dir, p)
}

/// File names from `isoinfo -l` lines (the last field; isoinfo ends the `.`/`..` and
/// Rock Ridge names as they are and keeps `;1` on plain ISO 9660 names).
fn listed(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| l.starts_with('-') || l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect()
}

/// `isoinfo -d`: the volume is `cidata`, and isoinfo finds both extensions.
#[test]
fn isoinfo_sees_the_label_joliet_and_rock_ridge() {
    if !have(
        concat!(
            module_path!(),
            "::isoinfo_sees_the_label_joliet_and_rock_ridge"
        ),
        "isoinfo",
    ) {
        return;
    }
    let (_dir, iso) = written("ci-d");
    let d = oxivirt_testkit::sh(&["isoinfo", "-d", "-i", &iso]);
    eprintln!("{d}");
    assert!(d.contains("Volume id: cidata"), "{d}");
    assert!(d.contains("Joliet with UCS level 3 found"), "{d}");
    assert!(d.contains("Rock Ridge signatures version 1 found"), "{d}");
    assert!(d.contains("Logical block size is: 2048"), "{d}");
    // 26 sectors of metadata, then one per file.
    assert!(d.contains("Volume size is: 29"), "{d}");
}

/// The three listings: Rock Ridge and Joliet show the real names, the plain tree the
/// level-1 ones; Rock Ridge shows the modes.
#[test]
fn isoinfo_lists_every_tree() {
    if !have(
        concat!(module_path!(), "::isoinfo_lists_every_tree"),
        "isoinfo",
    ) {
        return;
    }
    let (_dir, iso) = written("ci-l");
    let rr = oxivirt_testkit::sh(&["isoinfo", "-R", "-l", "-i", &iso]);
    eprintln!("{rr}");
    assert_eq!(
        listed(&rr),
        [".", "..", "meta-data", "network-config", "user-data"]
    );
    for line in rr
        .lines()
        .filter(|l| l.ends_with("-data") || l.ends_with("-config"))
    {
        assert!(line.starts_with("-rw-r--r--"), "{line}");
    }
    assert!(
        rr.lines()
            .any(|l| l.starts_with("dr-xr-xr-x") || l.starts_with("drwxr-xr-x")),
        "{rr}"
    );
    let joliet = oxivirt_testkit::sh(&["isoinfo", "-J", "-l", "-i", &iso]);
    eprintln!("{joliet}");
    assert_eq!(
        listed(&joliet),
        [".", "..", "meta-data", "network-config", "user-data"]
    );
    let plain = oxivirt_testkit::sh(&["isoinfo", "-l", "-i", &iso]);
    eprintln!("{plain}");
    assert_eq!(
        listed(&plain),
        [".", "..", "META_DAT.;1", "NETWORK_.;1", "USER_DAT.;1"]
    );
}

/// `isoinfo -x` returns each file's exact bytes through Rock Ridge and Joliet names.
#[test]
fn isoinfo_extracts_the_exact_contents() {
    if !have(
        concat!(module_path!(), "::isoinfo_extracts_the_exact_contents"),
        "isoinfo",
    ) {
        return;
    }
    let (_dir, iso) = written("ci-x");
    let seed = seed();
    for (name, data) in seed.files() {
        let path = format!("/{name}");
        assert_eq!(
            oxivirt_testkit::sh(&["isoinfo", "-R", "-x", &path, "-i", &iso]).as_bytes(),
            data,
            "-R {name}"
        );
        assert_eq!(
            oxivirt_testkit::sh(&["isoinfo", "-J", "-x", &path, "-i", &iso]).as_bytes(),
            data,
            "-J {name}"
        );
    }
    let meta = oxivirt_testkit::sh(&["isoinfo", "-R", "-x", "/meta-data", "-i", &iso]);
    assert_eq!(
        meta,
        r#"{"instance-id":"testvmi.default","local-hostname":"myvm"}"#
    );
    assert_eq!(
        oxivirt_testkit::sh(&["isoinfo", "-x", "/USER_DAT.;1", "-i", &iso]),
        USER_DATA
    );
}

/// xorriso reads the Rock Ridge tree and finds nothing to complain about.
#[test]
fn xorriso_reads_the_rock_ridge_tree() {
    if !have(
        concat!(module_path!(), "::xorriso_reads_the_rock_ridge_tree"),
        "xorriso",
    ) {
        return;
    }
    let (dir, iso) = written("ci-xo");
    let out = Command::new("xorriso")
        .args([
            "-abort_on",
            "WARNING",
            "-indev",
            &iso,
            "-find",
            "/",
            "-exec",
            "lsdl",
            "--",
        ])
        .output()
        .expect("xorriso runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "{stderr}");
    for name in ["'/meta-data'", "'/user-data'", "'/network-config'"] {
        assert!(stdout.contains(name), "{name} missing: {stdout}");
    }
    assert!(stderr.contains("Volume id    : 'cidata'"), "{stderr}");
    let to = dir.path().join("out");
    oxivirt_testkit::sh(&[
        "xorriso",
        "-osirrox",
        "on",
        "-indev",
        &iso,
        "-extract",
        "/",
        &to.to_string_lossy(),
    ]);
    assert_extracted(&to);
}

/// libarchive's reader (Rock Ridge preferred) extracts the real names and contents.
#[test]
fn bsdtar_extracts_the_files() {
    if !have(
        concat!(module_path!(), "::bsdtar_extracts_the_files"),
        "bsdtar",
    ) {
        return;
    }
    let (dir, iso) = written("ci-tar");
    let list = oxivirt_testkit::sh(&["bsdtar", "-tf", &iso]);
    let mut names: Vec<&str> = list.lines().filter(|l| *l != ".").collect();
    names.sort_unstable();
    assert_eq!(names, ["meta-data", "network-config", "user-data"]);
    let to = dir.path().join("x");
    std::fs::create_dir(&to).expect("mkdir");
    oxivirt_testkit::sh(&["bsdtar", "-xf", &iso, "-C", &to.to_string_lossy()]);
    assert_extracted(&to);
}

/// Forty files spill both directories over more than one sector; every reader still sees
/// them all.
#[test]
fn a_directory_over_several_sectors_lists_completely() {
    if !have(
        concat!(
            module_path!(),
            "::a_directory_over_several_sectors_lists_completely"
        ),
        "isoinfo",
    ) {
        return;
    }
    let dir = TempDir::new("ci-many").expect("temp dir");
    let names: Vec<String> = (0..40).map(|i| format!("file-number-{i:02}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), n.as_bytes())).collect();
    let img = oxivirt_cloudinit::build_iso(&files, "many", 0).expect("image");
    let path = oxivirt_cloudinit::write_atomic(dir.path(), "many.iso", &img).expect("written");
    let iso = path.to_string_lossy();
    for flag in ["-R", "-J"] {
        let mut got = listed(&oxivirt_testkit::sh(&["isoinfo", flag, "-l", "-i", &iso]));
        got.retain(|n| n != "." && n != "..");
        // The primary tree (which Rock Ridge annotates) is in ISO 9660 identifier order
        // (`FILE_N10.;1` < `FILE_NU1.;1` < `FILE_NUM.;1`), not by the long names.
        got.sort_unstable();
        assert_eq!(got, names, "{flag}");
    }
    assert_eq!(
        oxivirt_testkit::sh(&["isoinfo", "-R", "-x", "/file-number-39", "-i", &iso]),
        "file-number-39"
    );
}

/// Every file of the seed, extracted into `to` by another tool, holds what we wrote.
fn assert_extracted(to: &std::path::Path) {
    for (name, data) in seed().files() {
        assert_eq!(
            std::fs::read(to.join(name)).expect("extracted"),
            data,
            "{name}"
        );
    }
}
