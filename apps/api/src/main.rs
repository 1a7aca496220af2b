//! `oxivirt-api`: virtctl's `subresources.kubevirt.io/v1` on a cluster, as KubeVirt's
//! virt-api serves it: an aggregated API server behind the APIService
//! `v1.subresources.kubevirt.io`. start/stop/restart write the VM through the cluster's
//! API; pause/unpause and the console reach the launcher through the relay of the node
//! agent on its node (`oxivirt_apiserver::subresources::cluster`).
//!
//! At start it makes (or, as a second replica, reads) its CA in a Secret, issues itself a
//! serving certificate for its Service and a client certificate for the relays, writes
//! the relays' serving certificate into the Secret the DaemonSet mounts, and puts the CA
//! into the APIService's `caBundle` (so the cluster's API server verifies it). Its callers
//! are the front proxy of `kube-system/extension-apiserver-authentication`.

mod certs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use oxivirt_apiserver::pki::{self, Usage};
use oxivirt_apiserver::relay::{self, RelayClient};
use oxivirt_apiserver::subresources::cluster::Cluster;

#[derive(Debug, Parser)]
#[command(name = "oxivirt-api", version, about)]
struct Args {
    /// Where to serve (HTTPS).
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// The API [default: in-cluster, else $KUBECONFIG or ~/.kube/config].
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// oxivirt's namespace: its Secrets, Service and node agents.
    #[arg(long, env = "POD_NAMESPACE", default_value = "oxivirt")]
    namespace: String,
    /// The Service in front of this server (its serving certificate names it).
    #[arg(long, default_value = "oxivirt-api")]
    service_name: String,
    /// The APIService whose caBundle is set to this server's CA ("" leaves it alone).
    #[arg(long, default_value = "v1.subresources.kubevirt.io")]
    apiservice: String,
    /// The CA of the front proxy's client certificates [default: from the ConfigMap
    /// kube-system/extension-apiserver-authentication].
    #[arg(long)]
    requestheader_client_ca_file: Option<PathBuf>,
    /// The common names a front-proxy certificate may have, comma-separated (with
    /// --requestheader-client-ca-file; empty takes any the CA signed).
    #[arg(long, value_delimiter = ',')]
    requestheader_allowed_names: Vec<String>,
    /// How often the APIService's caBundle is checked (and set again when missing), in
    /// milliseconds.
    #[arg(long, default_value_t = 30_000)]
    resync_ms: u64,
    /// The Secret (in --namespace) that keeps this server's CA; made on first start.
    #[arg(long, default_value = "oxivirt-api-pki")]
    pki_secret: String,
    /// The Secret (in --namespace) with the node relays' serving certificate, which the
    /// node DaemonSet mounts; made on first start.
    #[arg(long, default_value = "oxivirt-node-relay-tls")]
    relay_secret: String,
    /// The label selector of the node agent pods (in --namespace).
    #[arg(
        long,
        default_value = "app.kubernetes.io/name=oxivirt,app.kubernetes.io/component=oxivirt-node"
    )]
    relay_selector: String,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = oxivirt_controller::client::client(args.kubeconfig.as_deref()).await?;
    let ns = &args.namespace;
    let ca = certs::cluster_ca(&client, ns, &args.pki_secret).await?;
    certs::relay_secret(&client, ns, &args.relay_secret, &ca).await?;

    let svc = &args.service_name;
    let names = vec![
        svc.clone(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
    ];
    let serving = ca
        .issue(svc, &names, Usage::Server)
        .context("the serving certificate")?;
    let front = certs::front_proxy(
        &client,
        args.requestheader_client_ca_file.as_deref(),
        &args.requestheader_allowed_names,
    )
    .await?;
    let tls = pki::tls_server(&serving, &front.ca_pem, false, &[b"h2", b"http/1.1"])
        .context("the serving TLS configuration")?;
    let relay_cert = ca
        .issue(svc, &[], Usage::Client)
        .context("the relay client certificate")?;
    let relay_tls = pki::tls_client(&ca.cert_pem, &relay_cert).context("the relay TLS client")?;
    let backend = Cluster::new(
        client.clone(),
        RelayClient::new(relay_tls),
        ns.clone(),
        args.relay_selector.clone(),
    );

    if !args.apiservice.is_empty() {
        tokio::spawn(certs::keep_ca_bundle(
            client.clone(),
            args.apiservice.clone(),
            ca.cert_pem.clone(),
            std::time::Duration::from_millis(args.resync_ms.max(100)),
        ));
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let addr = listener.local_addr().context("the listening address")?;
    // The line tests and operators read the address from (port 0 picks one).
    println!("oxivirt-api: serving subresources.kubevirt.io/v1 on https://{addr}");
    eprintln!(
        "oxivirt-api: front proxy {}, node relays by {:?} in {ns} (server name {})",
        if front.proxy.allowed_names.is_empty() {
            "any certificate of the requestheader CA".to_string()
        } else {
            format!("CN in {:?}", front.proxy.allowed_names)
        },
        args.relay_selector,
        relay::SERVER_NAME
    );
    let serve = oxivirt_apiserver::server::serve_aggregated(
        listener,
        tls,
        Arc::new(backend),
        Arc::new(front.proxy),
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    tokio::select! {
        () = serve => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    oxivirt_controller::client::run_to_exit("oxivirt-api", run(args))
}
