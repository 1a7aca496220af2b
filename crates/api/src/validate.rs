//! KubeVirt's validation of a VMI spec for the subset oxivirt runs, with KubeVirt's field
//! paths and messages (its create admitter and network admitter), plus refusals of what
//! oxivirt does not run, each naming the field. Run it after [`crate::defaults`].

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde::Serialize;

use crate::types::*;

/// One refusal: the JSON path of the field and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

/// KubeVirt's limit on inline cloud-init user data and network data.
pub const CLOUD_INIT_MAX_LEN: usize = 2048;
/// The interface models KubeVirt accepts.
pub const INTERFACE_MODELS: &[&str] = &[
    "e1000", "e1000e", "igb", "ne2k_pci", "pcnet", "rtl8139", "virtio",
];
/// Disk buses oxivirt runs (KubeVirt also has usb).
pub const DISK_BUSES: &[&str] = &["virtio", "sata", "scsi"];
/// The MAC KubeVirt keeps for the masquerade bridge.
pub const RESERVED_MASQUERADE_MAC: &str = "02:00:00:00:00:00";

/// Spec fields KubeVirt has that change nothing for a VM run on one node by oxivirt
/// (scheduling and eviction); everything else unmodelled is refused by name.
const IGNORED_SPEC_FIELDS: &[&str] = &[
    "affinity",
    "evictionStrategy",
    "priorityClassName",
    "schedulerName",
    "tolerations",
    "topologySpreadConstraints",
];

/// Validates a VMI (its spec, at `spec`).
pub fn validate_vmi(vmi: &VirtualMachineInstance) -> Result<(), Vec<ValidationError>> {
    into_result(validate_spec("spec", &vmi.spec))
}

/// Validates a VirtualMachine's template (at `spec.template.spec`).
pub fn validate_vm(vm: &VirtualMachine) -> Result<(), Vec<ValidationError>> {
    let mut errs = Vec::new();
    if vm.spec.running.is_some() && vm.spec.run_strategy.is_some() {
        // KubeVirt's VM admitter.
        errs.push(err(
            "spec.running",
            "Running and RunStrategy are mutually exclusive. Note that Running is deprecated, please use RunStrategy instead",
        ));
    }
    extras(&mut errs, "spec", &vm.spec.extra);
    errs.extend(validate_spec("spec.template.spec", &vm.spec.template.spec));
    into_result(errs)
}

fn into_result(errs: Vec<ValidationError>) -> Result<(), Vec<ValidationError>> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        message: message.into(),
    }
}

fn unsupported(field: String) -> ValidationError {
    let message = format!("{field} is not supported by oxivirt");
    ValidationError { field, message }
}

fn extras(errs: &mut Vec<ValidationError>, at: &str, extra: &Extra) {
    for k in extra.keys() {
        errs.push(unsupported(format!("{at}.{k}")));
    }
}

/// Validates a VMI spec whose path is `base` (`spec`, or `spec.template.spec` in a VM).
pub fn validate_spec(base: &str, spec: &VmiSpec) -> Vec<ValidationError> {
    let mut errs = Vec::new();
    unsupported_fields(&mut errs, base, spec);
    hostname(&mut errs, base, spec);
    memory(&mut errs, base, spec);
    cpu(&mut errs, base, spec);
    machine(&mut errs, base, spec);
    firmware(&mut errs, base, spec);
    network(&mut errs, base, spec);
    boot_order(&mut errs, base, spec);
    disks(&mut errs, base, spec);
    volumes(&mut errs, base, spec);
    if let Some(s) = spec.start_strategy.as_deref().filter(|s| *s != "Paused") {
        // KubeVirt's admitter: the only start strategy is Paused.
        errs.push(err(
            format!("{base}.startStrategy"),
            format!("{base}.startStrategy is set with invalid value: {s}"),
        ));
    }
    errs
}

