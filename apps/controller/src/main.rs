//! `oxivirt-controller`: the VM and VMI controllers (`oxivirt_controller::run`) against a
//! Kubernetes API, from a kubeconfig or in-cluster; with `--leader-elect`, only while
//! this replica holds the `coordination.k8s.io/v1` Lease (it exits when it loses it, and
//! its Deployment restarts it as a candidate).

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use oxivirt_controller::leader::{Elector, LeaseConfig};

const USAGE: &str = "usage: oxivirt-controller [--kubeconfig PATH] [--leader-elect] [--lease-namespace NS] [--lease-name NAME] [--identity ID] [--node-name NAME] [--launcher-image IMAGE]\n\n  --kubeconfig PATH     the API (default: in-cluster, else $KUBECONFIG or ~/.kube/config)\n  --leader-elect        act only while holding the Lease (two replicas never act at once)\n  --lease-namespace NS  the Lease's namespace (default $POD_NAMESPACE, else oxivirt)\n  --lease-name NAME     the Lease (default oxivirt-controller)\n  --identity ID         this candidate (default $POD_NAME, else the host name)\n  --node-name NAME      bind launcher pods to NAME, as on one machine (default: none, the cluster's\n                        scheduler places them, shaped for a cluster)\n  --launcher-image IMG  the image of cluster launcher pods (default $OXIVIRT_LAUNCHER_IMAGE, else oxivirt:<version>)";

#[derive(Debug)]
struct Args {
    kubeconfig: Option<PathBuf>,
    leader_elect: bool,
    lease_namespace: String,
    lease_name: String,
    identity: String,
    node_name: String,
    launcher_image: String,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn parse(mut it: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut args = Args {
        kubeconfig: None,
        leader_elect: false,
        lease_namespace: env("POD_NAMESPACE").unwrap_or_else(|| "oxivirt".into()),
        lease_name: "oxivirt-controller".into(),
        identity: env("POD_NAME").unwrap_or_else(hostname),
        // On a cluster the scheduler places launcher pods (an empty nodeName is unset).
        node_name: String::new(),
        launcher_image: env("OXIVIRT_LAUNCHER_IMAGE")
            .unwrap_or_else(|| concat!("oxivirt:", env!("CARGO_PKG_VERSION")).to_string()),
    };
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--kubeconfig" => args.kubeconfig = Some(PathBuf::from(value()?)),
            "--leader-elect" => args.leader_elect = true,
            "--lease-namespace" => args.lease_namespace = value()?,
            "--lease-name" => args.lease_name = value()?,
            "--identity" => args.identity = value()?,
            "--node-name" => args.node_name = value()?,
            "--launcher-image" => args.launcher_image = value()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(args)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = oxivirt_controller::client::client(args.kubeconfig.as_deref()).await?;
    use oxivirt_controller::plan::{ClusterLaunch, Placement};
    let placement = if args.node_name.is_empty() {
        Placement::Cluster(ClusterLaunch {
            image: args.launcher_image,
        })
    } else {
        Placement::Node(args.node_name)
    };
    let config = oxivirt_controller::Config { placement };
    let work = oxivirt_controller::run(client.clone(), config);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    if !args.leader_elect {
        tokio::select! {
            () = work => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        return Ok(());
    }
    let lease = LeaseConfig::new(&args.lease_namespace, &args.lease_name, &args.identity);
    // A signal ends the work, so the elector releases the Lease for the next replica.
    let work = async move {
        tokio::select! {
            () = work => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    Elector::new(client, lease).run(work).await?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("oxivirt-controller: {e:#}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    oxivirt_controller::client::run_to_exit("oxivirt-controller", run(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> anyhow::Result<Args> {
        parse(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags() {
        let a = args(&[
            "--kubeconfig",
            "/k",
            "--leader-elect",
            "--lease-namespace=ns",
            "--identity",
            "me",
        ])
        .expect("parse");
        assert_eq!(a.kubeconfig, Some(PathBuf::from("/k")));
        assert!(a.leader_elect);
        assert_eq!(a.lease_namespace, "ns");
        assert_eq!(a.lease_name, "oxivirt-controller");
        assert_eq!(a.identity, "me");
        assert_eq!(a.node_name, "");
        assert!(args(&["--lease-namespace"]).is_err());
        assert!(args(&["--bogus"]).is_err());
    }
}
