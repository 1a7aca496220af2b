//! The VMI turned into what the launcher will build, before anything is built: the pod's
//! interfaces ([`NicPlan`]), the disks and where they come from, cloud-init's NoCloud
//! data, CPUs, memory and identity. Everything KubeVirt would refuse is refused here, so a
//! VMI the launcher cannot run leaves nothing behind.

use crate::network::{Binding, NicPlan};
use oxivirt_api::VirtualMachineInstance;
use oxivirt_qemu::{CpuTopology, DiskBus, MacAddr, NicModel, PciAddress, Uuid};
use oxivirt_vm_net::masquerade::{MasqueradeSpec, Port, Protocol};

/// Where a disk's contents come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// Pulled and overlaid (`path` inside the image, if given).
    ContainerDisk { image: String, path: Option<String> },
    /// The NoCloud ISO the launcher writes.
    CloudInit,
    /// A sparse disk of this many bytes, gone with the VM.
    EmptyDisk { bytes: u64 },
    /// A file on the node.
    HostDisk {
        path: String,
        create: bool,
        bytes: Option<u64>,
    },
}

/// One guest disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    pub name: String,
    pub source: DiskSource,
    pub bus: DiskBus,
    pub cdrom: bool,
    pub readonly: bool,
    pub boot_index: Option<u16>,
    pub serial: Option<String>,
}

/// What QEMU gets for one interface besides its tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicDevice {
    pub model: NicModel,
    pub pci_address: Option<PciAddress>,
    pub boot_index: Option<u16>,
}

/// The launcher's plan for one VMI.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub namespace: String,
    pub hostname: String,
    pub uuid: Uuid,
    pub smbios_serial: Option<String>,
    pub cpu: CpuTopology,
    pub memory_bytes: u64,
    pub machine: String,
    pub nics: Vec<NicPlan>,
    /// In the order of `nics`.
    pub nic_devices: Vec<NicDevice>,
    pub disks: Vec<DiskPlan>,
    pub cloud_init: Option<oxivirt_cloudinit::NoCloud>,
    pub termination_grace_seconds: u64,
    /// `startStrategy: Paused`: QEMU stays stopped after start until unpaused.
    pub start_paused: bool,
}

/// Why the launcher refuses a VMI (before creating anything).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// KubeVirt's admission would refuse it; every problem is listed.
    #[error("the VMI is invalid: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<oxivirt_api::ValidationError>),
    /// Valid for KubeVirt, but this launcher cannot run it.
    #[error("{field}: {message}")]
    Unsupported { field: String, message: String },
    #[error("spec.volumes[{index}].cloudInitNoCloud")]
    CloudInit {
        index: usize,
        #[source]
        source: oxivirt_cloudinit::Error,
    },
}

fn unsupported(field: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError::Unsupported {
        field: field.into(),
        message: message.into(),
    }
}

