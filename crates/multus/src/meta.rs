//! ADD, DEL, CHECK, STATUS and GC of the meta plugin: resolve the pod's networks, run
//! every delegate (rolling back on failure), cache what DEL needs, report network-status.

use crate::annotation::{self, NetworkSelection};
use crate::cache::{self, CachedDelegate, Entry};
use crate::config::Config;
use crate::default_route;
use crate::delegate::{self, Delegate, Runner};
use crate::source::{ClusterSource, NetworkAttachmentDefinition, Pod, SourceError};
use crate::status;
use oxivirt_cni_spec::error::codes;
use oxivirt_cni_spec::trace::mark;
use oxivirt_cni_spec::{CniError, CniResult, Command, Environment, ErrorCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};

/// The pod a call is for, from `CNI_ARGS`.
#[derive(Debug, Clone, Default)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub infra_id: String,
    pub uid: String,
}

impl PodRef {
    pub fn from_env(env: &Environment) -> Option<Self> {
        let a = &env.args;
        Some(Self {
            namespace: a.get("K8S_POD_NAMESPACE")?.to_string(),
            name: a.get("K8S_POD_NAME")?.to_string(),
            infra_id: a
                .get("K8S_POD_INFRA_CONTAINER_ID")
                .unwrap_or(&env.container_id)
                .to_string(),
            uid: a.get("K8S_POD_UID").unwrap_or_default().to_string(),
        })
    }

    fn cni_args(&self, uid: &str) -> String {
        format!(
            "IgnoreUnknown=true;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.namespace, self.name, self.infra_id, uid
        )
    }
}

fn source_err(e: SourceError) -> CniError {
    match e {
        SourceError::Unreachable(m) => CniError::new(ErrorCode::TryAgainLater, m),
        SourceError::NotFound { .. } => CniError::config(e.to_string()),
        SourceError::Invalid { .. } => CniError::config(e.to_string()),
    }
}

pub struct Meta<'a> {
    pub cfg: &'a Config,
    pub env: &'a Environment,
    pub stdin: &'a [u8],
    pub source: &'a dyn ClusterSource,
    pub in_process: Option<delegate::InProcess>,
}

