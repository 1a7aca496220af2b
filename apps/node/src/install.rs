//! `oxivirt-node install-cni`: the node's CNI set-up for Kubernetes mode.
//!
//! What a cluster expects, and so what is installed (under the host's CNI bin dir):
//!
//! - `oxivirt-cni` and `oxivirt-multus`, under those names only. The host's own `bridge`,
//!   `host-local`, `static`, `macvlan` (the CNI reference plugins, installed with the
//!   cluster) are never replaced by links to `oxivirt-cni`: every other CNI user of the node
//!   (the default network itself, NetworkAttachmentDefinitions of other workloads) relies on
//!   them, and NADs name them by those names, so the meta plugin finds them where they are.
//! - `multus`, a link to `oxivirt-multus`: the type `00-multus.conf` names (the runtime
//!   runs the file named by `type`, without arguments, so the meta plugin must be called
//!   `multus`), as Multus's own DaemonSet installs its binary. oxivirt runs in place of
//!   Multus, so a `multus` that is not our link (Multus installed on this node) is left alone
//!   and reported: two meta plugins cannot both own `00-multus.conf`.
//!
//! Then `<conf dir>/00-multus.conf` is written around the first config of the conf dir (the
//! cluster's default network; Multus's auto mode, [`autoconf`]), naming a kubeconfig built
//! from the pod's service account (token, `ca.crt`, `KUBERNETES_SERVICE_HOST`/`_PORT`),
//! mode 0600. Both are kept current: the token file and the conf dir are polled, the
//! kubeconfig is rewritten when the token rotates, the multus config when the default network
//! changes. With no default network yet, nothing is written (a multus config wrapping
//! nothing would fail every pod); it is written once one appears.
//!
//! On SIGTERM (or SIGINT) `00-multus.conf` and the kubeconfig are removed, so pods are never
//! stuck behind a meta plugin whose agent is gone (Multus's known failure, fixed there by
//! `--cleanup-config-on-exit`); the runtime falls back to the default network's own config.
//! The binaries stay: a pod attached through the meta plugin still needs `multus` for its
//! CNI DEL when it is deleted later (without it, it would be stuck terminating — the same
//! failure the other way round), a plugin no config names is never run, and the next agent
//! (a rolling update) installs the same files again.
//!
//! The config names the paths as the host sees them (`--host-conf-dir`, `--host-bin-dir`):
//! this runs in a container with the host's dirs mounted under `/host`.

use anyhow::{bail, Context, Result};
use oxivirt_multus_core::autoconf::{self, Backend};
use serde_json::Value;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The plugins installed, by file name in `--source-dir` and the bin dir.
const BINARIES: [&str; 2] = ["oxivirt-cni", "oxivirt-multus"];
/// The meta plugin's name for the runtime, a link to `oxivirt-multus`.
const MULTUS_LINK: &str = "multus";
/// The thick plugin's shim (Multus's name for it), a link to `oxivirt-multus` too.
const SHIM_LINK: &str = "multus-shim";
const MULTUS_TARGET: &str = "oxivirt-multus";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The host's CNI bin dir, as mounted here.
    #[arg(long)]
    bin_dir: PathBuf,
    /// The host's CNI conf dir, as mounted here.
    #[arg(long)]
    conf_dir: PathBuf,
    /// Where `oxivirt-cni` and `oxivirt-multus` are (the image's).
    #[arg(long, default_value = "/usr/bin")]
    source_dir: PathBuf,
    /// The pod's service account (`token`, `ca.crt`).
    #[arg(long, default_value = "/var/run/secrets/kubernetes.io/serviceaccount")]
    service_account_dir: PathBuf,
    /// Where the kubeconfig is written [default: <conf dir>/oxivirt.d/oxivirt.kubeconfig].
    #[arg(long)]
    kubeconfig_path: Option<PathBuf>,
    /// The conf dir as the host (the runtime) sees it.
    #[arg(long, default_value = "/etc/cni/net.d")]
    host_conf_dir: PathBuf,
    /// The bin dir as the host sees it.
    #[arg(long, default_value = "/opt/cni/bin")]
    host_bin_dir: PathBuf,
    /// The meta plugin's cache dir on the host.
    #[arg(long, default_value = "/var/lib/cni/multus")]
    cni_dir: PathBuf,
    /// Write the thick plugin's config: the runtime runs `multus-shim`, which hands each
    /// call to `oxivirt-multus multus-daemon` on DIR/multus.sock (DIR as the host sees
    /// it). Without it, the thin plugin's (`multus`, one process per call).
    #[arg(long)]
    thick_socket_dir: Option<PathBuf>,
    /// Install once and exit (no watching, nothing removed).
    #[arg(long)]
    once: bool,
    /// How often the token and the conf dir are checked, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    poll_ms: u64,
}

