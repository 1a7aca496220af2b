//! `oxivirt-launcher` as a daemon starts it: from a "node" namespace holding a real
//! registry (the containerDisk comes through the `quay.io` mirror), for a pod the CNI
//! suite attached as for the seed's virt-launcher pod, with the seed's VM. The disk in the
//! image is not bootable (the test guest belongs to the end-to-end test), so the guest sits
//! in the BIOS: enough to see QEMU run in the pod on the bindings' taps, status.json,
//! the console and control sockets, and that a stop puts everything back.

use oxivirt_app_launcher::control::{request, Request};
use oxivirt_app_launcher::state::{Phase, StateDir, Status};
use oxivirt_testkit::cleanup::{self, TempDir};
use oxivirt_testkit::cni_env::{links, Attachment, Env};
use oxivirt_testkit::registry::{small_qcow2, Layout, Registry, PORT};
use oxivirt_testkit::{eventually, root_test};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

fn launcher_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_oxivirt-launcher"))
}

/// The seed's VM with a short grace period (the BIOS ignores ACPI power-down).
fn seed_vmi(dir: &Path, grace: i64) -> PathBuf {
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed/vm-2.yaml");
    let mut vmi = oxivirt_api::read_instance(Path::new(seed)).expect("seed");
    vmi.spec.termination_grace_period_seconds = Some(grace);
    let path = dir.join("vmi.json");
    std::fs::write(&path, serde_json::to_vec(&vmi).expect("json")).expect("vmi");
    path
}

struct Launch {
    child: cleanup::OwnedChild,
    state: PathBuf,
}

fn launch(env: &Env, vmi: &Path, state: &Path, cache: &Path, mirror: &str) -> Launch {
    let child = cleanup::OwnedChild::spawn(
        Command::new("nsenter")
            .arg(format!("--net={}", env.node.path().display()))
            .arg(launcher_bin())
            .arg("--netns")
            .arg(env.pod.path())
            .arg("--vmi")
            .arg(vmi)
            .arg("--state-dir")
            .arg(state)
            .arg("--image-cache")
            .arg(cache)
            .args(["--registry-mirror", mirror, "--accel", "tcg"]),
    )
    .expect("launcher");
    Launch {
        child,
        state: state.to_path_buf(),
    }
}

fn status(state: &Path) -> Option<Status> {
    StateDir::read_status(state).ok()
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let mut out = None;
    assert!(
        eventually(timeout, || {
            out = child.try_wait().expect("wait");
            out.is_some()
        }),
        "the launcher did not end"
    );
    out.expect("status")
}

/// The seed's virt-launcher pod, attached by the CNI suite, and a registry in the node's
/// namespace serving a non-bootable containerDisk as the seed's image.
struct Pod {
    env: Env,
    tmp: TempDir,
    reg: Registry,
    /// The containerDisk's layer blob, as the registry stores it.
    layer: String,
    pod_net: Attachment,
    ext: Attachment,
    before: Vec<String>,
}

