//! One VM from start to end: claim the state directory, plan the VMI (refusing before
//! anything is made), fetch the disks from the node's namespace, wire the pod, start QEMU
//! paused inside the pod's namespace, attach the console, let the guest run, serve the
//! control socket, and on SIGTERM, a stop request or the guest's own power-off stop it
//! gracefully and put everything back. `status.json` follows every step.

use crate::args::Args;
use crate::control::{ControlServer, Vm};
use crate::network::{GuestIdentity, PodNetwork};
use crate::plan::{DiskSource, Plan};
use crate::state::{InterfaceStatus, Phase, StateDir, Status};
use anyhow::{anyhow, Context};
use oxivirt_qemu::qmp::{EventKind, Qmp};
use oxivirt_qemu::{Console, Disk, LaunchConfig, MacAddr, Nic};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What the launcher waits for while the VM runs.
enum Msg {
    /// SIGTERM/SIGINT, or the daemon's stop: power down, give up after the grace period.
    Stop(Duration),
    Event(EventKind),
    /// The QMP connection ended: every event QEMU sent has been seen.
    EventsEnded,
    /// QEMU's process ended.
    Exited(std::process::ExitStatus),
}

/// How long an exited QEMU's last events may take to arrive: its exit and its final
/// SHUTDOWN event travel on different threads, and the event decides the phase.
const LAST_EVENTS: Duration = Duration::from_secs(2);

/// The VM as the control socket drives it.
struct Running {
    qmp: Arc<Qmp>,
    status: Arc<Mutex<Status>>,
    tx: mpsc::Sender<Msg>,
}

impl Vm for Running {
    fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn stop(&self, grace: Duration) -> Result<(), String> {
        self.tx
            .send(Msg::Stop(grace))
            .map_err(|_| "the VM is already gone".to_string())
    }
    fn pause(&self) -> Result<(), String> {
        self.qmp.stop().map_err(|e| chain(&e))
    }
    fn unpause(&self) -> Result<(), String> {
        self.qmp.cont().map_err(|e| chain(&e))
    }
    fn reset(&self) -> Result<(), String> {
        self.qmp.system_reset().map_err(|e| chain(&e))
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    oxivirt_cni_spec::error::chain(e)
}

/// What has been made so far, undone in reverse on the way out.
#[derive(Default)]
struct Made {
    files: Vec<PathBuf>,
    network: Option<PodNetwork>,
}

impl Made {
    fn undo(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        if let Some(mut net) = self.network.take() {
            if let Err(e) = net.teardown() {
                failed.push(chain(&e));
            }
        }
        for f in self.files.drain(..).rev() {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    failed.push(format!("remove {}: {e}", f.display()))
                }
                _ => {}
            }
        }
        failed
    }
}

/// The nameservers and search domains of the node, for the guest's DHCP leases.
fn node_dns() -> (Vec<Ipv4Addr>, Vec<String>) {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut dns = Vec::new();
    let mut search = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.extend(words.next().and_then(|w| w.parse::<Ipv4Addr>().ok())),
            Some("search") => search = words.map(str::to_string).collect(),
            _ => {}
        }
    }
    (dns, search)
}

fn read_vmi(args: &Args) -> anyhow::Result<oxivirt_api::VirtualMachineInstance> {
    if args.vmi.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("read the VMI from stdin")?;
        Ok(oxivirt_api::parse_instance("<stdin>", &text)?)
    } else {
        Ok(oxivirt_api::read_instance(&args.vmi)?)
    }
}

/// Runs the VM until it ends; returns the final phase.
pub fn run(args: &Args) -> anyhow::Result<Phase> {
    crate::signals::block().context("block SIGTERM")?;
    let state = StateDir::claim(&args.state_dir)
        .with_context(|| format!("state dir {}", args.state_dir.display()))?;
    let status = Arc::new(Mutex::new(Status::default()));
    let write = |s: &Status| state.write_status(s).context("write status.json");
    write(&status.lock().unwrap_or_else(PoisonError::into_inner))?;
    let fail = |reason: String| -> anyhow::Result<()> {
        let mut s = status.lock().unwrap_or_else(PoisonError::into_inner);
        s.phase = Phase::Failed;
        s.reason = Some(reason);
        write(&s)
    };
    let plan = match read_vmi(args).and_then(|v| Ok(crate::plan::plan(v)?)) {
        Ok(p) => p,
        Err(e) => {
            fail(format!("{e:#}"))?;
            return Err(e);
        }
    };
    let mut made = Made::default();
    let result = start_and_run(args, &state, &plan, &status, &mut made);
    let undone = made.undo();
    let phase = match &result {
        Ok(phase) => *phase,
        Err(e) => {
            fail(format!("{e:#}"))?;
            Phase::Failed
        }
    };
    {
        let mut s = status.lock().unwrap_or_else(PoisonError::into_inner);
        s.phase = phase;
        s.qemu_pid = None;
        if !undone.is_empty() {
            let note = format!("cleanup failed: {}", undone.join("; "));
            s.reason = Some(match s.reason.take() {
                Some(r) => format!("{r}; {note}"),
                None => note,
            });
        }
        write(&s)?;
    }
    result.map(|_| phase)
}