fn unsupported_fields(errs: &mut Vec<ValidationError>, base: &str, spec: &VmiSpec) {
    for k in spec.extra.keys() {
        if !IGNORED_SPEC_FIELDS.contains(&k.as_str()) {
            errs.push(unsupported(format!("{base}.{k}")));
        }
    }
    let d = &spec.domain;
    let dom = format!("{base}.domain");
    extras(errs, &dom, &d.extra);
    if let Some(c) = &d.cpu {
        extras(errs, &format!("{dom}.cpu"), &c.extra);
    }
    if let Some(m) = &d.memory {
        extras(errs, &format!("{dom}.memory"), &m.extra);
    }
    extras(errs, &format!("{dom}.resources"), &d.resources.extra);
    // Other resource names (e.g. devices from plugins) cannot be honoured on one node.
    extras(
        errs,
        &format!("{dom}.resources.requests"),
        &d.resources.requests.extra,
    );
    extras(
        errs,
        &format!("{dom}.resources.limits"),
        &d.resources.limits.extra,
    );
    if let Some(f) = &d.firmware {
        extras(errs, &format!("{dom}.firmware"), &f.extra);
        if let Some(b) = &f.bootloader {
            let at = format!("{dom}.firmware.bootloader");
            extras(errs, &at, &b.extra);
            if let Some(bios) = &b.bios {
                extras(errs, &format!("{at}.bios"), &bios.extra);
            }
            if let Some(efi) = &b.efi {
                extras(errs, &format!("{at}.efi"), &efi.extra);
            }
        }
    }
    if let Some(m) = &d.machine {
        extras(errs, &format!("{dom}.machine"), &m.extra);
    }
    let dev = format!("{dom}.devices");
    extras(errs, &dev, &d.devices.extra);
    if let Some(rng) = &d.devices.rng {
        extras(errs, &format!("{dev}.rng"), &rng.extra);
    }
    for (i, disk) in d.devices.disks.iter().enumerate() {
        let at = format!("{dev}.disks[{i}]");
        extras(errs, &at, &disk.extra);
        if let Some(t) = &disk.disk {
            extras(errs, &format!("{at}.disk"), &t.extra);
        }
        if let Some(t) = &disk.cdrom {
            extras(errs, &format!("{at}.cdrom"), &t.extra);
        }
        if disk.lun.is_some() {
            errs.push(unsupported(format!("{at}.lun")));
        }
    }
    for (i, iface) in d.devices.interfaces.iter().enumerate() {
        let at = format!("{dev}.interfaces[{i}]");
        extras(errs, &at, &iface.extra);
        if let Some(b) = &iface.masquerade {
            extras(errs, &format!("{at}.masquerade"), &b.extra);
        }
        if let Some(b) = &iface.bridge {
            extras(errs, &format!("{at}.bridge"), &b.extra);
        }
        if iface.sriov.is_some() {
            errs.push(unsupported(format!("{at}.sriov")));
        }
        for (j, p) in iface.ports.iter().enumerate() {
            extras(errs, &format!("{at}.ports[{j}]"), &p.extra);
        }
    }
    for (i, net) in spec.networks.iter().enumerate() {
        let at = format!("{base}.networks[{i}]");
        extras(errs, &at, &net.extra);
        if let Some(p) = &net.pod {
            extras(errs, &format!("{at}.pod"), &p.extra);
        }
        if let Some(m) = &net.multus {
            extras(errs, &format!("{at}.multus"), &m.extra);
        }
    }
    for (i, vol) in spec.volumes.iter().enumerate() {
        let at = format!("{base}.volumes[{i}]");
        extras(errs, &at, &vol.extra);
        if let Some(c) = &vol.container_disk {
            extras(errs, &format!("{at}.containerDisk"), &c.extra);
            if c.image_pull_secret.is_some() {
                errs.push(unsupported(format!("{at}.containerDisk.imagePullSecret")));
            }
        }
        if let Some(c) = &vol.cloud_init_no_cloud {
            let ci = format!("{at}.cloudInitNoCloud");
            extras(errs, &ci, &c.extra);
            // Secrets need an API to read them from; the launcher has none.
            if c.secret_ref.is_some() {
                errs.push(unsupported(format!("{ci}.secretRef")));
            }
            if c.network_data_secret_ref.is_some() {
                errs.push(unsupported(format!("{ci}.networkDataSecretRef")));
            }
        }
        if let Some(e) = &vol.empty_disk {
            extras(errs, &format!("{at}.emptyDisk"), &e.extra);
        }
        if let Some(h) = &vol.host_disk {
            extras(errs, &format!("{at}.hostDisk"), &h.extra);
        }
        if vol.persistent_volume_claim.is_some() {
            errs.push(unsupported(format!("{at}.persistentVolumeClaim")));
        }
    }
}

/// RFC 1123 label: lower-case alphanumerics and '-', starting and ending alphanumeric, ≤ 63.
fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn hostname(errs: &mut Vec<ValidationError>, base: &str, spec: &VmiSpec) {
    if let Some(h) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        if !is_dns1123_label(h) {
            let f = format!("{base}.hostname");
            errs.push(err(
                &f,
                format!(
                    "{f} does not conform to the kubernetes DNS_LABEL rules : a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                ),
            ));
        }
    }
    if let Some(s) = spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        let ok = s.len() <= 253 && s.split('.').all(is_dns1123_label);
        if !ok {
            let f = format!("{base}.subdomain");
            errs.push(err(
                &f,
                format!(
                    "{f} does not conform to the kubernetes DNS_SUBDOMAIN rules : a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                ),
            ));
        }
    }
}