/// A file of ours' name that is not ours: left alone, and fatal.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}; it is left alone (remove Multus from this node first: oxivirt-multus replaces it)", path.display())]
struct Foreign {
    path: PathBuf,
    why: String,
}

/// The resolved paths.
#[derive(Debug)]
struct Paths<'a> {
    args: &'a Args,
    kubeconfig: PathBuf,
    /// The kubeconfig as the host sees it (what the multus config names).
    host_kubeconfig: PathBuf,
    multus_conf: PathBuf,
}

impl<'a> Paths<'a> {
    fn new(args: &'a Args) -> Self {
        let kubeconfig = args
            .kubeconfig_path
            .clone()
            .unwrap_or_else(|| args.conf_dir.join("oxivirt.d").join("oxivirt.kubeconfig"));
        let host_kubeconfig = match kubeconfig.strip_prefix(&args.conf_dir) {
            Ok(rest) => args.host_conf_dir.join(rest),
            Err(_) => kubeconfig.clone(),
        };
        Self {
            args,
            multus_conf: args.conf_dir.join(autoconf::FILE_NAME),
            kubeconfig,
            host_kubeconfig,
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    // Blocked before anything is written, so a SIGTERM mid-install is seen by the loop.
    let signals = Signals::block()?;
    let paths = Paths::new(args);
    check_multus_conf(&paths)?;
    install_binaries(args)?;
    sync(&paths)?;
    if args.once {
        return Ok(());
    }
    let poll = Duration::from_millis(args.poll_ms.max(10));
    loop {
        if let Some(sig) = signals.wait(poll) {
            eprintln!("oxivirt-node install-cni: signal {sig}: removing the multus config");
            return uninstall(&paths);
        }
        if let Err(e) = sync(&paths) {
            if e.downcast_ref::<Foreign>().is_some() {
                return Err(e);
            }
            // Transient (a config half-written by another agent, a token mid-rotation):
            // the next poll tries again.
            eprintln!("oxivirt-node install-cni: {e:#} (retrying)");
        }
    }
}

/// Brings the kubeconfig and the multus config up to date.
fn sync(paths: &Paths<'_>) -> Result<()> {
    let kubeconfig = render_kubeconfig(&paths.args.service_account_dir)?;
    if write_if_changed(&paths.kubeconfig, kubeconfig.as_bytes(), 0o600)? {
        eprintln!(
            "oxivirt-node install-cni: wrote {}",
            paths.kubeconfig.display()
        );
    }
    sync_multus_conf(paths)
}

fn sync_multus_conf(paths: &Paths<'_>) -> Result<()> {
    let args = paths.args;
    let ours = check_multus_conf(paths)?;
    let conf = match autoconf::first_config(&args.conf_dir) {
        Ok((_, conf)) => conf,
        Err(oxivirt_multus_core::Error::NoNetworkConfig { .. }) => {
            // No default network (yet, or any more): a multus config would wrap nothing.
            if ours.is_some() {
                remove_file(&paths.multus_conf)?;
                eprintln!(
                    "oxivirt-node install-cni: no default network in {}: removed {}",
                    args.conf_dir.display(),
                    paths.multus_conf.display()
                );
            }
            return Ok(());
        }
        Err(e) => return Err(e).context("reading the default network"),
    };
    let mut out = autoconf::wrap(
        &conf,
        &Backend::Kubeconfig(paths.host_kubeconfig.clone()),
        &args.host_conf_dir,
        &args.cni_dir,
        &args.host_bin_dir,
    );
    if let Some(dir) = &args.thick_socket_dir {
        autoconf::thick(&mut out, dir);
    }
    // As `autoconf::write` writes it.
    if ours.as_deref() == Some(format!("{out:#}").as_bytes()) {
        return Ok(());
    }
    let path = autoconf::write(&args.conf_dir, &out)?;
    eprintln!(
        "oxivirt-node install-cni: wrote {} around {:?}",
        path.display(),
        conf.get("name").and_then(Value::as_str).unwrap_or_default()
    );
    Ok(())
}

/// The current `00-multus.conf` if it is ours (its contents), `None` if there is none; an
/// error if another agent (Multus) wrote it. Ours names our kubeconfig.
fn check_multus_conf(paths: &Paths<'_>) -> Result<Option<Vec<u8>>> {
    let path = &paths.multus_conf;
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let named = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
        v.get("kubeconfig")
            .and_then(Value::as_str)
            .map(PathBuf::from)
    });
    if named.as_deref() != Some(paths.host_kubeconfig.as_path()) {
        return Err(Foreign {
            path: path.clone(),
            why: format!(
                "not written by oxivirt-node (it does not name the kubeconfig {})",
                paths.host_kubeconfig.display()
            ),
        }
        .into());
    }
    Ok(Some(bytes))
}

