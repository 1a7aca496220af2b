//! The Multus-compatible meta plugin in real namespaces: a pod with the cluster network
//! plus two secondary networks (our bridge + host-local with the seed's multus-br, and
//! Debian's reference macvlan as a third-party delegate), objects from the directory
//! store (the embedded store's stand-in).

use oxivirt_testkit::cni_env as common;

use oxivirt_testkit::{eventually, reference_plugins, root_test, Cni, CniOutput, TestNs};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Pod {
    node: TestNs,
    pod: TestNs,
    root: oxivirt_testkit::cleanup::TempDir,
}

impl Pod {
    /// The pod and its node. The reference plugins' macvlan stands in for a third-party
    /// delegate: the tests ask for them with `#[root_test(reference)]`.
    fn new() -> Self {
        let reference = reference_plugins().expect("the reference plugins");
        let p = Pod {
            node: TestNs::new("oxmn"),
            pod: TestNs::new("oxmp"),
            root: oxivirt_testkit::cleanup::TempDir::new("multus").expect("tmp"),
        };
        let bin = p.bin();
        std::fs::create_dir_all(&bin).expect("bin");
        for name in ["bridge", "host-local", "static"] {
            std::os::unix::fs::symlink(common::our_bin(), bin.join(name)).expect("link");
        }
        std::os::unix::fs::symlink(common::our_multus_bin(), bin.join("multus")).expect("link");
        // A third-party delegate: the reference macvlan.
        std::os::unix::fs::symlink(reference.join("macvlan"), bin.join("macvlan")).expect("link");
        p.node.sh(&[
            "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p",
        ]);
        p.node.sh(&["ip", "link", "set", "uplink0", "up"]);
        let data = p.path("ipam");
        std::fs::create_dir_all(p.path("net.d")).expect("conf dir");
        std::fs::write(
            p.path("net.d/10-cluster.conf"),
            json!({"cniVersion": "1.0.0", "name": "cluster", "type": "bridge", "bridge": "cni0", "isDefaultGateway": true,
                   "ipam": {"type": "host-local", "subnet": "10.244.0.0/24", "dataDir": data}})
            .to_string(),
        )
        .expect("cluster conf");
        std::fs::create_dir_all(p.path("store")).expect("store");
        p.put_nad(
            "multus-br",
            json!({"cniVersion": "0.3.1", "name": "multus-br", "type": "bridge", "bridge": "multus-bridge",
                "ipam": {"type": "host-local", "subnet": "192.168.100.0/24", "dataDir": data}}),
        );
        p.put_nad(
            "macvlan-net",
            json!({"cniVersion": "0.4.0", "type": "macvlan", "master": "uplink0", "mode": "bridge",
                "ipam": {"type": "host-local", "subnet": "10.10.0.0/24", "dataDir": data}}),
        );
        p
    }

    fn store(&self) -> oxivirt_multus_core::source::DirSource {
        oxivirt_multus_core::source::DirSource::new(self.path("store"))
    }