impl Pod {
    fn new() -> Self {
        let env = Env::new();
        let tmp = TempDir::new("launch").expect("tmp");
        let reg = Registry::start_in(&env.node.path());
        let layout = Layout::new(tmp.path().join("oci"));
        let disk = small_qcow2(tmp.path());
        let image = layout.image(&[("disk/disk.img", &disk)]);
        layout.tag(&image);
        reg.push(
            &layout.dir,
            "kubevirt/cirros-container-disk-demo",
            "latest",
            None,
        );
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                layout.dir.join("blobs/sha256").join(
                    image["digest"]
                        .as_str()
                        .expect("digest")
                        .trim_start_matches("sha256:"),
                ),
            )
            .expect("manifest"),
        )
        .expect("manifest json");
        let layer = manifest["layers"][0]["digest"]
            .as_str()
            .expect("layer")
            .to_string();
        let pod_net = env.attach("eth0", env.pod_network_conf(false));
        let ext = env.attach("pod2df796c6902", env.seed_conf("0.3.1", json!({})));
        let before = links(&env.pod);
        Pod {
            env,
            tmp,
            reg,
            layer,
            pod_net,
            ext,
            before,
        }
    }

    fn launch(&self, vmi: &Path, state: &Path, mirror: &str) -> Launch {
        launch(
            &self.env,
            vmi,
            state,
            &self.tmp.path().join("cache"),
            mirror,
        )
    }

    /// The seed VMI as a cluster launcher pod gets it: its containerDisk pinned by digest
    /// and already in the image cache (a first run, as on one machine, pulls it there;
    /// the pod cannot reach the node's loopback registry). Returns the VMI file and cache.
    fn pinned_vmi(&self) -> (PathBuf, PathBuf) {
        let tmp = &self.tmp;
        let vmi = seed_vmi(tmp.path(), 1);
        let mut first = self.launch(&vmi, &tmp.path().join("state-pull"), &mirror());
        wait_running(&first);
        // SAFETY: kill on the launcher's pid, our child, not yet reaped.
        unsafe { libc::kill(first.child.child.id() as libc::pid_t, libc::SIGTERM) };
        assert!(wait_exit(&mut first.child.child, Duration::from_secs(30)).success());
        self.assert_restored();
        let cache = tmp.path().join("cache");
        let digest = oxivirt_image::Cache::open(&cache)
            .expect("cache")
            .read_ref("quay.io", "kubevirt/cirros-container-disk-demo", "latest")
            .expect("the pulled image's digest");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&vmi).expect("vmi")).expect("json");
        for vol in v["spec"]["volumes"].as_array_mut().expect("volumes") {
            if vol.get("containerDisk").is_some() {
                vol["containerDisk"]["image"] = json!(format!(
                    "quay.io/kubevirt/cirros-container-disk-demo@{digest}"
                ));
            }
        }
        let pinned = tmp.path().join("vmi-pinned.json");
        std::fs::write(&pinned, v.to_string()).expect("vmi");
        (pinned, cache)
    }

    /// The pod is as CNI left it: no taps, k6t bridges or nat tables.
    fn assert_restored(&self) {
        assert!(
            eventually(Duration::from_secs(5), || links(&self.env.pod)
                == self.before),
            "the pod is as CNI left it: {:?} != {:?}",
            links(&self.env.pod),
            self.before
        );
        let no_nat = || !self.env.pod.sh(&["nft", "list", "tables"]).contains("nat");
        assert!(
            eventually(Duration::from_secs(5), no_nat),
            "the nat tables are gone"
        );
    }

    /// What is left in a state dir once the launcher is gone: the lock file stays (it is
    /// the directory's claim) and status.json; sockets, the overlay, the ISO and the
    /// bindings' records go.
    fn assert_state_dir_empty(state: &Path) {
        let mut left: Vec<String> = std::fs::read_dir(state)
            .expect("state dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".json") || n.starts_with('.'))
            .collect();
        left.sort();
        assert_eq!(left, ["launcher.lock"], "left in the state dir");
    }

    fn finish(mut self) {
        self.reg.stop();
        self.env.detach(&self.ext);
        self.env.detach(&self.pod_net);
    }
}

/// Waits for Running (or a failure on the way), and returns that status.
fn wait_running(l: &Launch) -> Status {
    let mut last = None;
    let running = eventually(Duration::from_secs(60), || {
        last = status(&l.state);
        matches!(&last, Some(s) if s.phase == Phase::Running || s.phase == Phase::Failed)
    });
    assert!(running, "no Running status: {last:?}");
    let s = last.expect("status");
    assert_eq!(s.phase, Phase::Running, "{s:?}");
    s
}

fn mirror() -> String {
    format!("quay.io=http://127.0.0.1:{PORT}")
}

