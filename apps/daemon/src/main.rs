//! `oxivirtd`: serves the Kubernetes API for VMs on one machine (see
//! `oxivirt_apiserver`), over TLS with certificates it makes on first start, from the
//! embedded store in its data directory, and writes the admin kubeconfig beside them.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use oxivirt_apiserver::pki::{write_private, Pki};
use oxivirt_apiserver::Api;

const USAGE: &str = "usage: oxivirtd [--data-dir DIR] [--listen ADDR:PORT]\n\n  --data-dir DIR      where the store, certificates and kubeconfig live (default /var/lib/oxivirt)\n  --listen ADDR:PORT  the API's address (default 127.0.0.1:6444; port 0 picks a free one)\n  --api-only          serve the API alone: no controllers, no pod runtime";

struct Args {
    data_dir: PathBuf,
    listen: SocketAddr,
    /// Serve the API alone (no controllers, no pod runtime), as a bare kube-apiserver.
    api_only: bool,
}

fn parse(mut it: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut args = Args {
        data_dir: PathBuf::from("/var/lib/oxivirt"),
        listen: SocketAddr::from(([127, 0, 0, 1], 6444)),
        api_only: false,
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
            "--listen" => {
                let v = value()?;
                args.listen = v.parse().with_context(|| {
                    format!("--listen {v:?}: expected ADDR:PORT, e.g. 127.0.0.1:6444")
                })?;
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
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxivirtd: start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxivirtd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
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

    let node_name = node_name();
    let controllers = {
        let kubeconfig = kubeconfig.clone();
        let api_only = args.api_only;
        tokio::spawn(async move {
            if api_only {
                return;
            }
            match client(&kubeconfig).await {
                Ok(c) => oxivirt_controller::run(c, oxivirt_controller::Config { node_name }).await,
                Err(e) => eprintln!("oxivirtd: the controllers cannot reach the API: {e:#}"),
            }
        })
    };

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    tokio::select! {
        _ = oxivirt_apiserver::server::serve(listener, tls, api) => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    controllers.abort();
    Ok(())
}

/// This machine's name, as the node launcher pods are bound to.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A kube-rs client on this daemon's own API, through the admin kubeconfig: the
/// controllers speak to it exactly as they would to a cluster.
async fn client(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("read {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("kubeconfig")?;
    kube::Client::try_from(config).context("API client")
}