    /// A NetworkAttachmentDefinition `default/<name>` holding `config`.
    fn put_nad(&self, name: &str, config: Value) {
        self.store()
            .put(
                &json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"config": config.to_string()}}),
            )
            .expect("nad");
    }

    /// The meta plugin's config for the Kubernetes backend with `kubeconfig` (written to
    /// a file) instead of the directory store.
    fn kube_conf(&self, kubeconfig: &str) -> Value {
        std::fs::write(self.path("kubeconfig"), kubeconfig).expect("kubeconfig");
        let mut conf = self.conf();
        conf.as_object_mut().expect("obj").remove("oxivirtStore");
        conf["kubeconfig"] = json!(self.path("kubeconfig"));
        conf
    }

    /// Asserts the pod is back to loopback alone and no address is held.
    #[track_caller]
    fn assert_empty(&self) {
        assert!(
            eventually(Duration::from_secs(5), || common::links(&self.pod)
                == ["lo"]),
            "{:?}",
            common::links(&self.pod)
        );
        assert!(self.allocations().is_empty(), "{:?}", self.allocations());
    }

    fn path(&self, rel: &str) -> String {
        self.root.path().join(rel).display().to_string()
    }

    fn bin(&self) -> PathBuf {
        self.root.path().join("bin")
    }

    fn put_pod(&self, networks: &str) {
        self.store()
            .put(&json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "virt-launcher-testvm-2", "namespace": "default", "uid": "uid-1",
                             "annotations": {"k8s.v1.cni.cncf.io/networks": networks}}}))
            .expect("pod");
    }

    fn conf(&self) -> Value {
        json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
               "clusterNetwork": "cluster", "confDir": self.path("net.d"), "cniDir": self.path("cache"),
               "binDir": self.bin().display().to_string(), "oxivirtStore": self.path("store")})
    }

    fn run(&self, cmd: &str, conf: &Value) -> CniOutput {
        self.run_env(cmd, conf, &[])
    }

    fn run_env(&self, cmd: &str, conf: &Value, env: &[(&str, String)]) -> CniOutput {
        let multus = Cni::new(&self.bin(), "multus")
            .in_node(&self.node)
            .netns(self.pod.path())
            .container("c0ffee")
            .args("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=virt-launcher-testvm-2;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=uid-1")
            .env("OXIVIRT_IPAM_INDEX_DIR", self.path("index"));
        env.iter()
            .fold(multus, |c, (k, v)| c.env(k, v.clone()))
            .run(cmd, conf)
    }

    /// The state of a mocked API service holding this pod and the multus-br NAD.
    fn mock_api(
        &self,
        token: &str,
    ) -> std::sync::Arc<std::sync::Mutex<oxivirt_testkit::mock_kube::State>> {
        let mut s = oxivirt_testkit::mock_kube::State {
            token: token.into(),
            ..Default::default()
        };
        let nad = std::fs::read_to_string(
            self.path("store/network-attachment-definitions/default/multus-br.json"),
        )
        .expect("nad");
        s.objects.insert(
            "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/multus-br"
                .into(),
            serde_json::from_str(&nad).expect("json"),
        );
        s.objects.insert(
            "/api/v1/namespaces/default/pods/virt-launcher-testvm-2".into(),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "virt-launcher-testvm-2", "namespace": "default",
                "uid": "uid-1", "annotations": {"k8s.v1.cni.cncf.io/networks": "multus-br"}}}),
        );
        std::sync::Arc::new(std::sync::Mutex::new(s))
    }

    /// The realistic mocked API service (RSA-2048 TLS, fsync'd writes to the log file it
    /// returns) holding this pod and the multus-br NAD, and the meta plugin's config for it.
    fn realistic_api(
        &self,
    ) -> (
        std::sync::Arc<std::sync::Mutex<oxivirt_testkit::mock_kube::State>>,
        Value,
        String,
    ) {
        use base64::Engine;
        let tls = oxivirt_testkit::mock_kube::TlsMaterial::generate_rsa();
        let state = self.mock_api("sa-token");
        let wal = self.path("wal");
        let port = oxivirt_testkit::mock_kube::start_realistic(
            state.clone(),
            &self.node.path(),
            &tls,
            Path::new(&wal),
        );
        let ca64 = base64::engine::general_purpose::STANDARD.encode(&tls.ca_pem);
        let conf = self.kube_conf(&format!(
            "apiVersion: v1\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca64}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\nusers:\n- name: u\n  user:\n    token: sa-token\n"
        ));
        (state, conf, wal)
    }

    fn allocations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for net in ["cluster", "multus-br", "macvlan-net"] {
            if let Ok(rd) = std::fs::read_dir(Path::new(&self.path("ipam")).join(net)) {
                out.extend(
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.parse::<std::net::IpAddr>().is_ok()),
                );
            }
        }
        out.sort();
        out
    }

    fn status(&self) -> Value {
        let text =
            std::fs::read_to_string(self.path("store/pods/default/virt-launcher-testvm-2.json"))
                .expect("pod");
        let pod: Value = serde_json::from_str(&text).expect("json");
        let s = pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
            .as_str()
            .unwrap_or("[]")
            .to_string();
        serde_json::from_str(&s).expect("status json")
    }
}