fn memory(errs: &mut Vec<ValidationError>, base: &str, spec: &VmiSpec) {
    let d = &spec.domain;
    let req_f = format!("{base}.domain.resources.requests.memory");
    let lim_f = format!("{base}.domain.resources.limits.memory");
    let guest_f = format!("{base}.domain.memory.guest");
    let req = d.resources.requests.memory.as_ref();
    let lim = d.resources.limits.memory.as_ref();
    let guest = d.memory.as_ref().and_then(|m| m.guest.as_ref());
    let val = |q: Option<&crate::Quantity>, f: &str, errs: &mut Vec<ValidationError>| -> i64 {
        match q {
            None => 0,
            Some(q) => match q.value() {
                Some(v) => v,
                None => {
                    errs.push(err(f, format!("{f} '{q}' is too large")));
                    0
                }
            },
        }
    };
    let req_v = val(req, &req_f, errs);
    let lim_v = val(lim, &lim_f, errs);
    let guest_v = val(guest, &guest_f, errs);
    if let Some(q) = req {
        if req_v < 0 {
            errs.push(err(
                &req_f,
                format!("{req_f} '{q}': must be greater than or equal to 0."),
            ));
        } else if req_v > 0 && req_v < 1_000_000 {
            errs.push(err(
                &req_f,
                format!("{req_f} '{q}': must be greater than or equal to 1M."),
            ));
        }
    }
    if let Some(q) = lim {
        if lim_v < 0 {
            errs.push(err(
                &lim_f,
                format!("{lim_f} '{q}': must be greater than or equal to 0."),
            ));
        }
        if lim_v > 0 && req_v > lim_v {
            let r = req.map(ToString::to_string).unwrap_or_default();
            errs.push(err(
                &req_f,
                format!("{req_f} '{r}' is greater than {lim_f} '{q}'"),
            ));
        }
    }
    if let (Some(g), Some(l)) = (guest, lim) {
        if lim_v != 0 && lim_v < guest_v {
            errs.push(err(
                &guest_f,
                format!(
                    "{guest_f} '{g}' must be equal to or less than the memory limit {lim_f} '{l}'"
                ),
            ));
        }
    }
    if let Some(g) = guest {
        if guest_v <= 0 {
            errs.push(err(
                &guest_f,
                format!("{guest_f} '{g}': must be greater than 0."),
            ));
        }
    }
    // ValidateVirtualMachineInstanceMandatoryFields (no hugepages here: they are unsupported).
    if req_v == 0 && guest.is_none() {
        // KubeVirt leaves this cause's field empty; the request is where it belongs.
        errs.push(err(
            &req_f,
            format!(
                "no memory requested, at least one of '{guest_f}', '{base}.domain.memory.hugepages.size' or '{req_f}' must be set"
            ),
        ));
    }
}

fn cpu(errs: &mut Vec<ValidationError>, base: &str, spec: &VmiSpec) {
    let d = &spec.domain;
    let rq = format!("{base}.domain.resources.requests.cpu");
    let lm = format!("{base}.domain.resources.limits.cpu");
    let req = d.resources.requests.cpu.as_ref();
    let lim = d.resources.limits.cpu.as_ref();
    let m = |q: Option<&crate::Quantity>| q.and_then(|q| q.milli_value()).unwrap_or(0);
    if let Some(q) = req.filter(|q| q.is_negative()) {
        errs.push(err(
            &rq,
            format!("{rq} '{q}': must be greater than or equal to 0."),
        ));
    }
    if let Some(q) = lim.filter(|q| q.is_negative()) {
        errs.push(err(
            &lm,
            format!("{lm} '{q}': must be greater than or equal to 0."),
        ));
    }
    if let (Some(r), Some(l)) = (req, lim) {
        if m(lim) > 0 && m(req) > m(lim) {
            errs.push(err(&rq, format!("{rq} '{r}' is greater than {lm} '{l}'")));
        }
    }
    if let Some(c) = &d.cpu {
        for (name, v) in [
            ("cores", c.cores),
            ("sockets", c.sockets),
            ("threads", c.threads),
        ] {
            if v == Some(0) {
                let f = format!("{base}.domain.cpu.{name}");
                errs.push(err(&f, format!("{f} must be greater than 0")));
            }
        }
    }
}

/// KubeVirt's default emulated machines on amd64 (glob patterns).
pub const EMULATED_MACHINES: &[&str] = &["q35*", "pc-q35*"];

fn machine(errs: &mut Vec<ValidationError>, base: &str, spec: &VmiSpec) {
    let Some(t) = spec
        .domain
        .machine
        .as_ref()
        .and_then(|m| m.machine_type.as_deref())
        .filter(|t| !t.is_empty())
    else {
        return;
    };
    let matches = EMULATED_MACHINES.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => t.starts_with(prefix),
        None => t == *p,
    });
    if !matches {
        let f = format!("{base}.domain.machine.type");
        errs.push(err(
            &f,
            format!(
                "{f} is not supported: {t} (allowed values: [{}])",
                EMULATED_MACHINES.join(" ")
            ),
        ));
    }
}

