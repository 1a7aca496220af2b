//! The `cloudInitNoCloud` volume as KubeVirt makes it: the volume's fields validated with
//! KubeVirt's rules and messages ([`NoCloudSource`] → [`NoCloud`]), the `meta-data`
//! KubeVirt writes, and the `cidata` ISO 9660 image ([`iso`]) the guest's cloud-init reads,
//! written atomically into the launcher's state directory.
//!
//! What the launcher does (tests/tools.rs runs the same steps; doctests do not link under
//! the workspace's static relocation model):
//!
//! ```ignore
//! use oxivirt_cloudinit::{NoCloud, NoCloudSource, VmiIdentity};
//!
//! // `spec.volumes[1].cloudInitNoCloud` of the VMI, and who the VMI is.
//! let source: NoCloudSource = serde_json::from_str(r##"{"userData": "#cloud-config\n"}"##)?;
//! let vmi = VmiIdentity {
//!     name: "testvmi".into(),
//!     namespace: "default".into(),
//!     hostname: None,                    // spec.hostname
//!     firmware_uuid: None,               // spec.domain.firmware.uuid, as given to QEMU
//! };
//! let seed = NoCloud::new(&source, 1, &vmi)?; // KubeVirt's admission errors
//! let dir = tempfile::tempdir()?;
//! let iso = seed.write_iso(dir.path(), 0)?;   // <dir>/noCloud.iso, mode 0644
//! assert!(iso.ends_with("noCloud.iso"));
//! ```

pub mod iso;
mod nocloud;

pub use iso::{build_iso, IsoError};
pub use nocloud::{
    write_atomic, DataField, MetaData, NoCloud, NoCloudSource, VmiIdentity, ISO_FILE_NAME,
    MAX_DATA_LEN, VOLUME_LABEL,
};

use std::path::PathBuf;

/// Everything this crate can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `volume` is KubeVirt's path of the volume source, `spec.volumes[<i>].cloudInitNoCloud`,
    /// in every variant. This text names the field, then repeats the source type and the
    /// field, word for word as KubeVirt's admitter does.
    #[error("{volume}.{data}.cloudInitNoCloud.{data} is not a valid base64 value.")]
    InvalidBase64 {
        volume: String,
        data: DataField,
        #[source]
        source: base64::DecodeError,
    },
    #[error("{volume} must have only one userdatasource set.")]
    MultipleUserDataSources { volume: String },
    #[error("{volume} userdata exceeds {MAX_DATA_LEN} byte limit. Should use UserDataSecretRef for larger data.")]
    UserDataTooLong { volume: String, len: usize },
    #[error("{volume} must have only one networkdata source set.")]
    MultipleNetworkDataSources { volume: String },
    #[error("{volume} networkdata exceeds {MAX_DATA_LEN} byte limit. Should use NetworkDataSecretRef for larger data.")]
    NetworkDataTooLong { volume: String, len: usize },
    #[error("{volume} must have at least one userdatasource or one networkdatasource set.")]
    NoDataSource { volume: String },
    #[error("building the cloud-init image")]
    Iso(#[from] IsoError),
    #[error("writing the cloud-init image {path:?}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
