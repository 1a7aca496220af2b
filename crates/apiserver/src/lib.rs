//! oxivirt's Kubernetes API: the part of it KubeVirt and Multus users touch, served from
//! the embedded store, so that `kubectl`, `virtctl`, the controller and the `oxivirt` CLI
//! speak to one machine as to a cluster.

pub mod admission;
pub mod discovery;
pub mod error;
pub mod handler;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod relay;
pub mod resources;
pub mod selector;
pub mod server;
pub mod subresources;
pub mod table;

pub use error::ApiError;
pub use handler::{Api, Reply, Request};
