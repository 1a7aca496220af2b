//! The `oxivirt` CLI: kubectl's `apply`, `get`, `describe` and `delete` for VMs, VMIs,
//! NetworkAttachmentDefinitions, pods, events and namespaces, and virtctl's `start`, `stop`,
//! `restart`, `pause`, `unpause` and `console`, over kube-rs against oxivirtd or any
//! Kubernetes API server.

pub mod api;
pub mod cli;
pub mod cmd;
pub mod describe;
pub mod kinds;
pub mod kubeconfig;
pub mod manifest;
pub mod merge;
pub mod table;
pub mod virt;
