//! The seed article end to end at the launcher's level, with the real test guest
//! (`scripts/guest.sh`) pushed as `kubevirt/cirros-container-disk-demo` to a registry in
//! the "node" namespace: the pod is attached as the seed's virt-launcher pod (pod network
//! on `eth0`, `multus-br` as `pod2df796c6902` on `multus-bridge`, whose uplink leads to an
//! "outside" namespace holding 192.168.100.1/24), the launcher runs the seed's VM, and
//! everything is checked from where a user would look: the serial console (login, the
//! guest's addresses, hostname and user-data, a ping out), the outside namespace (ping and
//! HTTP to the guest), and after SIGTERM a guest that powered itself off and a pod as CNI
//! left it.

use oxivirt_app_launcher::state::{Phase, StateDir, Status};
use oxivirt_testkit::cleanup::{self, TempDir};
use oxivirt_testkit::cni_env::{links, outside_world, Env};
use oxivirt_testkit::registry::{guest_image, Registry, PORT};
use oxivirt_testkit::{eventually, root_test};
use serde_json::json;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The serial console, read with a deadline.
struct Console {
    sock: UnixStream,
    seen: String,
}

impl Console {
    fn open(path: &Path) -> Self {
        let sock = UnixStream::connect(path).expect("console.sock");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        Self {
            sock,
            seen: String::new(),
        }
    }

    /// Reads until `what` has appeared after `from` (a byte offset in what was seen);
    /// returns the offset just past it.
    fn expect(&mut self, from: usize, what: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.seen.get(from..).and_then(|s| s.find(what)) {
                return from + i + what.len();
            }
            assert!(
                Instant::now() < deadline,
                "console: {what:?} did not appear; the console said:\n{}",
                self.seen
            );
            let mut buf = [0u8; 4096];
            match self.sock.read(&mut buf) {
                Ok(0) => panic!("console closed; it said:\n{}", self.seen),
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("console: {e}"),
            }
        }
    }

    fn send(&mut self, line: &str) {
        self.sock
            .write_all(format!("{line}\n").as_bytes())
            .expect("console write");
    }

    /// Runs `cmd` in the logged-in shell and returns what it printed.
    fn run(&mut self, cmd: &str) -> String {
        let at = self.seen.len();
        self.send(&format!("{cmd}; echo END-OF-$((6*7))"));
        let end = self.expect(at, "END-OF-42", Duration::from_secs(30));
        let out = &self.seen[at..end];
        out.to_string()
    }
}

impl Console {
    /// Logs in as the seed's image offers (from `from`, a byte offset of what was seen).
    fn login(&mut self, from: usize) {
        let at = self.expect(from, "login:", Duration::from_secs(180));
        self.send("cirros");
        let at = self.expect(at, "Password:", Duration::from_secs(30));
        self.send("gocubsgo");
        self.expect(at, "$ ", Duration::from_secs(30));
    }
}

/// The seed's VM booted by the launcher in its pod, from the test guest pushed to a
/// registry in the node's namespace, with an outside world on the seed's bridge.
struct Guest {
    env: Env,
    _tmp: TempDir,
    outside: oxivirt_testkit::TestNs,
    reg: Registry,
    pod_net: oxivirt_testkit::cni_env::Attachment,
    ext: oxivirt_testkit::cni_env::Attachment,
    before: Vec<String>,
    state: PathBuf,
    launcher: cleanup::OwnedChild,
}

impl Guest {
    fn boot() -> Self {
        let image = guest_image();
        let env = Env::new();
        let tmp = TempDir::new("guest").expect("tmp");
        let outside = outside_world(&env);
        let reg = Registry::start_in(&env.node.path());
        reg.push(
            &image,
            "kubevirt/cirros-container-disk-demo",
            "latest",
            None,
        );
        // A dual-stack pod network: the masquerade binding serves the guest IPv6 too.
        let pod_net = env.attach("eth0", env.pod_network_conf(true));
        let ext = env.attach("pod2df796c6902", env.seed_conf("0.3.1", json!({})));
        let before = links(&env.pod);

        let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed/vm-2.yaml");
        let state = tmp.path().join("state");
        let launcher = cleanup::OwnedChild::spawn(
            Command::new("nsenter")
                .arg(format!("--net={}", env.node.path().display()))
                .arg(env!("CARGO_BIN_EXE_oxivirt-launcher"))
                .arg("--netns")
                .arg(env.pod.path())
                .args(["--vmi", seed])
                .arg("--state-dir")
                .arg(&state)
                .arg("--image-cache")
                .arg(tmp.path().join("cache"))
                .args([
                    "--registry-mirror",
                    &format!("quay.io=http://127.0.0.1:{PORT}"),
                    "--accel",
                    "auto",
                ]),
        )
        .expect("launcher");
        let mut last = None;
        assert!(
            eventually(Duration::from_secs(120), || {
                last = status(&state);
                matches!(&last, Some(s) if matches!(s.phase, Phase::Running | Phase::Failed))
            }),
            "no Running status: {last:?}"
        );
        assert_eq!(
            last.as_ref().map(|s| s.phase),
            Some(Phase::Running),
            "{last:?}"
        );
        Guest {
            env,
            _tmp: tmp,
            outside,
            reg,
            pod_net,
            ext,
            before,
            state,
            launcher,
        }
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut exit = None;
        assert!(
            eventually(Duration::from_secs(120), || {
                exit = self.launcher.child.try_wait().expect("wait");
                exit.is_some()
            }),
            "the launcher did not end"
        );
        exit.expect("exit status")
    }

