//! The crate's errors. Pull errors carry the registry, the reference and what the
//! registry answered, so a boundary can map them once (see [`Error::kubelet_reason`]).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The image reference does not parse (Kubernetes: `InvalidImageName`).
    #[error("couldn't parse image reference {reference:?}: {reason}")]
    InvalidReference {
        reference: String,
        reason: &'static str,
    },

    /// A mirror or registry endpoint in the configuration does not parse.
    #[error("invalid registry mirror {spec:?}: {reason}")]
    InvalidMirror { spec: String, reason: &'static str },

    /// No connection, TLS failure, timeout: nothing came back from the endpoint.
    #[error("registry {registry} unreachable at {url}")]
    Unreachable {
        registry: String,
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },

    /// 401/403 after an anonymous token (or no way to get one).
    #[error(
        "pull access denied for {reference} (registry {registry}, HTTP {status}), \
         repository does not exist or may require authorization"
    )]
    Unauthorized {
        registry: String,
        reference: String,
        status: u16,
    },

    /// 404 for a manifest or a blob.
    #[error("{what} not found in registry {registry} for {reference} (HTTP {status}{})", code_suffix(.code))]
    NotFound {
        registry: String,
        reference: String,
        /// `manifest <tag|digest>` or `blob <digest>`.
        what: String,
        status: u16,
        /// The registry's error code (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`), if it sent one.
        code: Option<String>,
    },

    /// Any other refusal (5xx, 429, 400 …).
    #[error("registry {registry} refused {url} for {reference}: HTTP {status}{}", code_suffix(.code))]
    Status {
        registry: String,
        reference: String,
        url: String,
        status: u16,
        code: Option<String>,
    },

    /// The token endpoint named by the registry's challenge did not give a token.
    #[error("registry {registry}: no anonymous token from {realm} (HTTP {status})")]
    Token {
        registry: String,
        realm: String,
        status: u16,
    },

    /// What arrived does not hash to the digest it was asked for.
    #[error("digest mismatch for {reference} from {registry}: expected {expected}, got {actual}")]
    DigestMismatch {
        registry: String,
        reference: String,
        expected: String,
        actual: String,
    },

    /// What arrived is longer or shorter than its descriptor says.
    #[error("size mismatch for {digest} of {reference} from {registry}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        registry: String,
        reference: String,
        digest: String,
        expected: u64,
        actual: u64,
    },

    /// The body broke off while it was read.
    #[error("reading {what} of {reference} from {registry}")]
    Transfer {
        registry: String,
        reference: String,
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// A manifest or index that is not valid JSON of its kind.
    #[error("malformed {media_type} for {reference} from {registry}")]
    Manifest {
        registry: String,
        reference: String,
        media_type: String,
        #[source]
        source: serde_json::Error,
    },

    /// A manifest kind, layer kind or digest algorithm this crate does not handle.
    #[error("unsupported {what} {value:?} in {reference}")]
    Unsupported {
        reference: String,
        what: &'static str,
        value: String,
    },

    /// An index without a manifest for linux/amd64.
    #[error("no manifest for {platform} in {reference} (it has: {})", .available.join(", "))]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: Vec<String>,
    },

    /// Pull policy `Never` and the image is not in the cache.
    #[error("container image {reference} is not present with pull policy of Never")]
    NeverPull { reference: String },

    /// A file or directory of the cache could not be read or written.
    #[error("image cache: {}", .path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A layer that is not a readable tar (or tar+gzip) stream.
    #[error("layer {digest} of {reference} is not a readable tar stream")]
    Layer {
        reference: String,
        digest: String,
        #[source]
        source: std::io::Error,
    },

    /// KubeVirt's message when `/disk` holds nothing.
    #[error("no file found in folder /disk, no disk present")]
    NoDisk,

    /// KubeVirt's message when `/disk` holds more than one entry.
    #[error("more than one file found in folder /disk, only one disk is allowed")]
    SeveralDisks { found: Vec<String> },

    /// The volume's `path` is not in the image.
    #[error("failed to determine custom image path {path}: no such file in the image")]
    NoImageOnPath { path: String },

    /// The disk found is a directory, a device or a dangling link.
    #[error("disk {path} in the image is not a regular file")]
    DiskNotRegularFile { path: String },

    /// CDI's message: a qcow2 disk that names a file outside itself.
    #[error("Image {path} is invalid because it has backing file {backing}")]
    DiskHasBackingFile { path: String, backing: String },

    /// `qemu-img` could not be started.
    #[error("running qemu-img")]
    QemuImgSpawn {
        #[source]
        source: std::io::Error,
    },

    /// `qemu-img` ran and failed.
    #[error("qemu-img {} failed ({status}): {stderr}", .args.join(" "))]
    QemuImg {
        args: Vec<String>,
        status: String,
        stderr: String,
    },

    /// A hostDisk of type `Disk` whose file is not there.
    #[error("hostDisk {} does not exist", .path.display())]
    HostDiskMissing { path: PathBuf },

    /// A hostDisk path that is a directory or a device.
    #[error("hostDisk {} is not a regular file", .path.display())]
    HostDiskNotFile { path: PathBuf },

    /// KubeVirt's message when a DiskOrCreate hostDisk does not fit.
    #[error(
        "unable to create {}, not enough space, demanded size {requested} B is bigger than \
         available space {available} B, also after taking {toleration} % toleration into account",
        .path.display()
    )]
    HostDiskNoSpace {
        path: PathBuf,
        requested: u64,
        available: u64,
        toleration: u64,
    },

    /// A DiskOrCreate hostDisk without a capacity.
    #[error("hostDisk {} of type DiskOrCreate needs a capacity", .path.display())]
    HostDiskNoCapacity { path: PathBuf },
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_ref().map(|c| format!(", {c}")).unwrap_or_default()
}

impl Error {
    /// The kubelet's reason for a failed pull (`InvalidImageName`, `ErrImagePull`,
    /// `ErrImageNeverPull`), `None` for errors after the pull (disk lookup, overlays, cache
    /// I/O). A controller shows `ImagePullBackOff` while it retries an `ErrImagePull`.
    pub fn kubelet_reason(&self) -> Option<&'static str> {
        match self {
            Error::InvalidReference { .. } => Some("InvalidImageName"),
            Error::NeverPull { .. } => Some("ErrImageNeverPull"),
            Error::Unreachable { .. }
            | Error::Unauthorized { .. }
            | Error::NotFound { .. }
            | Error::Status { .. }
            | Error::Token { .. }
            | Error::DigestMismatch { .. }
            | Error::SizeMismatch { .. }
            | Error::Transfer { .. }
            | Error::Manifest { .. }
            | Error::Unsupported { .. }
            | Error::NoMatchingPlatform { .. } => Some("ErrImagePull"),
            _ => None,
        }
    }

    /// Whether trying again later can help (network, 5xx, 429, a broken transfer).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Transfer { .. } => true,
            Error::Status { status, .. } => *status == 429 || *status >= 500,
            Error::Token { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