/// Copies the plugins in (each a temporary file renamed into place: a plugin being run is
/// never half-written) and links `multus`.
fn install_binaries(args: &Args) -> Result<()> {
    for name in [MULTUS_LINK, SHIM_LINK] {
        check_link(&args.bin_dir.join(name))?;
    }
    fs::create_dir_all(&args.bin_dir)
        .with_context(|| format!("creating {}", args.bin_dir.display()))?;
    for name in BINARIES {
        let src = args.source_dir.join(name);
        let bytes = fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
        if write_if_changed(&args.bin_dir.join(name), &bytes, 0o755)? {
            eprintln!(
                "oxivirt-node install-cni: installed {}",
                args.bin_dir.join(name).display()
            );
        }
    }
    for name in [MULTUS_LINK, SHIM_LINK] {
        link_if_missing(&args.bin_dir, name)?;
    }
    Ok(())
}

/// Fails when `link` is something of another agent (Multus's binary of that name).
fn check_link(link: &Path) -> Result<()> {
    let ours = match fs::read_link(link) {
        Ok(target) => target == Path::new(MULTUS_TARGET),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        // Not a link: a binary (Multus's).
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => false,
        Err(e) => return Err(e).with_context(|| format!("reading {}", link.display())),
    };
    if !ours {
        return Err(Foreign {
            path: link.to_path_buf(),
            why: format!("not a link to {MULTUS_TARGET}"),
        }
        .into());
    }
    Ok(())
}

/// Links `<bin_dir>/<name>` to `oxivirt-multus` unless it is there.
fn link_if_missing(bin_dir: &Path, name: &str) -> Result<()> {
    let link = bin_dir.join(name);
    if fs::symlink_metadata(&link).is_ok() {
        return Ok(());
    }
    let tmp = bin_dir.join(format!(".{name}.oxivirt-tmp"));
    remove_file(&tmp)?;
    std::os::unix::fs::symlink(MULTUS_TARGET, &tmp)
        .with_context(|| format!("linking {}", tmp.display()))?;
    fs::rename(&tmp, &link).with_context(|| format!("renaming into {}", link.display()))?;
    eprintln!(
        "oxivirt-node install-cni: linked {} -> {MULTUS_TARGET}",
        link.display()
    );
    Ok(())
}

