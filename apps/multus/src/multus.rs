//! The `multus` meta plugin entry: picks the object source and runs the command.

use oxivirt_cni_spec::plugin::{require_check_support, Call};
use oxivirt_cni_spec::{CniError, Command};
use oxivirt_ipam::plugin::valid_attachments;
use oxivirt_multus_core::config::Config;
use oxivirt_multus_core::kube::KubeSource;
use oxivirt_multus_core::meta::Meta;
use oxivirt_multus_core::source::{
    ClusterSource, DirSource, NetworkAttachmentDefinition, Pod, SourceError,
};

/// Stands in where no backend is configured: every lookup is "unreachable", so ADD fails
/// with "try again later" and DEL/GC work from the cache alone.
struct Unavailable(String);

impl ClusterSource for Unavailable {
    fn pod(&self, _: &str, _: &str) -> Result<Pod, SourceError> {
        Err(SourceError::Unreachable(self.0.clone()))
    }
    fn network_attachment(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<NetworkAttachmentDefinition>, SourceError> {
        Err(SourceError::Unreachable(self.0.clone()))
    }
    fn set_network_status(&self, _: &str, _: &str, _: &str) -> Result<(), SourceError> {
        Err(SourceError::Unreachable(self.0.clone()))
    }
}

/// The Kubernetes backend, connected on first use: DEL and GC served from the cache
/// never pay for reading credentials or setting up TLS.
struct LazyKube {
    kubeconfig: Option<std::path::PathBuf>,
    cell: std::sync::OnceLock<Result<KubeSource, String>>,
}

impl LazyKube {
    fn get(&self) -> Result<&KubeSource, SourceError> {
        let r = self.cell.get_or_init(|| {
            let timeout = std::time::Duration::from_secs(10);
            let r = match &self.kubeconfig {
                Some(k) => KubeSource::from_kubeconfig(k, timeout),
                None => KubeSource::in_cluster(timeout),
            }
            .map_err(|e| e.to_string());
            oxivirt_cni_spec::trace::mark("multus: API client set up");
            r
        });
        r.as_ref().map_err(|e| SourceError::Unreachable(e.clone()))
    }
}

impl ClusterSource for LazyKube {
    fn pod(&self, ns: &str, name: &str) -> Result<Pod, SourceError> {
        self.get()?.pod(ns, name)
    }
    fn network_attachment(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<NetworkAttachmentDefinition>, SourceError> {
        self.get()?.network_attachment(ns, name)
    }
    fn set_network_status(&self, ns: &str, name: &str, status: &str) -> Result<(), SourceError> {
        self.get()?.set_network_status(ns, name, status)
    }
}

fn source(cfg: &Config) -> Box<dyn ClusterSource> {
    if let Some(dir) = &cfg.multus.store {
        return Box::new(DirSource::new(dir));
    }
    if cfg.multus.kubeconfig.is_some() || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Box::new(LazyKube {
            kubeconfig: cfg.multus.kubeconfig.clone(),
            cell: Default::default(),
        });
    }
    Box::new(Unavailable(
        "no object source configured (`oxivirtStore`, `kubeconfig`, or running in a cluster)"
            .into(),
    ))
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

pub fn handle(call: Call<'_>) -> Result<Option<String>, CniError> {
    let cfg = Config::load(call.stdin)?;
    let what = format!(
        "{} container {} ifname {}",
        call.env.command.as_str(),
        call.env.container_id,
        call.env.ifname
    );
    log(&cfg, "verbose", &what);
    let r = run(&call, &cfg);
    if let Err(e) = &r {
        log(&cfg, "error", &format!("{what}: {e}"));
    }
    r
}

fn run(call: &Call<'_>, cfg: &Config) -> Result<Option<String>, CniError> {
    let src = source(cfg);
    let meta = Meta {
        cfg,
        env: call.env,
        stdin: call.stdin,
        source: src.as_ref(),
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
        Command::Gc => meta.gc(&valid_attachments(call.stdin)?).map(|_| None),
        Command::Version => Ok(None),
    }
}

const AUTOCONF_USAGE: &str =
    "usage: oxivirt-multus multus-autoconf --conf-dir DIR (--kubeconfig FILE | --store DIR) \
[--cni-dir DIR] [--bin-dir DIR] [--remove]";

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
            Some(b) => autoconf::generate(&dir, &b, &cni_dir, &bin_dir)
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
            eprintln!("multus-autoconf: {e}");
            1
        }
    }
}
