//! containerDisk images for the launcher: an OCI distribution client of our own (image
//! references, registry mirrors, anonymous bearer tokens, index → linux/amd64), a
//! content-addressed cache that only ever holds verified blobs, KubeVirt's rules for
//! finding the disk in an image, and the qcow2 overlay (plus `emptyDisk` and `hostDisk`)
//! a VM boots from.
//!
//! ```no_run
//! # fn main() -> oxivirt_image::Result<()> {
//! use oxivirt_image::{overlay, Mirror, PullPolicy, Puller, Reference};
//! let mirrors: Vec<Mirror> = vec!["quay.io=http://127.0.0.1:5000".parse()?];
//! let puller = Puller::new("/var/lib/oxivirt/images", mirrors)?;
//! let reference = Reference::parse("quay.io/kubevirt/cirros-container-disk-demo")?;
//! let image = puller.pull(&reference, PullPolicy::default_for(&reference))?;
//! let disk = puller.container_disk(&image, None)?; // or Some(volume's `path`)
//! let vm_disk = overlay(&disk, "/run/vm/containerdisk.qcow2".as_ref())?;
//! # let _ = vm_disk; Ok(()) }
//! ```

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