#[root_test(reference)]
fn pod_with_cluster_network_and_two_secondaries() {
    let p = Pod::new();
    p.put_pod("multus-br, default/macvlan-net@ext1");
    let out = p.run("ADD", &p.conf()).must("ADD");
    // The runtime gets the cluster network's result, in its version.
    let r = out.json();
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["ips"][0]["address"], "10.244.0.2/24");
    // Every network is in the pod.
    let addr = |dev: &str| -> Vec<String> {
        let v = p.pod.ip_json(&["-4", "addr", "show", "dev", dev]);
        v[0]["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["local"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(addr("eth0"), ["10.244.0.2"]);
    assert_eq!(addr("net1"), ["192.168.100.2"]);
    assert_eq!(addr("ext1"), ["10.10.0.2"]);
    let ext1 = &p.pod.ip_json(&["-d", "link", "show", "dev", "ext1"])[0];
    assert_eq!(ext1["linkinfo"]["info_kind"], "macvlan");
    // network-status, in Multus's format.
    let st = p.status();
    let names: Vec<&str> = st
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["cluster", "default/multus-br", "default/macvlan-net"]
    );
    assert_eq!(st[0]["interface"], "eth0");
    assert_eq!(st[0]["default"], true);
    assert_eq!(st[1]["interface"], "net1");
    assert_eq!(st[1]["ips"], json!(["192.168.100.2"]));
    assert_eq!(st[2]["interface"], "ext1");
    assert!(st[1]["mac"].as_str().is_some_and(|m| m.len() == 17));
    // The cache is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.path("cache/c0ffee"))
        .expect("cache")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // CHECK runs every delegate.
    p.run("CHECK", &p.conf()).must("CHECK");

    // DEL with the store gone: everything is released from the cache.
    std::fs::rename(p.path("store"), p.path("store-away")).expect("hide store");
    p.run("DEL", &p.conf()).must("DEL");
    p.assert_empty();
    assert!(!Path::new(&p.path("cache/c0ffee")).exists());
}

/// A launcher pod (label `kubevirt.io: virt-launcher`) gets, in its namespace, the
/// sysctls its launcher needs and cannot set in an unprivileged container (`/proc/sys` is
/// read-only there); any other pod's namespace is left as the kernel made it.
#[root_test(reference)]
fn a_launcher_pods_namespace_gets_the_sysctls_its_launcher_cannot_set() {
    let p = Pod::new();
    let sysctl = |key: &str| {
        p.pod
            .sh(&["cat", &format!("/proc/sys/{key}")])
            .trim()
            .to_string()
    };
    let keys = [
        "net/ipv4/ip_forward",
        "net/ipv4/conf/default/route_localnet",
        "net/ipv4/conf/default/arp_ignore",
    ];
    p.put_pod("multus-br");
    p.run("ADD", &p.conf()).must("ADD");
    for k in keys {
        assert_eq!(sysctl(k), "0", "{k} of a pod that is not a launcher");
    }
    p.run("DEL", &p.conf()).must("DEL");

    let mut pod: Value = serde_json::from_str(
        &std::fs::read_to_string(p.path("store/pods/default/virt-launcher-testvm-2.json"))
            .expect("the pod"),
    )
    .expect("pod JSON");
    pod["metadata"]["labels"] = json!({"kubevirt.io": "virt-launcher"});
    p.store().put(&pod).expect("pod");
    p.run("ADD", &p.conf()).must("ADD");
    for k in keys {
        assert_eq!(sysctl(k), "1", "{k} of a launcher pod");
    }
    p.run("DEL", &p.conf()).must("DEL");
    p.assert_empty();
}

#[root_test(reference)]
fn failing_delegate_rolls_back_the_others() {
    let p = Pod::new();
    p.put_nad(
        "broken",
        json!({"cniVersion": "1.0.0", "type": "macvlan", "master": "no-such-master",
            "ipam": {"type": "host-local", "subnet": "10.11.0.0/24", "dataDir": p.path("ipam")}}),
    );
    p.put_pod("multus-br, broken");
    let mut conf = p.conf();
    conf["logFile"] = json!(p.path("multus.log"));
    let out = p.run("ADD", &conf);
    assert!(!out.ok);
    let msg = out.json()["msg"].as_str().unwrap_or("").to_string();
    assert!(msg.contains("default/broken"), "{msg}");
    let log = std::fs::read_to_string(p.path("multus.log")).expect("log file");
    assert!(
        log.contains("[error]") && log.contains("default/broken"),
        "{log}"
    );
    p.assert_empty();
    assert!(!Path::new(&p.path("cache/c0ffee")).exists());
}

