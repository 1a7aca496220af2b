//! `oxivirt-launcher`: one VM in its pod. Started from the node's network namespace with
//! the pod's namespace, the VMI and a state directory (see [`args`]); everything it keeps
//! lives in the state directory, and the daemon drives it through the control socket
//! (see the library side of this package).

use oxivirt_app_launcher::{args, launch, state};

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
    match launch::run(args)? {
        state::Phase::Succeeded => Ok(()),
        phase => anyhow::bail!("the VM ended {phase:?}"),
    }
}