fn firmware(errs: &mut Vec<ValidationError>, base: &str, spec: &VmiSpec) {
    let Some(fw) = &spec.domain.firmware else {
        return;
    };
    if let Some(serial) = fw.serial.as_deref().filter(|s| !s.is_empty()) {
        let f = format!("{base}.domain.firmware.serial");
        if serial.len() > 256 {
            errs.push(err(
                &f,
                format!("{f} must be less than or equal to 256 in length, if specified"),
            ));
        }
        if !is_valid_expression(serial) {
            errs.push(err(
                &f,
                format!(
                    "{f} must be made up of the following characters [A-Za-z0-9_.+-], if specified"
                ),
            ));
        }
    }
    if let Some(uuid) = fw.uuid.as_deref() {
        if !is_uuid(uuid) {
            let f = format!("{base}.domain.firmware.uuid");
            errs.push(err(&f, format!("{f} '{uuid}' is not a valid UUID")));
        }
    }
    if let Some(b) = &fw.bootloader {
        let f = format!("{base}.domain.firmware.bootloader");
        if b.bios.is_some() && b.efi.is_some() {
            errs.push(err(
                &f,
                format!("{f} has both EFI and BIOS configured, but they are mutually exclusive."),
            ));
        }
        if b.efi.is_some() {
            // UEFI needs OVMF and its varstore; oxivirt boots BIOS guests only for now.
            errs.push(unsupported(format!("{f}.efi")));
        }
    }
}

/// KubeVirt's `^[A-Za-z0-9_.+-]+$` for serial numbers.
fn is_valid_expression(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'+' | b'-'))
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets as `xx:xx..`, `xx-xx..` or `xxxx.xxxx..`; the
/// number of octets, or `None` when malformed.
pub fn parse_mac_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.len() < 14 {
        return None;
    }
    let hex2 = |x: &[u8]| x.len() == 2 && x.iter().all(u8::is_ascii_hexdigit);
    if b[2] == b':' || b[2] == b'-' {
        if !(b.len() + 1).is_multiple_of(3) {
            return None;
        }
        let n = (b.len() + 1) / 3;
        if !matches!(n, 6 | 8 | 20) {
            return None;
        }
        let sep = b[2];
        for i in 0..n {
            let x = i * 3;
            if !hex2(&b[x..x + 2]) || (i + 1 < n && b[x + 2] != sep) {
                return None;
            }
        }
        Some(n)
    } else if b[4] == b'.' {
        if !(b.len() + 1).is_multiple_of(5) {
            return None;
        }
        let n = 2 * (b.len() + 1) / 5;
        if !matches!(n, 6 | 8 | 20) {
            return None;
        }
        for i in 0..n / 2 {
            let x = i * 5;
            if !b[x..x + 4].iter().all(u8::is_ascii_hexdigit) || (i + 1 < n / 2 && b[x + 4] != b'.')
            {
                return None;
            }
        }
        Some(n)
    } else {
        None
    }
}

/// KubeVirt's PCI address pattern `^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$`.
pub fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&i| b[i].is_ascii_hexdigit())
        && (b'0'..=b'7').contains(&b[11])
}

/// Kubernetes' IANA service name rule for port names.
fn is_valid_port_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !s.contains("--")
}

