//! The launch config: plain data the launcher fills in from a VMI (no KubeVirt types here),
//! the small value types with their parsers, and [`LaunchConfig::validate`], which refuses
//! what QEMU would refuse (or silently do wrong) before anything is started.

use std::collections::HashSet;
use std::fmt;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::str::FromStr;

/// The smallest guest memory accepted: our test guest (a tinyconfig kernel) boots under TCG
/// in about 31 MiB and SeaBIOS with its tables needs a few MiB of that itself; anything
/// smaller is a unit mistake (`64` instead of `64M`), not a VM that can boot.
pub const MIN_MEMORY_BYTES: u64 = 32 << 20;

/// The most vCPUs accepted: QEMU's q35 limit without an IOMMU for x2APIC is 288; we stay
/// at 255 (xAPIC ids), which needs nothing else.
pub const MAX_VCPUS: u32 = 255;

/// Everything QEMU needs to run one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchConfig {
    /// The VM's name (`-name guest=`); KubeVirt's domain name is `<namespace>_<name>`.
    pub name: String,
    pub uuid: Uuid,
    /// SMBIOS system serial (KubeVirt's `firmware.serial`).
    pub smbios_serial: Option<String>,
    pub cpu: CpuTopology,
    /// Guest memory as requested; QEMU gets it rounded up to whole MiB (see [`memory_mib`]).
    pub memory_bytes: u64,
    /// QEMU machine type, `q35` as KubeVirt's default.
    pub machine: String,
    pub accel: Accel,
    pub firmware: Firmware,
    pub disks: Vec<Disk>,
    pub nics: Vec<Nic>,
    /// The guest's first serial port.
    pub console: Console,
    /// Where QEMU listens for QMP (it creates the socket).
    pub qmp_socket: PathBuf,
    /// A pvpanic device, so a guest kernel panic is reported (`GUEST_PANICKED`).
    pub pvpanic: bool,
    /// A virtio-rng device fed from the host's `/dev/urandom`.
    pub rng: bool,
    /// QEMU's seccomp sandbox (`-sandbox on`, with privilege changes, spawning and
    /// resource control denied). On by default; off only for a QEMU built without
    /// seccomp (Debian's has it).
    pub sandbox: bool,
}

impl LaunchConfig {
    /// A config with KubeVirt's defaults (q35, BIOS, 1 vCPU, pvpanic and rng on), no disks
    /// and no NICs.
    pub fn new(name: impl Into<String>, uuid: Uuid, memory_bytes: u64, qmp: PathBuf) -> Self {
        Self {
            name: name.into(),
            uuid,
            smbios_serial: None,
            cpu: CpuTopology::default(),
            memory_bytes,
            machine: "q35".into(),
            accel: Accel::Tcg,
            firmware: Firmware::Bios,
            disks: Vec::new(),
            nics: Vec::new(),
            console: Console::None,
            qmp_socket: qmp,
            pvpanic: true,
            rng: true,
            sandbox: true,
        }
    }
}

/// `-smp`: sockets × cores × threads vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTopology {
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
}

impl Default for CpuTopology {
    fn default() -> Self {
        Self {
            sockets: 1,
            cores: 1,
            threads: 1,
        }
    }
}

impl CpuTopology {
    /// The vCPU count, `None` on overflow.
    pub fn vcpus(&self) -> Option<u32> {
        self.sockets
            .checked_mul(self.cores)?
            .checked_mul(self.threads)
    }
}

/// The accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the guest boots with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Firmware {
    /// SeaBIOS, built into QEMU.
    #[default]
    Bios,
    /// OVMF: the code image (read-only) and, optionally, a writable copy of the variable
    /// store owned by this VM.
    Efi {
        code: PathBuf,
        vars: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

impl FromStr for DiskFormat {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "raw" => Ok(DiskFormat::Raw),
            "qcow2" => Ok(DiskFormat::Qcow2),
            _ => Err(ParseError::DiskFormat(s.into())),
        }
    }
}

/// KubeVirt's `disk.bus` values that we support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    Virtio,
    Sata,
    Scsi,
}

impl DiskBus {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskBus::Virtio => "virtio",
            DiskBus::Sata => "sata",
            DiskBus::Scsi => "scsi",
        }
    }
}

