//! What each component may do, and how `oxivirt-api` finds its way to a launcher: the
//! rights its binary needs and no more, its Secrets' names where RBAC, the DaemonSet and
//! its defaults meet, the relay's port by name, and an APIService that trusts a CA rather
//! than skipping verification.

use std::collections::BTreeSet;

use oxivirt_deploy::manifests::{
    api, node, objects, API_PKI_SECRET, API_SERVICE, NAMESPACE, RELAY_PORT, RELAY_TLS_SECRET,
};
use serde_json::{json, Value};

/// One right: (namespace or "" for the cluster, API group, resource, verb, resource name
/// or "" for any).
type Right = (String, String, String, String, String);

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

/// The rights of service account `sa` through the roles of `deploy/`, and the names of
/// the roles it is bound to that `deploy/` does not define (the cluster's own).
fn rights(sa: &str) -> (BTreeSet<Right>, BTreeSet<String>) {
    let objs = objects();
    let mut out = BTreeSet::new();
    let mut builtin = BTreeSet::new();
    for b in objs
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
    {
        let bound = b["subjects"].as_array().is_some_and(|s| {
            s.iter().any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == NAMESPACE
            })
        });
        if !bound {
            continue;
        }
        let ns = b["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let role_kind = b["roleRef"]["kind"].as_str().unwrap_or("");
        let role_name = b["roleRef"]["name"].as_str().unwrap_or("");
        let role = find(&objs, role_kind, role_name).filter(|r| {
            role_kind == "ClusterRole" || r["metadata"]["namespace"].as_str() == Some(&ns)
        });
        let Some(role) = role else {
            builtin.insert(format!("{role_kind} {role_name} in {ns:?}"));
            continue;
        };
        for r in role["rules"].as_array().expect("rules") {
            let names = strs(&r["resourceNames"]);
            let names = if names.is_empty() {
                vec![String::new()]
            } else {
                names
            };
            for g in strs(&r["apiGroups"]) {
                for res in strs(&r["resources"]) {
                    for v in strs(&r["verbs"]) {
                        for n in &names {
                            out.insert((ns.clone(), g.clone(), res.clone(), v.clone(), n.clone()));
                        }
                    }
                }
            }
        }
    }
    (out, builtin)
}

fn right(ns: &str, group: &str, resource: &str, verb: &str, name: &str) -> Right {
    (
        ns.into(),
        group.into(),
        resource.into(),
        verb.into(),
        name.into(),
    )
}

#[test]
fn oxivirt_api_may_do_what_it_needs_and_nothing_else() {
    let (got, builtin) = rights("oxivirt-api");
    let mut want = BTreeSet::new();
    for res in [
        "virtualmachines",
        "virtualmachines/status",
        "virtualmachineinstances",
    ] {
        for verb in ["get", "update"] {
            want.insert(right("", "kubevirt.io", res, verb, ""));
        }
    }
    for verb in ["get", "list", "delete"] {
        want.insert(right("", "", "pods", verb, ""));
    }
    for verb in ["get", "patch"] {
        want.insert(right(
            "",
            "apiregistration.k8s.io",
            "apiservices",
            verb,
            API_SERVICE,
        ));
    }
    want.insert(right(NAMESPACE, "", "secrets", "create", ""));
    for name in [API_PKI_SECRET, RELAY_TLS_SECRET] {
        want.insert(right(NAMESPACE, "", "secrets", "get", name));
    }
    want.insert(right(NAMESPACE, "", "secrets", "update", RELAY_TLS_SECRET));
    assert_eq!(got, want);
    // What every aggregated API server is bound to: delegated authn/authz, and the
    // kube-system ConfigMap with the front proxy's CA.
    assert_eq!(
        builtin,
        BTreeSet::from([
            "ClusterRole system:auth-delegator in \"\"".to_string(),
            "Role extension-apiserver-authentication-reader in \"kube-system\"".to_string(),
        ])
    );
}