fn network(errs: &mut Vec<ValidationError>, base: &str, spec: &VmiSpec) {
    let ifaces = &spec.domain.devices.interfaces;
    let nets = &spec.networks;
    let iface_f = |i: usize, child: &str| format!("{base}.domain.devices.interfaces[{i}].{child}");
    let by_name: BTreeMap<&str, &Network> = nets.iter().map(|n| (n.name.as_str(), n)).collect();

    // validateSinglePodNetwork
    let pods = nets.iter().filter(|n| n.pod.is_some()).count();
    let multus_defaults = nets
        .iter()
        .filter(|n| n.multus.as_ref().is_some_and(MultusNetwork::is_default))
        .count();
    if pods > 1 {
        let f = format!("{base}.interfaces");
        errs.push(err(
            &f,
            format!("more than one interface is connected to a pod network in {f}"),
        ));
    }
    if multus_defaults > 1 {
        errs.push(err(
            format!("{base}.networks"),
            "Multus CNI should only have one default network",
        ));
    }
    if pods > 0 && multus_defaults > 0 {
        errs.push(err(
            format!("{base}.networks"),
            "Pod network cannot be defined when Multus default network is defined",
        ));
    }
    // validateSingleNetworkSource, validateMultusNetworkSource
    for (i, n) in nets.iter().enumerate() {
        let f = format!("{base}.networks[{i}]");
        match (&n.pod, &n.multus) {
            (None, None) => errs.push(err(&f, "should have a network type")),
            (Some(_), Some(_)) => errs.push(err(&f, "should have only one network type")),
            _ => {}
        }
    }
    if let Some(i) = nets
        .iter()
        .position(|n| n.multus.as_ref().is_some_and(|m| m.network_name.is_empty()))
    {
        errs.push(err(
            format!("{base}.networks[{i}]"),
            "CNI delegating plugin must have a networkName",
        ));
    }
    // Bindings.
    for (i, iface) in ifaces.iter().enumerate() {
        let net = by_name.get(iface.name.as_str());
        let on_pod = net.is_some_and(|n| n.pod.is_some());
        let methods = usize::from(iface.masquerade.is_some())
            + usize::from(iface.bridge.is_some())
            + usize::from(iface.sriov.is_some());
        if methods > 1 {
            errs.push(err(
                format!("{base}.domain.devices.interfaces[{i}]"),
                format!(
                    "logical {} interface has more than one binding method",
                    iface.name
                ),
            ));
        }
        if iface.masquerade.is_some() && !on_pod {
            errs.push(err(
                iface_f(i, "name"),
                "Masquerade interface only implemented with pod network",
            ));
        }
        if iface.masquerade.is_some()
            && iface.mac_address.as_deref() == Some(RESERVED_MASQUERADE_MAC)
        {
            errs.push(err(
                iface_f(i, "macAddress"),
                "The requested MAC address is reserved for the in-pod bridge. Please choose another one.",
            ));
        }
    }
    // Names.
    let mut seen = BTreeSet::new();
    for (i, n) in nets.iter().enumerate() {
        if !seen.insert(n.name.as_str()) {
            errs.push(err(
                format!("{base}.networks[{i}].name"),
                format!(
                    "Network with name {:?} already exists, every network must have a unique name",
                    n.name
                ),
            ));
        }
    }
    let iface_names: BTreeSet<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
    for (i, n) in nets.iter().enumerate() {
        if !iface_names.contains(n.name.as_str()) {
            let f = format!("{base}.networks[{i}].name");
            errs.push(err(&f, format!("{f} '{}' not found.", n.name)));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, iface) in ifaces.iter().enumerate() {
        if !seen.insert(iface.name.as_str()) {
            errs.push(err(
                iface_f(i, "name"),
                "Only one interface can be connected to one specific network",
            ));
        }
    }
    for (i, iface) in ifaces.iter().enumerate() {
        if !by_name.contains_key(iface.name.as_str()) {
            let f = iface_f(i, "name");
            errs.push(err(&f, format!("{f} '{}' not found.", iface.name)));
        }
    }
    // Fields.
    for (i, iface) in ifaces.iter().enumerate() {
        let name_f = iface_f(i, "name");
        let name_ok = !iface.name.is_empty()
            && iface
                .name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if !name_ok {
            errs.push(err(
                &name_f,
                "Network interface name can only contain alphabetical characters, numbers, dashes (-) or underscores (_)",
            ));
        }
        if let Some(model) = iface.model.as_deref().filter(|m| !m.is_empty()) {
            if !INTERFACE_MODELS.contains(&model) {
                errs.push(err(
                    iface_f(i, "model"),
                    format!("interface {name_f} uses model {model} that is not supported."),
                ));
            }
        }
        if let Some(mac) = iface.mac_address.as_deref().filter(|m| !m.is_empty()) {
            match parse_mac_len(mac) {
                None => errs.push(err(
                    iface_f(i, "macAddress"),
                    format!("interface {name_f} has malformed MAC address ({mac})."),
                )),
                Some(n) if n > 6 => errs.push(err(
                    iface_f(i, "macAddress"),
                    format!("interface {name_f} has too long MAC address ({mac})."),
                )),
                Some(_) => {}
            }
        }
        if let Some(pci) = iface.pci_address.as_deref().filter(|p| !p.is_empty()) {
            if !is_pci_address(pci) {
                errs.push(err(
                    iface_f(i, "pciAddress"),
                    format!("interface {name_f} has malformed PCI address ({pci})."),
                ));
            }
        }
        // As KubeVirt: ports are checked (and used) on the pod network only.
        let on_pod = by_name
            .get(iface.name.as_str())
            .is_some_and(|n| n.pod.is_some());
        if on_pod {
            ports(errs, &iface_f(i, "ports"), &iface.ports);
        }
    }
}

fn ports(errs: &mut Vec<ValidationError>, at: &str, ports: &[Port]) {
    let mut names = BTreeSet::new();
    for (j, p) in ports.iter().enumerate() {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            if !names.insert(name) {
                errs.push(err(
                    format!("{at}[{j}].name"),
                    format!("Duplicate name of the port: {name}"),
                ));
            }
            if !is_valid_port_name(name) {
                errs.push(err(
                    format!("{at}[{j}].name"),
                    format!("Invalid name of the port: {name}"),
                ));
            }
        }
    }
    for (j, p) in ports.iter().enumerate() {
        if p.port == 0 {
            errs.push(err(format!("{at}[{j}]"), "Port field is mandatory."));
        }
        if !(0..=65535).contains(&p.port) {
            errs.push(err(
                format!("{at}[{j}]"),
                "Port field must be in range 0 < x < 65536.",
            ));
        }
        if let Some(proto) = p.protocol.as_deref().filter(|x| !x.is_empty()) {
            if proto != "TCP" && proto != "UDP" {
                errs.push(err(
                    format!("{at}[{j}].protocol"),
                    "Unknown protocol, only TCP or UDP allowed",
                ));
            }
        }
    }
}