/// Defaults, validates and plans `vmi` as the launcher will run it.
pub fn plan(mut vmi: VirtualMachineInstance) -> Result<Plan, PlanError> {
    oxivirt_api::defaults::set_defaults(&mut vmi.spec);
    oxivirt_api::validate::validate_vmi(&vmi).map_err(PlanError::Invalid)?;
    let name = vmi.metadata.name.clone().unwrap_or_default();
    let namespace = vmi
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let spec = &vmi.spec;
    let domain = &spec.domain;
    let fw = domain.firmware.clone().unwrap_or_default();
    // A VMI created directly has no firmware UUID: KubeVirt uses its uid; without one,
    // the name-derived UUID keeps it stable across starts.
    let uuid_text = fw
        .uuid
        .clone()
        .or_else(|| vmi.metadata.uid.clone())
        .unwrap_or_else(|| oxivirt_api::legacy_firmware_uuid(&name));
    let uuid: Uuid = uuid_text
        .parse()
        .map_err(|e| unsupported("spec.domain.firmware.uuid", format!("{e}")))?;
    let cpu = domain.cpu.clone().unwrap_or_default();
    let memory = oxivirt_api::defaults::guest_memory_bytes(spec)
        .and_then(|b| u64::try_from(b).ok())
        .ok_or_else(|| unsupported("spec.domain.memory.guest", "no guest memory"))?;

    let mut nics = Vec::new();
    let mut nic_devices = Vec::new();
    let mut multus_ordinal = 0;
    for (i, iface) in domain.devices.interfaces.iter().enumerate() {
        let field = format!("spec.domain.devices.interfaces[{i}]");
        let network = spec
            .networks
            .iter()
            .find(|n| n.name == iface.name)
            .ok_or_else(|| unsupported(&field, "no network of this name"))?;
        let binding = match (iface.binding(), &network.pod, &network.multus) {
            (Some(oxivirt_api::types::Binding::Masquerade), Some(pod), None) => {
                let mut m = MasqueradeSpec::default();
                if let Some(c) = &pod.vm_network_cidr {
                    m.v4 = c.parse().map_err(|_| {
                        unsupported(
                            format!("spec.networks[{i}].pod.vmNetworkCIDR"),
                            format!("{c:?} is not an IPv4 CIDR"),
                        )
                    })?;
                }
                let v6 = match &pod.vm_ipv6_network_cidr {
                    Some(c) => c.parse().map_err(|_| {
                        unsupported(
                            format!("spec.networks[{i}].pod.vmIPv6NetworkCIDR"),
                            format!("{c:?} is not an IPv6 CIDR"),
                        )
                    })?,
                    None => MasqueradeSpec::default_v6(),
                };
                let ports = iface
                    .ports
                    .iter()
                    .enumerate()
                    .map(|(j, p)| port(&format!("{field}.ports[{j}]"), p))
                    .collect::<Result<_, _>>()?;
                Binding::Masquerade {
                    v4: m.v4,
                    v6: Some(v6),
                    ports,
                }
            }
            (Some(oxivirt_api::types::Binding::Bridge), None, Some(_)) => {
                multus_ordinal += 1;
                Binding::Bridge {
                    ordinal: multus_ordinal,
                }
            }
            (Some(oxivirt_api::types::Binding::Bridge), Some(_), None) => {
                return Err(unsupported(
                    &field,
                    "the bridge binding on the pod network is not supported by oxivirt (use masquerade)",
                ))
            }
            _ => {
                return Err(unsupported(
                    &field,
                    "this binding and network combination is not supported by oxivirt",
                ))
            }
        };
        let mac = iface
            .mac_address
            .as_deref()
            .map(|m| {
                m.parse::<MacAddr>()
                    .map(|m| m.0)
                    .map_err(|e| unsupported(format!("{field}.macAddress"), e.to_string()))
            })
            .transpose()?;
        nics.push(NicPlan {
            name: iface.name.clone(),
            binding,
            mac,
            multiqueue: false,
        });
        nic_devices.push(NicDevice {
            model: iface.model.as_deref().unwrap_or("virtio").parse().map_err(
                |e: oxivirt_qemu::ParseError| unsupported(format!("{field}.model"), e.to_string()),
            )?,
            pci_address: iface
                .pci_address
                .as_deref()
                .map(|a| {
                    a.parse().map_err(|e: oxivirt_qemu::ParseError| {
                        unsupported(format!("{field}.pciAddress"), e.to_string())
                    })
                })
                .transpose()?,
            boot_index: boot_index(&field, iface.boot_order)?,
        });
    }

    let mut disks = Vec::new();
    let mut cloud_init = None;
    for (i, disk) in domain.devices.disks.iter().enumerate() {
        let field = format!("spec.domain.devices.disks[{i}]");
        let (vi, volume) = spec
            .volumes
            .iter()
            .enumerate()
            .find(|(_, v)| v.name == disk.name)
            .ok_or_else(|| unsupported(&field, "no volume of this name"))?;
        let source = if let Some(cd) = &volume.container_disk {
            DiskSource::ContainerDisk {
                image: cd.image.clone(),
                path: cd.path.clone(),
            }
        } else if let Some(ci) = &volume.cloud_init_no_cloud {
            let source = oxivirt_cloudinit::NoCloudSource {
                user_data: ci.user_data.clone(),
                user_data_base64: ci.user_data_base64.clone(),
                network_data: ci.network_data.clone(),
                network_data_base64: ci.network_data_base64.clone(),
            };
            let who = oxivirt_cloudinit::VmiIdentity {
                name: name.clone(),
                namespace: namespace.clone(),
                hostname: spec.hostname.clone(),
                firmware_uuid: Some(uuid_text.clone()),
            };
            cloud_init = Some(
                oxivirt_cloudinit::NoCloud::new(&source, vi, &who)
                    .map_err(|source| PlanError::CloudInit { index: vi, source })?,
            );
            DiskSource::CloudInit
        } else if let Some(e) = &volume.empty_disk {
            DiskSource::EmptyDisk {
                bytes: e
                    .capacity
                    .value()
                    .and_then(|b| u64::try_from(b).ok())
                    .ok_or_else(|| {
                        unsupported(format!("spec.volumes[{vi}].emptyDisk.capacity"), "invalid")
                    })?,
            }
        } else if let Some(h) = &volume.host_disk {
            DiskSource::HostDisk {
                path: h.path.clone(),
                create: h.disk_type == "DiskOrCreate",
                bytes: h
                    .capacity
                    .as_ref()
                    .and_then(|q| q.value())
                    .and_then(|b| u64::try_from(b).ok()),
            }
        } else {
            return Err(unsupported(
                format!("spec.volumes[{vi}]"),
                "this volume type is not supported by oxivirt",
            ));
        };
        let (bus, cdrom, readonly) = match (&disk.disk, &disk.cdrom) {
            (Some(d), None) => (d.bus.as_deref(), false, d.readonly.unwrap_or(false)),
            (None, Some(c)) => (c.bus.as_deref(), true, c.readonly.unwrap_or(true)),
            _ => {
                return Err(unsupported(
                    &field,
                    "only disk and cdrom targets are supported",
                ))
            }
        };
        disks.push(DiskPlan {
            name: disk.name.clone(),
            source,
            bus: bus
                .unwrap_or(if cdrom { "sata" } else { "virtio" })
                .parse()
                .map_err(|e: oxivirt_qemu::ParseError| {
                    unsupported(format!("{field}.bus"), e.to_string())
                })?,
            cdrom,
            readonly,
            boot_index: boot_index(&field, disk.boot_order)?,
            serial: disk.serial.clone(),
        });
    }
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| name.split('.').next().unwrap_or_default().to_string());
    Ok(Plan {
        hostname,
        uuid,
        smbios_serial: fw.serial.clone(),
        cpu: CpuTopology {
            sockets: cpu.sockets.unwrap_or(1),
            cores: cpu.cores.unwrap_or(1),
            threads: cpu.threads.unwrap_or(1),
        },
        memory_bytes: memory,
        machine: domain
            .machine
            .as_ref()
            .and_then(|m| m.machine_type.clone())
            .unwrap_or_else(|| "q35".into()),
        nics,
        nic_devices,
        disks,
        cloud_init,
        termination_grace_seconds: spec
            .termination_grace_period_seconds
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(30),
        start_paused: spec.start_strategy.as_deref() == Some("Paused"),
        name,
        namespace,
    })
}

