//! `oxivirt-deploygen [DIR]`: writes the generated manifests into DIR (default `deploy`).

use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("deploy"), PathBuf::from);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("oxivirt-deploygen: {}: {e}", dir.display());
        return std::process::ExitCode::FAILURE;
    }
    for (name, text) in oxivirt_deploy::manifests::files() {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("oxivirt-deploygen: {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
        println!("{}", path.display());
    }
    std::process::ExitCode::SUCCESS
}