#[root_test(reference)]
fn bad_annotations_and_nads_name_the_pod_and_network() {
    let p = Pod::new();
    // The seed's NAD, verbatim (its quote is never closed).
    let nad_dir = Path::new(&p.path("store")).join("network-attachment-definitions/default");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/seed/multus-bridge.yaml"
        ),
        nad_dir.join("seed-br.yaml"),
    )
    .expect("copy");
    let cases = [
        ("Bad_Name", "DNS-1123"),
        ("multus-br@averyveryverylongname", "longer than 15"),
        ("nosuchnet", "default/nosuchnet not found"),
        ("seed-br", "unclosed quote"),
        ("multus-br, multus-br@net1", "used twice"),
    ];
    for (ann, says) in cases {
        p.put_pod(ann);
        let out = p.run("ADD", &p.conf());
        assert!(!out.ok, "{ann}");
        let msg = out.json()["msg"].as_str().unwrap_or("").to_string();
        assert!(msg.contains(says), "{ann}: {msg}");
        // Every report names the pod; the seed's also the network, the file and the line.
        assert!(msg.contains("virt-launcher-testvm-2"), "{ann}: {msg}");
        if says == "unclosed quote" {
            assert!(
                msg.contains("default/seed-br")
                    && msg.contains("seed-br.yaml")
                    && msg.contains("line 6"),
                "{ann}: {msg}"
            );
        }
        assert_eq!(common::links(&p.pod), ["lo"], "{ann}");
        assert!(p.allocations().is_empty(), "{ann}: {:?}", p.allocations());
    }
}

#[root_test(reference)]
fn gc_repairs_a_lost_del() {
    let p = Pod::new();
    p.put_pod("multus-br");
    p.run("ADD", &p.conf()).must("ADD");
    assert_eq!(p.allocations().len(), 2);
    // The runtime forgot the container (DEL never came): GC with nothing valid, and the
    // object store gone too: everything GC needs is in the cache.
    std::fs::rename(p.path("store"), p.path("store-away")).expect("hide store");
    let mut gc = p.conf();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([]);
    p.run("GC", &gc).must("GC");
    assert!(p.allocations().is_empty(), "{:?}", p.allocations());
    assert!(!Path::new(&p.path("cache/c0ffee")).exists());
}

#[root_test(reference)]
fn readiness_gate_and_del_from_the_store_without_cache() {
    let p = Pod::new();
    p.put_pod("multus-br");
    let mut conf = p.conf();
    conf["readinessindicatorfile"] = json!(p.path("ready"));
    let out = p.run("ADD", &conf);
    assert_eq!(
        out.code(),
        11,
        "not ready yet must be 'try again later': {}",
        out.stdout
    );
    assert_eq!(common::links(&p.pod), ["lo"]);
    std::fs::write(p.path("ready"), "").expect("ready");
    p.run("ADD", &conf).must("ADD");
    assert_eq!(p.allocations().len(), 2);
    // The cache is lost; DEL rebuilds the delegate list from the pod in the store.
    std::fs::remove_file(p.path("cache/c0ffee")).expect("drop cache");
    p.run("DEL", &conf).must("DEL");
    p.assert_empty();
}

