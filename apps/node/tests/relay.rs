//! `oxivirt-node relay` as the DaemonSet runs it, on loopback: it waits for the mounted
//! Secret's files, serves only clients of the CA in them, and takes a renewed certificate
//! (oxivirt-api made its CA again and rewrote the Secret) for new connections without a
//! restart. The files are written here as the kubelet fills the Secret volume.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use oxivirt_apiserver::pki::{Ca, Issued, Usage};
use oxivirt_apiserver::relay::SERVER_NAME;
use oxivirt_testkit::cleanup::{OwnedChild, TempDir};

fn write_secret(dir: &Path, ca: &Ca) {
    let cert = ca
        .issue(SERVER_NAME, &[SERVER_NAME.to_string()], Usage::Server)
        .expect("server cert");
    // As the kubelet updates a Secret volume: every file at once (a rename here).
    let tmp = dir.with_extension("new");
    std::fs::create_dir_all(&tmp).expect("tmp");
    std::fs::write(tmp.join("tls.crt"), &cert.cert_pem).expect("crt");
    std::fs::write(tmp.join("tls.key"), &cert.key_pem).expect("key");
    std::fs::write(tmp.join("ca.crt"), &ca.cert_pem).expect("ca");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir).expect("swap");
}

/// Whether `client` (a certificate of some CA) gets the relay's /healthz, verifying the
/// relay against `ca`.
fn healthy(files: &Path, port: u16, ca: &Ca, client: &Issued, tag: &str) -> bool {
    let (crt, key, cacrt) = (
        files.join(format!("{tag}.crt")),
        files.join(format!("{tag}.key")),
        files.join(format!("{tag}-ca.crt")),
    );
    std::fs::write(&crt, &client.cert_pem).expect("w");
    std::fs::write(&key, &client.key_pem).expect("w");
    std::fs::write(&cacrt, &ca.cert_pem).expect("w");
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--resolve", &format!("{SERVER_NAME}:{port}:127.0.0.1")])
        .arg("--cacert")
        .arg(&cacrt)
        .arg("--cert")
        .arg(&crt)
        .arg("--key")
        .arg(&key)
        .arg(format!("https://{SERVER_NAME}:{port}/healthz"))
        .output()
        .expect("curl");
    out.status.success() && out.stdout == b"200"
}

#[test]
fn waits_for_its_certificate_and_takes_a_renewed_one() {
    if oxivirt_testkit::which("curl").is_none() {
        oxivirt_testkit::skip(
            "waits_for_its_certificate_and_takes_a_renewed_one",
            "curl is not installed (scripts/deps.sh installs it)",
        );
        return;
    }
    let tmp = TempDir::new("relay").expect("tmp");
    let (tls, files, root) = (
        tmp.path().join("tls"),
        tmp.path().join("files"),
        tmp.path().join("launchers"),
    );
    std::fs::create_dir_all(&files).expect("files");
    std::fs::create_dir_all(&root).expect("root");
    let mut relay = OwnedChild::spawn(
        Command::new(common::BIN)
            .args(["relay", "--listen", "127.0.0.1:0"])
            .arg("--tls-dir")
            .arg(&tls)
            .arg("--state-root")
            .arg(&root)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .expect("relay");
    // No Secret yet: it waits, serving nothing.
    std::thread::sleep(Duration::from_millis(300));
    assert!(relay.child.try_wait().expect("wait").is_none(), "it waits");
    let first = Ca::generate("first-ca").expect("CA");
    write_secret(&tls, &first);
    let mut line = String::new();
    BufReader::new(relay.child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let client_of = |ca: &Ca| ca.issue("oxivirt-api", &[], Usage::Client).expect("client");
    assert!(healthy(&files, port, &first, &client_of(&first), "a"));

    // Renewed: a new CA's certificate and clients; the old CA's clients are refused.
    let second = Ca::generate("second-ca").expect("CA");
    write_secret(&tls, &second);
    assert!(
        oxivirt_testkit::eventually(Duration::from_secs(10), || healthy(
            &files,
            port,
            &second,
            &client_of(&second),
            "b"
        )),
        "the renewed certificate was not taken"
    );
    assert!(!healthy(&files, port, &first, &client_of(&first), "c"));
}

/// The DaemonSet's `relay` container: a command line this binary takes, the certificate
/// from where the Secret is mounted, the launchers' dir from where it is mounted.
#[test]
fn the_daemonset_command_line_is_accepted() {
    let (c, args) = common::daemonset_container("relay", "relay");
    let after = |flag: &str| -> String {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| panic!("{flag} in {args:?}"))
    };
    let mounts = common::mount_paths(&c);
    assert!(mounts.contains(&after("--tls-dir")), "{mounts:?}");
    assert!(mounts.contains(&after("--state-root")), "{mounts:?}");
}