fn boot_order(errs: &mut Vec<ValidationError>, base: &str, spec: &VmiSpec) {
    let mut seen = BTreeSet::new();
    let dev = format!("{base}.domain.devices");
    for (i, disk) in spec.domain.devices.disks.iter().enumerate() {
        if let Some(o) = disk.boot_order {
            let f = format!("{dev}.disks[{i}].bootOrder");
            if o < 1 {
                errs.push(err(
                    &f,
                    format!("{dev}.disks[{i}] must have a boot order > 0, if supplied"),
                ));
            } else if !seen.insert(o) {
                errs.push(err(
                    &f,
                    format!("Boot order for {f} already set for a different device."),
                ));
            }
        }
    }
    for (i, iface) in spec.domain.devices.interfaces.iter().enumerate() {
        if let Some(o) = iface.boot_order {
            let f = format!("{dev}.interfaces[{i}].bootOrder");
            if o < 1 {
                errs.push(err(
                    &f,
                    format!("{dev}.interfaces[{i}] must have a boot order > 0, if supplied"),
                ));
            } else if !seen.insert(o) {
                errs.push(err(
                    &f,
                    format!("Boot order for {f} already set for a different device."),
                ));
            }
        }
    }
}

fn disks(errs: &mut Vec<ValidationError>, base: &str, spec: &VmiSpec) {
    let at = format!("{base}.domain.devices.disks");
    let volumes: BTreeMap<&str, &Volume> =
        spec.volumes.iter().map(|v| (v.name.as_str(), v)).collect();
    let disks = &spec.domain.devices.disks;
    for (i, disk) in disks.iter().enumerate() {
        if let Some(j) = disks[..i].iter().position(|d| d.name == disk.name) {
            errs.push(err(
                format!("{at}[{i}].name"),
                format!("{at}[{i}] and {at}[{j}] must not have the same Name."),
            ));
        }
        if !volumes.contains_key(disk.name.as_str()) {
            errs.push(err(
                format!("{at}[{i}].name"),
                format!("{at}[{i}].Name '{}' not found.", disk.name),
            ));
        }
        let targets = usize::from(disk.disk.is_some())
            + usize::from(disk.cdrom.is_some())
            + usize::from(disk.lun.is_some());
        if targets > 1 {
            errs.push(err(
                format!("{at}[{i}]"),
                format!("{at}[{i}] can only have a single target type defined"),
            ));
        }
        let (kind, bus) = if let Some(d) = &disk.disk {
            ("disk", d.bus.as_deref())
        } else if let Some(c) = &disk.cdrom {
            ("cdrom", c.bus.as_deref())
        } else if let Some(l) = &disk.lun {
            ("lun", l.bus.as_deref())
        } else {
            ("disk", None)
        };
        if let Some(bus) = bus.filter(|b| !b.is_empty()) {
            let f = format!("{at}[{i}].{kind}.bus");
            match bus {
                "ide" => errs.push(err(&f, "IDE bus is not supported")),
                "virtio" if kind == "cdrom" => {
                    errs.push(err(&f, format!("Bus type {bus} is invalid for CD-ROM device")))
                }
                "sata" if disk.disk.as_ref().is_some_and(|d| d.readonly == Some(true)) => {
                    errs.push(err(&f, format!("{bus} hard-disks do not support read-only.")))
                }
                "virtio" | "sata" | "scsi" => {}
                "usb" => errs.push(unsupported(f)),
                _ => errs.push(err(
                    &f,
                    format!("{at}[{i}] is set with an unrecognized bus {bus}, must be one of: [virtio scsi sata usb]"),
                )),
            }
        }
        if let Some(pci) = disk
            .disk
            .as_ref()
            .and_then(|d| d.pci_address.as_deref())
            .filter(|p| !p.is_empty())
        {
            let f = format!("{at}[{i}].disk.pciAddress");
            let name_f = format!("{at}[{i}].name");
            if disk
                .disk
                .as_ref()
                .and_then(|d| d.bus.as_deref())
                .unwrap_or("virtio")
                != "virtio"
            {
                errs.push(err(
                    &f,
                    format!("disk {name_f} - setting a PCI address is only possible with bus type virtio."),
                ));
            }
            if !is_pci_address(pci) {
                errs.push(err(
                    &f,
                    format!("disk {name_f} has malformed PCI address ({pci})."),
                ));
            }
        }
        if let Some(serial) = disk.serial.as_deref().filter(|s| !s.is_empty()) {
            let f = format!("{at}[{i}].serial");
            if !is_valid_expression(serial) {
                errs.push(err(
                    &f,
                    format!("{at}[{i}] must be made up of the following characters [A-Za-z0-9_.+-], if specified"),
                ));
            }
            if serial.len() > 256 {
                errs.push(err(
                    &f,
                    format!("{at}[{i}] must be less than or equal to 256 in length, if specified"),
                ));
            }
        }
    }
}

