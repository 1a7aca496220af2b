//! The QEMU command line for a [`LaunchConfig`], as data: a pure function, so every choice
//! is visible in a snapshot.
//!
//! Choices, briefly: `-nodefaults -display none` (no video, no default serial/parallel/
//! network; not `-nographic`, which would put the serial port on our stdio); `-S`, as
//! libvirt does, so the launcher has QMP and the console attached before the guest runs its
//! first instruction, then `cont`s; no `-daemonize` and no `-pidfile` (the launcher is
//! QEMU's parent and knows its pid; a pidfile is one more file to go stale); `-sandbox on`
//! with everything a running VM does not need denied (QEMU is never asked to spawn a
//! helper: taps are opened with `script=no`); devices, block nodes and objects in QEMU's
//! JSON syntax, so paths and serials need no comma escaping; every PCI device at an address
//! chosen here (explicit ones first), so the guest's NIC order never depends on QEMU's
//! allocator; NIC option ROMs off unless the NIC boots (as KubeVirt does).

use serde_json::{json, Map, Value};

use crate::config::{
    memory_mib, Accel, Console, DiskBus, Firmware, LaunchConfig, ValidationError, FIRST_FREE_SLOT,
    LAST_FREE_SLOT,
};

/// SMBIOS type 1 strings as KubeVirt sets them.
const SMBIOS_MANUFACTURER: &str = "KubeVirt";
const SMBIOS_PRODUCT: &str = "None";
const SMBIOS_FAMILY: &str = "KubeVirt";

/// The PCI slot of each device that needs one, in the order the devices appear.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// `(slot, function)` per NIC.
    pub nics: Vec<(u8, u8)>,
    /// Per disk, for virtio disks.
    pub disks: Vec<Option<u8>>,
    pub scsi: Option<u8>,
    pub rng: Option<u8>,
}

/// Explicit NIC addresses keep their slot; everything else takes the lowest free slot in
/// order: NICs (so eth0, eth1… follow the spec's order), virtio disks, the SCSI controller,
/// the RNG.
pub(crate) fn assign_slots(cfg: &LaunchConfig) -> Result<Slots, ValidationError> {
    let mut used = [false; 32];
    for a in cfg.nics.iter().filter_map(|n| n.pci_address) {
        used[usize::from(a.slot & 0x1f)] = true;
    }
    let mut next = FIRST_FREE_SLOT;
    let mut take = || -> Result<u8, ValidationError> {
        while next <= LAST_FREE_SLOT {
            let s = next;
            next += 1;
            if !used[usize::from(s)] {
                used[usize::from(s)] = true;
                return Ok(s);
            }
        }
        Err(ValidationError::PciSlotsExhausted)
    };
    let mut slots = Slots::default();
    for n in &cfg.nics {
        slots.nics.push(match n.pci_address {
            Some(a) => (a.slot, a.function),
            None => (take()?, 0),
        });
    }
    for d in &cfg.disks {
        slots.disks.push(match d.bus {
            DiskBus::Virtio => Some(take()?),
            _ => None,
        });
    }
    if cfg.disks.iter().any(|d| d.bus == DiskBus::Scsi) {
        slots.scsi = Some(take()?);
    }
    if cfg.rng {
        slots.rng = Some(take()?);
    }
    Ok(slots)
}

/// A value inside a `key=value,...` option: QEMU reads `,,` as a literal comma.
fn esc(s: &str) -> String {
    s.replace(',', ",,")
}