/// `default-route` moves the pod's default route to the selected network.
#[root_test(reference)]
fn default_route_moves_to_the_selected_network() {
    let p = Pod::new();
    // Without it, the cluster network (isDefaultGateway) carries the default route.
    p.put_pod("multus-br");
    p.run("ADD", &p.conf()).must("ADD");
    let default_via = |p: &Pod| -> Vec<(String, String)> {
        p.pod
            .ip_json(&["-4", "route", "show", "default"])
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        (
                            r["gateway"].as_str().unwrap_or("").to_string(),
                            r["dev"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        default_via(&p),
        [("10.244.0.1".to_string(), "eth0".to_string())]
    );
    assert!(p.run("DEL", &p.conf()).ok);

    p.put_pod(r#"[{"name": "multus-br", "default-route": ["192.168.100.1"]}]"#);
    let out = p.run("ADD", &p.conf()).must("ADD");
    assert_eq!(
        default_via(&p),
        [("192.168.100.1".to_string(), "net1".to_string())]
    );
    // The cluster result handed back no longer claims the default route.
    let routes = out.json()["routes"].clone();
    assert!(
        !routes
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["dst"] == "0.0.0.0/0")),
        "{routes}"
    );
    let st = p.status();
    assert_eq!(st[1]["gateway"], json!(["192.168.100.1"]));
    assert!(st[0].get("gateway").is_none(), "{st}");
    assert!(p.run("DEL", &p.conf()).ok);
    assert!(p.allocations().is_empty());
}

/// The network-status of the mocked API service's last PATCH.
fn last_network_status(s: &oxivirt_testkit::mock_kube::State) -> Value {
    let status = s.patches.last().expect("a PATCH")["metadata"]["annotations"]
        ["k8s.v1.cni.cncf.io/network-status"]
        .as_str()
        .expect("status")
        .to_string();
    serde_json::from_str(&status).expect("status json")
}

/// The same pod through the Kubernetes backend, against the mocked API service.
#[root_test(reference)]
fn kubernetes_backend_against_a_mocked_api_service() {
    let p = Pod::new();
    let state = p.mock_api("tok-1");
    let port = oxivirt_testkit::mock_kube::start(state.clone(), &p.node.path());
    std::fs::write(p.path("token"), "tok-1\n").expect("token");
    let conf = p.kube_conf(&format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: mock\nclusters:\n- name: mock\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: plugin\nusers:\n- name: plugin\n  user:\n    tokenFile: token\n"
    ));
    p.run("ADD", &conf).must("ADD");
    assert_eq!(common::links(&p.pod), ["eth0", "lo", "net1"]);
    {
        let s = state.lock().expect("lock");
        assert!(
            s.requests.iter().all(|(_, _, auth)| auth == "Bearer tok-1"),
            "{:?}",
            s.requests
        );
        let st = last_network_status(&s);
        assert_eq!(st[1]["name"], "default/multus-br");
        assert_eq!(st[1]["interface"], "net1");
    }
    // The token is rotated: the next call reads the new one, no restart involved.
    state.lock().expect("lock").token = "tok-2".into();
    std::fs::write(p.path("token"), "tok-2\n").expect("token");
    let mut chk = conf.clone();
    chk["cniVersion"] = json!("1.0.0");
    assert!(p.run("CHECK", &chk).ok);
    // GC and DEL are served from the cache: the API server is not asked at all.
    let before = state.lock().expect("lock").requests.len();
    let mut gc = conf.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c0ffee", "ifname": "eth0"}]);
    p.run("GC", &gc).must("GC");
    assert_eq!(p.allocations().len(), 2, "GC released a valid attachment");
    assert_eq!(
        state.lock().expect("lock").requests.len(),
        before,
        "GC talked to the API server"
    );
    p.run("DEL", &conf).must("DEL");
    assert_eq!(
        state.lock().expect("lock").requests.len(),
        before,
        "DEL talked to the API server"
    );
    assert!(p.allocations().is_empty());
    // A second pod ADD after rotation uses the new token.
    p.run("ADD", &conf).must("ADD");
    assert!(state
        .lock()
        .expect("lock")
        .requests
        .iter()
        .skip(before)
        .all(|(_, _, a)| a == "Bearer tok-2"));
    assert!(p.run("DEL", &conf).ok);
}

