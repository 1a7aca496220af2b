//! `oxivirt-node device-plugin`: `/dev/kvm` and `/dev/net/tun` for launcher pods, through
//! the kubelet's device plugin API (crates/device-plugin), one plugin per device, until
//! SIGTERM or SIGINT removes their sockets.

use anyhow::Result;
use oxivirt_device_plugin::{DeviceKind, DEFAULT_COUNT, KUBELET_DIR};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kubelet's device plugin directory (with its kubelet.sock), as mounted here.
    #[arg(long, default_value = KUBELET_DIR)]
    dir: PathBuf,
    /// How many devices each file is advertised as (VMs a node can run at once).
    #[arg(long, default_value_t = DEFAULT_COUNT)]
    count: usize,
    /// The KVM device file (the host's path: containers get it there).
    #[arg(long, default_value = "/dev/kvm")]
    kvm: PathBuf,
    /// The TUN device file (the host's path).
    #[arg(long, default_value = "/dev/net/tun")]
    tun: PathBuf,
    /// Where the host's `/` is mounted here: the devices' health is checked under it.
    #[arg(long, default_value = "/")]
    host_root: PathBuf,
    /// How often the sockets and the devices' health are checked, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
}

pub fn run(args: &Args) -> Result<()> {
    if !args.dir.is_dir() {
        anyhow::bail!(
            "{} is not a directory: is it the kubelet's device plugin directory, mounted?",
            args.dir.display()
        );
    }
    let kinds = [
        DeviceKind {
            path: args.kvm.clone(),
            ..DeviceKind::kvm(args.count)
        }
        .seen_under(&args.host_root),
        DeviceKind {
            path: args.tun.clone(),
            ..DeviceKind::tun(args.count)
        }
        .seen_under(&args.host_root),
    ];
    let poll = Duration::from_millis(args.poll_ms.max(10));
    crate::until_stopped(async {
        for k in kinds.iter().cloned() {
            tokio::spawn(oxivirt_device_plugin::run(args.dir.clone(), k, poll, |l| {
                eprintln!("oxivirt-node device-plugin: {l}")
            }));
        }
        // They serve until the stop, which ends the runtime and cancels them.
        std::future::pending::<anyhow::Result<()>>().await
    })?;
    // The kubelet stops offering the devices once their sockets are gone.
    for k in &kinds {
        let _ = std::fs::remove_file(args.dir.join(k.endpoint()));
    }
    eprintln!("oxivirt-node device-plugin: stopped");
    Ok(())
}
