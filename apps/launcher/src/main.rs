//! `oxivirt-launcher`: one VM in its pod. Started from the node's network namespace with
//! the pod's namespace, the VMI and a state directory (see [`args`]); everything it keeps
//! lives in the state directory, and the daemon drives it through the control socket
//! (see the library side of this package).

use anyhow::Context;
use oxivirt_app_launcher::{args, state};

fn main() -> std::process::ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("oxivirt-launcher: {e}\n{}", args::USAGE);
            return std::process::ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxivirt-launcher: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &args::Args) -> anyhow::Result<()> {
    let state = state::StateDir::claim(&args.state_dir)
        .with_context(|| format!("state dir {}", args.state_dir.display()))?;
    state
        .write_status(&state::Status::default())
        .context("write status.json")?;
    anyhow::bail!(
        "running a VM is not wired up yet: the VMI {} stays Pending (see issue 9's note)",
        args.vmi.display()
    )
}
