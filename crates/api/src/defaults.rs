//! KubeVirt's defaults for the supported subset (what its API defaulting and mutating webhook
//! fill in before a VMI is run), and the derived values the launcher reads (guest memory,
//! vCPUs). Applying them twice changes nothing.

use crate::quantity::Quantity;
use crate::types::*;

/// KubeVirt's `terminationGracePeriodSeconds` when none is given.
pub const DEFAULT_GRACE_PERIOD_SECONDS: i64 = 180;
/// The interface model when none is given.
pub const DEFAULT_INTERFACE_MODEL: &str = "virtio";
/// The disk bus when none is given.
pub const DEFAULT_DISK_BUS: &str = "virtio";
/// The CD-ROM bus on amd64 (virtio CD-ROMs do not work on q35).
pub const DEFAULT_CDROM_BUS: &str = "sata";
pub const DEFAULT_LUN_BUS: &str = "scsi";
/// KubeVirt's amd64 machine type.
pub const DEFAULT_MACHINE_TYPE: &str = "q35";
/// The name of the interface and network KubeVirt adds when a VMI has neither.
pub const DEFAULT_NETWORK_NAME: &str = "default";

/// Fills in KubeVirt's defaults in place.
pub fn set_defaults(spec: &mut VmiSpec) {
    set_network_defaults(spec);
    set_disk_defaults(&mut spec.domain.devices.disks);
    set_cpu_defaults(&mut spec.domain);
    set_memory_defaults(&mut spec.domain);
    let machine = spec.domain.machine.get_or_insert_with(Machine::default);
    machine
        .machine_type
        .get_or_insert_with(|| DEFAULT_MACHINE_TYPE.to_string());
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_GRACE_PERIOD_SECONDS);
}

/// A VirtualMachine's template gets the same defaults as a VMI.
pub fn set_vm_defaults(vm: &mut VirtualMachine) {
    set_defaults(&mut vm.spec.template.spec);
}

fn set_network_defaults(spec: &mut VmiSpec) {
    let devices = &mut spec.domain.devices;
    // autoattachPodInterface: with no interfaces and no networks, one masquerade interface
    // on the pod network.
    if devices.autoattach_pod_interface != Some(false)
        && devices.interfaces.is_empty()
        && spec.networks.is_empty()
    {
        devices.interfaces.push(Interface {
            name: DEFAULT_NETWORK_NAME.to_string(),
            masquerade: Some(BindingMethod::default()),
            ..Interface::default()
        });
        spec.networks.push(Network {
            name: DEFAULT_NETWORK_NAME.to_string(),
            pod: Some(PodNetwork::default()),
            ..Network::default()
        });
    }
    for iface in &mut devices.interfaces {
        // An interface with no binding method gets the cluster's default one, bridge unless
        // KubeVirt's config says otherwise. Interfaces with an unmodelled binding (slirp,
        // passt, binding plugins) are left alone so validation names the field.
        let unmodelled = ["slirp", "passt", "macvtap", "binding"]
            .iter()
            .any(|k| iface.extra.contains_key(*k));
        if iface.masquerade.is_none()
            && iface.bridge.is_none()
            && iface.sriov.is_none()
            && !unmodelled
        {
            iface.bridge = Some(BindingMethod::default());
        }
        iface
            .model
            .get_or_insert_with(|| DEFAULT_INTERFACE_MODEL.to_string());
    }
}

fn set_disk_defaults(disks: &mut [Disk]) {
    for disk in disks {
        if disk.disk.is_none() && disk.cdrom.is_none() && disk.lun.is_none() {
            disk.disk = Some(DiskTarget::default());
        }
        if let Some(d) = &mut disk.disk {
            d.bus.get_or_insert_with(|| DEFAULT_DISK_BUS.to_string());
        }
        if let Some(c) = &mut disk.cdrom {
            c.bus.get_or_insert_with(|| DEFAULT_CDROM_BUS.to_string());
            c.readonly.get_or_insert(true);
            c.tray.get_or_insert_with(|| "closed".to_string());
        }
        if let Some(l) = &mut disk.lun {
            l.bus.get_or_insert_with(|| DEFAULT_LUN_BUS.to_string());
        }
    }
}

fn set_cpu_defaults(domain: &mut DomainSpec) {
    let cpu = domain.cpu.get_or_insert_with(Cpu::default);
    cpu.cores.get_or_insert(1);
    cpu.sockets.get_or_insert(1);
    cpu.threads.get_or_insert(1);
}

fn set_memory_defaults(domain: &mut DomainSpec) {
    // The guest sees `memory.guest`; without it, the memory request.
    let has_guest = domain.memory.as_ref().is_some_and(|m| m.guest.is_some());
    if !has_guest {
        if let Some(req) = domain.resources.requests.memory.clone() {
            domain.memory.get_or_insert_with(Memory::default).guest = Some(req);
        }
    }
}

/// The guest's memory: `domain.memory.guest`, else `resources.requests.memory`.
pub fn guest_memory(spec: &VmiSpec) -> Option<&Quantity> {
    spec.domain
        .memory
        .as_ref()
        .and_then(|m| m.guest.as_ref())
        .or(spec.domain.resources.requests.memory.as_ref())
}

/// The guest's memory in bytes (rounded up, as Kubernetes' `Value()`).
pub fn guest_memory_bytes(spec: &VmiSpec) -> Option<i64> {
    guest_memory(spec).and_then(Quantity::value)
}

/// sockets × cores × threads, each 1 when unset.
pub fn vcpus(spec: &VmiSpec) -> u32 {
    let cpu = spec.domain.cpu.clone().unwrap_or_default();
    cpu.sockets
        .unwrap_or(1)
        .max(1)
        .saturating_mul(cpu.cores.unwrap_or(1).max(1))
        .saturating_mul(cpu.threads.unwrap_or(1).max(1))
}
