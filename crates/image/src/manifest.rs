//! The OCI / Docker v2 manifest documents this crate reads, and the choice of the
//! linux/amd64 manifest in an index.

use serde::Deserialize;
use std::collections::BTreeMap;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `Accept` header of a manifest request: every kind this crate can read.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The platform the launcher runs guests for.
pub const PLATFORM_OS: &str = "linux";
pub const PLATFORM_ARCH: &str = "amd64";

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image index or a manifest list.
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// One image's manifest: its config and its layers, lowest first.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// Only `mediaType` matters to tell the kinds apart (the Content-Type header may be
/// generic, and OCI documents may omit the field).
#[derive(Debug, Deserialize)]
struct Probe {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
}

/// What a manifest document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Index,
    Manifest,
}

/// Classifies a document from its body (and the Content-Type as a fallback); `Err` holds
/// the media type that is not supported (e.g. Docker schema 1).
pub fn classify(body: &[u8], content_type: Option<&str>) -> Result<Kind, String> {
    let probe: Probe = serde_json::from_slice(body).map_err(|_| {
        content_type
            .unwrap_or("a document that is not JSON")
            .to_string()
    })?;
    let media = probe
        .media_type
        .clone()
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string()))
        .unwrap_or_default();
    match media.as_str() {
        OCI_INDEX | DOCKER_LIST => Ok(Kind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(Kind::Manifest),
        _ if probe.schema_version == Some(2) && probe.manifests.is_some() => Ok(Kind::Index),
        _ if probe.schema_version == Some(2) && probe.config.is_some() => Ok(Kind::Manifest),
        "" => Err("a manifest without a mediaType".to_string()),
        other => Err(other.to_string()),
    }
}

/// The manifest for linux/amd64 in an index, or the platforms it does have.
pub fn pick_platform(index: &Index) -> Result<&Descriptor, Vec<String>> {
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == PLATFORM_OS && p.architecture == PLATFORM_ARCH)
        })
        .ok_or_else(|| {
            index
                .manifests
                .iter()
                .map(|d| {
                    d.platform
                        .as_ref()
                        .map(Platform::to_string)
                        .unwrap_or_else(|| "unknown".into())
                })
                .collect()
        })
}

/// How a layer's bytes are packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    Tar,
    Gzip,
    Zstd,
}

/// Layer media types this crate accepts: OCI (plain, gzip, non-distributable) and Docker
/// v2's. Returns `None` for anything else (artifacts, helm charts …).
pub fn layer_kind(media_type: &str) -> Option<LayerKind> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(LayerKind::Tar),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(LayerKind::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Some(LayerKind::Zstd),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(os: &str, arch: &str, n: u8) -> serde_json::Value {
        serde_json::json!({
            "mediaType": OCI_MANIFEST, "size": 7,
            "digest": format!("sha256:{}", format!("{n:02x}").repeat(32)),
            "platform": {"os": os, "architecture": arch}
        })
    }

    #[test]
    fn picks_amd64_from_an_index() {
        let body = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [desc("linux", "arm64", 1), desc("linux", "amd64", 2), desc("unknown", "unknown", 3)]
        });
        let bytes = serde_json::to_vec(&body).expect("json");
        assert_eq!(classify(&bytes, None), Ok(Kind::Index));
        let idx: Index = serde_json::from_slice(&bytes).expect("index");
        assert_eq!(
            pick_platform(&idx).expect("amd64").digest,
            format!("sha256:{}", "02".repeat(32))
        );
    }

    #[test]
    fn no_amd64_lists_what_there_is() {
        let idx: Index = serde_json::from_value(serde_json::json!({
            "manifests": [desc("linux", "arm64", 1), desc("linux", "s390x", 2)]
        }))
        .expect("index");
        assert_eq!(
            pick_platform(&idx).expect_err("no amd64"),
            vec!["linux/arm64".to_string(), "linux/s390x".to_string()]
        );
    }

    #[test]
    fn classifies_by_field_then_header() {
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}"#;
        assert_eq!(classify(docker, None), Ok(Kind::Manifest));
        let bare = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(classify(bare, Some(OCI_MANIFEST)), Ok(Kind::Manifest));
        let v1 = br#"{"schemaVersion":1,"name":"x"}"#;
        let ct = "application/vnd.docker.distribution.manifest.v1+prettyjws";
        assert_eq!(classify(v1, Some(ct)), Err(ct.to_string()));
    }
}
