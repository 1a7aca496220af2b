//! containerDisk images for the launcher: an OCI distribution client of our own (image
//! references, registry mirrors, anonymous bearer tokens, index → linux/amd64), a
//! content-addressed cache that only ever holds verified blobs, KubeVirt's rules for
//! finding the disk in an image, and the qcow2 overlay (plus `emptyDisk` and `hostDisk`)
//! a VM boots from.

pub mod cache;
pub mod disk;
pub mod error;
pub mod manifest;
pub mod puller;
pub mod reference;
pub mod transport;
pub mod volumes;

pub use cache::Cache;
pub use disk::{container_disk, DiskFile, DiskFormat};
pub use error::{Error, Result};
pub use puller::{CachedBlob, Mirror, PullPolicy, PullStats, PulledImage, Puller};
pub use reference::Reference;
pub use transport::{HttpResponse, Transport, UreqTransport};
pub use volumes::{empty_disk, host_disk, overlay, HostDiskType};
