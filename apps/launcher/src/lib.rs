//! What the launcher shares with those who drive it: its command line ([`args`]), its
//! state directory and `status.json` ([`state`]), and the control socket protocol with a
//! client for the daemon ([`control`]).

pub mod args;
pub mod control;
pub mod state;
