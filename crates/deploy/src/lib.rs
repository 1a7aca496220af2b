//! Kubernetes mode's install: the `apiextensions.k8s.io/v1` CustomResourceDefinitions of
//! `kubevirt.io/v1` VirtualMachine and VirtualMachineInstance and of Multus's
//! `k8s.cni.cncf.io/v1` NetworkAttachmentDefinition, generated from the one definition of
//! the kinds (`oxivirt-api`'s types, serde + schemars) and made structural ([`structural`]),
//! and the other manifests of `deploy/` ([`manifests`]); and the container image they name
//! ([`image`]).

pub mod crd;
pub mod image;
pub mod manifests;
pub mod structural;

pub use crd::crds;
