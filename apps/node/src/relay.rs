//! `oxivirt-node relay`: the console and control relay of this node's launchers for
//! oxivirt-api (`oxivirt_apiserver::relay`), over mutual TLS with the certificate
//! oxivirt-api writes into the Secret the DaemonSet mounts. The node may start before that
//! Secret exists: the relay waits for its files, and takes a renewed certificate for new
//! connections.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to serve (HTTPS, mutual TLS).
    #[arg(long, default_value = "0.0.0.0:8186")]
    listen: SocketAddr,
    /// The mounted Secret: tls.crt, tls.key and ca.crt (the CA of allowed clients).
    #[arg(long, default_value = "/etc/oxivirt/relay")]
    tls_dir: PathBuf,
    /// The host dir of the launchers' state dirs, as mounted here.
    #[arg(long, default_value = "/var/run/oxivirt/launchers")]
    state_root: PathBuf,
}

/// How often the certificate's files are looked at.
const POLL: Duration = Duration::from_secs(2);

/// The three files' contents, to see a renewal by (the kubelet swaps a Secret volume's
/// files at once).
fn tls_files(dir: &Path) -> Vec<Option<Vec<u8>>> {
    ["tls.crt", "tls.key", "ca.crt"]
        .iter()
        .map(|n| std::fs::read(dir.join(n)).ok())
        .collect()
}

/// The relay's certificate, once all three files are there.
fn read_tls(dir: &Path) -> Option<(oxivirt_apiserver::pki::Issued, String)> {
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).ok();
    let (cert_pem, key_pem, ca) = (read("tls.crt")?, read("tls.key")?, read("ca.crt")?);
    Some((oxivirt_apiserver::pki::Issued { cert_pem, key_pem }, ca))
}

pub fn run(args: &Args) -> Result<()> {
    crate::until_stopped(async {
        let mut waited = false;
        let (mut files, cert, ca) = loop {
            if let Some((cert, ca)) = read_tls(&args.tls_dir) {
                break (tls_files(&args.tls_dir), cert, ca);
            }
            if !waited {
                eprintln!(
                        "oxivirt-node relay: waiting for tls.crt, tls.key and ca.crt in {} (oxivirt-api makes them)",
                        args.tls_dir.display()
                    );
                waited = true;
            }
            tokio::time::sleep(POLL).await;
        };
        let config = |cert: &oxivirt_apiserver::pki::Issued, ca: &str| {
            oxivirt_apiserver::pki::tls_server(cert, ca, true, &[b"http/1.1"])
                .with_context(|| format!("the certificate in {}", args.tls_dir.display()))
        };
        let (tx, rx) = tokio::sync::watch::channel(config(&cert, &ca)?);
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listen on {}", args.listen))?;
        let addr = listener.local_addr().context("the listening address")?;
        println!("oxivirt-node relay: serving on {addr}");
        let serve = oxivirt_apiserver::relay::serve(listener, rx, args.state_root.clone());
        // The mounted Secret changes when oxivirt-api renews it (its CA made again):
        // new connections take the new certificate.
        let reload = async {
            loop {
                tokio::time::sleep(POLL).await;
                let now = tls_files(&args.tls_dir);
                if now == files {
                    continue;
                }
                files = now;
                match read_tls(&args.tls_dir).map(|(c, ca)| config(&c, &ca)) {
                        Some(Ok(cfg)) => {
                            let _ = tx.send(cfg);
                            eprintln!("oxivirt-node relay: took the renewed certificate");
                        }
                        Some(Err(e)) => eprintln!(
                            "oxivirt-node relay: the renewed certificate is unusable, the old one stays: {e:#}"
                        ),
                        None => {}
                    }
            }
        };
        tokio::select! {
            () = serve => {}
            () = reload => {}
        }
        anyhow::Ok(())
    })
}