#[root_test(vm)]
fn the_seed_vm_runs_in_its_pod_and_a_stop_leaves_nothing() {
    let pod = Pod::new();
    let (env, tmp, ext) = (&pod.env, &pod.tmp, &pod.ext);
    let state = tmp.path().join("state");
    let vmi = seed_vmi(tmp.path(), 1);
    let mut l = pod.launch(&vmi, &state, &mirror());
    let s = wait_running(&l);
    assert_eq!(s.accelerator.as_deref(), Some("tcg"));
    let qemu_pid = s.qemu_pid.expect("QEMU's pid");
    assert_eq!(s.interfaces.len(), 2);
    assert_eq!(
        (
            s.interfaces[0].name.as_str(),
            s.interfaces[0].ip_address.as_deref()
        ),
        ("default", Some("10.0.2.2"))
    );
    assert_eq!(s.interfaces[0].interface_name.as_deref(), Some("eth0"));
    assert_eq!(s.interfaces[1].name, "ext-net");
    assert_eq!(
        s.interfaces[1].mac,
        ext.mac(),
        "the guest takes the pod interface's MAC"
    );
    assert_eq!(s.interfaces[1].ip_address.as_deref(), Some("192.168.100.2"));

    // QEMU runs in the pod's namespace, on the bindings' taps (KubeVirt's layout).
    let own_ns = std::fs::read_link(format!("/proc/{qemu_pid}/ns/net")).expect("QEMU's netns");
    let pod_ns = oxivirt_testkit::sh(&[
        "ip",
        "netns",
        "exec",
        &env.pod.name,
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(own_ns.display().to_string(), pod_ns.trim());
    let now = links(&env.pod);
    for l in [
        "k6t-eth0",
        "tap0",
        "k6t-2df796c6902",
        "tap2df796c6902",
        "2df796c6902-nic",
    ] {
        assert!(now.iter().any(|n| n == l), "{l} missing in {now:?}");
    }
    let tap = env
        .pod
        .ip_json(&["-d", "link", "show", "dev", "tap2df796c6902"]);
    assert_eq!(tap[0]["master"], "k6t-2df796c6902");
    assert!(
        tap[0]["operstate"] == "UP" || tap[0]["operstate"] == "UNKNOWN",
        "QEMU holds the tap: {tap}"
    );

    // The control socket, and the console socket taking a client.
    let control = l.state.join("control.sock");
    let paused = request(&control, &Request::Pause).expect("pause");
    assert!(paused.ok, "{paused:?}");
    assert!(eventually(Duration::from_secs(5), || status(&l.state)
        .is_some_and(|s| s.paused)));
    assert!(request(&control, &Request::Unpause).expect("unpause").ok);
    assert!(eventually(Duration::from_secs(5), || status(&l.state)
        .is_some_and(|s| !s.paused)));
    std::os::unix::net::UnixStream::connect(l.state.join("console.sock")).expect("console");

    // A second launcher on the same state dir is refused.
    let second = Command::new(launcher_bin())
        .args(["--netns", "/nonexistent", "--vmi"])
        .arg(&vmi)
        .arg("--state-dir")
        .arg(&l.state)
        .output()
        .expect("second launcher");
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another launcher runs"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // SIGTERM: ACPI power-down, the BIOS ignores it, QEMU ends after the grace period.
    // SAFETY: kill on the launcher's pid, our child, not yet reaped.
    unsafe { libc::kill(l.child.child.id() as libc::pid_t, libc::SIGTERM) };
    let exit = wait_exit(&mut l.child.child, Duration::from_secs(30));
    assert!(exit.success(), "launcher: {exit}");
    let end = status(&l.state).expect("final status");
    assert_eq!(end.phase, Phase::Succeeded, "{end:?}");
    assert!(
        !Path::new(&format!("/proc/{qemu_pid}")).exists(),
        "QEMU is gone"
    );
    pod.assert_restored();
    Pod::assert_state_dir_empty(&l.state);
    pod.finish();
}

#[root_test("nsenter")]
fn a_vmi_the_launcher_cannot_run_is_refused_before_anything_is_made() {
    let env = Env::new();
    let tmp = TempDir::new("launch").expect("tmp");
    let before = links(&env.pod);
    let vmi = tmp.path().join("vmi.yaml");
    std::fs::write(
        &vmi,
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata:\n  name: bad\n\
         spec:\n  domain:\n    devices:\n      interfaces:\n      - name: default\n        masquerade: {}\n\
         \n    resources:\n      requests:\n        memory: 64M\n  networks:\n  - name: other\n    pod: {}\n",
    )
    .expect("vmi");
    let state = tmp.path().join("state");
    let mut l = launch(&env, &vmi, &state, &tmp.path().join("cache"), &mirror());
    let exit = wait_exit(&mut l.child.child, Duration::from_secs(30));
    assert!(!exit.success());
    let s = status(&state).expect("status");
    assert_eq!(s.phase, Phase::Failed);
    let reason = s.reason.unwrap_or_default();
    assert!(
        reason.contains("spec.domain.devices.interfaces"),
        "{reason}"
    );
    assert_eq!(links(&env.pod), before, "nothing made in the pod");
    assert!(!tmp.path().join("cache").exists(), "no image cache touched");
}

#[root_test(vm)]
fn qemu_killed_is_failed_with_the_reason_and_everything_goes() {
    let pod = Pod::new();
    let state = pod.tmp.path().join("state");
    let vmi = seed_vmi(pod.tmp.path(), 30);
    let mut l = pod.launch(&vmi, &state, &mirror());
    let qemu_pid = wait_running(&l).qemu_pid.expect("QEMU's pid");
    // SAFETY: kill has no memory effects; the pid is the one the launcher reported for a
    // QEMU that runs (checked above) and that its parent, the launcher, has not reaped.
    let killed = unsafe { libc::kill(qemu_pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(killed, 0, "kill QEMU");
    let exit = wait_exit(&mut l.child.child, Duration::from_secs(30));
    assert!(
        !exit.success(),
        "a VM whose QEMU was killed did not succeed"
    );
    let end = status(&l.state).expect("final status");
    assert_eq!(end.phase, Phase::Failed, "{end:?}");
    let reason = end.reason.unwrap_or_default();
    assert!(
        reason.contains("QEMU ended unexpectedly") && reason.contains("SIGKILL"),
        "{reason}"
    );
    assert_eq!(end.qemu_pid, None);
    pod.assert_restored();
    Pod::assert_state_dir_empty(&l.state);
    pod.finish();
}

#[root_test("docker-registry", "skopeo", "qemu-img", "nft", "nsenter")]
fn a_containerdisk_that_cannot_be_had_fails_the_launch_and_leaves_nothing() {
    let pod = Pod::new();
    let cache = pod.tmp.path().join("cache");
    let seed = seed_vmi(pod.tmp.path(), 1);
    let missing = {
        let mut v = oxivirt_api::read_instance(&seed).expect("vmi");
        for vol in v.spec.volumes.iter_mut() {
            if let Some(cd) = vol.container_disk.as_mut() {
                cd.image = "quay.io/kubevirt/no-such-image:latest".into();
            }
        }
        let p = pod.tmp.path().join("missing.json");
        std::fs::write(&p, serde_json::to_vec(&v).expect("json")).expect("vmi");
        p
    };
    // Nothing listens on this port in the node's namespace: the registry refuses.
    let refused = format!("quay.io=http://127.0.0.1:{}", PORT + 1);

    let cases: [(&str, &Path, &str, &[&str]); 3] = [
        (
            "refused",
            &seed,
            &refused,
            &["127.0.0.1:5001", "onnection refused"],
        ),
        (
            "missing",
            &missing,
            &mirror(),
            &["no-such-image", "not found"],
        ),
        ("tampered", &seed, &mirror(), &["digest"]),
    ];
    for (case, vmi, mirror, words) in cases {
        if case == "tampered" {
            // The registry serves other bytes than the manifest names.
            let blob = pod.reg.blob_file(&pod.layer);
            let mut bytes = std::fs::read(&blob).expect("blob");
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(&blob, bytes).expect("tamper");
        }
        let state = pod.tmp.path().join(case);
        let mut l = pod.launch(vmi, &state, mirror);
        let exit = wait_exit(&mut l.child.child, Duration::from_secs(60));
        assert!(!exit.success(), "{case}: the launch failed");
        let end = status(&state).expect("status");
        assert_eq!(end.phase, Phase::Failed, "{case}: {end:?}");
        let reason = end.reason.unwrap_or_default();
        for w in words {
            assert!(reason.contains(w), "{case}: {w:?} not in {reason}");
        }
        pod.assert_restored();
        Pod::assert_state_dir_empty(&state);
        // No partial download, unverified layer, tag or unpacked disk in the cache.
        for sub in ["tmp", "disks", "refs"] {
            let left = oxivirt_testkit::dir_names(&cache.join(sub));
            assert!(
                left.is_empty(),
                "{case}: left in the cache's {sub}: {left:?}"
            );
        }
        let layer = cache
            .join("blobs/sha256")
            .join(pod.layer.trim_start_matches("sha256:"));
        assert!(!layer.exists(), "{case}: the layer is in the cache");
    }
    pod.finish();
}

/// The launcher as a cluster's launcher pod runs it (`launcher_pod_in_cluster`): inside
/// the pod's namespace, given that namespace as its own (`--netns /proc/self/ns/net`),
/// with only the pod's capabilities (NET_ADMIN, NET_RAW, NET_BIND_SERVICE: the bounding
/// set of its container, as root). The containerDisk, named by digest, is already in the
/// image cache (the pod cannot reach the node's loopback registry; on a cluster the pull
/// goes through the pod's network). The VM runs on the bindings' taps and a stop puts the
/// pod back.
#[root_test(vm, "setpriv")]
fn the_launcher_runs_inside_its_pod_with_the_cluster_pods_capabilities() {
    let pod = Pod::new();
    let (env, tmp) = (&pod.env, &pod.tmp);
    let (pinned, cache) = pod.pinned_vmi();
    let state = tmp.path().join("state");
    let caps = "-all,+net_admin,+net_raw,+net_bind_service";
    let mut l = Launch {
        child: cleanup::OwnedChild::spawn(
            Command::new("nsenter")
                .arg(format!("--net={}", env.pod.path().display()))
                .args(["setpriv", "--bounding-set", caps, "--inh-caps", caps])
                .arg(launcher_bin())
                .args(["--netns", "/proc/self/ns/net", "--vmi"])
                .arg(&pinned)
                .arg("--state-dir")
                .arg(&state)
                .arg("--image-cache")
                .arg(&cache)
                .args(["--accel", "tcg"]),
        )
        .expect("launcher"),
        state: state.clone(),
    };
    let s = wait_running(&l);
    let pid = l.child.child.id();
    let bounding = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|line| line.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        .expect("CapBnd");
    // CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13).
    assert_eq!(
        bounding,
        format!("{:016x}", (1u64 << 10) | (1 << 12) | (1 << 13))
    );
    assert_eq!(s.interfaces.len(), 2);
    assert_eq!(s.interfaces[0].ip_address.as_deref(), Some("10.0.2.2"));
    let now = links(&env.pod);
    for l in ["k6t-eth0", "tap0", "k6t-2df796c6902", "tap2df796c6902"] {
        assert!(now.iter().any(|n| n == l), "{l} missing in {now:?}");
    }
    // SAFETY: kill on the launcher's pid, our child, not yet reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let exit = wait_exit(&mut l.child.child, Duration::from_secs(30));
    assert!(exit.success(), "launcher: {exit}");
    assert_eq!(status(&l.state).expect("final").phase, Phase::Succeeded);
    pod.assert_restored();
    Pod::assert_state_dir_empty(&l.state);
    pod.finish();
}

// ---- under a container runtime -------------------------------------------------------------

/// QEMU, qemu-img and nft with what they load, and QEMU's firmware: the image's `--qemu`.
fn image_root(dir: &Path) -> PathBuf {
    use oxivirt_deploy::image;
    let mut entries = image::binaries(&[launcher_bin()]);
    entries.extend(image::qemu_closure().expect("QEMU's closure"));
    let layout = dir.join("image");
    let built = image::build_entries(&entries, "oxivirt:test", &layout).expect("image");
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root).expect("rootfs");
    let layer = layout
        .join("blobs/sha256")
        .join(built.layer.digest.trim_start_matches("sha256:"));
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&root)
        .status()
        .expect("tar");
    assert!(st.success(), "unpacking the image's layer");
    root
}

/// A device file's cgroup entry: (type, major, minor).
fn device_numbers(path: &str) -> (&'static str, u64, u64) {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let kind = if m.file_type().is_block_device() {
        "b"
    } else {
        "c"
    };
    let rdev = m.rdev();
    (kind, libc::major(rdev) as u64, libc::minor(rdev) as u64)
}

/// The OCI runtime config a CRI runtime makes of the launcher pod's one container (as
/// containerd does for a non-privileged container): its command and args, its env with
/// the downward API's POD_UID, the capabilities of its securityContext and nothing else,
/// no new privileges, its volumes as bind mounts, the pod's network namespace, and in its
/// device cgroup the runtime's defaults plus exactly the devices the device plugin
/// allocated.
fn oci_config(
    container: &serde_json::Value,
    extra_args: &[&str],
    pod_uid: &str,
    rootfs: &Path,
    netns: &Path,
    binds: &[(PathBuf, &str, bool)],
    devices: &[oxivirt_device_plugin::proto::DeviceSpec],
) -> serde_json::Value {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut args = strings(&container["command"]);
    args.extend(strings(&container["args"]));
    args.extend(extra_args.iter().map(|s| s.to_string()));
    let sc = &container["securityContext"];
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    let caps: Vec<String> = strings(&sc["capabilities"]["add"])
        .iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}),
    ];
    for (source, dest, ro) in binds {
        let mut options = vec!["rbind", "rprivate"];
        if *ro {
            options.push("ro");
        }
        mounts.push(
            json!({"destination": dest, "type": "bind", "source": source, "options": options}),
        );
    }
    // containerd's default device allowances: every mknod, the standard character devices
    // and ptys; everything else is denied.
    let mut allowed = vec![
        json!({"allow": false, "access": "rwm"}),
        json!({"allow": true, "type": "c", "access": "m"}),
        json!({"allow": true, "type": "b", "access": "m"}),
    ];
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        allowed.push(
            json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"}),
        );
    }
    allowed.push(json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
    let mut linux_devices = Vec::new();
    for d in devices {
        let (kind, major, minor) = device_numbers(&d.host_path);
        linux_devices.push(json!({"path": d.container_path, "type": kind, "major": major, "minor": minor, "fileMode": 0o666, "uid": 0, "gid": 0}));
        allowed.push(json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": d.permissions}));
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", format!("POD_UID={pod_uid}")],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": sc["allowPrivilegeEscalation"] == false,
        },
        "root": {"path": rootfs, "readonly": false},
        "hostname": "virt-launcher",
        "mounts": mounts,
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "network", "path": netns},
            ],
            "devices": linux_devices,
            "resources": {"devices": allowed},
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    })
}

