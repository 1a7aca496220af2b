//! A real `oxivirtd` for a test: its own data dir, a free loopback port (or the one asked
//! for), killed with the test, started once it says it serves (its kubeconfig and
//! certificates are written by then).

use crate::cleanup::OwnedChild;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The URL in oxivirtd's first line (`… serving https://127.0.0.1:<port>; …`).
pub fn served_url(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .trim_end_matches(';')
        .to_string()
}

pub struct Oxivirtd {
    pub child: OwnedChild,
    /// `https://127.0.0.1:<port>`, from its ready line.
    pub url: String,
    pub data: PathBuf,
}

impl Oxivirtd {
    /// Starts `bin` (an `oxivirtd`) on `data`, listening on `listen`, with `extra`
    /// arguments (`--api-only`, say), and waits for its first line.
    pub fn start(bin: &Path, data: &Path, listen: &str, extra: &[&str]) -> Self {
        let mut child = OwnedChild::spawn(
            Command::new(bin)
                .arg("--data-dir")
                .arg(data)
                .args(["--listen", listen])
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .expect("start oxivirtd");
        let stdout = child.child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let url = served_url(&line);
        Self {
            child,
            url,
            data: data.to_path_buf(),
        }
    }

    /// The admin kubeconfig it wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data.join("kubeconfig")
    }

    /// A file of its PKI (`ca.crt`, `admin.crt`, `admin.key`).
    pub fn pki(&self, file: &str) -> PathBuf {
        self.data.join("pki").join(file)
    }

    /// A request as its admin (curl with its certificates): the status and the JSON body
    /// (Null when there is none). PATCH bodies are merge patches.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let content_type = if method == "PATCH" {
            "Content-Type: application/merge-patch+json"
        } else {
            "Content-Type: application/json"
        };
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .args(["-H", content_type])
            .arg("--cacert")
            .arg(self.pki("ca.crt"))
            .arg("--cert")
            .arg(self.pki("admin.crt"))
            .arg("--key")
            .arg(self.pki("admin.key"));
        if let Some(b) = body {
            cmd.args(["--data-binary", &b.to_string()]);
        }
        let out = cmd
            .arg(format!("{}{path}", self.url))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// [`Self::call`] that must succeed (2xx): its JSON body.
    pub fn ok(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        let (code, v) = self.call(method, path, body);
        assert!((200..300).contains(&code), "{method} {path}: {code} {v}");
        v
    }
}