fn path_str(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

fn addr(slot: u8, function: u8) -> String {
    format!("0x{slot:x}.{function:x}")
}

/// QEMU's argv for `cfg` (without the program name). `cfg` must have passed
/// [`LaunchConfig::validate`]; for anything else the result is unspecified (but no panic).
pub fn argv(cfg: &LaunchConfig) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |args: &[&str]| a.extend(args.iter().map(|s| (*s).to_owned()));
    let slots = assign_slots(cfg).unwrap_or_default();

    push(&[
        "-name",
        &format!("guest={},debug-threads=on", esc(&cfg.name)),
    ]);
    push(&["-uuid", &cfg.uuid.to_string()]);
    let mut machine = format!("{},usb=off,dump-guest-core=off", esc(&cfg.machine));
    if let Firmware::Efi { vars, .. } = &cfg.firmware {
        machine.push_str(",pflash0=pflash0");
        if vars.is_some() {
            machine.push_str(",pflash1=pflash1");
        }
    }
    push(&["-machine", &machine]);
    push(&["-accel", cfg.accel.as_str()]);
    // KVM passes the host's CPU through (KubeVirt's host-model, near enough); TCG keeps
    // QEMU's own baseline, which is the cheapest to emulate.
    push(&[
        "-cpu",
        match cfg.accel {
            Accel::Kvm => "host",
            Accel::Tcg => "qemu64",
        },
    ]);
    let t = cfg.cpu;
    let vcpus = t.vcpus().unwrap_or(1);
    push(&[
        "-smp",
        &format!(
            "{vcpus},sockets={},cores={},threads={}",
            t.sockets, t.cores, t.threads
        ),
    ]);
    push(&[
        "-m",
        &format!("size={}M", memory_mib(cfg.memory_bytes).unwrap_or(0)),
    ]);
    push(&["-no-user-config", "-nodefaults", "-display", "none"]);
    if cfg.sandbox {
        push(&[
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        ]);
    }
    push(&["-msg", "timestamp=on"]);
    push(&["-S"]);
    // A guest panic powers the VM off (QEMU exits after GUEST_PANICKED and a SHUTDOWN
    // with reason guest-panic), so the launcher reports it; stated, not left to defaults.
    push(&["-action", "panic=shutdown"]);

    let mut smbios = format!(
        "type=1,manufacturer={SMBIOS_MANUFACTURER},product={SMBIOS_PRODUCT},family={SMBIOS_FAMILY},uuid={}",
        cfg.uuid
    );
    if let Some(serial) = &cfg.smbios_serial {
        smbios.push_str(&format!(",serial={}", esc(serial)));
    }
    push(&["-smbios", &smbios]);

    if let Firmware::Efi { code, vars } = &cfg.firmware {
        let code = json!({"driver": "file", "filename": path_str(code),
            "node-name": "pflash0", "read-only": true});
        push(&["-blockdev", &code.to_string()]);
        if let Some(vars) = vars {
            let vars = json!({"driver": "file", "filename": path_str(vars),
                "node-name": "pflash1", "read-only": false});
            push(&["-blockdev", &vars.to_string()]);
        }
    }

    push(&[
        "-chardev",
        &format!(
            "socket,id=charmonitor,path={},server=on,wait=off",
            esc(&path_str(&cfg.qmp_socket))
        ),
    ]);
    push(&["-mon", "chardev=charmonitor,id=monitor,mode=control"]);

    let serial = match &cfg.console {
        Console::None => None,
        Console::Fd(fd) => Some(format!("socket,id=charserial0,fd={fd}")),
        Console::Socket(p) => Some(format!(
            "socket,id=charserial0,path={},server=on,wait=off",
            esc(&path_str(p))
        )),
    };
    if let Some(chardev) = serial {
        push(&["-chardev", &chardev]);
        push(&[
            "-device",
            r#"{"driver":"isa-serial","chardev":"charserial0","id":"serial0"}"#,
        ]);
    }

    if cfg.nics.iter().any(|n| n.boot_index.is_some())
        || cfg.disks.iter().any(|d| d.boot_index.is_some())
    {
        // Only the devices given a boot order boot, as KubeVirt's bootOrder means.
        push(&["-boot", "strict=on"]);
    }

    for (i, n) in cfg.nics.iter().enumerate() {
        let netdev_id = format!("hostua-{}", n.id);
        let mut netdev = Map::new();
        netdev.insert("type".into(), "tap".into());
        netdev.insert("id".into(), netdev_id.clone().into());
        netdev.insert("ifname".into(), n.tap.clone().into());
        netdev.insert("script".into(), "no".into());
        netdev.insert("downscript".into(), "no".into());
        if n.queues > 1 {
            netdev.insert("queues".into(), n.queues.into());
        }
        push(&["-netdev", &Value::Object(netdev).to_string()]);

        let (slot, function) = slots.nics.get(i).copied().unwrap_or((0, 0));
        let mut dev = Map::new();
        dev.insert("driver".into(), n.model.qemu_device().into());
        dev.insert("netdev".into(), netdev_id.into());
        dev.insert("id".into(), format!("ua-{}", n.id).into());
        dev.insert("mac".into(), n.mac.to_string().into());
        dev.insert("bus".into(), "pcie.0".into());
        dev.insert("addr".into(), addr(slot, function).into());
        match n.boot_index {
            Some(b) => {
                dev.insert("bootindex".into(), b.into());
            }
            // No PXE ROM for a NIC that does not boot: faster, and no ROM file needed.
            None => {
                dev.insert("romfile".into(), "".into());
            }
        }
        if n.queues > 1 {
            dev.insert("mq".into(), true.into());
            // One vector per queue each way, one for config, one for control.
            dev.insert("vectors".into(), (u32::from(n.queues) * 2 + 2).into());
        }
        push(&["-device", &Value::Object(dev).to_string()]);
    }

    if let Some(slot) = slots.scsi {
        let ctl = json!({"driver": "virtio-scsi-pci", "id": "scsi0", "bus": "pcie.0",
            "addr": addr(slot, 0)});
        push(&["-device", &ctl.to_string()]);
    }
    let (mut sata_port, mut scsi_lun) = (0u32, 0u32);
    for (i, d) in cfg.disks.iter().enumerate() {
        let node = format!("drive{i}");
        let read_only = d.readonly || d.cdrom;
        let block = json!({
            "driver": d.format.as_str(),
            "node-name": node,
            "read-only": read_only,
            "file": {"driver": "file", "filename": path_str(&d.path)},
        });
        push(&["-blockdev", &block.to_string()]);

        let mut dev = Map::new();
        match d.bus {
            DiskBus::Virtio => {
                let slot = slots.disks.get(i).copied().flatten().unwrap_or(0);
                dev.insert("driver".into(), "virtio-blk-pci".into());
                dev.insert("bus".into(), "pcie.0".into());
                dev.insert("addr".into(), addr(slot, 0).into());
            }
            DiskBus::Sata => {
                // The ICH9 AHCI controller built into q35 (00:1f.2), one disk per port.
                let driver = if d.cdrom { "ide-cd" } else { "ide-hd" };
                dev.insert("driver".into(), driver.into());
                dev.insert("bus".into(), format!("ide.{sata_port}").into());
                sata_port += 1;
            }
            DiskBus::Scsi => {
                let driver = if d.cdrom { "scsi-cd" } else { "scsi-hd" };
                dev.insert("driver".into(), driver.into());
                dev.insert("bus".into(), "scsi0.0".into());
                dev.insert("channel".into(), 0.into());
                dev.insert("scsi-id".into(), 0.into());
                dev.insert("lun".into(), scsi_lun.into());
                scsi_lun += 1;
            }
        }
        dev.insert("drive".into(), node.into());
        dev.insert("id".into(), format!("ua-{}", d.id).into());
        if let Some(b) = d.boot_index {
            dev.insert("bootindex".into(), b.into());
        }
        if let Some(s) = &d.serial {
            dev.insert("serial".into(), s.clone().into());
        }
        push(&["-device", &Value::Object(dev).to_string()]);
    }

    if let Some(slot) = slots.rng {
        let backend =
            json!({"qom-type": "rng-random", "id": "objrng0", "filename": "/dev/urandom"});
        push(&["-object", &backend.to_string()]);
        let dev = json!({"driver": "virtio-rng-pci", "rng": "objrng0", "id": "rng0",
            "bus": "pcie.0", "addr": addr(slot, 0)});
        push(&["-device", &dev.to_string()]);
    }
    if cfg.pvpanic {
        // The ISA device (I/O port 0x505, announced in ACPI as QEMU0001): Linux's
        // CONFIG_PVPANIC_MMIO driver finds it.
        push(&["-device", r#"{"driver":"pvpanic","id":"pvpanic0"}"#]);
    }
    a
}

impl LaunchConfig {
    /// [`LaunchConfig::validate`], then [`argv`].
    pub fn command_line(&self) -> Result<Vec<String>, ValidationError> {
        self.validate()?;
        Ok(argv(self))
    }
}
