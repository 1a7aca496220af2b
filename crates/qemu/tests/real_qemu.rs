//! The generated command line and the QMP client against a real QEMU (TCG, no guest OS:
//! SeaBIOS finds nothing to boot and waits). Skips loudly without `qemu-system-x86_64`.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use oxivirt_qemu::qmp::{Event, EventKind, Qmp, RunState};
use oxivirt_qemu::supervisor::{self, StartError, Started};
use oxivirt_qemu::{
    Accel, Console, Disk, DiskBus, DiskFormat, Firmware, LaunchConfig, Nic, NicModel,
};
use oxivirt_testkit::cleanup::{self, Registration, TempDir};

const QEMU: &str = "qemu-system-x86_64";
const T: Duration = Duration::from_secs(10);

fn qemu_or_skip(test: &str) -> bool {
    if oxivirt_testkit::which(QEMU).is_none() {
        oxivirt_testkit::skip(test, "qemu-system-x86_64 is not installed");
        return false;
    }
    true
}

fn config(dir: &Path, memory: u64) -> LaunchConfig {
    let mut c = LaunchConfig::new(
        "oxivirt-test",
        "5a9fc181-957e-5c32-9e5a-2de5e9673531"
            .parse()
            .expect("uuid"),
        memory,
        dir.join("qmp.sock"),
    );
    c.accel = Accel::Tcg;
    c
}

/// Starts `cmd` + the config's argv, registered for cleanup (killed on Ctrl-C).
fn start(cmd: Command, cfg: &LaunchConfig) -> Result<(Started, Registration), StartError> {
    let mut reg = None;
    let started = supervisor::start(cmd, cfg, T, |c| {
        let (child, r) = cleanup::spawn(c)?;
        reg = Some(r);
        Ok(child)
    })?;
    Ok((started, reg.expect("spawned")))
}

fn next_event(events: &Receiver<Event>, want: impl Fn(&EventKind) -> bool) -> EventKind {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = events.recv_timeout(left).expect("the event came");
        if want(&e.kind) {
            return e.kind;
        }
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Start → prelaunch → cont → running (timed) → stop → paused → reset → RESET →
/// quit → SHUTDOWN and exit 0; the serial console on a passed socket; RSS reported.
#[test]
fn lifecycle_over_qmp_with_real_qemu() {
    if !qemu_or_skip("real_qemu::lifecycle_over_qmp_with_real_qemu") {
        return;
    }
    let dir = TempDir::new("qemu").expect("temp dir");
    let (relay, qemu_end) = UnixStream::pair().expect("socketpair");
    let mut cfg = config(dir.path(), 64 << 20);
    cfg.console = Console::Fd(qemu_end.as_raw_fd());

    let t0 = Instant::now();
    let (mut s, _reg) = start(Command::new(QEMU), &cfg).expect("QEMU started");
    drop(qemu_end);
    let qmp_ready = t0.elapsed();
    let events = s.qmp.events().expect("events");
    let st = s.qmp.query_status().expect("status");
    assert_eq!(st.status, RunState::Prelaunch);
    assert!(!st.running);
    s.qmp.cont().expect("cont");
    let st = s.qmp.query_status().expect("status");
    let to_running = t0.elapsed();
    assert_eq!(st.status, RunState::Running);
    assert_eq!(next_event(&events, |_| true), EventKind::Resume);
    eprintln!(
        "QEMU {}.{}.{}: process start → QMP up {qmp_ready:?}, → running {to_running:?}",
        s.qmp.greeting().version.0,
        s.qmp.greeting().version.1,
        s.qmp.greeting().version.2
    );
    if let Some(kib) = rss_kib(s.child.id()) {
        eprintln!(
            "QEMU RSS with a 64 MiB TCG guest in SeaBIOS: {} MiB",
            kib / 1024
        );
    }

    s.qmp.stop().expect("stop");
    assert_eq!(next_event(&events, |_| true), EventKind::Stop);
    assert_eq!(
        s.qmp.query_status().expect("status").status,
        RunState::Paused
    );
    s.qmp.cont().expect("cont");
    assert_eq!(next_event(&events, |_| true), EventKind::Resume);

    s.qmp.system_reset().expect("reset");
    assert_eq!(
        next_event(&events, |k| matches!(k, EventKind::Reset { .. })),
        EventKind::Reset {
            guest: false,
            reason: "host-qmp-system-reset".into()
        }
    );

    s.qmp.quit().expect("quit");
    assert_eq!(
        next_event(&events, |k| matches!(k, EventKind::Shutdown { .. })),
        EventKind::Shutdown {
            guest: false,
            reason: "host-qmp-quit".into()
        }
    );
    let mut status = None;
    assert!(
        oxivirt_testkit::eventually(T, || {
            status = s.child.try_wait().expect("wait");
            status.is_some()
        }),
        "QEMU did not exit after quit"
    );
    assert!(status.expect("exited").success(), "{status:?}");
    // The console socket was QEMU's: its end is closed now.
    relay.set_read_timeout(Some(T)).expect("timeout");
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut &relay, &mut buf).expect("read");
    assert_eq!(n, 0, "QEMU's end of the console closes when it exits");
    assert!(s.qmp.closed().is_some());
}