    /// The pod is as CNI left it; then the attachments and the registry go.
    fn finish(mut self) {
        assert!(
            eventually(Duration::from_secs(5), || links(&self.env.pod)
                == self.before),
            "the pod is as CNI left it: {:?} != {:?}",
            links(&self.env.pod),
            self.before
        );
        self.reg.stop();
        self.env.detach(&self.ext);
        self.env.detach(&self.pod_net);
    }
}

fn status(state: &Path) -> Option<Status> {
    StateDir::read_status(state).ok()
}

#[root_test(
    "docker-registry",
    "skopeo",
    "qemu-system-x86_64",
    "nft",
    "nsenter",
    "busybox"
)]
fn the_seed_vm_boots_is_reachable_from_outside_and_powers_off() {
    let g = Guest::boot();
    let (state, ext, outside) = (&g.state, &g.ext, &g.outside);
    let mut last: Option<Status> = None;
    // The console: boot output from before anyone attached, then a login as the seed's.
    let mut con = Console::open(&state.join("console.sock"));
    con.login(0);
    // Both leases, as the guest applied them.
    let mut addrs = String::new();
    assert!(
        eventually(Duration::from_secs(60), || {
            addrs = con.run("ip -4 -o addr show");
            addrs.contains("10.0.2.2/24") && addrs.contains("192.168.100.2/24")
        }),
        "the guest's addresses: {addrs}"
    );
    // The launcher saw both ACKs and says when, on each interface.
    assert!(
        eventually(Duration::from_secs(5), || {
            last = status(state);
            last.as_ref().is_some_and(|s| {
                s.interfaces.len() == 2
                    && s.interfaces.iter().all(|i| {
                        i.lease_acknowledged_at
                            .as_deref()
                            .and_then(oxivirt_app_launcher::state::parse_rfc3339)
                            .is_some()
                    })
            })
        }),
        "both leases acknowledged in status.json: {last:?}"
    );
    // DHCPv6 (and the router advertisement) on the masquerade interface.
    let mut addrs6 = String::new();
    assert!(
        eventually(Duration::from_secs(60), || {
            addrs6 = con.run("ip -6 -o addr show dev eth0 scope global");
            addrs6.contains("fd10:0:2::2/")
        }),
        "the guest's IPv6 address on eth0: {addrs6}"
    );
    let ping6 = con.run("ping -6 -c 1 -W 3 fd10:0:2::1 && echo PING6-OK");
    assert!(
        ping6.contains("PING6-OK"),
        "guest → its IPv6 gateway: {ping6}"
    );
    let links_in_guest = con.run("ip -o link show eth1");
    assert!(
        links_in_guest.contains(&ext.mac()),
        "eth1 has the pod interface's MAC {}: {links_in_guest}",
        ext.mac()
    );
    assert!(con.run("hostname").contains("testvm-2"));
    // The seed's userDataBase64 is `Hi.\n` (the two characters backslash and n).
    let ud = con.run("cat /var/lib/cloud/user-data");
    assert!(ud.contains("Hi.\\n"), "user-data: {ud}");
    let ping = con.run("ping -c 1 -W 3 192.168.100.1 && echo PING-OK");
    assert!(ping.contains("PING-OK"), "guest → outside: {ping}");

    // From outside the node, over the bridged NIC.
    let p = outside.exec(&["ping", "-c", "1", "-W", "3", "192.168.100.2"]);
    assert!(p.status.success(), "outside → guest ping failed");
    let mut page = String::new();
    let served = eventually(Duration::from_secs(30), || {
        let o = outside.exec(&["curl", "-sS", "-m", "5", "http://192.168.100.2/"]);
        page = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o.status.success() && page.contains("testvm-2")
    });
    assert!(
        served,
        "HTTP from outside: {page}; the guest says: {}",
        con.run("ps; netstat -ltn")
    );

    // SIGTERM: ACPI power-down; the guest powers itself off well within the grace period.
    // SAFETY: kill on the launcher's pid, our child, not yet reaped.
    unsafe { libc::kill(g.launcher.child.id() as libc::pid_t, libc::SIGTERM) };
    let mut g = g;
    let exit = g.wait_exit();
    assert!(exit.success(), "launcher: {exit:?}");
    let end = status(&g.state).expect("final status");
    assert_eq!(end.phase, Phase::Succeeded, "{end:?}");
    assert!(
        end.reason
            .as_deref()
            .is_some_and(|r| r.contains("guest-shutdown")),
        "the guest powered itself off: {end:?}"
    );
    g.finish();
}

#[root_test(
    "docker-registry",
    "skopeo",
    "qemu-system-x86_64",
    "nft",
    "nsenter",
    "busybox"
)]
fn a_guest_reboot_keeps_it_running_and_a_guest_panic_fails_it() {
    let mut g = Guest::boot();
    let mut con = Console::open(&g.state.join("console.sock"));
    con.login(0);
    // A reboot from inside: QEMU resets the machine, the VM stays Running, the guest
    // comes back to its login prompt.
    let at = con.seen.len();
    con.send("sudo reboot");
    con.login(at);
    let s = status(&g.state).expect("status");
    assert_eq!(s.phase, Phase::Running, "{s:?}");
    // A kernel panic: pvpanic tells QEMU, the launcher reports Failed with the reason.
    // (The guest's sudo stand-in joins its arguments, so the command goes in a file.)
    con.run("echo 'echo c > /proc/sysrq-trigger' > /tmp/crash");
    let at = con.seen.len();
    con.send("sudo sh /tmp/crash");
    con.expect(at, "Kernel panic", Duration::from_secs(30));
    let exit = g.wait_exit();
    assert!(!exit.success(), "a panicked VM did not succeed");
    let end = status(&g.state).expect("final status");
    assert_eq!(end.phase, Phase::Failed, "{end:?}");
    assert!(
        end.reason.as_deref().is_some_and(|r| r.contains("panic")),
        "the reason names the panic: {end:?}"
    );
    g.finish();
}
