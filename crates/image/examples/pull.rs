//! Pulls a containerDisk and prints where its disk is:
//! `cargo run -p oxivirt-image --example pull -- <reference> <cache dir> [registry=URL]...`

use oxivirt_image::{PullPolicy, Puller, Reference};

fn main() {
    if let Err(e) = run() {
        let mut msg = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            msg.push_str(&format!(": {c}"));
            cause = c.source();
        }
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(reference), Some(cache)) = (args.next(), args.next()) else {
        eprintln!("usage: pull <reference> <cache dir> [registry=URL]...");
        std::process::exit(2);
    };
    let mirrors = args.map(|m| m.parse()).collect::<Result<Vec<_>, _>>()?;
    let reference = Reference::parse(&reference)?;
    let puller = Puller::new(cache, mirrors)?;
    let start = std::time::Instant::now();
    let image = puller.pull(&reference, PullPolicy::default_for(&reference))?;
    let disk = puller.container_disk(&image, None)?;
    println!(
        "{reference}\n  image {}\n  manifest {}\n  {:?}\n  disk {} ({})\n  {:?}",
        image.digest,
        image.manifest_digest,
        image.stats,
        disk.path.display(),
        disk.format.as_str(),
        start.elapsed()
    );
    Ok(())
}
