//! The NoCloud data source: the volume's fields checked with KubeVirt's admission rules
//! (`pkg/virt-api/webhooks/validating-webhook/admitters`, `validateVolumes`), decoded as
//! virt-launcher decodes them (`pkg/cloud-init`), and the files KubeVirt puts on the image.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

use crate::{build_iso, Error, IsoError};

/// KubeVirt's limit on `userData` and `networkData`, in bytes after base64 decoding
/// (`cloudInitUserMaxLen`, `cloudInitNetworkMaxLen`); larger data goes in a Secret.
pub const MAX_DATA_LEN: usize = 2048;

/// The volume label cloud-init's NoCloud source looks for.
pub const VOLUME_LABEL: &str = "cidata";

/// The image's file name in its directory, as virt-launcher names it.
pub const ISO_FILE_NAME: &str = "noCloud.iso";

/// `spec.volumes[].cloudInitNoCloud` as in `kubevirt.io/v1`, the fields the launcher
/// supports (the secret references need a Kubernetes API and are not here). An empty
/// string counts as unset, as in Go.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoCloudSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data_base64: Option<String>,
}

/// Which base64 field failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataField {
    UserDataBase64,
    NetworkDataBase64,
}

impl fmt::Display for DataField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataField::UserDataBase64 => "userDataBase64",
            DataField::NetworkDataBase64 => "networkDataBase64",
        })
    }
}

/// What the meta-data is made from: the VMI's `metadata.name`, `metadata.namespace`,
/// `spec.hostname` and `spec.domain.firmware.uuid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmiIdentity {
    pub name: String,
    pub namespace: String,
    pub hostname: Option<String>,
    pub firmware_uuid: Option<String>,
}

/// The `meta-data` file. KubeVirt writes it as JSON (valid YAML, which cloud-init reads),
/// with keys in this order and an empty hostname left out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MetaData {
    /// KubeVirt's NoCloud uses the firmware UUID (the one QEMU gets as `-uuid`), and a
    /// random UUID when the VMI has none. A random one would make the image differ on
    /// every start, so without a UUID this is `<name>.<namespace>`, KubeVirt's instance id
    /// for ConfigDrive: stable, and unique per VMI.
    #[serde(rename = "instance-id")]
    pub instance_id: String,
    /// `spec.hostname`, else the name up to its first '.', at most 63 bytes (KubeVirt's
    /// `dns.SanitizeHostname`).
    #[serde(rename = "local-hostname", skip_serializing_if = "String::is_empty")]
    pub local_hostname: String,
}

impl MetaData {
    pub fn for_vmi(vmi: &VmiIdentity) -> Self {
        let instance_id = match vmi.firmware_uuid.as_deref() {
            Some(uuid) if !uuid.is_empty() => uuid.to_owned(),
            _ => format!("{}.{}", vmi.name, vmi.namespace),
        };
        let local_hostname = match vmi.hostname.as_deref() {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => {
                let first = vmi.name.split('.').next().unwrap_or_default();
                let mut end = first.len().min(63);
                while !first.is_char_boundary(end) {
                    end -= 1;
                }
                first[..end].to_owned()
            }
        };
        Self {
            instance_id,
            local_hostname,
        }
    }

    /// The file's bytes: compact JSON, as Go's `json.Marshal` writes it.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Two string fields: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The files of a NoCloud seed, ready for the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoCloud {
    pub meta_data: Vec<u8>,
    /// Written even when empty (only network data given), as KubeVirt does.
    pub user_data: Vec<u8>,
    /// `network-config`, present only when there is network data.
    pub network_data: Option<Vec<u8>>,
}

