//! A real `oxivirtd` for a test: its own data dir, a free loopback port, killed with the
//! test; `curl` with the admin's client certificate, and the real `kubectl`.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use oxivirt_testkit::cleanup::{OwnedChild, TempDir};

pub fn daemon_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_oxivirtd"))
}

/// The kubectl the machines carry (1.27–1.33 beside the default one), if present.
pub fn kubectl() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/lib/google-cloud-sdk/bin/kubectl");
    p.is_file().then_some(p)
}

pub struct Daemon {
    pub child: OwnedChild,
    pub url: String,
    pub data: PathBuf,
}

impl Daemon {
    /// Starts `oxivirtd` on `data` (port 0: the kernel picks), waiting for its ready line.
    pub fn start(data: &Path) -> Daemon {
        Self::start_on(data, "127.0.0.1:0")
    }

    pub fn start_on(data: &Path, listen: &str) -> Daemon {
        let mut child = OwnedChild::spawn(
            Command::new(daemon_bin())
                .args(["--data-dir"])
                .arg(data)
                .args(["--listen", listen])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .expect("start oxivirtd");
        let stdout = child.child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .trim_end_matches(';')
            .to_string();
        Daemon {
            child,
            url,
            data: data.to_path_buf(),
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data.join("kubeconfig")
    }

    pub fn pki(&self, f: &str) -> String {
        self.data.join("pki").join(f).display().to_string()
    }

    /// `curl` as the admin: returns (HTTP status, body).
    pub fn curl(&self, method: &str, path: &str, body: Option<&str>, ctype: &str) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .args(["--cacert", &self.pki("ca.crt")])
            .args(["--cert", &self.pki("admin.crt"), "--key", &self.pki("admin.key")])
            .args(["-H", &format!("Content-Type: {ctype}")]);
        if let Some(b) = body {
            cmd.args(["--data-binary", b]);
        }
        cmd.arg(format!("{}{path}", self.url));
        split_status(cmd.output().expect("curl"))
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let (code, body) = self.curl("GET", path, None, "application/json");
        (code, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        let k = kubectl().expect("kubectl");
        Command::new(k)
            .env("KUBECONFIG", self.kubeconfig())
            .args(args)
            .output()
            .expect("kubectl")
    }

    /// SIGKILL and wait.
    pub fn kill9(&mut self) {
        let _ = self.child.child.kill();
        let _ = self.child.child.wait();
    }
}

pub fn split_status(out: Output) -> (u16, String) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn tmp(what: &str) -> TempDir {
    TempDir::new(what).expect("temp dir")
}

pub fn seed(file: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed")).join(file)
}

/// The seed's NAD with its unclosed quote closed.
pub fn fixed_nad(dir: &Path) -> PathBuf {
    let s = std::fs::read_to_string(seed("multus-bridge.yaml")).expect("seed NAD");
    let p = dir.join("multus-bridge.yaml");
    std::fs::write(&p, format!("{}'\n", s.trim_end())).expect("write");
    p
}

pub const WAIT: Duration = Duration::from_secs(10);
