//! The launcher's parts: its command line ([`args`]), its state directory and
//! `status.json` ([`state`]), the control socket protocol with a client for the daemon
//! ([`control`]), and the pod side of the VM — bindings and DHCP ([`network`]).

pub mod args;
pub mod control;
#[cfg(feature = "fake")]
pub mod fake;
pub mod launch;
pub mod network;
pub mod plan;
pub mod signals;
pub mod state;