/// A QEMU that cannot start is reported with its own words.
#[test]
fn an_early_exit_carries_qemus_stderr() {
    if !qemu_or_skip("real_qemu::an_early_exit_carries_qemus_stderr") {
        return;
    }
    let dir = TempDir::new("qemu").expect("temp dir");
    let mut cfg = config(dir.path(), 64 << 20);
    cfg.disks.push(Disk {
        id: "missing".into(),
        path: dir.path().join("no-such.qcow2"),
        format: DiskFormat::Qcow2,
        bus: DiskBus::Virtio,
        cdrom: false,
        readonly: false,
        boot_index: None,
        serial: None,
    });
    match start(Command::new(QEMU), &cfg) {
        Err(StartError::Exited { status, stderr }) => {
            assert!(!status.success());
            assert!(stderr.contains("no-such.qcow2"), "{stderr}");
        }
        other => panic!("expected an early exit, got {other:?}"),
    }
}

/// The seed's devices for real: two taps in a namespace, a qcow2 overlay on a raw base,
/// the cloud-init image as a SATA cdrom, a SCSI disk. QEMU accepts the argv and puts the
/// PCI devices where argv says.
#[oxivirt_testkit::root_test("qemu-system-x86_64", "qemu-img")]
fn the_seed_devices_are_accepted_and_placed() {
    let ns = oxivirt_testkit::TestNs::new("oxq");
    for tap in ["tap0", "tap2df796c6902"] {
        oxivirt_testkit::sh(&["ip", "-n", &ns.name, "tuntap", "add", tap, "mode", "tap"]);
    }
    let dir = TempDir::new("qemu").expect("temp dir");
    let d = dir.path();
    let base = d.join("base.img");
    let overlay = d.join("containerdisk.qcow2");
    let iso = d.join("cloudinit.iso");
    let scratch = d.join("scratch.raw");
    oxivirt_testkit::sh(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "raw",
        &base.to_string_lossy(),
        "8M",
    ]);
    oxivirt_testkit::sh(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "raw",
        "-b",
        &base.to_string_lossy(),
        &overlay.to_string_lossy(),
    ]);
    std::fs::write(&iso, vec![0u8; 64 * 1024]).expect("iso");
    std::fs::write(&scratch, vec![0u8; 1024 * 1024]).expect("scratch");

    let mut cfg = config(d, 64_000_000);
    let disk = |id: &str, path: &Path, format, bus, cdrom| Disk {
        id: id.into(),
        path: path.to_owned(),
        format,
        bus,
        cdrom,
        readonly: false,
        boot_index: None,
        serial: None,
    };
    cfg.disks = vec![
        disk(
            "containerdisk",
            &overlay,
            DiskFormat::Qcow2,
            DiskBus::Virtio,
            false,
        ),
        disk("cloudinitdisk", &iso, DiskFormat::Raw, DiskBus::Sata, true),
        disk("scratch", &scratch, DiskFormat::Raw, DiskBus::Scsi, false),
    ];
    cfg.disks[0].boot_index = Some(1);
    let nic = |id: &str, tap: &str, mac: &str| Nic {
        id: id.into(),
        tap: tap.into(),
        mac: mac.parse().expect("mac"),
        model: NicModel::Virtio,
        pci_address: None,
        boot_index: None,
        queues: 1,
    };
    cfg.nics = vec![
        nic("default", "tap0", "52:54:00:6b:1e:2c"),
        nic("ext-net", "tap2df796c6902", "7e:5c:2a:91:3d:0f"),
    ];
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, QEMU]);
    let (mut s, _reg) = start(cmd, &cfg).expect("QEMU started with the seed's devices");

    // Bus 0: slot → (vendor, device) as argv placed them.
    let pci = s.qmp.execute("query-pci", None).expect("query-pci");
    let devices = pci[0]["devices"].as_array().expect("devices");
    let at = |slot: u64| {
        devices
            .iter()
            .find(|d| d["slot"] == slot && d["function"] == 0)
            .map(|d| {
                (
                    d["id"]["vendor"].as_u64(),
                    d["id"]["device"].as_u64(),
                    d["qdev_id"].clone(),
                )
            })
    };
    let virtio = Some(0x1af4);
    assert_eq!(
        at(2).map(|x| (x.0, x.1)),
        Some((virtio, Some(0x1000))),
        "net at 02"
    );
    assert_eq!(at(2).map(|x| x.2), Some("ua-default".into()));
    assert_eq!(at(3).map(|x| x.2), Some("ua-ext-net".into()));
    assert_eq!(at(4).map(|x| x.2), Some("ua-containerdisk".into()));
    assert_eq!(at(5).map(|x| x.2), Some("scsi0".into()));
    assert_eq!(at(6).map(|x| x.2), Some("rng0".into()));

    let filters = s.qmp.execute("query-rx-filter", None).expect("rx filters");
    let mac_of = |name: &str| {
        filters
            .as_array()
            .and_then(|a| a.iter().find(|f| f["name"] == name))
            .map(|f| f["main-mac"].clone())
    };
    assert_eq!(mac_of("ua-default"), Some("52:54:00:6b:1e:2c".into()));
    assert_eq!(mac_of("ua-ext-net"), Some("7e:5c:2a:91:3d:0f".into()));

    let block = s.qmp.execute("query-block", None).expect("query-block");
    let qdevs: Vec<String> = block
        .as_array()
        .expect("block list")
        .iter()
        .filter_map(|b| b["qdev"].as_str().map(str::to_owned))
        .collect();
    for id in ["ua-containerdisk", "ua-cloudinitdisk", "ua-scratch"] {
        assert!(qdevs.iter().any(|q| q.contains(id)), "{id} in {qdevs:?}");
    }
    s.qmp.cont().expect("cont");
    assert_eq!(
        s.qmp.query_status().expect("status").status,
        RunState::Running
    );
    quit_and_wait(&mut s);
}

