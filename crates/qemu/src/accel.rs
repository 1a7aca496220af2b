//! Which accelerator a VM gets: KVM only when it can really run a guest. A `/dev/kvm` that
//! opens is not enough: on this machine (a PVM host) KVM runs real-mode code, but by
//! emulating it instruction by instruction, so SeaBIOS alone takes ~10 s instead of
//! milliseconds. The probe therefore makes a VM with one vCPU and runs a timed loop at the
//! reset vector (`mov ecx, 20000; l: dec ecx; jnz l; mov al, 0x2a; out 0x10, al; hlt`):
//! KVM must report the port write with the right byte, then the HLT, and the loop must take
//! less than a budget far above what hardware virtualisation needs. No QEMU is involved;
//! the probe takes ~1 ms on a KVM host and ~35 ms here. The loop is timed in the vCPU
//! thread's CPU time, so a busy host that preempts the probe does not make KVM look slow.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc;
use std::time::Duration;

use crate::config::{Accel, ParseError};

/// The `--accel` flag: `auto` probes, `kvm` and `tcg` override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelChoice {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl FromStr for AccelChoice {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "auto" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Kvm),
            "tcg" => Ok(AccelChoice::Tcg),
            _ => Err(ParseError::Accel(s.into())),
        }
    }
}

/// Why KVM cannot run a guest here.
#[derive(Debug, thiserror::Error)]
pub enum KvmFailure {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{op} failed")]
    Ioctl {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("KVM API version {0}, not 12")]
    ApiVersion(i32),
    /// The vCPU stopped for another reason than the ones the test code causes.
    #[error("the test vCPU exited with {name} ({reason}){detail}")]
    UnexpectedExit {
        reason: u32,
        name: &'static str,
        detail: String,
    },
    #[error("the test vCPU did not halt within {0:?}")]
    Timeout(Duration),
    /// KVM runs the code but far slower than hardware virtualisation does (instructions
    /// emulated one by one, as on a PVM host for anything but 64-bit paged code): SeaBIOS
    /// alone would take seconds.
    #[error("the test vCPU ran {loops} loop iterations in {took:?} of CPU time, over the {budget:?} budget: KVM emulates instead of running the guest")]
    TooSlow {
        loops: u32,
        took: Duration,
        budget: Duration,
    },
}

/// Whether KVM can run a guest; the real probe is [`DevKvm`], tests use a fake.
pub trait KvmProbe {
    fn probe(&self) -> Result<(), KvmFailure>;
}

/// The accelerator chosen and why (for the VMI status and the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub accel: Accel,
    pub reason: String,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.accel, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    /// `--accel kvm` on a host where KVM cannot run the guest: refused before QEMU
    /// starts, instead of a QEMU that fails at its first instruction.
    #[error("--accel kvm was requested but KVM cannot run a guest here")]
    KvmUnusable(#[source] KvmFailure),
}

/// `auto`: KVM if the probe runs a guest, else TCG with the probe's reason. `tcg`: TCG
/// without probing. `kvm`: KVM if the probe runs a guest, else an error.
pub fn decide(choice: AccelChoice, probe: &dyn KvmProbe) -> Result<Decision, AccelError> {
    match choice {
        AccelChoice::Tcg => Ok(Decision {
            accel: Accel::Tcg,
            reason: "requested (--accel tcg)".into(),
        }),
        AccelChoice::Kvm => match probe.probe() {
            Ok(()) => Ok(Decision {
                accel: Accel::Kvm,
                reason: "requested (--accel kvm); KVM ran a test guest".into(),
            }),
            Err(e) => Err(AccelError::KvmUnusable(e)),
        },
        AccelChoice::Auto => Ok(match probe.probe() {
            Ok(()) => Decision {
                accel: Accel::Kvm,
                reason: "KVM ran a test guest".into(),
            },
            Err(e) => Decision {
                accel: Accel::Tcg,
                reason: format!("KVM cannot run a guest: {}", chain(&e)),
            },
        }),
    }
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

impl Accel {
    /// [`decide`] with `auto` and the real probe: never fails, TCG is always there.
    pub fn detect() -> Decision {
        match decide(AccelChoice::Auto, &DevKvm::default()) {
            Ok(d) => d,
            // Auto never errors; keep the type honest all the same.
            Err(e) => Decision {
                accel: Accel::Tcg,
                reason: chain(&e),
            },
        }
    }
}

/// The real probe on `/dev/kvm`.
#[derive(Debug, Clone)]
pub struct DevKvm {
    pub path: PathBuf,
    /// How much CPU time the test loop may take: some 200 times what hardware-assisted
    /// KVM needs (first entry included), and about a seventh of what emulation takes here
    /// (27-35 ms).
    pub budget: Duration,
    /// A vCPU that never comes back (a broken host) must not hang the launcher.
    pub timeout: Duration,
}

impl Default for DevKvm {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/dev/kvm"),
            budget: Duration::from_millis(4),
            timeout: Duration::from_millis(500),
        }
    }
}

