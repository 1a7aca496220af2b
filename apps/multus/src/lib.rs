//! The boundary of the `oxivirt-multus` binary that is not its entry point: the one
//! mapping of the meta plugin's errors to CNI codes, a library so that its tests run (the
//! binary has a C entry point and no test harness).

pub mod error;
