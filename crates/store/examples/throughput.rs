//! Throughput check (not a test): 8 threads × 125 creates of ~1 KiB VirtualMachines,
//! every one acknowledged durable, then listing the 1,000 and building a list body.
//!
//! `cargo run --release -p oxivirt-store --example throughput [rounds] [dir]`; `LINGER_US`
//! sets [`Options::batch_linger`].

use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

use common::{vm_key, VMS};
use oxivirt_store::{Options, Store};
use oxivirt_testkit::cleanup::TempDir;

const THREADS: usize = 8;
const PER_THREAD: usize = 125;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let base = args.next().map(std::path::PathBuf::from);
    for round in 0..rounds {
        let dir = match &base {
            Some(b) => TempDir::new_in(b, "store-bench")?,
            None => TempDir::new("store-bench")?,
        };
        let mut options = Options::default();
        if let Some(us) = std::env::var("LINGER_US").ok().and_then(|v| v.parse().ok()) {
            options.batch_linger = std::time::Duration::from_micros(us);
        }
        let store = Store::open_with(&dir.path().join("store.redb"), options)?;

        let start = Instant::now();
        let results: Vec<Result<(), oxivirt_store::Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let store = &store;
                    s.spawn(move || {
                        for i in 0..PER_THREAD {
                            let name = format!("vm-{t}-{i}");
                            store
                                .create(vm_key("default", &name), common::vm("default", &name))
                                .wait()?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        let elapsed = start.elapsed();
        results.into_iter().collect::<Result<(), _>>()?;
        let creates = THREADS * PER_THREAD;
        let stats = store.stats();

        // The list as the API serves it: the stored JSON bytes copied into one body.
        let start = Instant::now();
        let (objects, rv) = store.list(VMS, Some("default"))?;
        let listed = start.elapsed();
        let mut body = Vec::with_capacity(objects.iter().map(|o| o.json().len() + 1).sum());
        body.extend_from_slice(
            format!(
                r#"{{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachineList","metadata":{{"resourceVersion":"{rv}"}},"items":["#
            )
            .as_bytes(),
        );
        for (i, o) in objects.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(o.json());
        }
        body.extend_from_slice(b"]}");
        let with_body = start.elapsed();
        // For comparison: parsing every object back into a Value.
        let start = Instant::now();
        let parsed = objects
            .iter()
            .map(|o| o.value())
            .collect::<Result<Vec<_>, _>>()?;
        let parse = start.elapsed();

        println!(
            "round {round}: {creates} creates from {THREADS} threads in {:.3} s = {:.0} creates/s \
             ({} commits, {:.1} writes/commit); \
             list of {} ({} B avg) {:.2} ms, with list body ({} KiB) {:.2} ms, parsing all {:.2} ms",
            elapsed.as_secs_f64(),
            creates as f64 / elapsed.as_secs_f64(),
            stats.commits,
            stats.writes as f64 / stats.commits.max(1) as f64,
            objects.len(),
            body.len() / objects.len().max(1),
            listed.as_secs_f64() * 1e3,
            body.len() / 1024,
            with_body.as_secs_f64() * 1e3,
            parse.as_secs_f64() * 1e3,
        );
        drop(parsed);
    }
    Ok(())
}
