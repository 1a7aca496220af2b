//! The Multus-compatible meta plugin's logic: which networks a pod asks for
//! (`k8s.v1.cni.cncf.io/networks`), where their configs come from
//! (NetworkAttachmentDefinitions through a [`source::ClusterSource`]), running every
//! delegate, caching what DEL needs, and the `network-status` the pod gets back.

pub mod annotation;
pub mod autoconf;
pub mod cache;
pub mod config;
pub mod default_route;
pub mod delegate;
pub mod error;
pub mod kube;
pub mod launcher;
pub mod meta;
pub mod source;
pub mod status;
pub mod thick;

pub use error::{Error, Result};