/// A NAD holding a conflist: the chain runs with prevResult (our macvlan is not in the bin
/// dir here, so the reference macvlan + reference tuning), and DEL runs it in reverse. A
/// DEL that fails keeps the cache so a retry can finish.
#[root_test(reference)]
fn conflist_delegate_and_failed_del_keeps_the_cache() {
    let p = Pod::new();
    let reference = reference_plugins().expect("the reference plugins");
    std::os::unix::fs::symlink(reference.join("tuning"), p.bin().join("tuning")).expect("link");
    p.put_nad(
        "tuned",
        json!({"cniVersion": "0.4.0", "name": "tuned", "plugins": [
            {"type": "macvlan", "master": "uplink0", "ipam": {"type": "host-local", "subnet": "10.12.0.0/24", "dataDir": p.path("ipam")}},
            {"type": "tuning", "mtu": 1400}
        ]}),
    );
    p.put_pod("tuned@ext0");
    p.run("ADD", &p.conf()).must("ADD");
    let l = &p.pod.ip_json(&["link", "show", "dev", "ext0"])[0];
    assert_eq!(l["mtu"], 1400, "tuning ran after macvlan: {l}");
    // Make the chain's DEL fail: the cache must survive for the retry.
    std::fs::remove_file(p.bin().join("tuning")).expect("rm");
    let out = p.run("DEL", &p.conf());
    assert!(!out.ok, "DEL should report the missing plugin");
    assert!(
        Path::new(&p.path("cache/c0ffee")).exists(),
        "cache dropped after a failed DEL"
    );
    std::os::unix::fs::symlink(reference.join("tuning"), p.bin().join("tuning")).expect("link");
    p.run("DEL", &p.conf()).must("retry");
    assert!(!Path::new(&p.path("cache/c0ffee")).exists());
    assert!(p.allocations().is_empty(), "{:?}", p.allocations());
}

/// Against the realistic mock (RSA-2048 certificate, fsync'd writes): the pod's networks
/// attached, network-status written to the mock's log before ADD returned.
#[root_test(reference)]
fn kubernetes_backend_against_the_realistic_mock() {
    let p = Pod::new();
    let (_state, conf, wal) = p.realistic_api();
    p.run("ADD", &conf).must("ADD");
    assert_eq!(common::links(&p.pod), ["eth0", "lo", "net1"]);
    let log = std::fs::read_to_string(&wal).expect("the mock's log");
    assert!(
        log.contains("network-status") && log.contains("default/multus-br"),
        "{log}"
    );
    assert!(p.run("DEL", &conf).ok);
}

/// The Kubernetes backend over TLS (CA from the kubeconfig), and in-cluster (service
/// account token and CA, KUBERNETES_SERVICE_HOST/PORT), against the mocked API service.
#[root_test(reference)]
fn kubernetes_backend_over_tls_and_in_cluster() {
    let p = Pod::new();
    use base64::Engine;
    let tls = oxivirt_testkit::mock_kube::TlsMaterial::generate();
    let state = p.mock_api("sa-token");
    let port = oxivirt_testkit::mock_kube::start_tls(state.clone(), &p.node.path(), &tls);
    let ca64 = base64::engine::general_purpose::STANDARD.encode(&tls.ca_pem);
    let mut conf = p.kube_conf(&format!(
        "apiVersion: v1\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca64}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\nusers:\n- name: u\n  user:\n    token: sa-token\n"
    ));
    p.run("ADD", &conf).must("TLS");
    assert!(p.run("DEL", &conf).ok);
    assert!(
        !state.lock().expect("lock").patches.is_empty(),
        "network-status was not written over TLS"
    );

    // A CA that did not sign the server's certificate is refused (ADD: try again later).
    let other = oxivirt_testkit::mock_kube::TlsMaterial::generate();
    let bad = std::fs::read_to_string(p.path("kubeconfig"))
        .expect("kc")
        .replace(
            &ca64,
            &base64::engine::general_purpose::STANDARD.encode(&other.ca_pem),
        );
    std::fs::write(p.path("kubeconfig-bad"), bad).expect("kc");
    let mut bad_conf = conf.clone();
    bad_conf["kubeconfig"] = json!(p.path("kubeconfig-bad"));
    assert_eq!(p.run("ADD", &bad_conf).code(), 11);
    assert_eq!(common::links(&p.pod), ["lo"]);

    // In-cluster: no kubeconfig, the service account's token and CA.
    let sa = p.path("serviceaccount");
    std::fs::create_dir_all(&sa).expect("sa");
    std::fs::write(format!("{sa}/token"), "sa-token").expect("token");
    std::fs::write(format!("{sa}/ca.crt"), &tls.ca_pem).expect("ca");
    conf.as_object_mut().expect("obj").remove("kubeconfig");
    let env = vec![
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_string()),
        ("KUBERNETES_SERVICE_PORT", port.to_string()),
        ("OXIVIRT_SERVICEACCOUNT_DIR", sa.clone()),
    ];
    p.run_env("ADD", &conf, &env).must("in-cluster ADD");
    assert_eq!(common::links(&p.pod), ["eth0", "lo", "net1"]);
    p.run_env("DEL", &conf, &env).must("in-cluster DEL");
    assert!(p.allocations().is_empty());
}

