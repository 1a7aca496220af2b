//! The QEMU command line as data: the seed VM and its neighbours, snapshot-tested, and the
//! validation that refuses what QEMU would refuse or run wrongly.

use std::path::PathBuf;

use oxivirt_qemu::{
    argv, memory_mib, Accel, Console, CpuTopology, Disk, DiskBus, DiskFormat, Firmware,
    LaunchConfig, MacAddr, Nic, NicModel, ParseError, PciAddress, Uuid, ValidationError,
};

fn mac(s: &str) -> MacAddr {
    s.parse().expect("mac")
}

/// The seed's testvm-2 as the launcher would hand it over: 64M, 1 vCPU, the containerDisk
/// overlay and the cloud-init disk on virtio (the seed says `bus: virtio` for both), the
/// masquerade NIC on tap0 and the bridge NIC on tap2df796c6902 with the pod's MAC.
fn seed() -> LaunchConfig {
    let mut c = LaunchConfig::new(
        "default_testvm-2",
        "5a9fc181-957e-5c32-9e5a-2de5e9673531"
            .parse()
            .expect("uuid"),
        64_000_000,
        PathBuf::from("/var/run/oxivirt/testvm-2/qmp.sock"),
    );
    c.smbios_serial = Some("5a9fc181-957e-5c32-9e5a-2de5e9673531".into());
    c.console = Console::Fd(3);
    c.disks = vec![
        Disk {
            id: "containerdisk".into(),
            path: "/var/run/oxivirt/testvm-2/containerdisk.qcow2".into(),
            format: DiskFormat::Qcow2,
            bus: DiskBus::Virtio,
            cdrom: false,
            readonly: false,
            boot_index: None,
            serial: None,
        },
        Disk {
            id: "cloudinitdisk".into(),
            path: "/var/run/oxivirt/testvm-2/cloudinit.iso".into(),
            format: DiskFormat::Raw,
            bus: DiskBus::Virtio,
            cdrom: false,
            readonly: false,
            boot_index: None,
            serial: None,
        },
    ];
    c.nics = vec![
        Nic {
            id: "default".into(),
            tap: "tap0".into(),
            mac: mac("52:54:00:6b:1e:2c"),
            model: NicModel::Virtio,
            pci_address: None,
            boot_index: None,
            queues: 1,
        },
        Nic {
            id: "ext-net".into(),
            tap: "tap2df796c6902".into(),
            mac: mac("7e:5c:2a:91:3d:0f"),
            model: NicModel::Virtio,
            pci_address: None,
            boot_index: None,
            queues: 1,
        },
    ];
    c
}

/// One option and its value per line, for snapshots people can read.
fn render(c: &LaunchConfig) -> String {
    c.validate().expect("a valid config");
    let args = argv(c);
    let mut out = String::new();
    let mut i = 0;
    while i < args.len() {
        out.push_str(&args[i]);
        if args[i].starts_with('-') && args.get(i + 1).is_some_and(|v| !v.starts_with('-')) {
            out.push(' ');
            out.push_str(&args[i + 1]);
            i += 1;
        }
        out.push('\n');
        i += 1;
    }
    out
}

#[test]
fn seed_vm() {
    insta::assert_snapshot!(render(&seed()));
}

#[test]
fn cloud_init_as_a_sata_cdrom_and_boot_order() {
    let mut c = seed();
    c.disks[0].boot_index = Some(1);
    c.disks[1].bus = DiskBus::Sata;
    c.disks[1].cdrom = true;
    c.disks[1].serial = Some("CIDATA-1".into());
    insta::assert_snapshot!(render(&c));
}

#[test]
fn scsi_disks_get_one_virtio_scsi_controller() {
    let mut c = seed();
    c.disks[0].bus = DiskBus::Scsi;
    c.disks[0].readonly = true;
    c.disks[1].bus = DiskBus::Scsi;
    c.disks[1].cdrom = true;
    insta::assert_snapshot!(render(&c));
}