impl Meta<'_> {
    fn runner(&self, cni_args: String) -> Runner {
        let mut paths = vec![self.cfg.multus.bin_dir.clone()];
        paths.extend(
            self.env
                .path
                .iter()
                .filter(|p| **p != self.cfg.multus.bin_dir)
                .cloned(),
        );
        Runner {
            container_id: self.env.container_id.clone(),
            netns: self.env.netns.clone(),
            cni_args,
            paths,
            in_process: self.in_process,
        }
    }

    fn nad_config(
        &self,
        nad: &NetworkAttachmentDefinition,
        pod: Option<&PodRef>,
    ) -> Result<Value, CniError> {
        let whose = pod
            .map(|p| format!("pod {}/{}: ", p.namespace, p.name))
            .unwrap_or_default();
        let mut v = if nad.config.trim().is_empty() {
            delegate::config_by_name(&self.cfg.multus.conf_dir, &nad.name)?.ok_or_else(|| {
                CniError::config(format!(
                    "{whose}network {}/{}: the NetworkAttachmentDefinition has no config and {} has none named {:?}",
                    nad.namespace,
                    nad.name,
                    self.cfg.multus.conf_dir.display(),
                    nad.name
                ))
            })?
        } else {
            serde_json::from_str::<Value>(&nad.config).map_err(|e| {
                CniError::config(format!(
                    "{whose}network {}/{}: spec.config is not valid JSON: {e}",
                    nad.namespace, nad.name
                ))
            })?
        };
        if let Some(o) = v.as_object_mut() {
            if o.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                o.insert("name".into(), json!(nad.name));
            }
        } else {
            return Err(CniError::config(format!(
                "{whose}network {}/{}: spec.config is not a JSON object",
                nad.namespace, nad.name
            )));
        }
        Ok(v)
    }

    /// A network named in `clusterNetwork`/`defaultNetworks`/the default-network annotation:
    /// a NetworkAttachmentDefinition, then a config in confDir, then a path.
    fn resolve_named(
        &self,
        namespace: &str,
        name: &str,
        pod: Option<&PodRef>,
    ) -> Result<(String, Value), CniError> {
        if annotation::is_dns1123_subdomain(name) {
            match self.source.network_attachment(namespace, name) {
                Ok(Some(nad)) => {
                    return Ok((format!("{namespace}/{name}"), self.nad_config(&nad, pod)?))
                }
                Ok(None) | Err(SourceError::Unreachable(_)) => {}
                Err(e) => return Err(source_err(e)),
            }
        }
        if let Some(v) = delegate::config_by_name(&self.cfg.multus.conf_dir, name)? {
            return Ok((name.to_string(), v));
        }
        let path = std::path::Path::new(name);
        if path.is_absolute() && path.exists() {
            let v = delegate::config_from_path(path)?;
            let n = v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_string();
            return Ok((n, v));
        }
        Err(CniError::config(format!(
            "network {name:?}: no NetworkAttachmentDefinition in {namespace}, no config named so in {}, and not a path",
            self.cfg.multus.conf_dir.display()
        )))
    }

    fn cluster_delegate(&self, pod: Option<(&PodRef, &Pod)>) -> Result<Delegate, CniError> {
        let ifname = self.env.ifname.clone();
        if let Some((r, p)) = pod {
            if let Some(v) = p.annotations.get(annotation::DEFAULT_NETWORK) {
                let sel = annotation::parse_default_network(v).map_err(|e| {
                    CniError::config(format!("pod {}/{}: {e}", r.namespace, r.name))
                })?;
                let ns = sel
                    .namespace
                    .clone()
                    .unwrap_or_else(|| self.cfg.multus.multus_namespace.clone());
                let (network, conf) = self.resolve_named(&ns, &sel.name, Some(r))?;
                return Ok(Delegate::new(network, ifname, conf, true, None));
            }
        }
        if let Some(first) = self.cfg.multus.delegates.first() {
            let name = first
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("cluster")
                .to_string();
            return Ok(Delegate::new(name, ifname, first.clone(), true, None));
        }
        let name = self.cfg.multus.cluster_network.clone().unwrap_or_default();
        let (network, conf) =
            self.resolve_named(&self.cfg.multus.multus_namespace, &name, pod.map(|p| p.0))?;
        let mut d = Delegate::new(network, ifname, conf, true, None);
        d.runtime = self.cfg.multus.runtime_config.clone();
        Ok(d)
    }

    fn selection_delegate(
        &self,
        r: &PodRef,
        sel: &NetworkSelection,
        ifname: String,
    ) -> Result<Delegate, CniError> {
        let ns = sel.namespace.clone().unwrap_or_else(|| r.namespace.clone());
        if self.cfg.multus.namespace_isolation
            && ns != r.namespace
            && !self.cfg.global_namespaces().contains(&ns)
        {
            return Err(CniError::config(format!(
                "pod {}/{}: network {ns}/{} is in another namespace and namespaceIsolation allows only {} and the global namespaces ({})",
                r.namespace,
                r.name,
                sel.name,
                r.namespace,
                self.cfg.multus.global_namespaces
            )));
        }
        let nad = self
            .source
            .network_attachment(&ns, &sel.name)
            .map_err(|e| {
                source_err(e).context(format!(
                    "pod {}/{}: network {ns}/{}",
                    r.namespace, r.name, sel.name
                ))
            })?
            .ok_or_else(|| {
                CniError::config(format!(
                    "pod {}/{}: NetworkAttachmentDefinition {ns}/{} not found",
                    r.namespace, r.name, sel.name
                ))
            })?;
        let conf = self.nad_config(&nad, Some(r))?;
        Ok(Delegate::new(
            format!("{ns}/{}", sel.name),
            ifname,
            conf,
            false,
            Some(sel),
        ))
    }

    /// Every network of the pod, cluster network first.
    fn plan(&self, pod: Option<(&PodRef, &Pod)>) -> Result<Vec<Delegate>, CniError> {
        let mut out = vec![self.cluster_delegate(pod)?];
        let Some((r, p)) = pod else { return Ok(out) };
        let mut sels: Vec<NetworkSelection> = Vec::new();
        // defaultNetworks apply to every pod, except in the system namespaces.
        if !self.cfg.multus.system_namespaces.contains(&r.namespace) {
            for n in &self.cfg.multus.default_networks {
                sels.push(NetworkSelection {
                    name: n.clone(),
                    namespace: Some(self.cfg.multus.multus_namespace.clone()),
                    ..Default::default()
                });
            }
        }
        if let Some(v) = p.annotations.get(annotation::NETWORKS) {
            let list = annotation::parse_networks(v)
                .map_err(|e| CniError::config(format!("pod {}/{}: {e}", r.namespace, r.name)))?;
            sels.extend(list);
        }
        let names = annotation::interface_names(&sels, &self.env.ifname)
            .map_err(|e| CniError::config(format!("pod {}/{}: {e}", r.namespace, r.name)))?;
        for (sel, ifname) in sels.iter().zip(names) {
            out.push(self.selection_delegate(r, sel, ifname)?);
        }
        Ok(out)
    }

    fn check_ready(&self) -> Result<(), CniError> {
        if let Some(f) = &self.cfg.multus.readiness_indicator_file {
            if !f.exists() {
                return Err(CniError::new(
                    ErrorCode::TryAgainLater,
                    format!(
                        "readiness indicator file {} does not exist yet",
                        f.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn add(&self) -> Result<String, CniError> {
        self.check_ready()?;
        let pod_ref = PodRef::from_env(self.env);
        let pod = match &pod_ref {
            Some(r) => Some(self.source.pod(&r.namespace, &r.name).map_err(source_err)?),
            None => None,
        };
        mark("multus: pod read");
        let pair = pod_ref.as_ref().zip(pod.as_ref());
        let delegates = self.plan(pair)?;
        mark("multus: networks resolved");
        let cni_args = match (&pod_ref, &pod) {
            (Some(r), Some(p)) => r.cni_args(if p.uid.is_empty() { &r.uid } else { &p.uid }),
            _ => self
                .env
                .args
                .pairs()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";"),
        };
        let runner = self.runner(cni_args.clone());
        let mut done: Vec<CachedDelegate> = Vec::new();
        let mut results: Vec<(Delegate, CniResult)> = Vec::new();
        // Families some network claims the default route for.
        let claimed: Vec<bool> = [true, false]
            .into_iter()
            .filter(|v4| {
                delegates
                    .iter()
                    .any(|d| d.default_route.iter().any(|g| g.is_ipv4() == *v4))
            })
            .collect();
        for d in &delegates {
            let r = runner.add(d).and_then(|v| {
                let mut parsed = delegate::parse_result(&v)?;
                if let Some(netns) = &self.env.netns {
                    let drop: Vec<bool> = claimed
                        .iter()
                        .copied()
                        .filter(|v4| !d.default_route.iter().any(|g| g.is_ipv4() == *v4))
                        .collect();
                    default_route::drop_defaults(netns, &d.ifname, &drop, &mut parsed)?;
                    default_route::set_defaults(netns, &d.ifname, &d.default_route, &mut parsed)?;
                }
                Ok((v, parsed))
            });
            match r {
                Ok((raw, parsed)) => {
                    done.push(CachedDelegate {
                        delegate: d.clone(),
                        result: Some(raw),
                    });
                    results.push((d.clone(), parsed));
                }
                Err(e) => {
                    for c in done.iter().rev() {
                        let _ = runner.del_or_check(&c.delegate, Command::Del, c.result.as_ref());
                    }
                    return Err(e);
                }
            }
        }
        mark("multus: delegates done");
        let entry = Entry {
            container_id: self.env.container_id.clone(),
            ifname: self.env.ifname.clone(),
            netns: self.env.netns.clone(),
            cni_args,
            pod_namespace: pod_ref
                .as_ref()
                .map(|r| r.namespace.clone())
                .unwrap_or_default(),
            pod_name: pod_ref.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
            delegates: done,
        };
        let saved = cache::save(&self.cfg.multus.cni_dir, &entry);
        let status_written = match (&pod_ref, saved.is_ok()) {
            (Some(r), true) => self
                .source
                .set_network_status(
                    &r.namespace,
                    &r.name,
                    &status::network_status(&results).to_string(),
                )
                .map_err(|e| {
                    CniError::plugin(
                        codes::DELEGATE,
                        format!(
                            "setting network-status on pod {}/{}: {e}",
                            r.namespace, r.name
                        ),
                    )
                }),
            _ => Ok(()),
        };
        mark("multus: cache and network-status written");
        if let Err(e) = saved.and(status_written) {
            for c in entry.delegates.iter().rev() {
                let _ = runner.del_or_check(&c.delegate, Command::Del, c.result.as_ref());
            }
            let _ = cache::remove(&self.cfg.multus.cni_dir, &self.env.container_id);
            return Err(e);
        }
        let cluster = results
            .into_iter()
            .find(|(d, _)| d.cluster)
            .map(|(_, r)| r)
            .ok_or_else(|| CniError::plugin(codes::DELEGATE, "no cluster network result"))?;
        Ok(cluster.to_json(self.cfg.version))
    }

    /// The delegates to tear down: the cache, else the store, else the cluster network.
    fn known_delegates(&self) -> (Vec<CachedDelegate>, String) {
        if let Some(e) = cache::load(&self.cfg.multus.cni_dir, &self.env.container_id) {
            return (e.delegates, e.cni_args);
        }
        let pod_ref = PodRef::from_env(self.env);
        let cni_args = pod_ref
            .as_ref()
            .map(|r| r.cni_args(&r.uid))
            .unwrap_or_default();
        let pod = pod_ref
            .as_ref()
            .and_then(|r| self.source.pod(&r.namespace, &r.name).ok());
        let plan = self
            .plan(pod_ref.as_ref().zip(pod.as_ref()))
            .or_else(|_| self.cluster_delegate(None).map(|d| vec![d]))
            .unwrap_or_default();
        (
            plan.into_iter()
                .map(|d| CachedDelegate {
                    delegate: d,
                    result: None,
                })
                .collect(),
            cni_args,
        )
    }

    pub fn del(&self) -> Result<(), CniError> {
        let (delegates, cni_args) = self.known_delegates();
        let runner = self.runner(cni_args);
        let mut first_err = None;
        for c in delegates.iter().rev() {
            if let Err(e) = runner.del_or_check(&c.delegate, Command::Del, c.result.as_ref()) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            // The cache stays so a retry can finish the job.
            Some(e) => Err(e),
            None => cache::remove(&self.cfg.multus.cni_dir, &self.env.container_id),
        }
    }

    pub fn check(&self) -> Result<(), CniError> {
        let entry =
            cache::load(&self.cfg.multus.cni_dir, &self.env.container_id).ok_or_else(|| {
                CniError::plugin(
                    codes::CHECK_MISMATCH,
                    format!(
                        "no attachment cached for container {}",
                        self.env.container_id
                    ),
                )
            })?;
        let runner = self.runner(entry.cni_args.clone());
        for c in &entry.delegates {
            runner.del_or_check(&c.delegate, Command::Check, c.result.as_ref())?;
        }
        Ok(())
    }

    pub fn status(&self) -> Result<(), CniError> {
        self.check_ready()
            .map_err(|e| CniError::new(ErrorCode::PluginNotAvailable, e.msg))?;
        let d = self.cluster_delegate(None)?;
        self.runner(String::new())
            .status_or_gc(&d, Command::Status, None)
    }

    /// Tears down cached attachments that are no longer valid (a lost DEL), then forwards
    /// GC to the cluster network with the runtime's valid attachments, and to every
    /// secondary network seen in the cache with the valid attachments on it. When a valid
    /// container has no cache entry its secondary attachments are unknown, so secondary
    /// networks are left alone rather than risk releasing them.
    pub fn gc(&self, valid: &HashSet<(String, String)>) -> Result<(), CniError> {
        let dir = &self.cfg.multus.cni_dir;
        let entries = cache::list(dir);
        let mut first_err = None;
        let mut secondary: BTreeMap<String, (Delegate, Vec<Value>)> = BTreeMap::new();
        for e in &entries {
            let keep = valid.contains(&(e.container_id.clone(), e.ifname.clone()));
            if !keep {
                let runner = Runner {
                    container_id: e.container_id.clone(),
                    netns: e.netns.clone(),
                    ..self.runner(e.cni_args.clone())
                };
                let mut ok = true;
                for c in e.delegates.iter().rev() {
                    if let Err(err) =
                        runner.del_or_check(&c.delegate, Command::Del, c.result.as_ref())
                    {
                        ok = false;
                        first_err.get_or_insert(err);
                    }
                }
                if ok {
                    cache::remove(dir, &e.container_id)?;
                }
            }
            for c in e.delegates.iter().filter(|c| !c.delegate.cluster) {
                let slot = secondary
                    .entry(c.delegate.conf.to_string())
                    .or_insert_with(|| (c.delegate.clone(), Vec::new()));
                if keep {
                    slot.1
                        .push(json!({"containerID": e.container_id, "ifname": c.delegate.ifname}));
                }
            }
        }
        let runner = self.runner(String::new());
        // The cluster network as cached (no API call); resolved only without any cache.
        let cluster = entries
            .iter()
            .flat_map(|e| e.delegates.iter())
            .find(|c| c.delegate.cluster)
            .map(|c| Ok(c.delegate.clone()))
            .unwrap_or_else(|| self.cluster_delegate(None));
        if let Ok(d) = cluster {
            let list: Vec<Value> = valid
                .iter()
                .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
                .collect();
            if let Err(e) = runner.status_or_gc(&d, Command::Gc, Some(&Value::Array(list))) {
                first_err.get_or_insert(e);
            }
        }
        let cached: HashSet<&str> = entries.iter().map(|e| e.container_id.as_str()).collect();
        if valid.iter().all(|(id, _)| cached.contains(id.as_str())) {
            for (_, (d, attachments)) in secondary {
                if let Err(e) =
                    runner.status_or_gc(&d, Command::Gc, Some(&Value::Array(attachments)))
                {
                    first_err.get_or_insert(e);
                }
            }
        } else {
            eprintln!("multus GC: some valid containers have no cache entry; secondary networks not collected");
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::DirSource;
    use std::collections::HashMap;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let f = Self {
                dir: tempfile::tempdir().expect("tmp"),
            };
            std::fs::create_dir_all(f.dir.path().join("net.d")).expect("confdir");
            std::fs::write(
                f.dir.path().join("net.d/10-cluster.conf"),
                r#"{"cniVersion":"1.0.0","name":"cluster","type":"bridge"}"#,
            )
            .expect("conf");
            std::fs::write(
                f.dir.path().join("net.d/20-byname.conf"),
                r#"{"cniVersion":"1.0.0","name":"empty-nad","type":"macvlan","master":"eth9"}"#,
            )
            .expect("conf");
            let s = f.store();
            for (ns, name, config) in [
                (
                    "default",
                    "multus-br",
                    r#"{"cniVersion":"0.3.1","type":"bridge","bridge":"multus-bridge"}"#,
                ),
                (
                    "other",
                    "shared",
                    r#"{"cniVersion":"1.0.0","name":"shared","type":"bridge"}"#,
                ),
                (
                    "kube-system",
                    "alt-default",
                    r#"{"cniVersion":"1.0.0","name":"alt","type":"bridge"}"#,
                ),
                ("default", "empty-nad", ""),
                ("default", "not-json", "{nope"),
            ] {
                s.put(&serde_json::json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                    "metadata": {"name": name, "namespace": ns}, "spec": {"config": config}}))
                    .expect("nad");
            }
            f
        }

        fn store(&self) -> DirSource {
            DirSource::new(self.dir.path().join("store"))
        }

        fn config(&self, extra: &str) -> Config {
            let text = format!(
                r#"{{"cniVersion":"1.0.0","name":"multus","type":"multus","clusterNetwork":"cluster","confDir":"{}"{extra}}}"#,
                self.dir.path().join("net.d").display()
            );
            Config::load(text.as_bytes()).expect("config")
        }

        fn plan(
            &self,
            cfg: &Config,
            annotations: &[(&str, &str)],
        ) -> Result<Vec<Delegate>, CniError> {
            let vars: HashMap<&str, String> = [
                ("CNI_COMMAND", "ADD".to_string()),
                ("CNI_CONTAINERID", "c1".into()),
                ("CNI_IFNAME", "eth0".into()),
                ("CNI_NETNS", "/run/netns/x".into()),
                (
                    "CNI_ARGS",
                    "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1".into(),
                ),
            ]
            .into_iter()
            .collect();
            let env = Environment::from_lookup(|k| vars.get(k).cloned()).expect("env");
            let src = self.store();
            let meta = Meta {
                cfg,
                env: &env,
                stdin: b"",
                source: &src,
                in_process: None,
            };
            let r = PodRef::from_env(&env).expect("pod ref");
            let pod = Pod {
                namespace: "default".into(),
                name: "p1".into(),
                uid: "u".into(),
                annotations: annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            meta.plan(Some((&r, &pod)))
        }
    }

    #[test]
    fn resolves_networks_like_multus() {
        let f = Fixture::new();
        let cfg = f.config("");
        let plan = f
            .plan(
                &cfg,
                &[(
                    annotation::NETWORKS,
                    "multus-br,other/shared@ext0,empty-nad",
                )],
            )
            .expect("plan");
        let got: Vec<(&str, &str, &str)> = plan
            .iter()
            .map(|d| {
                (
                    d.network.as_str(),
                    d.ifname.as_str(),
                    d.conf["name"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("cluster", "eth0", "cluster"),
                // A config without a name gets the NAD's name.
                ("default/multus-br", "net1", "multus-br"),
                ("other/shared", "ext0", "shared"),
                // An empty NAD config is read from confDir by name.
                ("default/empty-nad", "net3", "empty-nad"),
            ]
        );
        assert!(plan[0].cluster && !plan[1].cluster);
    }

    #[test]
    fn default_network_annotation_and_default_networks() {
        let f = Fixture::new();
        let cfg = f.config(r#","defaultNetworks":["alt-default"]"#);
        let plan = f
            .plan(
                &cfg,
                &[
                    (annotation::DEFAULT_NETWORK, "kube-system/alt-default"),
                    (annotation::NETWORKS, "multus-br"),
                ],
            )
            .expect("plan");
        assert_eq!(plan[0].network, "kube-system/alt-default");
        assert_eq!(plan[0].ifname, "eth0");
        assert_eq!(plan[1].network, "kube-system/alt-default");
        assert_eq!(plan[1].ifname, "net1");
        assert_eq!(plan[2].ifname, "net2");
    }

    #[test]
    fn namespace_isolation() {
        let f = Fixture::new();
        let cfg = f.config(r#","namespaceIsolation":true"#);
        let e = f
            .plan(&cfg, &[(annotation::NETWORKS, "other/shared")])
            .expect_err("isolated");
        assert!(e.msg.contains("namespaceIsolation"), "{}", e.msg);
        let cfg = f.config(r#","namespaceIsolation":true,"globalNamespaces":"other,kube-system""#);
        assert!(f
            .plan(&cfg, &[(annotation::NETWORKS, "other/shared")])
            .is_ok());
    }

    #[test]
    fn errors_name_pod_and_network() {
        let f = Fixture::new();
        let cfg = f.config("");
        for (ann, says) in [
            ("missing", "default/missing not found"),
            ("not-json", "spec.config is not valid JSON"),
            ("Bad", "DNS-1123"),
        ] {
            let e = f.plan(&cfg, &[(annotation::NETWORKS, ann)]).expect_err(ann);
            assert!(
                e.msg.contains(says) && e.msg.contains("pod default/p1"),
                "{ann}: {}",
                e.msg
            );
        }
        let text = format!(
            r#"{{"cniVersion":"1.0.0","name":"multus","type":"multus","clusterNetwork":"nowhere","confDir":"{}"}}"#,
            f.dir.path().join("net.d").display()
        );
        let cfg = Config::load(text.as_bytes()).expect("config");
        let e = f.plan(&cfg, &[]).expect_err("no cluster network");
        assert!(e.msg.contains("nowhere"), "{}", e.msg);
    }
}