/// The thick plugin: `multus-shim` hands the calls to `oxivirt-multus multus-daemon` (its
/// kubeconfig and paths from a `--config` file, as Multus's daemon config has them; the
/// shim's config as Multus writes it), against the realistic mock. Pods attach as through
/// the thin plugin, the daemon keeps one TLS connection for pod after pod, its errors keep
/// their CNI codes through the shim, and a stopped daemon takes its socket away (ADD: try
/// again later).
#[root_test(reference)]
fn thick_plugin_shim_and_daemon_against_the_realistic_mock() {
    let p = Pod::new();
    let (state, meta, wal) = p.realistic_api();
    std::fs::write(p.path("daemon-config.json"), meta.to_string()).expect("daemon config");
    std::os::unix::fs::symlink(common::our_multus_bin(), p.bin().join("multus-shim"))
        .expect("link");
    let sockets = p.path("run/multus");
    let mut daemon = oxivirt_testkit::cleanup::OwnedChild::spawn(
        std::process::Command::new("nsenter")
            .arg(format!("--net={}", p.node.path().display()))
            .arg(common::our_multus_bin())
            .args(["multus-daemon", "--socket-dir", &sockets])
            .args(["--config", &p.path("daemon-config.json")])
            .env("OXIVIRT_IPAM_INDEX_DIR", p.path("index")),
    )
    .expect("start the daemon");
    let socket = Path::new(&sockets).join("multus.sock");
    assert!(
        eventually(Duration::from_secs(10), || socket.exists()),
        "the daemon did not make {}",
        socket.display()
    );
    let mode = std::fs::metadata(&socket).expect("socket").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let shim_conf = json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim",
        "logLevel": "verbose", "logToStderr": true, "socketDir": sockets});
    let shim = |cmd: &str, conf: &Value, args: &str| {
        Cni::new(&p.bin(), "multus-shim")
            .in_node(&p.node)
            .netns(p.pod.path())
            .container("c0ffee")
            .args(args)
            .run(cmd, conf)
    };
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=virt-launcher-testvm-2;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=uid-1";

    for round in 0..3 {
        let out = shim("ADD", &shim_conf, args).must(&format!("ADD {round}"));
        let result: Value = serde_json::from_str(&out.stdout).expect("result JSON");
        assert_eq!(result["cniVersion"], "1.0.0", "{result}");
        let ifaces: Vec<&str> = result["interfaces"]
            .as_array()
            .expect("interfaces")
            .iter()
            .filter_map(|i| i["name"].as_str())
            .collect();
        assert!(ifaces.contains(&"eth0"), "{result}");
        assert!(result["ips"][0]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.244.0.")));
        assert_eq!(common::links(&p.pod), ["eth0", "lo", "net1"]);
        shim("DEL", &shim_conf, args).must(&format!("DEL {round}"));
        p.assert_empty();
    }
    {
        let s = state.lock().expect("lock");
        let st = last_network_status(&s);
        assert_eq!(st[1]["name"], "default/multus-br");
        assert_eq!(s.patches.len(), 3, "one network-status per ADD");
        assert_eq!(
            s.connections, 1,
            "three pods, one connection: {} were made",
            s.connections
        );
    }
    assert!(std::fs::read_to_string(&wal)
        .expect("the mock's log")
        .contains("default/multus-br"));

    // The daemon's error, its code and message, through the shim.
    let out = shim(
        "ADD",
        &shim_conf,
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=nope;K8S_POD_INFRA_CONTAINER_ID=c0ffee",
    );
    assert_eq!(out.code(), 7, "{}", out.stdout);
    assert!(
        out.stdout.contains("nope") && out.stdout.contains("multus.sock"),
        "{}",
        out.stdout
    );
    assert_eq!(common::links(&p.pod), ["lo"]);
    // A shim config that is not one is refused by name.
    let out = shim("ADD", &json!({"socketDir": 5}), args);
    assert_eq!(out.code(), 7, "{}", out.stdout);
    assert!(out.stdout.contains("multus-shim config"), "{}", out.stdout);

    // SIGTERM: the socket goes, and the shim says to try again later.
    // SAFETY: kill on our own live child.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGTERM) };
    let status = daemon.child.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
    let out = shim("ADD", &shim_conf, args);
    assert_eq!(out.code(), 11, "{}", out.stdout);
    assert!(out.stdout.contains("multus.sock"), "{}", out.stdout);
    assert_eq!(common::links(&p.pod), ["lo"]);
}