fn start_and_run(
    args: &Args,
    state: &StateDir,
    plan: &Plan,
    status: &Arc<Mutex<Status>>,
    made: &mut Made,
) -> anyhow::Result<Phase> {
    let choice = args.accel;
    // The probe runs while the disks are fetched.
    let accel = std::thread::spawn(move || {
        oxivirt_qemu::accel::decide(choice, &oxivirt_qemu::accel::DevKvm::default())
    });
    let disks = fetch_disks(args, state, plan, made)?;
    let accel = accel
        .join()
        .map_err(|_| anyhow!("the accelerator probe panicked"))??;

    let (dns4, search) = node_dns();
    let who = GuestIdentity {
        hostname: plan.hostname.clone(),
        dns4,
        dns6: Vec::new(),
        search,
    };
    made.network = Some(
        PodNetwork::setup(&args.netns, state.path(), &plan.nics, &who)
            .context("wire the pod's interfaces")?,
    );
    let guest_nics = made
        .network
        .as_ref()
        .map(|n| n.nics().to_vec())
        .unwrap_or_default();

    let (console_ours, console_qemu) = UnixStream::pair().context("console socketpair")?;
    let mut cfg = LaunchConfig::new(&plan.name, plan.uuid, plan.memory_bytes, state.qmp_sock());
    cfg.cpu = plan.cpu;
    cfg.machine = plan.machine.clone();
    cfg.accel = accel.accel;
    cfg.smbios_serial = plan.smbios_serial.clone();
    cfg.disks = disks;
    cfg.nics = guest_nics
        .iter()
        .zip(&plan.nic_devices)
        .enumerate()
        .map(|(i, (g, d))| Nic {
            id: format!("net{i}"),
            tap: g.tap.clone(),
            mac: MacAddr(g.mac),
            model: d.model,
            pci_address: d.pci_address,
            boot_index: d.boot_index,
            queues: 1,
        })
        .collect();
    cfg.console = Console::Fd(console_qemu.as_raw_fd());
    made.files.push(state.qmp_sock());

    // QEMU opens the taps by name: it runs in the pod's namespace.
    let netns = std::fs::File::open(&args.netns)
        .with_context(|| format!("open {}", args.netns.display()))?;
    let netns_fd = netns.as_raw_fd();
    // A launcher inside its pod (on a cluster) is in that namespace already.
    let enter = !oxivirt_netlink::netns::NetNs::open(&args.netns)
        .map(|ns| ns.is_current_thread())
        .unwrap_or(false);
    let mut cmd = std::process::Command::new("qemu-system-x86_64");
    // SAFETY: between fork and exec only setns, an async-signal-safe system call on a
    // descriptor opened before the fork, runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            if enter && libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started =
        oxivirt_qemu::supervisor::start(cmd, &cfg, Duration::from_secs(30), |c| c.spawn())
            .context("start QEMU")?;
    drop(console_qemu);
    drop(netns);
    let mut child = started.child;
    let pid = child.id();
    let qmp = Arc::new(started.qmp);
    let stop_qemu = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    let events = match qmp.events() {
        Ok(e) => e,
        Err(e) => {
            stop_qemu(&mut child);
            return Err(e).context("QMP events");
        }
    };
    let mut console =
        match oxivirt_console::ConsoleServer::start(state.console_sock(), console_ours) {
            Ok(c) => c,
            Err(e) => {
                stop_qemu(&mut child);
                return Err(e).context("console");
            }
        };
    // `startStrategy: Paused` leaves the CPUs stopped (QEMU starts with -S) until an
    // unpause; the VM runs, paused, as in KubeVirt.
    if !plan.start_paused {
        if let Err(e) = qmp.cont() {
            stop_qemu(&mut child);
            console.stop();
            return Err(e).context("start the guest (QMP cont)");
        }
    }
    {
        let mut s = status.lock().unwrap_or_else(PoisonError::into_inner);
        s.paused = plan.start_paused;
        s.phase = Phase::Running;
        s.accelerator = Some(accel.accel.as_str().to_string());
        s.qemu_pid = Some(pid);
        s.reason = None;
        s.interfaces = guest_nics
            .iter()
            .map(|g| InterfaceStatus {
                name: g.name.clone(),
                mac: oxivirt_netlink::format_mac(&g.mac),
                ip_address: g
                    .address
                    .as_ref()
                    .map(|a| a.split('/').next().unwrap_or(a).to_string()),
                ip_addresses: g
                    .address
                    .iter()
                    .map(|a| a.split('/').next().unwrap_or(a).to_string())
                    .collect(),
                interface_name: Some(g.interface_name.clone()),
                info_source: "domain".into(),
                lease_acknowledged_at: None,
            })
            .collect();
        state.write_status(&s).context("write status.json")?;
    }
    if let Some(net) = made.network.as_mut() {
        net.on_lease(crate::state::lease_reporter(status.clone(), state.writer()));
    }

    let (tx, rx) = mpsc::channel::<Msg>();
    {
        let tx = tx.clone();
        let grace = Duration::from_secs(plan.termination_grace_seconds);
        crate::signals::watch(move |_| {
            let _ = tx.send(Msg::Stop(grace));
        })
        .context("watch signals")?;
    }
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("qmp-events".into())
            .spawn(move || {
                for e in events {
                    if tx.send(Msg::Event(e.kind)).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Msg::EventsEnded);
            })
            .context("QMP event thread")?;
    }
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("qemu-wait".into())
            .spawn(move || {
                if let Ok(status) = child.wait() {
                    let _ = tx.send(Msg::Exited(status));
                }
            })
            .context("QEMU wait thread")?;
    }
    let mut control = ControlServer::start(
        &state.control_sock(),
        Arc::new(Running {
            qmp: qmp.clone(),
            status: status.clone(),
            tx: tx.clone(),
        }),
    )
    .context("control socket")?;
    drop(tx);

    let phase = supervise(
        &rx,
        status,
        &mut QemuHands {
            qmp: &qmp,
            pid,
            state,
        },
    );
    control.stop();
    console.stop();
    phase
}

