//! The `multus` meta plugin entry: picks the object source and runs the command.

use crate::ipam::valid_attachments;
use oxivirt_cni::plugin::{require_check_support, Call};
use oxivirt_cni::{CniError, Command};
use oxivirt_multus::config::Config;
use oxivirt_multus::meta::Meta;
use oxivirt_multus::source::{
    ClusterSource, DirSource, NetworkAttachmentDefinition, Pod, SourceError,
};

/// Stands in where no backend is configured or built: every lookup is "unreachable", so
/// ADD fails with "try again later" and DEL/GC work from the cache alone.
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

fn source(cfg: &Config) -> Box<dyn ClusterSource> {
    if let Some(dir) = &cfg.multus.store {
        return Box::new(DirSource::new(dir));
    }
    let why = match &cfg.multus.kubeconfig {
        Some(k) => format!(
            "kubeconfig {}: the Kubernetes API backend is not available in this build yet",
            k.display()
        ),
        None => "no object source configured (`oxivirtStore` or `kubeconfig`)".to_string(),
    };
    Box::new(Unavailable(why))
}

pub fn handle(call: Call<'_>) -> Result<Option<String>, CniError> {
    let cfg = Config::load(call.stdin)?;
    let src = source(&cfg);
    let meta = Meta {
        cfg: &cfg,
        env: call.env,
        stdin: call.stdin,
        source: src.as_ref(),
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
