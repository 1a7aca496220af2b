//! `oxivirt-node`: the node agent of Kubernetes mode (the DaemonSet in `deploy/`).
//!
//! `install-cni` puts the CNI plugins, the Multus-compatible `00-multus.conf` and its
//! kubeconfig on the node, keeps them current and removes the config on SIGTERM;
//! `device-plugin` serves `/dev/kvm` and `/dev/net/tun` to launcher pods through the
//! kubelet's device plugin API (`devices.kubevirt.io/kvm`, `devices.kubevirt.io/tun`);
//! `launcher-status` reports the launchers of this node's pods into their VMIs; `relay`
//! carries oxivirt-api's pause, unpause and console to them.

mod device;
mod install;
mod relay;
mod status;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Runs `work` on a single-threaded runtime until it ends or SIGTERM or SIGINT comes (then
/// `Ok`: a stop is how a DaemonSet's container ends).
fn until_stopped(
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        tokio::select! {
            r = work => r,
            _ = term.recv() => Ok(()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

#[derive(Debug, Parser)]
#[command(name = "oxivirt-node", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install oxivirt-cni and oxivirt-multus into the host's CNI bin dir, write
    /// 00-multus.conf around the default network with a kubeconfig from the service account,
    /// keep both current, and remove them on SIGTERM.
    InstallCni(install::Args),
    /// Serve /dev/kvm and /dev/net/tun to launcher pods as devices.kubevirt.io/kvm and
    /// devices.kubevirt.io/tun through the kubelet's device plugin API, until SIGTERM.
    DevicePlugin(device::Args),
    /// Report the launchers of this node's pods into their VMIs' status (phase,
    /// interfaces, Ready, Paused), until SIGTERM.
    LauncherStatus(status::Args),
    /// Relay oxivirt-api's launcher control requests and consoles to this node's
    /// launchers (mutual TLS), until SIGTERM.
    Relay(relay::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::InstallCni(args) => match install::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("oxivirt-node install-cni: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::LauncherStatus(args) => match status::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("oxivirt-node launcher-status: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Relay(args) => match relay::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("oxivirt-node relay: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::DevicePlugin(args) => match device::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("oxivirt-node device-plugin: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