/// What `supervise` does to the VM; QEMU's in the launcher, recorded in tests.
trait Hands {
    /// Asks the guest to power off (ACPI).
    fn power_down(&mut self);
    /// Ends QEMU without the guest: the grace period is over.
    fn kill(&mut self);
    fn write_status(&mut self, status: &Status) -> anyhow::Result<()>;
}

struct QemuHands<'a> {
    qmp: &'a Qmp,
    pid: u32,
    state: &'a StateDir,
}

impl Hands for QemuHands<'_> {
    fn power_down(&mut self) {
        let _ = self.qmp.system_powerdown();
    }
    fn kill(&mut self) {
        // SAFETY: kill has no memory effects. The pid is our child QEMU's; the wait thread
        // reaps it only once it has exited, and `supervise` kills no more once it hears
        // that; only a QEMU that exits in that instant leaves a narrow window for a
        // recycled pid (a pidfd would close it).
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
    }
    fn write_status(&mut self, status: &Status) -> anyhow::Result<()> {
        self.state.write_status(status).context("write status.json")
    }
}

/// Follows the running VM until QEMU is gone and says how it ended: stop requests (power
/// down, kill when the grace period is over), QMP events into the status, and QEMU's exit
/// judged only once its last events are in.
fn supervise(
    rx: &mpsc::Receiver<Msg>,
    status: &Mutex<Status>,
    hands: &mut impl Hands,
) -> anyhow::Result<Phase> {
    let mut deadline: Option<Instant> = None;
    let mut stop_requested = false;
    let mut guest_shutdown = false;
    let mut panicked = false;
    let mut events_ended = false;
    // QEMU's exit, held until its last events are in (or LAST_EVENTS is over).
    let mut exited: Option<(std::process::ExitStatus, Instant)> = None;
    let exit = loop {
        let wake = match (deadline, exited) {
            (_, Some((_, until))) => Some(until),
            (d, None) => d,
        };
        let msg = match wake {
            Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some((status, _)) = exited {
                        break Some(status);
                    }
                    hands.kill();
                    deadline = None;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break exited.map(|(s, _)| s),
            },
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => break None,
            },
        };
        match msg {
            Msg::Stop(grace) => {
                if !stop_requested {
                    stop_requested = true;
                    deadline = Some(Instant::now() + grace);
                    // A guest that ignores ACPI is ended when the grace period is over.
                    hands.power_down();
                }
            }
            Msg::Event(kind) => {
                let mut s = status.lock().unwrap_or_else(PoisonError::into_inner);
                match kind {
                    EventKind::Shutdown { guest, reason } => {
                        guest_shutdown |= guest;
                        if reason == "guest-panic" {
                            panicked = true;
                        }
                        s.reason = Some(format!("QEMU shut down: {reason}"));
                    }
                    EventKind::GuestPanicked { .. } => {
                        panicked = true;
                        s.reason = Some("the guest panicked".into());
                    }
                    EventKind::Stop => s.paused = true,
                    EventKind::Resume => s.paused = false,
                    _ => continue,
                }
                hands.write_status(&s)?;
            }
            Msg::EventsEnded => {
                events_ended = true;
                if let Some((status, _)) = exited {
                    break Some(status);
                }
            }
            Msg::Exited(status) => {
                if events_ended {
                    break Some(status);
                }
                exited = Some((status, Instant::now() + LAST_EVENTS));
            }
        }
    };
    let phase = match exit {
        _ if panicked => Phase::Failed,
        Some(_) if guest_shutdown || stop_requested => Phase::Succeeded,
        Some(e) => {
            let mut s = status.lock().unwrap_or_else(PoisonError::into_inner);
            s.reason = Some(format!("QEMU ended unexpectedly ({e})"));
            Phase::Failed
        }
        None => Phase::Unknown,
    };
    Ok(phase)
}