impl KvmProbe for DevKvm {
    fn probe(&self) -> Result<(), KvmFailure> {
        let (tx, rx) = mpsc::channel();
        let path = self.path.clone();
        // On its own thread so a stuck KVM_RUN cannot hold us; such a thread is left
        // behind (it holds only its fds), which beats a launcher that never starts.
        std::thread::Builder::new()
            .name("kvm-probe".into())
            .spawn(move || {
                let _ = tx.send(sys::run_test_guest(&path));
            })
            .map_err(|source| KvmFailure::Ioctl {
                op: "spawn the probe thread",
                source,
            })?;
        let took = rx
            .recv_timeout(self.timeout)
            .unwrap_or(Err(KvmFailure::Timeout(self.timeout)))?;
        if took > self.budget {
            return Err(KvmFailure::TooSlow {
                loops: sys::LOOPS,
                took,
                budget: self.budget,
            });
        }
        Ok(())
    }
}

/// The KVM ioctls of the probe, each with the reason it is sound.
mod sys {
    use std::fs::OpenOptions;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;
    use std::time::Duration;

    use super::KvmFailure;

    // From <linux/kvm.h>: _IO(0xAE, n) and _IOW(0xAE, n, size).
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
    const KVM_GET_VCPU_MMAP_SIZE: libc::c_ulong = 0xAE04;
    const KVM_CREATE_VCPU: libc::c_ulong = 0xAE41;
    /// _IOW(0xAE, 0x46, struct kvm_userspace_memory_region), 32 bytes.
    const KVM_SET_USER_MEMORY_REGION: libc::c_ulong = 0x4020_AE46;
    const KVM_RUN: libc::c_ulong = 0xAE80;

    const KVM_EXIT_IO: u32 = 2;
    const KVM_EXIT_HLT: u32 = 5;
    const KVM_EXIT_IO_OUT: u8 = 1;

    /// `struct kvm_userspace_memory_region`.
    #[repr(C)]
    struct MemoryRegion {
        slot: u32,
        flags: u32,
        guest_phys_addr: u64,
        memory_size: u64,
        userspace_addr: u64,
    }

    /// After reset a vCPU is in real mode fetching at CS base 0xffff0000 + IP 0xfff0: the
    /// last 16 bytes below 4 GiB. One page mapped there holds the code.
    const PAGE: usize = 4096;
    const PAGE_GPA: u64 = 0xFFFF_F000;
    const RESET_OFFSET: usize = 0xFF0;
    const PORT: u16 = 0x10;
    const BYTE: u8 = 0x2a;
    /// Iterations of the timed loop: some 20 µs on hardware-assisted KVM, some 30 ms of
    /// CPU where KVM emulates real mode instruction by instruction (this machine).
    pub const LOOPS: u32 = 20_000;
    /// mov ecx, LOOPS; l: dec ecx; jnz l; mov al, 0x2a; out 0x10, al; hlt (15 bytes).
    const fn code() -> [u8; 15] {
        let n = LOOPS.to_le_bytes();
        [
            0x66, 0xB9, n[0], n[1], n[2], n[3], 0x66, 0x49, 0x75, 0xFC, 0xB0, BYTE, 0xE6,
            PORT as u8, 0xF4,
        ]
    }
    const CODE: [u8; 15] = code();

