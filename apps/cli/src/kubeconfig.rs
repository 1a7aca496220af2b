//! Which kubeconfig the CLI uses: `--kubeconfig` > `KUBECONFIG` > the daemon's own
//! (`${OXIVIRT_DATA_DIR:-/var/lib/oxivirt}/kubeconfig`, when it exists) > `~/.kube/config`.

use std::path::{Path, PathBuf};

/// The environment the lookup reads, apart so tests need not touch the process's.
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub kubeconfig: Option<String>,
    pub data_dir: Option<String>,
    pub home: Option<String>,
}

impl Env {
    pub fn from_process() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            kubeconfig: get("KUBECONFIG"),
            data_dir: get("OXIVIRT_DATA_DIR"),
            home: get("HOME"),
        }
    }
}

pub const DEFAULT_DATA_DIR: &str = "/var/lib/oxivirt";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no kubeconfig found: looked at --kubeconfig (not given), KUBECONFIG (not set), {}", .looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound { looked: Vec<PathBuf> },
}

/// The kubeconfig files to load, in order (KUBECONFIG may list several, like kubectl's,
/// merged first-wins).
pub fn locate(flag: Option<&Path>, env: &Env) -> Result<Vec<PathBuf>, Error> {
    if let Some(p) = flag {
        return Ok(vec![p.to_path_buf()]);
    }
    if let Some(list) = &env.kubeconfig {
        let paths: Vec<PathBuf> = std::env::split_paths(list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            return Ok(paths);
        }
    }
    let data_dir = env.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR);
    let daemon = Path::new(data_dir).join("kubeconfig");
    let mut looked = vec![daemon.clone()];
    if daemon.exists() {
        return Ok(vec![daemon]);
    }
    if let Some(home) = &env.home {
        let user = Path::new(home).join(".kube").join("config");
        if user.exists() {
            return Ok(vec![user]);
        }
        looked.push(user);
    }
    Err(Error::NotFound { looked })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, "").expect("write");
    }

    #[test]
    fn order_flag_env_daemon_home() {
        let tmp = oxivirt_testkit::cleanup::TempDir::new("cli-kubeconfig").expect("tmp");
        let data = tmp.path().join("data");
        let home = tmp.path().join("home");
        let mut env = Env {
            kubeconfig: Some("/a:/b".into()),
            data_dir: Some(data.display().to_string()),
            home: Some(home.display().to_string()),
        };
        let flag = Path::new("/flag");
        assert_eq!(locate(Some(flag), &env).expect("flag"), vec![flag]);
        assert_eq!(
            locate(None, &env).expect("env"),
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        env.kubeconfig = None;
        // Neither file exists yet: the error names both places.
        let err = locate(None, &env).expect_err("none").to_string();
        assert!(
            err.contains(&data.join("kubeconfig").display().to_string()),
            "{err}"
        );
        assert!(
            err.contains(&home.join(".kube/config").display().to_string()),
            "{err}"
        );
        touch(&home.join(".kube/config"));
        assert_eq!(
            locate(None, &env).expect("home"),
            vec![home.join(".kube/config")]
        );
        touch(&data.join("kubeconfig"));
        assert_eq!(
            locate(None, &env).expect("daemon"),
            vec![data.join("kubeconfig")]
        );
    }

    #[test]
    fn default_data_dir() {
        let env = Env::default();
        match locate(None, &env) {
            Ok(p) => assert_eq!(p, vec![PathBuf::from("/var/lib/oxivirt/kubeconfig")]),
            Err(Error::NotFound { looked }) => {
                assert_eq!(looked, vec![PathBuf::from("/var/lib/oxivirt/kubeconfig")])
            }
        }
    }
}
