//! `oxivirtd`: serves the Kubernetes API for VMs on one machine (see
//! `oxivirt_apiserver`), over TLS with certificates it makes on first start, from the
//! embedded store in its data directory, and writes the admin kubeconfig beside them.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use oxivirt_apiserver::pki::{write_private, Pki};
use oxivirt_apiserver::Api;

const USAGE: &str = "usage: oxivirtd [--data-dir DIR] [--listen ADDR:PORT] [--api-only] [pod runtime flags]\n\n  --data-dir DIR      where the store, certificates and kubeconfig live (default /var/lib/oxivirt)\n  --listen ADDR:PORT  the API's address (default 127.0.0.1:6444; port 0 picks a free one)\n  --api-only          serve the API alone: no controllers, no pod runtime\n  --no-controllers    the API and the pod runtime, without the controllers\n\nthe pod runtime (launcher Pods of this node):\n  --node-name NAME          this node (default: the host name)\n  --cni-conf-dir DIR        CNI network configs (default /etc/cni/net.d; a default network is written if empty)\n  --cni-bin-dir DIR         CNI plugins (default /opt/cni/bin)\n  --registry-mirror HOST=URL  fetch HOST's images from URL (repeatable)\n  --launcher PATH           oxivirt-launcher (default: beside oxivirtd)\n  --accel auto|kvm|tcg      the launchers' accelerator";

struct Args {
    data_dir: PathBuf,
    listen: SocketAddr,
    /// Serve the API alone (no controllers, no pod runtime), as a bare kube-apiserver.
    api_only: bool,
    /// Run the pod runtime without the controllers (its own tests make the objects the
    /// controllers would).
    no_controllers: bool,
    node: NodeArgs,
}

/// The pod runtime's flags (`oxivirt_pod_runtime::Config` once the data dir is known).
struct NodeArgs {
    node_name: String,
    cni_conf_dir: PathBuf,
    cni_bin_dir: PathBuf,
    registry_mirrors: Vec<String>,
    launcher: PathBuf,
    accel: Option<String>,
}

fn parse(mut it: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut args = Args {
        data_dir: PathBuf::from("/var/lib/oxivirt"),
        listen: SocketAddr::from(([127, 0, 0, 1], 6444)),
        api_only: false,
        no_controllers: false,
        node: NodeArgs {
            node_name: oxivirt_pod_runtime::hostname(),
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dir: PathBuf::from("/opt/cni/bin"),
            registry_mirrors: Vec::new(),
            launcher: oxivirt_pod_runtime::default_launcher(),
            accel: None,
        },
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
            "--data-dir" => args.data_dir = PathBuf::from(value()?),
            "--api-only" => args.api_only = true,
            "--no-controllers" => args.no_controllers = true,
            "--listen" => {
                let v = value()?;
                args.listen = v.parse().with_context(|| {
                    format!("--listen {v:?}: expected ADDR:PORT, e.g. 127.0.0.1:6444")
                })?;
            }
            "--node-name" => args.node.node_name = value()?,
            "--cni-conf-dir" => args.node.cni_conf_dir = PathBuf::from(value()?),
            "--cni-bin-dir" => args.node.cni_bin_dir = PathBuf::from(value()?),
            "--registry-mirror" => {
                let v = value()?;
                v.parse::<oxivirt_image::Mirror>()
                    .with_context(|| format!("--registry-mirror {v:?}"))?;
                args.node.registry_mirrors.push(v);
            }
            "--launcher" => args.node.launcher = PathBuf::from(value()?),
            "--accel" => {
                let v = value()?;
                if !matches!(v.as_str(), "auto" | "kvm" | "tcg") {
                    bail!("--accel {v:?}: expected auto, kvm or tcg");
                }
                args.node.accel = Some(v);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(args)
}

fn main() -> std::process::ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("oxivirtd: {e:#}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    oxivirt_controller::client::run_to_exit("oxivirtd", run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("data dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("data dir {}", dir.display()))?;
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "oxivirtd: WARNING: listening on {}, not loopback: the API is reachable from other machines (client certificates are still required)",
            args.listen
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let addr = listener.local_addr().context("listen address")?;

    let mut names = vec![addr.ip().to_string()];
    for n in ["127.0.0.1", "localhost"] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    let pki = Pki::load_or_create(&dir.join("pki"), &names).context("certificates")?;
    let tls = pki.server_config().context("TLS")?;
    let store_path = dir.join("store.redb");
    let store = oxivirt_store::Store::open(&store_path)
        .with_context(|| format!("store {}", store_path.display()))?;
    let server = format!("https://{addr}");
    let api = Api::new(store, server.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("initialise the API")?
        // The launchers' state dirs (docs/lifecycle.md), for pause, unpause and console.
        .with_launchers_root(dir.join("launchers"));
    let kubeconfig = dir.join("kubeconfig");
    write_private(&kubeconfig, pki.kubeconfig(&server).as_bytes())
        .with_context(|| format!("kubeconfig {}", kubeconfig.display()))?;
    println!(
        "oxivirtd: serving the API on {server}; kubeconfig: {}",
        kubeconfig.display()
    );

    // The controllers and the pod runtime speak to this API through the kubeconfig just
    // written, exactly as they would to a cluster's.
    let api_only = args.api_only;
    let controllers = {
        let kubeconfig = kubeconfig.clone();
        let node_name = args.node.node_name.clone();
        let off = api_only || args.no_controllers;
        tokio::spawn(async move {
            if off {
                return;
            }
            match oxivirt_pod_runtime::client_from_kubeconfig(&kubeconfig).await {
                Ok(c) => {
                    oxivirt_controller::run(
                        c,
                        oxivirt_controller::Config {
                            placement: oxivirt_controller::plan::Placement::Node(node_name),
                        },
                    )
                    .await
                }
                Err(e) => eprintln!("oxivirtd: the controllers cannot reach the API: {e}"),
            }
        })
    };

    // The pod runtime (crates/pod-runtime), on the API through the kubeconfig just written.
    let client = oxivirt_pod_runtime::client_from_kubeconfig(&kubeconfig)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the pod runtime's API client")?;
    let node = oxivirt_pod_runtime::Config {
        node_name: args.node.node_name,
        data_dir: dir.clone(),
        cni_conf_dir: args.node.cni_conf_dir,
        cni_bin_dir: args.node.cni_bin_dir,
        registry_mirrors: args.node.registry_mirrors,
        launcher: args.node.launcher,
        accel: args.node.accel,
    };
    let node = async move {
        if api_only {
            return std::future::pending::<()>().await;
        }
        if let Err(e) = oxivirt_pod_runtime::run(node, client).await {
            eprintln!(
                "oxivirtd: the pod runtime stopped: {}",
                oxivirt_pod_runtime::error::chain(&e)
            );
        }
        // The API keeps serving without it.
        std::future::pending::<()>().await
    };

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    tokio::select! {
        _ = oxivirt_apiserver::server::serve(listener, tls, api) => {}
        _ = node => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    controllers.abort();
    Ok(())
}
