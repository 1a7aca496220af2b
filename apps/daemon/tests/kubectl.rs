//! The real `kubectl` against a real `oxivirtd`: the seed article's NAD and VM applied,
//! listed with KubeVirt's and Multus's columns, applied again (unchanged), edited
//! (configured, seen by a watch) and deleted.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use common::*;
use oxivirt_testkit::cleanup::OwnedChild;

fn skip_without_kubectl(test: &str) -> bool {
    if kubectl().is_none() {
        eprintln!("SKIP {test}: no kubectl under /usr/lib/google-cloud-sdk/bin");
        return true;
    }
    false
}

#[test]
fn the_seed_files_through_kubectl() {
    if skip_without_kubectl("the_seed_files_through_kubectl") {
        return;
    }
    let dir = tmp("oxivirtd-kubectl");
    let d = Daemon::start(&dir.path().join("data"));
    let nad = fixed_nad(dir.path());
    let nad_s = nad.to_str().expect("path");
    let vm = seed("vm-2.yaml");
    let vm_s = vm.to_str().expect("path");

    let out = d.kubectl(&["apply", "-f", nad_s]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "networkattachmentdefinition.k8s.cni.cncf.io/multus-br created\n"
    );
    let out = d.kubectl(&["apply", "-f", vm_s]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "virtualmachine.kubevirt.io/testvm-2 created\n"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Warning: spec.running is deprecated"),
        "{}",
        text(&out)
    );

    let out = d.kubectl(&["get", "net-attach-def"]);
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "AGE"],
        "{t}"
    );
    assert!(lines[1].starts_with("multus-br "), "{t}");

    let out = d.kubectl(&["get", "VirtualMachine"]);
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "AGE", "STATUS", "READY"],
        "{t}"
    );
    assert!(lines[1].starts_with("testvm-2 "), "{t}");

    let out = d.kubectl(&["get", "vm", "testvm-2", "-o", "yaml"]);
    let y = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "kind: VirtualMachine",
        "uid: ",
        "resourceVersion: ",
        "creationTimestamp: ",
        "generation: 1",
        "networkName: multus-br",
    ] {
        assert!(y.contains(want), "{want} not in {y}");
    }

    for (f, what) in [
        (
            nad_s,
            "networkattachmentdefinition.k8s.cni.cncf.io/multus-br",
        ),
        (vm_s, "virtualmachine.kubevirt.io/testvm-2"),
    ] {
        let out = d.kubectl(&["apply", "-f", f]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{what} unchanged\n"),
            "{}",
            text(&out)
        );
    }

    // A watch sees the edit.
    let mut w = OwnedChild::spawn(
        Command::new(kubectl().expect("kubectl"))
            .env("KUBECONFIG", d.kubeconfig())
            .args([
                "get",
                "vm",
                "-w",
                "-o",
                "jsonpath={.spec.template.spec.domain.resources.requests.memory}{\"\\n\"}",
            ])
            .stdout(Stdio::piped()),
    )
    .expect("kubectl -w");
    let mut lines = BufReader::new(w.child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("first").expect("line");
    assert_eq!(first, "64M");
    let edited = dir.path().join("vm-2.yaml");
    let text_vm = std::fs::read_to_string(&vm)
        .expect("vm")
        .replace("64M", "128M");
    std::fs::write(&edited, text_vm).expect("edit");
    let out = d.kubectl(&["apply", "-f", edited.to_str().expect("path")]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "virtualmachine.kubevirt.io/testvm-2 configured\n",
        "{}",
        text(&out)
    );
    let next = lines.next().expect("watch event").expect("line");
    assert_eq!(next, "128M");
    drop(w);
    let out = d.kubectl(&[
        "get",
        "vm",
        "testvm-2",
        "-o",
        "jsonpath={.metadata.generation}",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2");

    let out = d.kubectl(&["delete", "-f", edited.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "virtualmachine.kubevirt.io \"testvm-2\" deleted\n"
    );
    let out = d.kubectl(&["get", "vm", "testvm-2"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "Error from server (NotFound): virtualmachines.kubevirt.io \"testvm-2\" not found"
        ),
        "{}",
        text(&out)
    );
    let out = d.kubectl(&["explain", "vm.spec.runStrategy"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Every kubectl release the machines carry (1.27–1.33): apply, list with the columns,
/// apply again unchanged, explain, delete — each against its own daemon.
#[test]
fn every_kubectl_release_the_machines_carry() {
    let releases: Vec<std::path::PathBuf> = (20..=40)
        .map(|m| std::path::PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{m}")))
        .filter(|p| p.is_file())
        .collect();
    if releases.is_empty() {
        eprintln!("SKIP every_kubectl_release_the_machines_carry: no kubectl.1.* under /usr/lib/google-cloud-sdk/bin");
        return;
    }
    let vm = seed("vm-2.yaml");
    let vm_s = vm.to_str().expect("path");
    for k in releases {
        let dir = tmp("oxivirtd-kubectl-release");
        let d = Daemon::start(&dir.path().join("data"));
        let nad = fixed_nad(dir.path());
        let nad_s = nad.to_str().expect("path");
        let run = |args: &[&str]| {
            Command::new(&k)
                .env("KUBECONFIG", d.kubeconfig())
                .args(args)
                .output()
                .expect("kubectl")
        };
        let name = k.display().to_string();
        for (args, want) in [
            (
                vec!["apply", "-f", nad_s],
                "networkattachmentdefinition.k8s.cni.cncf.io/multus-br created\n",
            ),
            (
                vec!["apply", "-f", vm_s],
                "virtualmachine.kubevirt.io/testvm-2 created\n",
            ),
            (
                vec!["apply", "-f", nad_s],
                "networkattachmentdefinition.k8s.cni.cncf.io/multus-br unchanged\n",
            ),
        ] {
            let o = run(&args);
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                want,
                "{name} {args:?}: {}",
                text(&o)
            );
        }
        // The seed's `default:` (a null in a list item): kubectl 1.31 and later drop the
        // nulls of the object they read back, so they see a change every time; earlier
        // releases compare nulls with the stored nulls.
        let minor: u32 = name
            .rsplit('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let again = if minor >= 31 {
            "configured"
        } else {
            "unchanged"
        };
        let o = run(&["apply", "-f", vm_s]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("virtualmachine.kubevirt.io/testvm-2 {again}\n"),
            "{name}: {}",
            text(&o)
        );
        let o = run(&["get", "vm"]);
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(
            t.lines()
                .next()
                .map(|l| l.split_whitespace().collect::<Vec<_>>()),
            Some(vec!["NAME", "AGE", "STATUS", "READY"]),
            "{name}: {}",
            text(&o)
        );
        let o = run(&["explain", "vm.spec.running"]);
        assert!(o.status.success(), "{name} explain: {}", text(&o));
        let o = run(&["delete", "-f", vm_s]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "virtualmachine.kubevirt.io \"testvm-2\" deleted\n",
            "{name}: {}",
            text(&o)
        );
    }
}