impl FromStr for DiskBus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "virtio" => Ok(DiskBus::Virtio),
            "sata" => Ok(DiskBus::Sata),
            "scsi" => Ok(DiskBus::Scsi),
            _ => Err(ParseError::DiskBus(s.into())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The device id (KubeVirt's disk name); `[A-Za-z0-9_-]`, unique.
    pub id: String,
    pub path: PathBuf,
    pub format: DiskFormat,
    pub bus: DiskBus,
    pub cdrom: bool,
    pub readonly: bool,
    /// KubeVirt's `bootOrder`: 1 boots first.
    pub boot_index: Option<u16>,
    /// The serial the guest sees (`/dev/disk/by-id`), at most 20 bytes.
    pub serial: Option<String>,
}

/// KubeVirt's interface models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicModel {
    Virtio,
    E1000,
    E1000e,
    Igb,
    Ne2kPci,
    Pcnet,
    Rtl8139,
}

impl NicModel {
    /// The name KubeVirt's API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio",
            NicModel::E1000 => "e1000",
            NicModel::E1000e => "e1000e",
            NicModel::Igb => "igb",
            NicModel::Ne2kPci => "ne2k_pci",
            NicModel::Pcnet => "pcnet",
            NicModel::Rtl8139 => "rtl8139",
        }
    }

    /// QEMU's device for it.
    pub fn qemu_device(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio-net-pci",
            other => other.as_str(),
        }
    }
}

impl FromStr for NicModel {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Ok(match s {
            "virtio" => NicModel::Virtio,
            "e1000" => NicModel::E1000,
            "e1000e" => NicModel::E1000e,
            "igb" => NicModel::Igb,
            "ne2k_pci" => NicModel::Ne2kPci,
            "pcnet" => NicModel::Pcnet,
            "rtl8139" => NicModel::Rtl8139,
            _ => return Err(ParseError::NicModel(s.into())),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// The device id (KubeVirt's interface name); `[A-Za-z0-9_-]`, unique.
    pub id: String,
    /// The tap the binding made; QEMU attaches to it by name, so QEMU runs in the pod's
    /// network namespace.
    pub tap: String,
    pub mac: MacAddr,
    pub model: NicModel,
    pub pci_address: Option<PciAddress>,
    pub boot_index: Option<u16>,
    /// virtio-net queue pairs (1 = single queue; more needs a multi-queue tap).
    pub queues: u16,
}

/// Where the guest's first serial port goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Console {
    /// No serial port.
    None,
    /// A connected stream socket passed to QEMU (the other end of a socketpair the launcher
    /// keeps): the launcher's relay reads from the first byte, with no path and no connect
    /// step. The launcher must leave it open across exec (see `supervisor`).
    Fd(RawFd),
    /// QEMU listens on this path (`server=on,wait=off`) and the relay connects, before
    /// `cont`: QEMU starts paused (`-S`) so nothing is written before that.
    Socket(PathBuf),
}

/// The parse errors of the value types (what a VMI field can be wrong about before any
/// cross-field check).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0:?} is not a MAC address (xx:xx:xx:xx:xx:xx)")]
    Mac(String),
    #[error("{0:?} is not a PCI address (dddd:bb:ss.f)")]
    PciAddress(String),
    #[error("{0:?} is not a UUID")]
    Uuid(String),
    #[error("disk format {0:?} is not supported (raw, qcow2)")]
    DiskFormat(String),
    #[error("disk bus {0:?} is not supported (virtio, sata, scsi)")]
    DiskBus(String),
    #[error(
        "interface model {0:?} is not supported (virtio, e1000, e1000e, igb, ne2k_pci, pcnet, rtl8139)"
    )]
    NicModel(String),
    #[error("accelerator {0:?} is not one of auto, kvm, tcg")]
    Accel(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError::Mac(s.into());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts.next().ok_or_else(err)?;
            if p.len() != 2 {
                return Err(err());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// KubeVirt's `pciAddress`: `dddd:bb:ss.f`, hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
}

impl FromStr for PciAddress {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError::PciAddress(s.into());
        let hex = |p: &str, len: usize| -> Result<u32, ParseError> {
            if p.len() != len || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            u32::from_str_radix(p, 16).map_err(|_| err())
        };
        let (domain, rest) = s.split_once(':').ok_or_else(err)?;
        let (bus, rest) = rest.split_once(':').ok_or_else(err)?;
        let (slot, function) = rest.split_once('.').ok_or_else(err)?;
        let (domain, bus, slot, function) = (
            hex(domain, 4)?,
            hex(bus, 2)?,
            hex(slot, 2)?,
            hex(function, 1)?,
        );
        if slot > 0x1f || function > 7 {
            return Err(err());
        }
        Ok(PciAddress {
            domain: u16::try_from(domain).map_err(|_| err())?,
            bus: u8::try_from(bus).map_err(|_| err())?,
            slot: u8::try_from(slot).map_err(|_| err())?,
            function: u8::try_from(function).map_err(|_| err())?,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid(pub [u8; 16]);

impl FromStr for Uuid {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError::Uuid(s.into());
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] {
            return Err(err());
        }
        let hex: String = groups.concat();
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            let pair = hex.get(2 * i..2 * i + 2).ok_or_else(err)?;
            *b = u8::from_str_radix(pair, 16).map_err(|_| err())?;
        }
        Ok(Uuid(out))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a config cannot be run; each names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("name must be non-empty printable text")]
    Name,
    #[error("cpu topology {sockets} sockets × {cores} cores × {threads} threads: each must be at least 1 and the product at most {MAX_VCPUS}")]
    Cpu {
        sockets: u32,
        cores: u32,
        threads: u32,
    },
    #[error("memory {bytes} bytes is below the minimum of {MIN_MEMORY_BYTES} bytes (32 MiB)")]
    MemoryTooSmall { bytes: u64 },
    #[error("memory {bytes} bytes is too large")]
    MemoryTooLarge { bytes: u64 },
    #[error("machine type {0:?} is not supported (q35 or pc-q35-*)")]
    Machine(String),
    #[error("device id {0:?} must be 1-32 characters of [A-Za-z0-9_-]")]
    DeviceId(String),
    #[error("device id {0:?} is used twice")]
    DuplicateId(String),
    #[error("boot order {0} is used twice")]
    DuplicateBootIndex(u16),
    #[error("disk {id}: a cdrom cannot be on the virtio bus (sata or scsi)")]
    CdromOnVirtio { id: String },
    #[error("disk {id}: serial {serial:?} must be 1-20 characters of [A-Za-z0-9_.+-]")]
    DiskSerial { id: String, serial: String },
    #[error("at most 6 sata disks fit the q35 AHCI controller")]
    TooManySataDisks,
    #[error(
        "interface {id}: tap name {tap:?} must be 1-15 bytes without '/', ':', ',' or whitespace"
    )]
    TapName { id: String, tap: String },
    #[error("interface {id}: MAC {mac} is multicast or all zeros")]
    Mac { id: String, mac: MacAddr },
    #[error("MAC {0} is used twice")]
    DuplicateMac(MacAddr),
    #[error("interface {id}: PCI address {address} is not supported: only domain 0000, bus 00 and slots 02-1e (the rest belong to the q35 chipset)")]
    PciAddressUnsupported { id: String, address: PciAddress },
    #[error("PCI address {0} is used twice")]
    DuplicatePciAddress(PciAddress),
    #[error("interface {id}: {queues} queues: 1-16, and more than 1 only with the virtio model")]
    Queues { id: String, queues: u16 },
    #[error("too many PCI devices for bus 0")]
    PciSlotsExhausted,
    #[error("smbios serial must be printable text")]
    SmbiosSerial,
    #[error("console file descriptor {0} is not a descriptor")]
    ConsoleFd(i32),
    #[error("{what} path must not be empty")]
    EmptyPath { what: &'static str },
}

fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn printable(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_control)
}

/// The first PCI slot left to devices on q35: 0 is the host bridge, and slot 1 is where a
/// video card would go (kept free, as QEMU and libvirt do).
pub(crate) const FIRST_FREE_SLOT: u8 = 2;
/// 0x1f is the ICH9 (LPC, AHCI, SMBus).
pub(crate) const LAST_FREE_SLOT: u8 = 0x1e;

impl LaunchConfig {
    /// Refuses a config QEMU would refuse, or run other than asked. The first problem wins.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !printable(&self.name) {
            return Err(ValidationError::Name);
        }
        let CpuTopology {
            sockets,
            cores,
            threads,
        } = self.cpu;
        match self.cpu.vcpus() {
            Some(n) if sockets > 0 && cores > 0 && threads > 0 && n <= MAX_VCPUS => {}
            _ => {
                return Err(ValidationError::Cpu {
                    sockets,
                    cores,
                    threads,
                })
            }
        }
        if self.memory_bytes < MIN_MEMORY_BYTES {
            return Err(ValidationError::MemoryTooSmall {
                bytes: self.memory_bytes,
            });
        }
        if memory_mib(self.memory_bytes).is_none() {
            return Err(ValidationError::MemoryTooLarge {
                bytes: self.memory_bytes,
            });
        }
        if self.machine != "q35" && !self.machine.starts_with("pc-q35-") {
            return Err(ValidationError::Machine(self.machine.clone()));
        }
        if let Some(serial) = &self.smbios_serial {
            if !printable(serial) {
                return Err(ValidationError::SmbiosSerial);
            }
        }
        if self.qmp_socket.as_os_str().is_empty() {
            return Err(ValidationError::EmptyPath { what: "QMP socket" });
        }
        if let Console::Fd(fd) = self.console {
            if fd < 0 {
                return Err(ValidationError::ConsoleFd(fd));
            }
        }
        if let Console::Socket(p) = &self.console {
            if p.as_os_str().is_empty() {
                return Err(ValidationError::EmptyPath {
                    what: "console socket",
                });
            }
        }
        if let Firmware::Efi { code, vars } = &self.firmware {
            if code.as_os_str().is_empty()
                || vars.as_ref().is_some_and(|v| v.as_os_str().is_empty())
            {
                return Err(ValidationError::EmptyPath { what: "firmware" });
            }
        }

        let mut ids = HashSet::new();
        let mut boot = HashSet::new();
        let mut check_common = |id: &str, boot_index: Option<u16>| {
            if !valid_id(id) {
                return Err(ValidationError::DeviceId(id.into()));
            }
            if !ids.insert(id.to_owned()) {
                return Err(ValidationError::DuplicateId(id.into()));
            }
            if let Some(b) = boot_index {
                if !boot.insert(b) {
                    return Err(ValidationError::DuplicateBootIndex(b));
                }
            }
            Ok(())
        };
        for d in &self.disks {
            check_common(&d.id, d.boot_index)?;
            if d.path.as_os_str().is_empty() {
                return Err(ValidationError::EmptyPath { what: "disk" });
            }
            if d.cdrom && d.bus == DiskBus::Virtio {
                return Err(ValidationError::CdromOnVirtio { id: d.id.clone() });
            }
            if let Some(serial) = &d.serial {
                let ok = (1..=20).contains(&serial.len())
                    && serial
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b));
                if !ok {
                    return Err(ValidationError::DiskSerial {
                        id: d.id.clone(),
                        serial: serial.clone(),
                    });
                }
            }
        }
        if self.disks.iter().filter(|d| d.bus == DiskBus::Sata).count() > 6 {
            return Err(ValidationError::TooManySataDisks);
        }
        let mut macs = HashSet::new();
        let mut addrs = HashSet::new();
        for n in &self.nics {
            check_common(&n.id, n.boot_index)?;
            let tap_ok = (1..=15).contains(&n.tap.len())
                && !n.tap.bytes().any(|b| {
                    b == b'/' || b == b':' || b == b',' || b.is_ascii_whitespace() || b == 0
                });
            if !tap_ok {
                return Err(ValidationError::TapName {
                    id: n.id.clone(),
                    tap: n.tap.clone(),
                });
            }
            if n.mac.0[0] & 1 == 1 || n.mac.0 == [0; 6] {
                return Err(ValidationError::Mac {
                    id: n.id.clone(),
                    mac: n.mac,
                });
            }
            if !macs.insert(n.mac) {
                return Err(ValidationError::DuplicateMac(n.mac));
            }
            if let Some(a) = n.pci_address {
                if a.domain != 0
                    || a.bus != 0
                    || !(FIRST_FREE_SLOT..=LAST_FREE_SLOT).contains(&a.slot)
                {
                    return Err(ValidationError::PciAddressUnsupported {
                        id: n.id.clone(),
                        address: a,
                    });
                }
                if !addrs.insert((a.slot, a.function)) {
                    return Err(ValidationError::DuplicatePciAddress(a));
                }
            }
            if n.queues == 0 || n.queues > 16 || (n.queues > 1 && n.model != NicModel::Virtio) {
                return Err(ValidationError::Queues {
                    id: n.id.clone(),
                    queues: n.queues,
                });
            }
        }
        crate::argv::assign_slots(self).map(drop)
    }
}

/// Guest memory in whole MiB, rounded up, as libvirt (and so KubeVirt) gives it to QEMU on
/// x86: `64M` = 64,000,000 bytes → 62 MiB. `None` when it does not fit.
pub fn memory_mib(bytes: u64) -> Option<u64> {
    let mib = bytes.div_ceil(1 << 20);
    // QEMU's size parser works in bytes (u64); stay well within it.
    (mib <= 1 << 30).then_some(mib)
}