#[test]
fn explicit_pci_address_is_kept_and_others_flow_around_it() {
    let mut c = seed();
    // The second NIC asks for slot 2, which the first would have taken.
    c.nics[1].pci_address = Some("0000:00:02.0".parse().expect("pci"));
    c.nics[1].model = NicModel::E1000e;
    c.nics[0].queues = 4;
    c.nics[0].boot_index = Some(2);
    c.disks[0].boot_index = Some(1);
    let out = render(&c);
    assert!(
        out.contains(r#""addr":"0x2.0","bus":"pcie.0","driver":"e1000e","id":"ua-ext-net""#),
        "{out}"
    );
    insta::assert_snapshot!(out);
}

#[test]
fn kvm_with_efi_and_a_topology() {
    let mut c = seed();
    c.accel = Accel::Kvm;
    c.cpu = CpuTopology {
        sockets: 1,
        cores: 2,
        threads: 2,
    };
    c.memory_bytes = 2 << 30;
    c.firmware = Firmware::Efi {
        code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
        vars: Some("/var/run/oxivirt/testvm-2/OVMF_VARS.fd".into()),
    };
    c.console = Console::Socket("/var/run/oxivirt/testvm-2/serial,0.sock".into());
    c.pvpanic = false;
    c.rng = false;
    insta::assert_snapshot!(render(&c));
}

#[test]
fn every_nic_model_maps_to_its_qemu_device() {
    let models = [
        ("virtio", "virtio-net-pci"),
        ("e1000", "e1000"),
        ("e1000e", "e1000e"),
        ("igb", "igb"),
        ("ne2k_pci", "ne2k_pci"),
        ("pcnet", "pcnet"),
        ("rtl8139", "rtl8139"),
    ];
    for (api, dev) in models {
        let m: NicModel = api.parse().expect("model");
        assert_eq!(m.as_str(), api);
        assert_eq!(m.qemu_device(), dev);
    }
    assert_eq!(
        "virtio-net".parse::<NicModel>(),
        Err(ParseError::NicModel("virtio-net".into()))
    );
}

#[test]
fn memory_is_rounded_up_to_whole_mib() {
    // The seed's 64M: 61.04 MiB → 62 MiB, never less than asked.
    assert_eq!(memory_mib(64_000_000), Some(62));
    assert_eq!(memory_mib(64 << 20), Some(64));
    assert_eq!(memory_mib((64 << 20) + 1), Some(65));
    assert_eq!(memory_mib(u64::MAX), None);
    assert!(render(&seed()).contains("-m size=62M\n"));
}

#[test]
fn value_types_parse_and_print() {
    let a: PciAddress = "0000:00:1e.7".parse().expect("pci");
    assert_eq!(a.to_string(), "0000:00:1e.7");
    for bad in [
        "0000:00:20.0",
        "00:00:02.0",
        "0000:00:02",
        "0000:00:02.8",
        "zzzz:00:02.0",
        "",
    ] {
        assert_eq!(
            bad.parse::<PciAddress>(),
            Err(ParseError::PciAddress(bad.into())),
            "{bad}"
        );
    }
    assert_eq!(mac("02:AB:00:00:00:01").to_string(), "02:ab:00:00:00:01");
    for bad in [
        "02:ab:00:00:00",
        "02:ab:00:00:00:01:02",
        "02-ab-00-00-00-01",
        "2:ab:00:00:00:1",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
    }
    let u: Uuid = "5A9FC181-957E-5C32-9E5A-2DE5E9673531"
        .parse()
        .expect("uuid");
    assert_eq!(u.to_string(), "5a9fc181-957e-5c32-9e5a-2de5e9673531");
    assert!("5a9fc181957e5c329e5a2de5e9673531".parse::<Uuid>().is_err());
    assert_eq!("qcow2".parse::<DiskFormat>(), Ok(DiskFormat::Qcow2));
    assert!("vmdk".parse::<DiskFormat>().is_err());
    assert_eq!("sata".parse::<DiskBus>(), Ok(DiskBus::Sata));
    assert_eq!(
        "ide".parse::<DiskBus>(),
        Err(ParseError::DiskBus("ide".into()))
    );
}

fn refused(f: impl FnOnce(&mut LaunchConfig)) -> ValidationError {
    let mut c = seed();
    f(&mut c);
    c.validate().expect_err("refused")
}

#[test]
fn validation_refuses_nonsense() {
    assert_eq!(
        refused(|c| c.cpu.cores = 0),
        ValidationError::Cpu {
            sockets: 1,
            cores: 0,
            threads: 1
        }
    );
    assert!(matches!(
        refused(|c| c.cpu = CpuTopology {
            sockets: 16,
            cores: 16,
            threads: 2
        }),
        ValidationError::Cpu { .. }
    ));
    assert!(matches!(
        refused(|c| c.cpu = CpuTopology {
            sockets: u32::MAX,
            cores: 2,
            threads: 1
        }),
        ValidationError::Cpu { .. }
    ));
    assert_eq!(
        refused(|c| c.memory_bytes = 64),
        ValidationError::MemoryTooSmall { bytes: 64 }
    );
    assert_eq!(
        refused(|c| c.memory_bytes = (32 << 20) - 1),
        ValidationError::MemoryTooSmall {
            bytes: (32 << 20) - 1
        }
    );
    assert!(matches!(
        refused(|c| c.memory_bytes = u64::MAX),
        ValidationError::MemoryTooLarge { .. }
    ));
    assert_eq!(
        refused(|c| c.machine = "pc".into()),
        ValidationError::Machine("pc".into())
    );
    assert_eq!(
        refused(|c| c.nics[1].id = "containerdisk".into()),
        ValidationError::DuplicateId("containerdisk".into())
    );
    assert_eq!(
        refused(|c| c.disks[0].id = "bad id".into()),
        ValidationError::DeviceId("bad id".into())
    );
    assert_eq!(
        refused(|c| {
            c.disks[0].boot_index = Some(1);
            c.nics[0].boot_index = Some(1);
        }),
        ValidationError::DuplicateBootIndex(1)
    );
    assert_eq!(
        refused(|c| c.nics[1].tap = "tap2df796c6902xx".into()),
        ValidationError::TapName {
            id: "ext-net".into(),
            tap: "tap2df796c6902xx".into()
        }
    );
    assert!(matches!(
        refused(|c| c.nics[0].tap = String::new()),
        ValidationError::TapName { .. }
    ));
    assert_eq!(
        refused(|c| c.nics[1].mac = c.nics[0].mac),
        ValidationError::DuplicateMac(mac("52:54:00:6b:1e:2c"))
    );
    assert!(matches!(
        refused(|c| c.nics[0].mac = mac("01:00:5e:00:00:01")),
        ValidationError::Mac { .. }
    ));
    for bad in [
        "0000:01:02.0",
        "0001:00:02.0",
        "0000:00:00.0",
        "0000:00:01.0",
        "0000:00:1f.0",
    ] {
        let address: PciAddress = bad.parse().expect("well-formed");
        assert_eq!(
            refused(|c| c.nics[0].pci_address = Some(address)),
            ValidationError::PciAddressUnsupported {
                id: "default".into(),
                address
            },
            "{bad}"
        );
    }
    assert!(matches!(
        refused(|c| {
            c.nics[0].pci_address = "0000:00:05.0".parse().ok();
            c.nics[1].pci_address = "0000:00:05.0".parse().ok();
        }),
        ValidationError::DuplicatePciAddress(_)
    ));
    assert!(matches!(
        refused(|c| {
            c.nics[0].model = NicModel::E1000;
            c.nics[0].queues = 2;
        }),
        ValidationError::Queues { .. }
    ));
    assert!(matches!(
        refused(|c| c.nics[0].queues = 0),
        ValidationError::Queues { .. }
    ));
    assert_eq!(
        refused(|c| c.disks[1].cdrom = true),
        ValidationError::CdromOnVirtio {
            id: "cloudinitdisk".into()
        }
    );
    assert!(matches!(
        refused(|c| c.disks[0].serial = Some("x".repeat(21))),
        ValidationError::DiskSerial { .. }
    ));
    assert!(matches!(
        refused(|c| {
            for i in 0..7 {
                let mut d = c.disks[1].clone();
                d.id = format!("sata{i}");
                d.bus = DiskBus::Sata;
                c.disks.push(d);
            }
        }),
        ValidationError::TooManySataDisks
    ));
    assert_eq!(
        refused(|c| {
            for i in 0..30 {
                let mut d = c.disks[0].clone();
                d.id = format!("d{i}");
                c.disks.push(d);
            }
        }),
        ValidationError::PciSlotsExhausted
    );
    assert_eq!(refused(|c| c.name = String::new()), ValidationError::Name);
    assert_eq!(
        refused(|c| c.console = Console::Fd(-1)),
        ValidationError::ConsoleFd(-1)
    );
}

#[test]
fn commas_in_option_values_are_doubled() {
    let mut c = seed();
    c.name = "ns_a,b".into();
    c.qmp_socket = "/run/a,b/qmp.sock".into();
    let out = render(&c);
    assert!(
        out.contains("-name guest=ns_a,,b,debug-threads=on\n"),
        "{out}"
    );
    assert!(out.contains("path=/run/a,,b/qmp.sock,server=on"), "{out}");
}