fn volumes(errs: &mut Vec<ValidationError>, base: &str, spec: &VmiSpec) {
    let at = format!("{base}.volumes");
    let disk_names: BTreeSet<&str> = spec
        .domain
        .devices
        .disks
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    let mut names = BTreeSet::new();
    let mut no_clouds = 0;
    for (i, v) in spec.volumes.iter().enumerate() {
        let f = format!("{at}[{i}]");
        if v.name.is_empty() {
            errs.push(err(
                format!("{f}.name"),
                format!("{f}.name is a required field"),
            ));
        }
        if !names.insert(v.name.as_str()) {
            errs.push(err(
                format!("{f}.name"),
                format!("{f}.name '{}' is already used by another volume", v.name),
            ));
        }
        // validateVirtualMachineInstanceSpecVolumeDisks (KubeVirt's path says "domain.volumes").
        if !disk_names.contains(v.name.as_str()) {
            let p = format!("{base}.domain.volumes[{i}].name");
            errs.push(err(&p, format!("{p} '{}' not found.", v.name)));
        }
        let sources = usize::from(v.container_disk.is_some())
            + usize::from(v.cloud_init_no_cloud.is_some())
            + usize::from(v.empty_disk.is_some())
            + usize::from(v.host_disk.is_some())
            + usize::from(v.persistent_volume_claim.is_some())
            + v.extra.len();
        if sources != 1 {
            errs.push(err(
                &f,
                format!("{f} must have exactly one source type set"),
            ));
        }
        if let Some(c) = &v.container_disk {
            if c.image.is_empty() {
                errs.push(err(
                    format!("{f}.containerDisk.image"),
                    format!("{f}.containerDisk.image is a required field"),
                ));
            }
            if let Some(p) = c.path.as_deref().filter(|p| !p.is_empty()) {
                let pf = format!("{f}.containerDisk");
                if p == "/" {
                    errs.push(err(&pf, format!("{pf} must not point to root")));
                } else if !is_clean_absolute(p) {
                    errs.push(err(
                        &pf,
                        format!(
                            "{pf} must be an absolute path to a file without relative components"
                        ),
                    ));
                }
            }
            if let Some(pp) = c.image_pull_policy.as_deref() {
                if !matches!(pp, "Always" | "IfNotPresent" | "Never") {
                    let pf = format!("{f}.containerDisk.imagePullPolicy");
                    errs.push(err(
                        &pf,
                        format!("{pf}: Unsupported value: \"{pp}\": supported values: \"Always\", \"IfNotPresent\", \"Never\""),
                    ));
                }
            }
        }
        if let Some(c) = &v.cloud_init_no_cloud {
            no_clouds += 1;
            cloud_init(errs, &format!("{f}.cloudInitNoCloud"), c);
        }
        if let Some(e) = &v.empty_disk {
            if e.capacity.value().is_none_or(|c| c <= 0) {
                let cf = format!("{f}.emptyDisk.capacity");
                errs.push(err(
                    &cf,
                    format!("{cf} '{}' must be greater than 0", e.capacity),
                ));
            }
        }
        if let Some(h) = &v.host_disk {
            if h.path.is_empty() {
                let pf = format!("{f}.hostDisk.path");
                errs.push(err(&pf, format!("{pf} is required for hostDisk volume")));
            }
            let tf = format!("{f}.hostDisk.type");
            if h.disk_type != "Disk" && h.disk_type != "DiskOrCreate" {
                errs.push(err(
                    &tf,
                    format!(
                        "{tf} has invalid value '{}', allowed are 'Disk' or 'DiskOrCreate'",
                        h.disk_type
                    ),
                ));
            }
            if h.disk_type == "Disk" && h.capacity.as_ref().is_some_and(|c| !c.is_zero()) {
                let cf = format!("{f}.hostDisk.capacity");
                errs.push(err(
                    &cf,
                    format!("{cf} is allowed to pass only with {tf} equal to 'DiskOrCreate'"),
                ));
            }
        }
    }
    if no_clouds > 1 {
        errs.push(err(
            &at,
            format!("{at} must have max one cloudInitNoCloud volume set"),
        ));
    }
}

