//! `#[root_test]` itself: what it guards must not run when a requirement is missing.

use oxivirt_testkit::root_test;

/// A command that is nowhere on PATH skips the test: the body never runs.
#[root_test("oxivirt-no-such-command")]
fn a_missing_tool_skips_the_body() {
    panic!("the body ran without its tool");
}

/// With everything there (root, iproute2, `ip` named as a tool), the body runs: it can
/// make a namespace.
#[root_test("ip")]
fn the_body_runs_when_everything_is_there() {
    let ns = oxivirt_testkit::TestNs::new("oxr");
    assert!(ns.has_link("lo"));
}

/// A test returning `Result` skips with `Ok(())`.
#[root_test("oxivirt-no-such-command")]
fn a_result_test_skips_with_ok() -> Result<(), String> {
    Err("the body ran without its tool".into())
}

/// `vm` stands for every tool a VM test needs: the body runs only when all are there.
#[root_test(vm)]
fn vm_asks_for_every_tool_a_vm_test_needs() {
    for tool in [
        "docker-registry",
        "skopeo",
        "qemu-system-x86_64",
        "qemu-img",
        "nft",
        "nsenter",
    ] {
        assert!(oxivirt_testkit::which(tool).is_some(), "{tool}");
    }
}
