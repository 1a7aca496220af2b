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
}