fn boot_index(field: &str, order: Option<i64>) -> Result<Option<u16>, PlanError> {
    order
        .map(|o| {
            u16::try_from(o).map_err(|_| unsupported(format!("{field}.bootOrder"), "out of range"))
        })
        .transpose()
}

fn port(field: &str, p: &oxivirt_api::types::Port) -> Result<Port, PlanError> {
    let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        other => {
            return Err(unsupported(
                format!("{field}.protocol"),
                format!("{other:?} is not TCP or UDP"),
            ))
        }
    };
    let port = u16::try_from(p.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| unsupported(format!("{field}.port"), "must be 1-65535"))?;
    Ok(Port { protocol, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> VirtualMachineInstance {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed/vm-2.yaml");
        oxivirt_api::read_instance(std::path::Path::new(path)).expect("the seed VM")
    }

    #[test]
    fn the_seed_vm_as_the_launcher_builds_it() {
        let p = plan(seed()).expect("plan");
        assert_eq!(
            (p.name.as_str(), p.namespace.as_str()),
            ("testvm-2", "default")
        );
        assert_eq!(p.memory_bytes, 64_000_000);
        assert_eq!(p.cpu.vcpus(), Some(1));
        assert_eq!(p.nics.len(), 2);
        assert!(matches!(p.nics[0].binding, Binding::Masquerade { .. }));
        assert_eq!(p.nics[1].name, "ext-net");
        assert_eq!(p.nics[1].binding, Binding::Bridge { ordinal: 1 });
        assert!(p.nic_devices.iter().all(|d| d.model == NicModel::Virtio));
        assert!(matches!(
            &p.disks[0].source,
            DiskSource::ContainerDisk { image, path: None } if image == "quay.io/kubevirt/cirros-container-disk-demo"
        ));
        assert_eq!(p.disks[1].source, DiskSource::CloudInit);
        let ci = p.cloud_init.as_ref().expect("cloud-init");
        assert!(!ci.user_data.is_empty());
        insta::assert_debug_snapshot!(p);
    }

    #[test]
    fn what_the_launcher_cannot_run_is_refused_first() {
        let mut vmi = seed();
        vmi.spec.domain.devices.interfaces[0].masquerade = None;
        vmi.spec.domain.devices.interfaces[0].bridge = Some(Default::default());
        let e = plan(vmi).expect_err("bridge on the pod network");
        assert!(
            e.to_string().starts_with(
                "spec.domain.devices.interfaces[0]: the bridge binding on the pod network"
            ),
            "{e}"
        );
        let mut vmi = seed();
        vmi.spec.domain.devices.interfaces[1].name = "other".into();
        assert!(matches!(plan(vmi), Err(PlanError::Invalid(_))));
    }
}