/// Go's `filepath.Join("/", p) == strings.TrimSuffix(p, "/")`.
fn is_clean_absolute(p: &str) -> bool {
    let trimmed = p.strip_suffix('/').unwrap_or(p);
    trimmed.starts_with('/')
        && trimmed[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

fn cloud_init(errs: &mut Vec<ValidationError>, f: &str, c: &CloudInitNoCloudSource) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut user_sources = 0;
    let mut user_len = 0;
    if c.secret_ref.as_ref().is_some_and(|r| !r.name.is_empty()) {
        user_sources += 1;
    }
    if let Some(s) = c.user_data_base64.as_deref().filter(|s| !s.is_empty()) {
        user_sources += 1;
        match b64.decode(s) {
            Ok(d) => user_len = d.len(),
            Err(_) => errs.push(err(
                format!("{f}.userDataBase64"),
                format!("{f}.userDataBase64.cloudInitNoCloud.userDataBase64 is not a valid base64 value."),
            )),
        }
    }
    if let Some(s) = c.user_data.as_deref().filter(|s| !s.is_empty()) {
        user_sources += 1;
        user_len = s.len();
    }
    if user_sources > 1 {
        errs.push(err(
            f,
            format!("{f} must have only one userdatasource set."),
        ));
    }
    if user_len > CLOUD_INIT_MAX_LEN {
        errs.push(err(
            f,
            format!("{f} userdata exceeds {CLOUD_INIT_MAX_LEN} byte limit. Should use UserDataSecretRef for larger data."),
        ));
    }
    let mut net_sources = 0;
    let mut net_len = 0;
    if c.network_data_secret_ref
        .as_ref()
        .is_some_and(|r| !r.name.is_empty())
    {
        net_sources += 1;
    }
    if let Some(s) = c.network_data_base64.as_deref().filter(|s| !s.is_empty()) {
        net_sources += 1;
        match b64.decode(s) {
            Ok(d) => net_len = d.len(),
            Err(_) => errs.push(err(
                format!("{f}.networkDataBase64"),
                format!("{f}.networkDataBase64.cloudInitNoCloud.networkDataBase64 is not a valid base64 value."),
            )),
        }
    }
    if let Some(s) = c.network_data.as_deref().filter(|s| !s.is_empty()) {
        net_sources += 1;
        net_len = s.len();
    }
    if net_sources > 1 {
        errs.push(err(
            f,
            format!("{f} must have only one networkdata source set."),
        ));
    }
    if net_len > CLOUD_INIT_MAX_LEN {
        errs.push(err(
            f,
            format!(
                "{f} networkdata exceeds {CLOUD_INIT_MAX_LEN} byte limit. Should use NetworkDataSecretRef for larger data."
            ),
        ));
    }
    if user_sources == 0 && net_sources == 0 {
        errs.push(err(
            f,
            format!("{f} must have at least one userdatasource or one networkdatasource set."),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_as_go_parses_them() {
        assert_eq!(parse_mac_len("de:ad:00:00:be:af"), Some(6));
        assert_eq!(parse_mac_len("DE-AD-00-00-BE-AF"), Some(6));
        assert_eq!(parse_mac_len("dead.0000.beaf"), Some(6));
        assert_eq!(parse_mac_len("00:00:5e:00:53:01:02:03"), Some(8));
        for bad in [
            "",
            "de:ad:00:00:be",
            "de:ad:00:00:be:af:",
            "de:ad-00:00:be:af",
            "zz:ad:00:00:be:af",
            "dead0000beaf",
        ] {
            assert_eq!(parse_mac_len(bad), None, "{bad}");
        }
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:81:01.7"));
        assert!(is_pci_address("0000:0a:1F.0"));
        for bad in [
            "0000:81:01.8",
            "000:81:01.0",
            "0000:81:01",
            "0000-81:01.0",
            "0000:81:01.10",
        ] {
            assert!(!is_pci_address(bad), "{bad}");
        }
    }

    #[test]
    fn clean_paths() {
        assert!(is_clean_absolute("/disk/a.img"));
        assert!(is_clean_absolute("/disk/"));
        assert!(!is_clean_absolute("disk/a.img"));
        assert!(!is_clean_absolute("/disk/../a.img"));
        assert!(!is_clean_absolute("/disk//a.img"));
    }
}