/// The EFI variant of the argv: OVMF's code read-only, a private copy of its variables.
#[test]
fn efi_firmware_starts() {
    if !qemu_or_skip("real_qemu::efi_firmware_starts") {
        return;
    }
    let (code, vars) = (
        Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd"),
        Path::new("/usr/share/OVMF/OVMF_VARS_4M.fd"),
    );
    if !code.exists() || !vars.exists() {
        oxivirt_testkit::skip("real_qemu::efi_firmware_starts", "ovmf is not installed");
        return;
    }
    let dir = TempDir::new("qemu").expect("temp dir");
    let my_vars = dir.path().join("OVMF_VARS.fd");
    std::fs::copy(vars, &my_vars).expect("copy vars");
    let mut cfg = config(dir.path(), 64 << 20);
    cfg.firmware = Firmware::Efi {
        code: code.to_owned(),
        vars: Some(my_vars),
    };
    let (mut s, _reg) = start(Command::new(QEMU), &cfg).expect("QEMU started with OVMF");
    s.qmp.cont().expect("cont");
    assert_eq!(
        s.qmp.query_status().expect("status").status,
        RunState::Running
    );
    quit_and_wait(&mut s);
}

/// A 64 KiB flash image whose reset vector (its last 16 bytes, at 0xfffffff0) runs
/// `code` in real mode: a stand-in guest for what only a guest can do.
fn tiny_firmware(dir: &Path, code: &[u8]) -> std::path::PathBuf {
    tiny_firmware_with(dir, code, &[])
}

/// The same with `start` at the image's first byte (CS:0000 after the reset, where a
/// `jmp 0` at the reset vector leads).
fn tiny_firmware_with(dir: &Path, code: &[u8], start: &[u8]) -> std::path::PathBuf {
    let mut image = vec![0xF4u8; 64 * 1024]; // hlt everywhere else
    let at = image.len() - 16;
    image[at..at + code.len()].copy_from_slice(code);
    image[..start.len()].copy_from_slice(start);
    let path = dir.join("tiny-firmware.bin");
    std::fs::write(&path, image).expect("firmware");
    path
}

fn with_firmware(test: &str, code: &[u8]) -> Option<(TempDir, LaunchConfig)> {
    if !qemu_or_skip(test) {
        return None;
    }
    let dir = TempDir::new("qemu").expect("temp dir");
    let mut cfg = config(dir.path(), 64 << 20);
    cfg.firmware = Firmware::Efi {
        code: tiny_firmware(dir.path(), code),
        vars: None,
    };
    Some((dir, cfg))
}

