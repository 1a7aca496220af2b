//! `oxivirt-deploygen [DIR]`: writes the generated manifests into DIR (default `deploy`).
//!
//! `oxivirt-deploygen image --bin-dir DIR --out LAYOUT [--archive FILE] [--name NAME:TAG]`:
//! the image the manifests name (`oxivirt:<version>`), from the built binaries in DIR, as
//! an OCI layout and optionally one archive of it (`ctr images import FILE`).

use std::path::PathBuf;
use std::process::ExitCode;

/// The binaries the image holds: what the manifests run, and the launcher.
const BINARIES: [&str; 6] = [
    "oxivirt-cni",
    "oxivirt-multus",
    "oxivirt-controller",
    "oxivirt-api",
    "oxivirt-node",
    "oxivirt-launcher",
];

const USAGE: &str = concat!(
    "usage: oxivirt-deploygen [DIR]      writes the deploy/ manifests into DIR (default deploy)\n",
    "       oxivirt-deploygen image ...  builds the image they name (image --help)",
);

const IMAGE_USAGE: &str = "usage: oxivirt-deploygen image --bin-dir DIR --out LAYOUT [--archive FILE] [--name NAME:TAG] [--qemu]\n\
  DIR holds the built binaries (target/x86_64-unknown-linux-gnu/release); --qemu adds this host's\n\
  QEMU, qemu-img and nft with their libraries and firmware (what launcher pods run)";

fn image(args: Vec<String>) -> ExitCode {
    let mut bin_dir = None;
    let mut out = None;
    let mut archive = None;
    let mut name = oxivirt_deploy::manifests::IMAGE.to_string();
    let mut qemu = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--qemu" {
            qemu = true;
            continue;
        }
        if a == "-h" || a == "--help" {
            println!("{IMAGE_USAGE}");
            return ExitCode::SUCCESS;
        }
        let Some(v) = it.next() else {
            eprintln!("oxivirt-deploygen image: {a} needs a value\n{IMAGE_USAGE}");
            return ExitCode::from(2);
        };
        match a.as_str() {
            "--bin-dir" => bin_dir = Some(PathBuf::from(v)),
            "--out" => out = Some(PathBuf::from(v)),
            "--archive" => archive = Some(PathBuf::from(v)),
            "--name" => name = v,
            other => {
                eprintln!("oxivirt-deploygen image: unknown argument {other:?}\n{IMAGE_USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(bin_dir), Some(out)) = (bin_dir, out) else {
        eprintln!("oxivirt-deploygen image: --bin-dir and --out are required\n{IMAGE_USAGE}");
        return ExitCode::from(2);
    };
    let files: Vec<PathBuf> = BINARIES.iter().map(|b| bin_dir.join(b)).collect();
    let mut entries = oxivirt_deploy::image::binaries(&files);
    if qemu {
        match oxivirt_deploy::image::qemu_closure() {
            Ok(e) => entries.extend(e),
            Err(e) => {
                eprintln!("oxivirt-deploygen image: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let built = oxivirt_deploy::image::build_entries(&entries, &name, &out).and_then(|b| {
        if let Some(a) = &archive {
            oxivirt_deploy::image::archive(&out, a)?;
        }
        Ok(b)
    });
    match built {
        Ok(b) => {
            println!("{name} {}", b.manifest.digest);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut msg = e.to_string();
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                msg.push_str(&format!(": {c}"));
                cur = c.source();
            }
            eprintln!("oxivirt-deploygen image: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    match first.as_deref() {
        Some("image") => return image(args.collect()),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        // Not a directory to write `--help/00-namespace.yaml` … into.
        Some(flag) if flag.starts_with('-') => {
            eprintln!("oxivirt-deploygen: unknown argument {flag:?}\n{USAGE}");
            return ExitCode::from(2);
        }
        _ => {}
    }
    let dir = first.map_or_else(|| PathBuf::from("deploy"), PathBuf::from);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("oxivirt-deploygen: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for (name, text) in oxivirt_deploy::manifests::files() {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("oxivirt-deploygen: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("{}", path.display());
    }
    ExitCode::SUCCESS
}