/// The thick daemon as the node DaemonSet runs it: in a mount namespace of its own (a
/// container's) with the host's root mounted at a path of its own, changing its root to it
/// (`--chroot`) after reading its config, so the socket, the delegates, their state and
/// the pods' namespaces are the host's. A pod's ADD and DEL through the shim then work as
/// with a daemon on the host; a root that is not there stops it with the reason.
#[root_test(reference, "unshare")]
fn the_thick_daemon_in_the_hosts_root_as_its_container_runs_it() {
    let p = Pod::new();
    let (_state, meta, _wal) = p.realistic_api();
    std::fs::write(p.path("daemon-config.json"), meta.to_string()).expect("daemon config");
    std::os::unix::fs::symlink(common::our_multus_bin(), p.bin().join("multus-shim"))
        .expect("link");
    let sockets = p.path("run/multus");
    let hostroot = p.path("hostroot");
    std::fs::create_dir_all(&hostroot).expect("hostroot");
    let script = format!(
        "mount --rbind / {hostroot} && exec nsenter --net={node} {bin} multus-daemon \
         --chroot {hostroot} --socket-dir {sockets} --config {config}",
        node = p.node.path().display(),
        bin = common::our_multus_bin().display(),
        config = p.path("daemon-config.json"),
    );
    let daemon = oxivirt_testkit::cleanup::OwnedChild::spawn(
        std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("OXIVIRT_IPAM_INDEX_DIR", p.path("index")),
    )
    .expect("start the daemon");
    let socket = Path::new(&sockets).join("multus.sock");
    assert!(
        eventually(Duration::from_secs(10), || socket.exists()),
        "the chrooted daemon did not make {}",
        socket.display()
    );
    // Its root is the mounted host root (unshare, sh and nsenter exec'd into it).
    let root = std::fs::read_link(format!("/proc/{}/root", daemon.child.id())).expect("root");
    assert_eq!(root, Path::new(&hostroot));
    let shim_conf = json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim",
        "socketDir": sockets});
    let shim = |cmd: &str| {
        Cni::new(&p.bin(), "multus-shim")
            .in_node(&p.node)
            .netns(p.pod.path())
            .container("c0ffee")
            .args("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=virt-launcher-testvm-2;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=uid-1")
            .run(cmd, &shim_conf)
    };
    let out = shim("ADD").must("ADD through the chrooted daemon");
    let result: Value = serde_json::from_str(&out.stdout).expect("result JSON");
    assert!(result["ips"][0]["address"]
        .as_str()
        .is_some_and(|a| a.starts_with("10.244.0.")));
    assert_eq!(common::links(&p.pod), ["eth0", "lo", "net1"]);
    shim("DEL").must("DEL through the chrooted daemon");
    p.assert_empty();

    let out = std::process::Command::new(common::our_multus_bin())
        .args(["multus-daemon", "--chroot", &p.path("no-such-root")])
        .args(["--socket-dir", &p.path("run/other")])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot change the root to") && err.contains("no-such-root"),
        "{err}"
    );
}