impl NoCloud {
    /// Checks `source` (the VMI's volume number `volume_index`) as KubeVirt's admitter does,
    /// decodes it, and adds the meta-data for `vmi`. The first problem found, in the
    /// admitter's order, is the error.
    pub fn new(
        source: &NoCloudSource,
        volume_index: usize,
        vmi: &VmiIdentity,
    ) -> Result<Self, Error> {
        let volume = format!("spec.volumes[{volume_index}].cloudInitNoCloud");
        let user_data = one_source(
            &volume,
            source.user_data.as_deref(),
            source.user_data_base64.as_deref(),
            DataField::UserDataBase64,
        )?;
        match &user_data {
            Some(Sources::Many) => {
                return Err(Error::MultipleUserDataSources { volume });
            }
            Some(Sources::One(d)) if d.len() > MAX_DATA_LEN => {
                return Err(Error::UserDataTooLong {
                    volume,
                    len: d.len(),
                });
            }
            _ => {}
        }
        let network_data = one_source(
            &volume,
            source.network_data.as_deref(),
            source.network_data_base64.as_deref(),
            DataField::NetworkDataBase64,
        )?;
        match &network_data {
            Some(Sources::Many) => {
                return Err(Error::MultipleNetworkDataSources { volume });
            }
            Some(Sources::One(d)) if d.len() > MAX_DATA_LEN => {
                return Err(Error::NetworkDataTooLong {
                    volume,
                    len: d.len(),
                });
            }
            _ => {}
        }
        let one = |s: Option<Sources>| match s {
            Some(Sources::One(d)) => Some(d),
            _ => None,
        };
        let (user_data, network_data) = (one(user_data), one(network_data));
        if user_data.is_none() && network_data.is_none() {
            return Err(Error::NoDataSource { volume });
        }
        Ok(Self {
            meta_data: MetaData::for_vmi(vmi).to_bytes(),
            user_data: user_data.unwrap_or_default(),
            // virt-launcher writes `network-config` only when it has content.
            network_data: network_data.filter(|d| !d.is_empty()),
        })
    }

    /// The image's files: name and contents.
    pub fn files(&self) -> Vec<(&'static str, &[u8])> {
        let mut files = vec![
            ("meta-data", self.meta_data.as_slice()),
            ("user-data", self.user_data.as_slice()),
        ];
        if let Some(n) = &self.network_data {
            files.push(("network-config", n.as_slice()));
        }
        files
    }

    /// The `cidata` ISO image, its timestamps `mtime` (seconds since the epoch).
    pub fn to_iso(&self, mtime: u64) -> Result<Vec<u8>, IsoError> {
        build_iso(&self.files(), VOLUME_LABEL, mtime)
    }

    /// Writes the image as `dir/noCloud.iso` (atomically, mode 0644) and returns its path.
    pub fn write_iso(&self, dir: &Path, mtime: u64) -> Result<PathBuf, Error> {
        write_atomic(dir, ISO_FILE_NAME, &self.to_iso(mtime)?)
    }
}

/// What a pair of raw/base64 fields held.
enum Sources {
    One(Vec<u8>),
    Many,
}

fn one_source(
    volume: &str,
    raw: Option<&str>,
    b64: Option<&str>,
    field: DataField,
) -> Result<Option<Sources>, Error> {
    let raw = raw.filter(|s| !s.is_empty());
    let b64 = b64.filter(|s| !s.is_empty());
    let decoded = b64
        .map(|s| {
            decode_like_go(s).map_err(|source| Error::InvalidBase64 {
                volume: volume.to_owned(),
                data: field,
                source,
            })
        })
        .transpose()?;
    Ok(match (raw, decoded) {
        (Some(_), Some(_)) => Some(Sources::Many),
        (Some(r), None) => Some(Sources::One(r.as_bytes().to_vec())),
        (None, Some(d)) => Some(Sources::One(d)),
        (None, None) => None,
    })
}

/// Go's `base64.StdEncoding.DecodeString`: the standard alphabet, padding required,
/// line breaks (`\r`, `\n`) skipped, non-zero bits after the last symbol tolerated.
fn decode_like_go(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    const GO_STD: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
            .with_decode_allow_trailing_bits(true),
    );
    let compact: Vec<u8> = s.bytes().filter(|b| *b != b'\r' && *b != b'\n').collect();
    GO_STD.decode(compact)
}

/// Writes `bytes` to `dir/name` so that a reader sees the old file or the whole new one:
/// a temporary file in `dir`, synced, mode 0644, renamed over the name, the directory
/// synced. A failure leaves no temporary file behind.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    let err = |source| Error::Write {
        path: path.clone(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    // tempfile creates 0600; the image is read by QEMU, which may run as another user.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(&path).map_err(|e| err(e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(path)
}
