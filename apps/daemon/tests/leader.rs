//! Leader election (`oxivirt_controller::leader`) for real against `oxivirtd --api-only`
//! (a Kubernetes API serving `coordination.k8s.io/v1` Leases; there is no cluster on
//! these machines): of two candidates exactly one leads; when it stops, the other takes
//! over within the lease duration; a released Lease is taken at once; a Lease kept
//! renewed is never taken.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Daemon;
use oxivirt_controller::leader::{Elector, LeaseConfig};
use oxivirt_testkit::cleanup::TempDir;

fn config(identity: &str) -> LeaseConfig {
    let mut c = LeaseConfig::new("default", "oxivirt-controller", identity);
    c.lease_duration = Duration::from_secs(3);
    c.renew_deadline = Duration::from_secs(2);
    c.retry_period = Duration::from_millis(200);
    c
}

/// Work that counts how many candidates run it at once, and the most ever seen.
async fn work(active: Arc<AtomicUsize>, max: Arc<AtomicUsize>) {
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let n = active.fetch_add(1, Ordering::SeqCst) + 1;
    max.fetch_max(n, Ordering::SeqCst);
    let _g = Guard(active);
    std::future::pending::<()>().await
}

async fn wait_for(what: &str, limit: Duration, f: impl Fn() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leads_and_the_other_takes_over() {
    let tmp = TempDir::new("leader").expect("tmp");
    let d = Daemon::start(tmp.path());
    let kubeconfig = d.kubeconfig();
    let client = || oxivirt_pod_runtime::client_from_kubeconfig(&kubeconfig);
    let (a, b) = (client().await.expect("a"), client().await.expect("b"));

    let active = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let leader_a =
        tokio::spawn(Elector::new(a, config("a")).run(work(active.clone(), max.clone())));
    let leader_b =
        tokio::spawn(Elector::new(b, config("b")).run(work(active.clone(), max.clone())));

    wait_for("a leader", Duration::from_secs(10), || {
        active.load(Ordering::SeqCst) == 1
    })
    .await;
    // Several renew periods later still exactly one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(active.load(Ordering::SeqCst), 1);
    assert_eq!(max.load(Ordering::SeqCst), 1);
    let (code, lease) =
        d.get("/apis/coordination.k8s.io/v1/namespaces/default/leases/oxivirt-controller");
    assert_eq!(code, 200, "{lease}");
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .expect("holder")
        .to_string();
    assert!(holder == "a" || holder == "b", "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 3);

    // The leader stops dead (no release: as a crashed process): the other takes over
    // within the lease duration (plus a retry period).
    let (dead, survivor) = if holder == "a" {
        (leader_a, leader_b)
    } else {
        (leader_b, leader_a)
    };
    dead.abort();
    let _ = dead.await;
    wait_for("the work dropped", Duration::from_secs(1), || {
        active.load(Ordering::SeqCst) == 0
    })
    .await;
    let took = wait_for("a new leader", Duration::from_secs(6), || {
        active.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(
        took <= Duration::from_millis(3000 + 2 * 200 + 500),
        "took {took:?}"
    );
    assert_eq!(max.load(Ordering::SeqCst), 1);
    let (_, lease) =
        d.get("/apis/coordination.k8s.io/v1/namespaces/default/leases/oxivirt-controller");
    assert_ne!(lease["spec"]["holderIdentity"], holder.as_str(), "{lease}");
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");
    survivor.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_ending_releases_and_a_rival_takes_over_at_once() {
    let tmp = TempDir::new("leader-release").expect("tmp");
    let d = Daemon::start(tmp.path());
    let a = oxivirt_pod_runtime::client_from_kubeconfig(&d.kubeconfig())
        .await
        .expect("a");
    let b = oxivirt_pod_runtime::client_from_kubeconfig(&d.kubeconfig())
        .await
        .expect("b");
    let mut cfg = config("a");
    cfg.lease_duration = Duration::from_secs(30);
    cfg.renew_deadline = Duration::from_secs(20);
    let done = Elector::new(a, cfg).run(tokio::time::sleep(Duration::from_millis(500)));
    assert!(done.await.is_ok());
    let (_, lease) =
        d.get("/apis/coordination.k8s.io/v1/namespaces/default/leases/oxivirt-controller");
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
    let mut rival = Elector::new(b, config("b"));
    assert!(rival.try_acquire_or_renew().await.expect("acquire"));

    // A candidate never takes a Lease its holder keeps renewing, however short its own
    // lease duration (the holder's record says how long it holds).
    let c = oxivirt_pod_runtime::client_from_kubeconfig(&d.kubeconfig())
        .await
        .expect("c");
    let mut usurped = config("c");
    usurped.lease_duration = Duration::from_secs(1);
    let counter = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let c_run = tokio::spawn(Elector::new(c, usurped).run(work(counter.clone(), max.clone())));
    for _ in 0..10 {
        assert!(rival.try_acquire_or_renew().await.expect("renew"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(max.load(Ordering::SeqCst), 0, "c led while b renewed");
    c_run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_sees_another_holder_steps_down() {
    let tmp = TempDir::new("leader-stepdown").expect("tmp");
    let d = Daemon::start(tmp.path());
    let a = oxivirt_pod_runtime::client_from_kubeconfig(&d.kubeconfig())
        .await
        .expect("a");
    let active = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let run = tokio::spawn(Elector::new(a, config("a")).run(work(active.clone(), max.clone())));
    wait_for("a leads", Duration::from_secs(5), || {
        active.load(Ordering::SeqCst) == 1
    })
    .await;
    // Someone else writes the Lease (an operator, a partitioned rival's late write).
    let path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/oxivirt-controller";
    // (a renews every 200 ms: a PUT between its read and write is a 409, tried again)
    let mut written = false;
    for _ in 0..20 {
        let (_, mut lease) = d.get(path);
        lease["spec"]["holderIdentity"] = serde_json::json!("intruder");
        let (code, body) = d.curl("PUT", path, Some(&lease.to_string()), "application/json");
        match code {
            200 => {
                written = true;
                break;
            }
            409 => continue,
            _ => panic!("{code}: {body}"),
        }
    }
    assert!(written);
    let out = tokio::time::timeout(Duration::from_secs(3), run)
        .await
        .expect("a steps down within a retry period")
        .expect("join");
    assert!(
        matches!(out, Err(oxivirt_controller::leader::LeaderError::Taken(_))),
        "{out:?}"
    );
    assert_eq!(active.load(Ordering::SeqCst), 0);
}

/// The launcher pods of the VM `name` in `default`.
fn launcher_pods(d: &Daemon, name: &str) -> Vec<serde_json::Value> {
    let (code, list) = d.get(&format!(
        "/api/v1/namespaces/default/pods?labelSelector=vm.kubevirt.io/name%3D{name}"
    ));
    assert_eq!(code, 200, "{list}");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Two controller replicas, each `oxivirt_controller::run` under an elector (as
/// `oxivirt-controller --leader-elect` runs it), on one API without a pod runtime: one
/// VM with `runStrategy: Always` gets one VMI and one launcher pod, also after the leader
/// dies and the other replica takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_elected_controllers_make_one_launcher_pod() {
    let tmp = TempDir::new("leader-controllers").expect("tmp");
    let d = Daemon::start(tmp.path());
    let kubeconfig = d.kubeconfig();
    let replica = |id: &'static str| {
        let kubeconfig = kubeconfig.clone();
        tokio::spawn(async move {
            let client = oxivirt_pod_runtime::client_from_kubeconfig(&kubeconfig)
                .await
                .expect("client");
            let work = oxivirt_controller::run(
                client.clone(),
                oxivirt_controller::Config {
                    placement: oxivirt_controller::plan::Placement::Node("node-1".into()),
                },
            );
            Elector::new(client, config(id)).run(work).await
        })
    };
    let mut replicas = vec![("a", replica("a")), ("b", replica("b"))];

    let text = std::fs::read_to_string(common::seed("vm-2.yaml")).expect("vm-2.yaml");
    let vm = oxivirt_api::parse_vm("vm-2.yaml", &text).expect("vm-2.yaml");
    let mut vm = serde_json::to_value(&vm).expect("json");
    vm["spec"].as_object_mut().expect("spec").remove("running");
    vm["spec"]["runStrategy"] = serde_json::json!("Always");
    let (code, body) = d.curl(
        "POST",
        "/apis/kubevirt.io/v1/namespaces/default/virtualmachines",
        Some(&vm.to_string()),
        "application/json",
    );
    assert_eq!(code, 201, "{body}");
    let t = Instant::now();
    while launcher_pods(&d, "testvm-2").is_empty() {
        assert!(t.elapsed() < Duration::from_secs(20), "no launcher pod");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods = launcher_pods(&d, "testvm-2");
    assert_eq!(pods.len(), 1, "{pods:#?}");
    let first = pods[0]["metadata"]["name"].clone();

    // The leader dies without releasing; the other takes over and finds the pod made.
    let path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/oxivirt-controller";
    let (_, lease) = d.get(path);
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .expect("holder")
        .to_string();
    let i = replicas
        .iter()
        .position(|(id, _)| *id == holder)
        .expect("the holder is a replica");
    let (_, dead) = replicas.remove(i);
    dead.abort();
    let t = Instant::now();
    loop {
        let (_, lease) = d.get(path);
        if lease["spec"]["holderIdentity"]
            .as_str()
            .is_some_and(|h| h != holder)
        {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(8), "no takeover: {lease}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The new leader's controllers resync; the VM's pod stays the one pod.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pods = launcher_pods(&d, "testvm-2");
    assert_eq!(pods.len(), 1, "{pods:#?}");
    assert_eq!(pods[0]["metadata"]["name"], first);
    let (_, vmis) = d.get("/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances");
    assert_eq!(vmis["items"].as_array().map_or(0, Vec::len), 1, "{vmis}");
    for (_, r) in replicas {
        r.abort();
    }
}