/// A guest that panics (writes 1 to the pvpanic port 0x505): GUEST_PANICKED, then
/// SHUTDOWN with reason guest-panic, and QEMU exits (`-action panic=shutdown`).
#[test]
fn a_guest_panic_is_reported_and_qemu_exits() {
    // mov al, 1; mov dx, 0x505; out dx, al; hlt
    let code = [0xB0, 0x01, 0xBA, 0x05, 0x05, 0xEE, 0xF4];
    let Some((_dir, cfg)) =
        with_firmware("real_qemu::a_guest_panic_is_reported_and_qemu_exits", &code)
    else {
        return;
    };
    assert!(cfg.pvpanic);
    let (mut s, _reg) = start(Command::new(QEMU), &cfg).expect("QEMU started");
    let events = s.qmp.events().expect("events");
    s.qmp.cont().expect("cont");
    assert!(matches!(
        next_event(&events, |k| matches!(k, EventKind::GuestPanicked { .. })),
        EventKind::GuestPanicked { ref action, .. } if action == "poweroff"
    ));
    assert_eq!(
        next_event(&events, |k| matches!(k, EventKind::Shutdown { .. })),
        EventKind::Shutdown {
            guest: true,
            reason: "guest-panic".into()
        }
    );
    assert!(oxivirt_testkit::eventually(T, || matches!(
        s.child.try_wait(),
        Ok(Some(_))
    )));
}

/// A guest that resets itself (0x06 to the ICH9 reset register 0xcf9): RESET with
/// guest true; QEMU stays up (and the code resets again, until quit).
#[test]
fn a_guest_reset_is_reported() {
    // mov al, 6; mov dx, 0xcf9; out dx, al; hlt
    let code = [0xB0, 0x06, 0xBA, 0xF9, 0x0C, 0xEE, 0xF4];
    let Some((_dir, cfg)) = with_firmware("real_qemu::a_guest_reset_is_reported", &code) else {
        return;
    };
    let (mut s, _reg) = start(Command::new(QEMU), &cfg).expect("QEMU started");
    let events = s.qmp.events().expect("events");
    s.qmp.cont().expect("cont");
    assert_eq!(
        next_event(&events, |k| matches!(k, EventKind::Reset { .. })),
        EventKind::Reset {
            guest: true,
            reason: "guest-reset".into()
        }
    );
    quit_and_wait(&mut s);
}

/// The chosen console design for real: QEMU's serial port on one end of a socketpair the
/// test keeps, and what the guest writes to COM1 arrives on the other end.
#[test]
fn guest_serial_output_arrives_on_the_passed_socket() {
    if !qemu_or_skip("real_qemu::guest_serial_output_arrives_on_the_passed_socket") {
        return;
    }
    let dir = TempDir::new("qemu").expect("temp dir");
    // At the reset vector: jmp 0x0000 (to the image's first byte).
    let reset = [0xE9, 0x0D, 0x00];
    // mov dx, 0x3f8; mov si, 16; l: cs lodsb; test al, al; jz done; out dx, al; jmp l;
    // done: hlt; then the message at offset 16.
    let mut start = vec![
        0xBA, 0xF8, 0x03, 0xBE, 0x10, 0x00, 0x2E, 0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF7,
        0xF4,
    ];
    start.extend_from_slice(b"hello from the guest\n\0");
    let mut cfg = config(dir.path(), 64 << 20);
    cfg.firmware = Firmware::Efi {
        code: tiny_firmware_with(dir.path(), &reset, &start),
        vars: None,
    };
    let (relay, qemu_end) = UnixStream::pair().expect("socketpair");
    cfg.console = Console::Fd(qemu_end.as_raw_fd());
    let (mut s, _reg) = start_qemu(&cfg);
    drop(qemu_end);
    s.qmp.cont().expect("cont");
    relay.set_read_timeout(Some(T)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"\n") {
        let n = std::io::Read::read(&mut &relay, &mut buf).expect("console read");
        assert!(n > 0, "console closed after {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"hello from the guest\n");
    quit_and_wait(&mut s);
}

fn start_qemu(cfg: &LaunchConfig) -> (Started, Registration) {
    start(Command::new(QEMU), cfg).expect("QEMU started")
}

/// Guard against `Qmp` being unusable from several threads (the launcher shares it).
#[allow(dead_code)]
fn qmp_is_shareable(q: Qmp) -> impl Send + Sync {
    q
}

/// QMP `quit`, then QEMU's exit within [`T`].
fn quit_and_wait(s: &mut Started) {
    s.qmp.quit().expect("quit");
    assert!(oxivirt_testkit::eventually(T, || matches!(
        s.child.try_wait(),
        Ok(Some(_))
    )));
}
