//! QEMU for one VM, as the launcher runs it: a [`LaunchConfig`] (plain data the launcher
//! makes from a VMI), its [`LaunchConfig::validate`], the command line as a pure function
//! ([`argv`]), the accelerator choice ([`accel`]: KVM only when it really runs a guest), a
//! small QMP client ([`qmp`]) and a supervisor that starts QEMU and hands back the child
//! and its QMP connection ([`supervisor`]).

pub mod accel;
mod argv;
mod config;
pub mod qmp;
pub mod supervisor;

pub use argv::argv;
pub use config::{
    memory_mib, Accel, Console, CpuTopology, Disk, DiskBus, DiskFormat, Firmware, LaunchConfig,
    MacAddr, Nic, NicModel, ParseError, PciAddress, Uuid, ValidationError, MAX_VCPUS,
    MIN_MEMORY_BYTES,
};

/// Everything this crate can fail with, for a caller that maps errors once at its
/// boundary (the launcher's status reason and exit code). Each module's own error stays
/// available for callers that match on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Accel(#[from] accel::AccelError),
    #[error(transparent)]
    Qmp(#[from] qmp::QmpError),
    #[error(transparent)]
    Start(#[from] supervisor::StartError),
}
