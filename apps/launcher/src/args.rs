//! The command line, the same for the daemon, a Kubernetes launcher pod and a test:
//!
//! ```text
//! oxivirt-launcher --netns /run/netns/<pod> --vmi <file|-> --state-dir <dir>
//!                  [--registry-mirror quay.io=http://127.0.0.1:5000]... [--accel auto|kvm|tcg]
//!                  [--image-cache <dir>]
//! ```

use std::path::PathBuf;

pub use oxivirt_qemu::accel::AccelChoice;

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub netns: PathBuf,
    /// The VMI (YAML or JSON); `-` is stdin.
    pub vmi: PathBuf,
    pub state_dir: PathBuf,
    /// Registry host → base URL (a mirror may be plain HTTP).
    pub registry_mirrors: Vec<(String, String)>,
    pub accel: AccelChoice,
    /// Where pulled images are cached (shared by the VMs of a node).
    pub image_cache: PathBuf,
}

pub const USAGE: &str = "usage: oxivirt-launcher --netns PATH --vmi FILE|- --state-dir DIR \
[--registry-mirror HOST=URL]... [--accel auto|kvm|tcg] [--image-cache DIR]";

/// The default image cache (a node's, shared by its VMs).
pub const DEFAULT_IMAGE_CACHE: &str = "/var/lib/oxivirt/images";

/// Parses the arguments after the program name; the error says which one is wrong.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut netns = None;
    let mut vmi = None;
    let mut state_dir = None;
    let mut registry_mirrors = Vec::new();
    let mut accel = AccelChoice::Auto;
    let mut image_cache = PathBuf::from(DEFAULT_IMAGE_CACHE);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--netns" => netns = Some(PathBuf::from(value()?)),
            "--vmi" => vmi = Some(PathBuf::from(value()?)),
            "--state-dir" => state_dir = Some(PathBuf::from(value()?)),
            "--image-cache" => image_cache = PathBuf::from(value()?),
            "--registry-mirror" => {
                let v = value()?;
                let (host, url) = v
                    .split_once('=')
                    .filter(|(h, u)| !h.is_empty() && !u.is_empty())
                    .ok_or_else(|| format!("--registry-mirror {v:?}: expected HOST=URL"))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "--registry-mirror {v:?}: the URL must start with http:// or https://"
                    ));
                }
                registry_mirrors.push((host.to_string(), url.trim_end_matches('/').to_string()));
            }
            "--accel" => {
                let v = value()?;
                accel = v
                    .parse()
                    .map_err(|_| format!("--accel {v:?}: expected auto, kvm or tcg"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let need = |v: Option<PathBuf>, flag: &str| v.ok_or_else(|| format!("{flag} is required"));
    Ok(Args {
        netns: need(netns, "--netns")?,
        vmi: need(vmi, "--vmi")?,
        state_dir: need(state_dir, "--state-dir")?,
        registry_mirrors,
        accel,
        image_cache,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(str::to_string))
    }

    #[test]
    fn the_documented_command_line() {
        let a = args(
            "--netns /run/netns/p --vmi vm.yaml --state-dir /run/s \
             --registry-mirror quay.io=http://127.0.0.1:5000/ --registry-mirror docker.io=https://m \
             --accel=tcg",
        )
        .expect("valid");
        assert_eq!(a.netns, PathBuf::from("/run/netns/p"));
        assert_eq!(a.vmi, PathBuf::from("vm.yaml"));
        assert_eq!(
            a.registry_mirrors,
            [
                ("quay.io".to_string(), "http://127.0.0.1:5000".to_string()),
                ("docker.io".to_string(), "https://m".to_string())
            ]
        );
        assert_eq!(a.accel, AccelChoice::Tcg);
        assert_eq!(a.image_cache, PathBuf::from(DEFAULT_IMAGE_CACHE));
    }

    #[test]
    fn says_what_is_wrong() {
        let e = |s| args(s).expect_err(s);
        assert_eq!(e("--vmi x --state-dir d"), "--netns is required");
        assert_eq!(
            e("--netns n --vmi x --state-dir d --accel fast"),
            "--accel \"fast\": expected auto, kvm or tcg"
        );
        assert!(
            e("--netns n --vmi x --state-dir d --registry-mirror quay.io").contains("HOST=URL")
        );
        assert!(
            e("--netns n --vmi x --state-dir d --registry-mirror q=ftp://x").contains("http://")
        );
        assert_eq!(e("--netns"), "--netns needs a value");
        assert_eq!(e("--bogus"), "unknown argument \"--bogus\"");
    }
}