#[test]
fn no_component_reads_secrets_it_does_not_name_or_holds_a_wildcard() {
    for sa in ["oxivirt-controller", "oxivirt-node", "oxivirt-api"] {
        let (got, _) = rights(sa);
        for (ns, group, res, verb, name) in &got {
            assert!(
                group != "*" && res != "*" && verb != "*",
                "{sa}: {group}/{res} {verb}"
            );
            if res == "secrets" {
                assert!(
                    verb == "create" || !name.is_empty(),
                    "{sa}: {verb} on every Secret in {ns:?}"
                );
            }
        }
    }
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

#[test]
fn the_api_server_serves_where_its_service_and_probes_look() {
    let objs = api();
    let deploy = objs
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("Deployment");
    let service = objs
        .iter()
        .find(|o| o["kind"] == "Service")
        .expect("Service");
    let apisvc = objs
        .iter()
        .find(|o| o["kind"] == "APIService")
        .expect("APIService");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"];
    assert_eq!(pod["spec"]["serviceAccountName"], "oxivirt-api");
    assert_eq!(service["spec"]["selector"], pod["metadata"]["labels"]);
    let c = container(deploy, "api");
    assert_eq!(c["command"], json!(["/usr/bin/oxivirt-api"]));
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        c["env"],
        json!([{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}])
    );
    let port = &c["ports"][0]["containerPort"];
    assert_eq!(&service["spec"]["ports"][0]["targetPort"], port);
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            c[probe]["httpGet"],
            json!({"path": "/healthz", "port": port, "scheme": "HTTPS"}),
            "{probe}"
        );
    }
    // Its serving certificate is checked against the CA it patches in, not skipped.
    assert_eq!(apisvc["metadata"]["name"], API_SERVICE);
    assert!(apisvc["spec"].get("insecureSkipTLSVerify").is_none());
    assert!(apisvc["spec"].get("caBundle").is_none());
    assert_eq!(
        apisvc["spec"]["service"]["name"],
        service["metadata"]["name"]
    );
    assert_eq!(
        apisvc["spec"]["service"]["port"],
        service["spec"]["ports"][0]["port"]
    );
}

#[test]
fn oxivirt_api_finds_the_relay_on_each_node() {
    let ds = node();
    let pod = &ds["spec"]["template"];
    // `oxivirt-api --relay-selector`'s default selects the DaemonSet's pods.
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/name"], "oxivirt");
    assert_eq!(labels["app.kubernetes.io/component"], "oxivirt-node");
    assert_eq!(ds["metadata"]["namespace"], NAMESPACE);
    assert_eq!(pod["spec"]["hostNetwork"], true);

    let containers = pod["spec"]["containers"].as_array().expect("containers");
    let named_relay: Vec<&Value> = containers
        .iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter(|p| p["name"] == "relay")
        .collect();
    assert_eq!(
        named_relay,
        vec![&json!({"name": "relay", "containerPort": RELAY_PORT, "protocol": "TCP"})]
    );
    let relay = container(&ds, "relay");
    assert_eq!(
        relay["args"],
        json!([
            "relay",
            "--listen",
            format!("0.0.0.0:{RELAY_PORT}"),
            "--tls-dir",
            "/etc/oxivirt/relay",
            "--state-root",
            "/var/run/oxivirt/launchers"
        ])
    );
    assert_eq!(
        relay["securityContext"],
        json!({
            "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"], "add": ["DAC_OVERRIDE"]},
        })
    );
    let mounts = relay["volumeMounts"].as_array().expect("mounts");
    assert!(mounts.iter().all(|m| m["readOnly"] == true), "{mounts:?}");
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    let tls = mounts
        .iter()
        .find(|m| m["mountPath"] == "/etc/oxivirt/relay")
        .and_then(|m| volumes.iter().find(|v| v["name"] == m["name"]))
        .expect("the relay's TLS volume");
    // Optional: the node starts before oxivirt-api has made the Secret.
    assert_eq!(
        tls["secret"],
        json!({"secretName": RELAY_TLS_SECRET, "optional": true})
    );
    let launchers = mounts
        .iter()
        .find(|m| m["mountPath"] == "/var/run/oxivirt/launchers")
        .and_then(|m| volumes.iter().find(|v| v["name"] == m["name"]))
        .expect("the launchers' volume");
    assert_eq!(launchers["hostPath"]["path"], "/var/run/oxivirt/launchers");

    // Only the thick meta plugin's daemon is privileged (as Multus's).
    for c in containers {
        assert_eq!(
            c["securityContext"].get("privileged").is_some(),
            c["name"] == "multus-daemon",
            "{}",
            c["name"]
        );
    }
}

/// The thick meta plugin: install-cni writes the shim's config for the socket dir the
/// daemon serves, and the daemon changes its root to the host's, mounted so that new pod
/// namespaces show inside.
#[test]
fn the_thick_daemon_serves_where_the_shims_config_points() {
    let ds = node();
    let spec = &ds["spec"]["template"]["spec"];
    let containers = spec["containers"].as_array().expect("containers");
    let arg_after = |c: &Value, flag: &str| -> String {
        let args = c["args"].as_array().expect("args");
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{flag} in {}", c["name"]))
            .to_string()
    };
    let by_name = |n: &str| {
        containers
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("container {n}"))
    };
    let (install, daemon) = (by_name("install-cni"), by_name("multus-daemon"));
    assert_eq!(
        arg_after(install, "--thick-socket-dir"),
        arg_after(daemon, "--socket-dir")
    );
    let root = arg_after(daemon, "--chroot");
    let mount = daemon["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["mountPath"] == root.as_str())
        .expect("the host root is mounted where the daemon changes its root to");
    assert_eq!(mount["mountPropagation"], "HostToContainer");
    let volume = spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("volume");
    assert_eq!(volume["hostPath"]["path"], "/");
}