/// The disks, fetched and made from the node's namespace: containerDisks pulled into the
/// node's image cache and overlaid in the state dir, the NoCloud ISO, empty and host disks.
fn fetch_disks(
    args: &Args,
    state: &StateDir,
    plan: &Plan,
    made: &mut Made,
) -> anyhow::Result<Vec<Disk>> {
    let mirrors = args
        .registry_mirrors
        .iter()
        .map(|(h, u)| oxivirt_image::Mirror {
            registry: h.clone(),
            endpoint: u.clone(),
        })
        .collect();
    let puller = oxivirt_image::Puller::new(&args.image_cache, mirrors)
        .with_context(|| format!("image cache {}", args.image_cache.display()))?;
    let mut out = Vec::new();
    for d in &plan.disks {
        let file = match &d.source {
            DiskSource::ContainerDisk { image, path } => {
                let reference = oxivirt_image::Reference::parse(image)?;
                let pulled = puller
                    .pull(
                        &reference,
                        oxivirt_image::PullPolicy::default_for(&reference),
                    )
                    .with_context(|| format!("pull {image}"))?;
                let disk = puller.container_disk(&pulled, path.as_deref())?;
                let target = state.path().join(format!("{}.qcow2", d.name));
                made.files.push(target.clone());
                oxivirt_image::overlay(&disk, &target)?
            }
            DiskSource::CloudInit => {
                let Some(ci) = &plan.cloud_init else {
                    return Err(anyhow!("disk {}: no cloud-init data", d.name));
                };
                let iso = ci.write_iso(state.path(), 0)?;
                made.files.push(iso.clone());
                oxivirt_image::DiskFile {
                    path: iso,
                    format: oxivirt_image::DiskFormat::Raw,
                }
            }
            DiskSource::EmptyDisk { bytes } => {
                let target = state.path().join(format!("{}.qcow2", d.name));
                made.files.push(target.clone());
                oxivirt_image::empty_disk(&target, *bytes)?
            }
            DiskSource::HostDisk {
                path,
                create,
                bytes,
            } => oxivirt_image::host_disk(
                std::path::Path::new(path),
                if *create {
                    oxivirt_image::HostDiskType::DiskOrCreate
                } else {
                    oxivirt_image::HostDiskType::Disk
                },
                *bytes,
            )?,
        };
        out.push(Disk {
            id: d.name.clone(),
            path: file.path,
            format: file.format,
            bus: d.bus,
            cdrom: d.cdrom,
            readonly: d.readonly,
            boot_index: d.boot_index,
            serial: d.serial.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[derive(Default)]
    struct Recorded {
        powered_down: usize,
        killed: usize,
        written: Vec<Status>,
        /// Told when QEMU is killed (the test's QEMU then ends).
        on_kill: Option<mpsc::Sender<()>>,
    }

    impl Hands for Recorded {
        fn power_down(&mut self) {
            self.powered_down += 1;
        }
        fn kill(&mut self) {
            self.killed += 1;
            if let Some(tx) = &self.on_kill {
                let _ = tx.send(());
            }
        }
        fn write_status(&mut self, status: &Status) -> anyhow::Result<()> {
            self.written.push(status.clone());
            Ok(())
        }
    }

    fn guest_shutdown() -> Msg {
        Msg::Event(EventKind::Shutdown {
            guest: true,
            reason: "guest-shutdown".into(),
        })
    }

    fn run(msgs: Vec<Msg>) -> (Phase, Status, Recorded) {
        let (tx, rx) = mpsc::channel();
        for m in msgs {
            tx.send(m).expect("send");
        }
        let status = Mutex::new(Status::default());
        let mut hands = Recorded::default();
        let phase = supervise(&rx, &status, &mut hands).expect("supervise");
        drop(tx);
        let s = status.lock().expect("status").clone();
        (phase, s, hands)
    }

    #[test]
    fn a_guest_power_off_whose_event_comes_after_the_exit_is_succeeded() {
        // The race CI met: QEMU's exit is heard before its SHUTDOWN event.
        let (phase, s, _) = run(vec![
            Msg::Exited(std::process::ExitStatus::from_raw(0)),
            guest_shutdown(),
            Msg::EventsEnded,
        ]);
        assert_eq!(phase, Phase::Succeeded);
        assert_eq!(s.reason.as_deref(), Some("QEMU shut down: guest-shutdown"));
    }

    #[test]
    fn an_exit_without_a_shutdown_is_failed_once_the_events_end() {
        let (phase, s, hands) = run(vec![
            Msg::EventsEnded,
            Msg::Exited(std::process::ExitStatus::from_raw(9)),
        ]);
        assert_eq!(phase, Phase::Failed);
        assert_eq!(
            s.reason.as_deref(),
            Some("QEMU ended unexpectedly (signal: 9 (SIGKILL))")
        );
        assert_eq!(hands.killed, 0);
    }

    #[test]
    fn an_exit_whose_events_never_end_is_judged_after_a_while() {
        // The QMP reader may hang; the exit is judged when LAST_EVENTS is over.
        let (tx, rx) = mpsc::channel();
        tx.send(Msg::Exited(std::process::ExitStatus::from_raw(0)))
            .expect("send");
        let status = Mutex::new(Status::default());
        let started = Instant::now();
        let phase = supervise(&rx, &status, &mut Recorded::default()).expect("supervise");
        assert_eq!(phase, Phase::Failed);
        assert!(started.elapsed() >= LAST_EVENTS);
        drop(tx);
    }

    #[test]
    fn a_stop_powers_down_kills_after_the_grace_period_and_is_succeeded() {
        let (tx, rx) = mpsc::channel();
        tx.send(Msg::Stop(Duration::from_millis(50))).expect("send");
        tx.send(Msg::Stop(Duration::from_secs(600))).expect("send");
        let status = Mutex::new(Status::default());
        let (killed_tx, killed_rx) = mpsc::channel();
        let mut hands = Recorded {
            on_kill: Some(killed_tx),
            ..Recorded::default()
        };
        std::thread::scope(|sc| {
            let tx = tx.clone();
            sc.spawn(move || {
                // QEMU ignores the power button; killed, it ends: its connection first,
                // then the process.
                // (Never killed: it ends anyway, and the count below says so.)
                let _ = killed_rx.recv_timeout(Duration::from_secs(30));
                let _ = tx.send(Msg::EventsEnded);
                let _ = tx.send(Msg::Exited(std::process::ExitStatus::from_raw(9)));
            });
            let phase = supervise(&rx, &status, &mut hands).expect("supervise");
            assert_eq!(phase, Phase::Succeeded);
        });
        assert_eq!(hands.powered_down, 1, "a second stop is the same stop");
        assert_eq!(hands.killed, 1);
    }

    #[test]
    fn a_panic_fails_and_pause_and_resume_are_written() {
        let (phase, s, hands) = run(vec![
            Msg::Event(EventKind::Stop),
            Msg::Event(EventKind::Resume),
            Msg::Event(EventKind::GuestPanicked {
                action: "pause".into(),
                info: None,
            }),
            Msg::EventsEnded,
            Msg::Exited(std::process::ExitStatus::from_raw(0)),
        ]);
        assert_eq!(phase, Phase::Failed);
        assert_eq!(s.reason.as_deref(), Some("the guest panicked"));
        let paused: Vec<bool> = hands.written.iter().map(|s| s.paused).collect();
        assert_eq!(paused, [true, false, false]);
    }
}