/// Writes `bytes` to `path` with `mode` through a temporary file in the same dir, unless it
/// already holds exactly that; whether it wrote.
fn write_if_changed(path: &Path, bytes: &[u8], mode: u32) -> Result<bool> {
    if let (Ok(old), Ok(meta)) = (fs::read(path), fs::metadata(path)) {
        if old == bytes && meta.permissions().mode() & 0o7777 == mode {
            return Ok(false);
        }
    }
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent dir", path.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.oxivirt-tmp", name.to_string_lossy()));
    remove_file(&tmp)?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    // The umask may have narrowed the mode.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(true)
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// A kubeconfig for the meta plugin from the service account: the token and CA inline (the
/// plugin runs on the host, where the pod's projected files are not at these paths).
fn render_kubeconfig(sa_dir: &Path) -> Result<String> {
    use base64::Engine;
    let env = |name: &str| {
        std::env::var(name).with_context(|| {
            format!("{name} is not set (it is in every pod; install-cni runs in the node's pod)")
        })
    };
    let host = env("KUBERNETES_SERVICE_HOST")?;
    let port = env("KUBERNETES_SERVICE_PORT")?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let token_path = sa_dir.join("token");
    let token = fs::read_to_string(&token_path)
        .with_context(|| format!("reading {}", token_path.display()))?;
    let token = token.trim();
    if token.is_empty() {
        bail!("{} is empty", token_path.display());
    }
    let ca_path = sa_dir.join("ca.crt");
    let ca = fs::read(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    // JSON strings are YAML double-quoted scalars: whatever the values hold, they stay values.
    let q = |s: &str| Value::String(s.to_string()).to_string();
    Ok(format!(
        "# Written by oxivirt-node install-cni from its service account; rewritten when the \
         token rotates, removed when the agent stops.\n\
         apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: local\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority-data: {ca}\n\
         users:\n\
         - name: oxivirt-node\n  \
           user:\n    \
             token: {token}\n\
         contexts:\n\
         - name: oxivirt-node\n  \
           context:\n    \
             cluster: local\n    \
             user: oxivirt-node\n\
         current-context: oxivirt-node\n",
        server = q(&format!("https://{host}:{port}")),
        ca = q(&ca),
        token = q(token),
    ))
}

/// Removes what the agent wrote on the host that would make pods depend on it: the multus
/// config first (so no new pod is sent to the meta plugin), then its kubeconfig.
fn uninstall(paths: &Paths<'_>) -> Result<()> {
    match check_multus_conf(paths) {
        Ok(Some(_)) => remove_file(&paths.multus_conf)?,
        Ok(None) => {}
        // Another agent's: not ours to remove.
        Err(e) => eprintln!("oxivirt-node install-cni: {e:#}"),
    }
    remove_file(&paths.kubeconfig)?;
    if let Some(dir) = paths.kubeconfig.parent() {
        // Ours if empty now; another file in it keeps it.
        let _ = fs::remove_dir(dir);
    }
    eprintln!(
        "oxivirt-node install-cni: removed {} and {}",
        paths.multus_conf.display(),
        paths.kubeconfig.display()
    );
    Ok(())
}

/// SIGTERM and SIGINT, blocked and waited for (this process has one thread).
struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    fn block() -> Result<Self> {
        // SAFETY: a zeroed sigset_t is a valid argument for sigemptyset, which initializes it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, owned sigset_t; the null old-set pointer is allowed.
        let rc = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!(
                "blocking SIGTERM: {}",
                std::io::Error::from_raw_os_error(rc)
            );
        }
        Ok(Self { set })
    }

    /// A signal that arrived within `timeout`.
    fn wait(&self, timeout: Duration) -> Option<i32> {
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `self.set` is initialized; a null info pointer is allowed; `ts` lives
        // across the call.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        // -1: the timeout (EAGAIN) or another signal's handler (EINTR): poll again.
        (sig > 0).then_some(sig)
    }
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signals(SIGTERM, SIGINT)")
    }
}
