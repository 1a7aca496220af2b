//! The `multus` meta plugin entry: picks the object source and runs the command.

use oxivirt_app_multus::error::to_cni;
use oxivirt_cni_spec::plugin::{require_check_support, Call};
use oxivirt_cni_spec::Command;
use oxivirt_ipam::plugin::valid_attachments;
use oxivirt_multus_core::config::Config;
use oxivirt_multus_core::kube::LazyKube;
use oxivirt_multus_core::meta::Meta;
use oxivirt_multus_core::source::{ClusterSource, DirSource, Unconfigured};
use oxivirt_multus_core::{Error, Result};

/// How long one API request may take.
pub const API_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the config says pods and NADs come from: the embedded store's directory, the
/// API server (a kubeconfig, or in-cluster), or nowhere.
pub enum SourceKind {
    Store(std::path::PathBuf),
    Kube(Option<std::path::PathBuf>),
    Unconfigured,
}

pub fn source_kind(cfg: &Config) -> SourceKind {
    if let Some(dir) = &cfg.multus.store {
        return SourceKind::Store(dir.clone());
    }
    if cfg.multus.kubeconfig.is_some() || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return SourceKind::Kube(cfg.multus.kubeconfig.clone());
    }
    SourceKind::Unconfigured
}

/// A fresh source for one call (the thin plugin: one process, one call).
fn source(cfg: &Config) -> Box<dyn ClusterSource> {
    match source_kind(cfg) {
        SourceKind::Store(dir) => Box::new(DirSource::new(dir)),
        SourceKind::Kube(kubeconfig) => Box::new(LazyKube::new(kubeconfig, API_TIMEOUT)),
        SourceKind::Unconfigured => Box::new(Unconfigured),
    }
}

/// Multus's logging switches: `logLevel` (panic < error < verbose < debug; default
/// error), `logFile` (appended to), `logToStderr` (default on). Never stdout.
fn log(cfg: &Config, level: &str, msg: &str) {
    let rank = |l: &str| match l {
        "panic" => 0,
        "verbose" => 2,
        "debug" => 3,
        _ => 1,
    };
    let wanted = cfg
        .multus
        .log_level
        .as_deref()
        .filter(|l| !l.is_empty())
        .unwrap_or("error");
    if rank(level) > rank(wanted) {
        return;
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let line = format!("{secs:.6} [{level}] {msg}\n");
    if let Some(path) = &cfg.multus.log_file {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
    if cfg.multus.log_to_stderr.unwrap_or(true) {
        eprint!("{line}");
    }
}

pub fn handle(call: Call<'_>) -> Result<Option<String>> {
    handle_with(call, &|cfg| source(cfg).into())
}

/// [`handle`] with the source chosen by `source` (the daemon hands out warm ones).
pub fn handle_with(
    call: Call<'_>,
    source: &dyn Fn(&Config) -> std::sync::Arc<dyn ClusterSource>,
) -> Result<Option<String>> {
    let cfg = Config::load(call.stdin)?;
    let what = format!(
        "{} container {} ifname {}",
        call.env.command.as_str(),
        call.env.container_id,
        call.env.ifname
    );
    log(&cfg, "verbose", &what);
    let src = source(&cfg);
    let r = run(&call, &cfg, src.as_ref());
    if let Err(e) = &r {
        log(&cfg, "error", &format!("{what}: {}", to_cni(e).msg));
    }
    r
}

fn run(call: &Call<'_>, cfg: &Config, src: &dyn ClusterSource) -> Result<Option<String>> {
    let meta = Meta {
        cfg,
        env: call.env,
        stdin: call.stdin,
        source: src,
        in_process: Some(crate::in_process),
    };
    match call.env.command {
        Command::Add => meta.add().map(Some),
        Command::Del => meta.del().map(|_| None),
        Command::Check => {
            require_check_support(cfg.version)?;
            meta.check().map(|_| None)
        }
        Command::Status => meta.status().map(|_| None),
        Command::Gc => {
            let valid = valid_attachments(call.stdin).map_err(|e| match e {
                oxivirt_ipam::Error::Spec(s) => Error::Spec(s),
                other => Error::Spec(oxivirt_cni_spec::Error::Field {
                    what: "GC config".into(),
                    field: "cni.dev/valid-attachments".into(),
                    reason: other.to_string(),
                }),
            })?;
            meta.gc(&valid).map(|_| None)
        }
        Command::Version => Ok(None),
    }
}

const AUTOCONF_USAGE: &str =
    "usage: oxivirt-multus multus-autoconf --conf-dir DIR (--kubeconfig FILE | --store DIR) \
[--cni-dir DIR] [--bin-dir DIR] [--thick-socket-dir DIR] [--remove]";

/// `oxivirt-multus multus-autoconf …`: writes (or with `--remove` deletes) `00-multus.conf`
/// around the first config in the runtime's config directory. Returns the exit code.
pub fn autoconf_command(args: Vec<String>) -> i32 {
    use oxivirt_multus_core::autoconf::{self, Backend};
    use std::path::PathBuf;
    let mut conf_dir = None;
    let mut backend = None;
    let mut cni_dir = PathBuf::from("/var/lib/cni/multus");
    let mut bin_dir = PathBuf::from("/opt/cni/bin");
    let mut remove = false;
    let mut thick_socket_dir = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let r = match a.as_str() {
            "--conf-dir" => value("--conf-dir").map(|v| conf_dir = Some(v)),
            "--kubeconfig" => value("--kubeconfig").map(|v| backend = Some(Backend::Kubeconfig(v))),
            "--store" => value("--store").map(|v| backend = Some(Backend::Store(v))),
            "--cni-dir" => value("--cni-dir").map(|v| cni_dir = v),
            "--bin-dir" => value("--bin-dir").map(|v| bin_dir = v),
            "--thick-socket-dir" => value("--thick-socket-dir").map(|v| thick_socket_dir = Some(v)),
            "--remove" => {
                remove = true;
                Ok(())
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(e) = r {
            eprintln!("multus-autoconf: {e}\n{AUTOCONF_USAGE}");
            return 2;
        }
    }
    let Some(dir) = conf_dir else {
        eprintln!("multus-autoconf: --conf-dir is required\n{AUTOCONF_USAGE}");
        return 2;
    };
    let result = if remove {
        autoconf::remove(&dir)
            .map(|_| format!("removed {}", dir.join(autoconf::FILE_NAME).display()))
    } else {
        match backend {
            Some(b) => autoconf::first_config(&dir)
                .and_then(|(_, conf)| {
                    let mut out = autoconf::wrap(&conf, &b, &dir, &cni_dir, &bin_dir);
                    if let Some(s) = &thick_socket_dir {
                        autoconf::thick(&mut out, s);
                    }
                    autoconf::write(&dir, &out)
                })
                .map(|p| format!("wrote {}", p.display())),
            None => {
                eprintln!("multus-autoconf: --kubeconfig or --store is required\n{AUTOCONF_USAGE}");
                return 2;
            }
        }
    };
    match result {
        Ok(msg) => {
            eprintln!("multus-autoconf: {msg}");
            0
        }
        Err(e) => {
            eprintln!("multus-autoconf: {}", to_cni(&e).msg);
            1
        }
    }
}
