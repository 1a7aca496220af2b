//! KubeVirt's VM and VMI controllers for oxivirt, written against the Kubernetes API with
//! kube-rs, so the same code drives `oxivirtd` on one machine and a real cluster.
//!
//! [`plan`] decides, as pure data, what a VirtualMachine or a VirtualMachineInstance needs
//! (create, delete, status) from what exists; [`run`] watches the API and carries the
//! plans out.

pub mod client;
pub mod error;
pub mod leader;
pub mod plan;
pub mod run;

pub use error::Error;
pub use run::{run, Config};
