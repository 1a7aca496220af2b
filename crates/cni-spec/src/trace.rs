//! Phase timings on stderr, for finding where a plugin call spends its time: set
//! `OXIVIRT_CNI_TRACE=1`. Off by default (one environment lookup per process).

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Option<Instant>> = OnceLock::new();

fn start() -> Option<Instant> {
    *START.get_or_init(|| std::env::var_os("OXIVIRT_CNI_TRACE").map(|_| Instant::now()))
}

/// Records that `phase` is done.
pub fn mark(phase: &str) {
    if let Some(t0) = start() {
        eprintln!(
            "oxivirt-cni trace: {:>7} us  {phase}",
            t0.elapsed().as_micros()
        );
    }
}