/// `runc` on a container id; the container is force-deleted when this is dropped.
struct Runc {
    id: String,
    bundle: PathBuf,
}

impl Runc {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("runc")
            .args(args)
            .current_dir(&self.bundle)
            .output()
            .expect("runc")
    }

    fn state(&self) -> Option<serde_json::Value> {
        let out = self.cmd(&["state", &self.id]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        let _ = self.cmd(&["delete", "--force", &self.id]);
    }
}

/// The cluster's launcher pod as a container runtime runs it: the controller's pod spec
/// (`launcher_pod_in_cluster`) turned into an OCI runtime config as a CRI runtime turns
/// it, run by `runc` from the image the image build makes (the launcher, QEMU, qemu-img,
/// nft and firmware, nothing of the host's root) in the pod's network namespace, with the
/// devices the device plugin's Allocate answers and in its device cgroup nothing else;
/// `/proc/sys` read-only, so the pod's sysctls are the meta plugin's (as on a cluster).
/// The containerDisk is pulled inside the container through the pod's network (the
/// test's registry made reachable at the pod network's gateway). Differences from a
/// cluster, said: the registry is named by `--registry-mirror` (a cluster reaches quay.io
/// by name) and the guest runs under TCG (`--accel tcg`, as the other launcher tests); no
/// kubelet or CRI daemon (runc is what containerd and CRI-O run containers with).
#[root_test(vm, "runc", "qemu-system-x86_64", "qemu-img", "nft", "ldd", "tar")]
fn the_launcher_pod_runs_under_runc_with_only_what_its_spec_grants() {
    let pod = Pod::new();
    let (env, tmp) = (&pod.env, &pod.tmp);
    // What the meta plugin does after a launcher pod's ADD (the harness attaches the
    // pod's networks with the plugins themselves): the sysctls the container cannot set.
    oxivirt_multus_core::launcher::prepare(&env.pod.path(), false)
        .expect("the launcher pod's sysctls");
    // The registry (on the node's loopback) reachable from the pod, at the pod network's
    // gateway: the containerDisk is pulled through the pod's network, as on a cluster.
    env.node
        .sh(&["sysctl", "-qw", "net.ipv4.conf.cni0.route_localnet=1"]);
    env.node.sh(&[
        "nft",
        &format!(
            "add table ip oxv-registry; add chain ip oxv-registry pre {{ type nat hook prerouting priority -100; }}; \
             add rule ip oxv-registry pre iifname cni0 tcp dport {PORT} dnat to 127.0.0.1:{PORT}"
        ),
    ]);
    let gateway = pod.pod_net.result["ips"][0]["gateway"]
        .as_str()
        .expect("the pod network's gateway")
        .to_string();
    let mirror_in_pod = format!("quay.io=http://{gateway}:{PORT}");
    let vmi_file = seed_vmi(tmp.path(), 1);

    // The pod the controller makes on a cluster for this VMI.
    let mut vmi: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&vmi_file).expect("vmi")).expect("json");
    vmi["metadata"]["namespace"] = json!("default");
    vmi["metadata"]["uid"] = json!("0b5c7f3e-1b2a-4c4d-9e8f-0123456789ab");
    let spec = oxivirt_controller::plan::launcher_pod_in_cluster(
        &vmi,
        "abcde",
        &oxivirt_controller::plan::ClusterLaunch {
            image: "oxivirt:test".into(),
        },
    );
    let container = &spec["spec"]["containers"][0];
    let pod_uid = "6f1d2c3b-4a59-4e68-8f70-9a8b7c6d5e4f";

    // Its volumes: the downward API's VMI file and the host state dir at subPath <uid>.
    let podinfo = tmp.path().join("podinfo");
    std::fs::create_dir_all(&podinfo).expect("podinfo");
    let annotation = spec["metadata"]["annotations"]["oxivirt.io/vmi"]
        .as_str()
        .expect("the VMI annotation");
    std::fs::write(podinfo.join("vmi.json"), annotation).expect("vmi.json");
    let host_state = tmp.path().join("launchers").join(pod_uid);
    std::fs::create_dir_all(&host_state).expect("state");
    let mount_of = |volume: &str| -> String {
        container["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["name"] == volume)
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("no mount of {volume}"))
            .to_string()
    };
    let (podinfo_at, state_at) = (mount_of("podinfo"), mount_of("state"));

    // What the device plugin allocates for its two device requests.
    let mut devices = Vec::new();
    for kind in [
        oxivirt_device_plugin::DeviceKind::kvm(1),
        oxivirt_device_plugin::DeviceKind::tun(1),
    ] {
        if !kind.path.exists() {
            eprintln!("{} is missing here: not allocated", kind.path.display());
            continue;
        }
        let short = kind
            .resource
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let req = oxivirt_device_plugin::proto::AllocateRequest {
            container_requests: vec![oxivirt_device_plugin::proto::ContainerAllocateRequest {
                devices_ids: vec![format!("{short}0")],
            }],
        };
        let resp = kind.allocate(&req).expect("allocate");
        devices.extend(resp.container_responses[0].devices.clone());
    }
    assert!(
        devices.iter().any(|d| d.container_path == "/dev/net/tun"),
        "tun allocated: {devices:?}"
    );

    let bundle = tmp.path().join("bundle");
    std::fs::create_dir_all(&bundle).expect("bundle");
    let rootfs = image_root(&bundle);
    let config = oci_config(
        container,
        &["--registry-mirror", &mirror_in_pod, "--accel", "tcg"],
        pod_uid,
        &rootfs,
        &env.pod.path(),
        &[
            (podinfo.clone(), &podinfo_at, true),
            (host_state.clone(), &state_at, false),
        ],
        &devices,
    );
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config).expect("config"),
    )
    .expect("config.json");

    let runc = Runc {
        id: oxivirt_testkit::unique("oxv-launcher"),
        bundle: bundle.clone(),
    };
    let log = tmp.path().join("container.log");
    let st = Command::new("runc")
        .args(["run", "--detach", "--pid-file"])
        .arg(tmp.path().join("container.pid"))
        .arg(&runc.id)
        .current_dir(&bundle)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(tmp.path().join("runc.err")).expect("log"))
        .status()
        .expect("runc run");
    assert!(
        st.success(),
        "runc run: {}",
        std::fs::read_to_string(tmp.path().join("runc.err")).unwrap_or_default()
    );
    let l = Launch {
        // Nothing to spawn: the container is runc's. A no-op child keeps the type.
        child: cleanup::OwnedChild::spawn(&mut Command::new("true")).expect("true"),
        state: host_state.clone(),
    };
    let s = wait_running(&l);
    assert_eq!(s.interfaces.len(), 2, "{s:?}");
    assert_eq!(s.interfaces[0].ip_address.as_deref(), Some("10.0.2.2"));
    let now = links(&env.pod);
    for l in ["k6t-eth0", "tap0", "k6t-2df796c6902", "tap2df796c6902"] {
        assert!(now.iter().any(|n| n == l), "{l} missing in {now:?}");
    }
    // The containerDisk's layer came in through the pod's network, into the container's
    // own image cache.
    let pulled = rootfs
        .join(oxivirt_app_launcher::args::DEFAULT_IMAGE_CACHE.trim_start_matches('/'))
        .join("blobs/sha256")
        .join(pod.layer.trim_start_matches("sha256:"));
    assert!(pulled.is_file(), "{} was not pulled", pulled.display());
    // The container's process has exactly the pod's capabilities and no new privileges.
    let pid: i32 = runc.state().expect("runc state")["pid"]
        .as_i64()
        .expect("pid") as i32;
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |k: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("{k} in {proc_status}"))
    };
    // CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13).
    let three = format!("{:016x}", (1u64 << 10) | (1 << 12) | (1 << 13));
    assert_eq!(field("CapBnd:"), three);
    assert_eq!(field("CapEff:"), three);
    assert_eq!(field("NoNewPrivs:"), "1");
    // Its device cgroup allows what the device plugin allocated and nothing else: device
    // nodes made in its root (from outside) for tun and for a loop device; opening the
    // first gets past the cgroup, the second is refused with EPERM.
    let node = |name: &str, (kind, major, minor): (&str, u64, u64)| {
        let path = rootfs.join(name);
        let mode = if kind == "b" {
            libc::S_IFBLK
        } else {
            libc::S_IFCHR
        } | 0o600;
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mknod on a NUL-terminated path we own; the numbers are plain integers.
        let rc =
            unsafe { libc::mknod(c.as_ptr(), mode, libc::makedev(major as u32, minor as u32)) };
        assert_eq!(rc, 0, "mknod {}", path.display());
        format!("/{name}")
    };
    let open_inside = |path: &str| {
        let out = runc.cmd(&["exec", &runc.id, "/usr/bin/qemu-img", "info", path]);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let tun = open_inside(&node("probe-tun", device_numbers("/dev/net/tun")));
    assert!(
        !tun.contains("Operation not permitted"),
        "tun refused: {tun}"
    );
    let loop0 = open_inside(&node("probe-loop", ("b", 7, 0)));
    assert!(
        loop0.contains("Operation not permitted"),
        "a device the plugin did not allocate was opened: {loop0}"
    );

    // A stop as the kubelet makes it: SIGTERM to the container.
    let kill = runc.cmd(&["kill", &runc.id, "TERM"]);
    assert!(kill.status.success(), "runc kill");
    let stopped = eventually(Duration::from_secs(30), || {
        runc.state().is_none_or(|s| s["status"] == "stopped")
    });
    assert!(stopped, "the container did not stop: {:?}", runc.state());
    assert_eq!(status(&host_state).expect("final").phase, Phase::Succeeded);
    pod.assert_restored();
    Pod::assert_state_dir_empty(&host_state);
    drop(runc);
    pod.finish();
}