    fn exit_name(reason: u32) -> &'static str {
        match reason {
            0 => "KVM_EXIT_UNKNOWN",
            1 => "KVM_EXIT_EXCEPTION",
            2 => "KVM_EXIT_IO",
            5 => "KVM_EXIT_HLT",
            6 => "KVM_EXIT_MMIO",
            8 => "KVM_EXIT_SHUTDOWN",
            9 => "KVM_EXIT_FAIL_ENTRY",
            17 => "KVM_EXIT_INTERNAL_ERROR",
            _ => "another exit",
        }
    }

    /// An mmap'd region, unmapped on drop.
    struct Mapping {
        ptr: *mut libc::c_void,
        len: usize,
    }

    impl Mapping {
        fn new(len: usize, fd: Option<i32>) -> io::Result<Self> {
            let (flags, fd) = match fd {
                Some(fd) => (libc::MAP_SHARED, fd),
                None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
            };
            // SAFETY: a fresh mapping chosen by the kernel (null hint); nothing aliases it.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    flags,
                    fd,
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            Ok(Self { ptr, len })
        }

        fn read<const N: usize>(&self, offset: usize) -> [u8; N] {
            let mut out = [0u8; N];
            if offset.checked_add(N).is_some_and(|end| end <= self.len) {
                // SAFETY: in bounds (checked above) of a live mapping; the vCPU that writes
                // it is not running (KVM_RUN returned on this thread).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.ptr.cast::<u8>().add(offset),
                        out.as_mut_ptr(),
                        N,
                    );
                }
            }
            out
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: unmaps exactly what `new` mapped; no references into it remain.
            unsafe {
                libc::munmap(self.ptr, self.len);
            }
        }
    }

    fn ioctl(
        fd: i32,
        op: &'static str,
        req: libc::c_ulong,
        arg: libc::c_ulong,
    ) -> Result<i32, KvmFailure> {
        loop {
            // SAFETY: KVM ioctls on a descriptor we own; `arg` is either a plain integer or
            // a pointer to a live, correctly laid out struct (see the callers).
            let rc = unsafe { libc::ioctl(fd, req, arg) };
            if rc >= 0 {
                return Ok(rc);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(KvmFailure::Ioctl { op, source: e });
            }
        }
    }

    fn owned(fd: i32) -> OwnedFd {
        // SAFETY: `fd` was just returned by KVM_CREATE_*; nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    fn u32_at(b: &[u8; 4]) -> u32 {
        u32::from_ne_bytes(*b)
    }

    fn thread_cpu_time() -> Result<Duration, KvmFailure> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec, which `ts` is.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
            return Err(KvmFailure::Ioctl {
                op: "clock_gettime",
                source: io::Error::last_os_error(),
            });
        }
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
        Ok(Duration::new(secs, nanos))
    }

    /// Runs the test code; returns the vCPU thread's CPU time from its first instruction
    /// to HLT.
    pub fn run_test_guest(path: &Path) -> Result<Duration, KvmFailure> {
        let kvm = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| KvmFailure::Open {
                path: path.to_owned(),
                source,
            })?;
        let kfd = kvm.as_raw_fd();
        let version = ioctl(kfd, "KVM_GET_API_VERSION", KVM_GET_API_VERSION, 0)?;
        if version != 12 {
            return Err(KvmFailure::ApiVersion(version));
        }
        let vm = owned(ioctl(kfd, "KVM_CREATE_VM", KVM_CREATE_VM, 0)?);

        let mem = Mapping::new(PAGE, None).map_err(|source| KvmFailure::Ioctl {
            op: "mmap guest memory",
            source,
        })?;
        // SAFETY: RESET_OFFSET + CODE.len() <= PAGE; the page is ours and not yet guest-visible.
        unsafe {
            std::ptr::copy_nonoverlapping(
                CODE.as_ptr(),
                mem.ptr.cast::<u8>().add(RESET_OFFSET),
                CODE.len(),
            );
        }
        let region = MemoryRegion {
            slot: 0,
            flags: 0,
            guest_phys_addr: PAGE_GPA,
            memory_size: PAGE as u64,
            userspace_addr: mem.ptr as u64,
        };
        ioctl(
            vm.as_raw_fd(),
            "KVM_SET_USER_MEMORY_REGION",
            KVM_SET_USER_MEMORY_REGION,
            std::ptr::from_ref(&region) as libc::c_ulong,
        )?;
        let run_size = ioctl(kfd, "KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE, 0)?;
        let vcpu = owned(ioctl(
            vm.as_raw_fd(),
            "KVM_CREATE_VCPU",
            KVM_CREATE_VCPU,
            0,
        )?);
        let run = Mapping::new(
            usize::try_from(run_size).unwrap_or(PAGE),
            Some(vcpu.as_raw_fd()),
        )
        .map_err(|source| KvmFailure::Ioctl {
            op: "mmap the vCPU's kvm_run",
            source,
        })?;

        // `struct kvm_run`: exit_reason at 8, the exit's union at 32.
        let mut wrote = false;
        // The vCPU thread's CPU time, not wall time: a busy host that preempts the probe
        // must not make KVM look slow (guest time counts as the thread's).
        let started = thread_cpu_time()?;
        for _ in 0..4 {
            ioctl(vcpu.as_raw_fd(), "KVM_RUN", KVM_RUN, 0)?;
            let reason = u32_at(&run.read::<4>(8));
            match reason {
                KVM_EXIT_IO => {
                    // struct { u8 direction, size; u16 port; u32 count; u64 data_offset; }
                    let io = run.read::<16>(32);
                    let port = u16::from_ne_bytes([io[2], io[3]]);
                    let mut off = [0u8; 8];
                    off.copy_from_slice(&io[8..16]);
                    let data_offset = usize::try_from(u64::from_ne_bytes(off)).unwrap_or(0);
                    let byte = run.read::<1>(data_offset)[0];
                    if io[0] != KVM_EXIT_IO_OUT || io[1] != 1 || port != PORT || byte != BYTE {
                        return Err(KvmFailure::UnexpectedExit {
                            reason,
                            name: exit_name(reason),
                            detail: format!(
                                ": direction {} size {} port {port:#x} byte {byte:#x}",
                                io[0], io[1]
                            ),
                        });
                    }
                    wrote = true;
                }
                KVM_EXIT_HLT if wrote => return Ok(thread_cpu_time()?.saturating_sub(started)),
                _ => {
                    // For FAIL_ENTRY the hardware reason, for INTERNAL_ERROR the suberror.
                    let detail = run.read::<8>(32);
                    return Err(KvmFailure::UnexpectedExit {
                        reason,
                        name: exit_name(reason),
                        detail: format!(" (exit data {:#x})", u64::from_ne_bytes(detail)),
                    });
                }
            }
        }
        Err(KvmFailure::UnexpectedExit {
            reason: 0,
            name: "no HLT",
            detail: " after the port write".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(Option<&'static str>);

    impl KvmProbe for Fake {
        fn probe(&self) -> Result<(), KvmFailure> {
            match self.0 {
                None => Ok(()),
                Some(why) => Err(KvmFailure::Ioctl {
                    op: "KVM_RUN",
                    source: io::Error::other(why),
                }),
            }
        }
    }

    /// A probe that must not be asked.
    struct Untouchable;

    impl KvmProbe for Untouchable {
        fn probe(&self) -> Result<(), KvmFailure> {
            panic!("--accel tcg must not probe KVM")
        }
    }

    #[test]
    fn auto_takes_kvm_only_when_the_probe_ran_a_guest() {
        let d = decide(AccelChoice::Auto, &Fake(None)).expect("auto");
        assert_eq!(d.accel, Accel::Kvm);
        let d = decide(AccelChoice::Auto, &Fake(Some("Invalid argument"))).expect("auto");
        assert_eq!(d.accel, Accel::Tcg);
        assert_eq!(
            d.reason,
            "KVM cannot run a guest: KVM_RUN failed: Invalid argument"
        );
    }

    #[test]
    fn overrides() {
        let d = decide(AccelChoice::Tcg, &Untouchable).expect("tcg");
        assert_eq!(d.accel, Accel::Tcg);
        let d = decide(AccelChoice::Kvm, &Fake(None)).expect("kvm");
        assert_eq!(d.accel, Accel::Kvm);
        let e = decide(AccelChoice::Kvm, &Fake(Some("no"))).expect_err("kvm refused");
        assert!(matches!(
            e,
            AccelError::KvmUnusable(KvmFailure::Ioctl { op: "KVM_RUN", .. })
        ));
    }

    #[test]
    fn the_flag_parses() {
        assert_eq!("auto".parse(), Ok(AccelChoice::Auto));
        assert_eq!("kvm".parse(), Ok(AccelChoice::Kvm));
        assert_eq!("tcg".parse(), Ok(AccelChoice::Tcg));
        assert_eq!(
            "hvf".parse::<AccelChoice>(),
            Err(ParseError::Accel("hvf".into()))
        );
    }

    #[test]
    fn a_missing_device_means_tcg() {
        let probe = DevKvm {
            path: "/dev/oxivirt-no-such-kvm".into(),
            ..DevKvm::default()
        };
        let d = decide(AccelChoice::Auto, &probe).expect("auto");
        assert_eq!(d.accel, Accel::Tcg);
        assert!(
            d.reason.contains("cannot open /dev/oxivirt-no-such-kvm"),
            "{}",
            d.reason
        );
    }

    /// The real probe on this machine gives a definite answer with a reason.
    #[test]
    fn the_real_probe_answers() {
        let t = std::time::Instant::now();
        let d = Accel::detect();
        eprintln!("accel probe: {d} (in {:?})", t.elapsed());
        assert!(!d.reason.is_empty());
        if !std::path::Path::new("/dev/kvm").exists() {
            assert_eq!(d.accel, Accel::Tcg);
        }
    }
}
