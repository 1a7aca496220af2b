//! ADD, DEL, CHECK, STATUS and GC of the meta plugin: resolve the pod's networks, run
//! every delegate (rolling back on failure), cache what DEL needs, report network-status.

use crate::annotation::{self, NetworkSelection};
use crate::cache::{self, CachedDelegate, Entry};
use crate::config::Config;
use crate::default_route;
use crate::delegate::{self, Delegate, Runner};
use crate::error::{self, Error, Result};
use crate::source::{self as src, ClusterSource, NetworkAttachmentDefinition, Pod};
use crate::status;
use oxivirt_cni_spec::trace::mark;
use oxivirt_cni_spec::{CniResult, Command, Environment};
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

    /// `namespace/name`, as errors name the pod.
    pub fn pod(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn cni_args(&self, uid: &str) -> String {
        format!(
            "IgnoreUnknown=true;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.namespace, self.name, self.infra_id, uid
        )
    }
}

/// NADs listed per namespace (see [`Meta::list_nads`]): namespace → name → NAD.
type Listed = BTreeMap<String, BTreeMap<String, NetworkAttachmentDefinition>>;

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

    fn nad_config(&self, nad: &NetworkAttachmentDefinition, pod: Option<&PodRef>) -> Result<Value> {
        let pod = || pod.map(PodRef::pod);
        let network = || format!("{}/{}", nad.namespace, nad.name);
        let mut v = if nad.config.trim().is_empty() {
            delegate::config_by_name(&self.cfg.multus.conf_dir, &nad.name).ok_or_else(|| {
                Error::NadNoConfig {
                    pod: pod(),
                    network: network(),
                    name: nad.name.clone(),
                    conf_dir: self.cfg.multus.conf_dir.clone(),
                }
            })?
        } else {
            serde_json::from_str::<Value>(&nad.config).map_err(|source| Error::NadConfigJson {
                pod: pod(),
                network: network(),
                source,
            })?
        };
        let Some(o) = v.as_object_mut() else {
            return Err(Error::NadConfigNotObject {
                pod: pod(),
                network: network(),
            });
        };
        if o.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            o.insert("name".into(), json!(nad.name));
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
    ) -> Result<(String, Value)> {
        self.resolve_named_with(namespace, name, pod, None)
    }

    /// [`Self::resolve_named`], with the NAD lookup's answer when it was already asked.
    fn resolve_named_with(
        &self,
        namespace: &str,
        name: &str,
        pod: Option<&PodRef>,
        asked: Option<Result<Option<NetworkAttachmentDefinition>>>,
    ) -> Result<(String, Value)> {
        if annotation::is_dns1123_subdomain(name) {
            match asked.unwrap_or_else(|| self.source.network_attachment(namespace, name)) {
                Ok(Some(nad)) => {
                    return Ok((format!("{namespace}/{name}"), self.nad_config(&nad, pod)?))
                }
                Ok(None) => {}
                // Without the source, the config in confDir or the path may still serve.
                Err(e) if src::is_unreachable(&e) => {}
                Err(e) => {
                    return Err(match pod {
                        Some(p) => Error::Network {
                            pod: p.pod(),
                            network: format!("{namespace}/{name}"),
                            source: Box::new(e),
                        },
                        None => e,
                    })
                }
            }
        }
        if let Some(v) = delegate::config_by_name(&self.cfg.multus.conf_dir, name) {
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
        Err(Error::NetworkNotFound {
            name: name.to_string(),
            namespace: namespace.to_string(),
            conf_dir: self.cfg.multus.conf_dir.clone(),
        })
    }

    fn cluster_delegate(&self, pod: Option<(&PodRef, &Pod)>) -> Result<Delegate> {
        let ifname = self.env.ifname.clone();
        if let Some((r, p)) = pod {
            if let Some(v) = p.annotations.get(annotation::DEFAULT_NETWORK) {
                let sel =
                    annotation::parse_default_network(v).map_err(|source| Error::Annotation {
                        pod: r.pod(),
                        source: Box::new(source),
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

    /// The cluster network as the config alone names it, to add before the pod is read;
    /// `None` when that cannot be known: the API server, asked for the cluster network's
    /// NAD, is unreachable (the ADD fails then, with nothing to undo) or resolution
    /// failed (resolved again with the pod, so its error is reported as before).
    fn early_cluster_delegate(&self) -> Option<Delegate> {
        if !self.cfg.multus.delegates.is_empty() {
            return self.cluster_delegate(None).ok();
        }
        let name = self.cfg.multus.cluster_network.clone().unwrap_or_default();
        let ns = &self.cfg.multus.multus_namespace;
        let asked = if annotation::is_dns1123_subdomain(&name) {
            match self.source.network_attachment(ns, &name) {
                Err(e) if src::is_unreachable(&e) => return None,
                answer => Some(answer),
            }
        } else {
            None
        };
        let (network, conf) = self.resolve_named_with(ns, &name, None, asked).ok()?;
        let mut d = Delegate::new(network, self.env.ifname.clone(), conf, true, None);
        d.runtime = self.cfg.multus.runtime_config.clone();
        Some(d)
    }

    fn selection_delegate(
        &self,
        r: &PodRef,
        sel: &NetworkSelection,
        ifname: String,
        listed: &Listed,
    ) -> Result<Delegate> {
        let ns = sel.namespace.clone().unwrap_or_else(|| r.namespace.clone());
        let network = format!("{ns}/{}", sel.name);
        if !self.isolation_allows(r, &ns) {
            return Err(Error::NamespaceIsolation {
                pod: r.pod(),
                pod_namespace: r.namespace.clone(),
                network,
                global: self.cfg.multus.global_namespaces.clone(),
            });
        }
        let lookup = match listed.get(&ns) {
            Some(nads) => Ok(nads.get(&sel.name).cloned()),
            None => self.source.network_attachment(&ns, &sel.name),
        };
        let nad = lookup
            .map_err(|e| Error::Network {
                pod: r.pod(),
                network: network.clone(),
                source: Box::new(e),
            })?
            .ok_or_else(|| Error::NadNotFound {
                pod: r.pod(),
                network: network.clone(),
            })?;
        let conf = self.nad_config(&nad, Some(r))?;
        Ok(Delegate::new(network, ifname, conf, false, Some(sel)))
    }

    /// Every network of the pod, cluster network first.
    fn plan(&self, pod: Option<(&PodRef, &Pod)>) -> Result<Vec<Delegate>> {
        let mut out = vec![self.cluster_delegate(pod)?];
        if let Some((r, p)) = pod {
            out.extend(self.secondary_delegates(r, p)?);
        }
        Ok(out)
    }

    /// The pod's networks after the cluster network: `defaultNetworks`, then the
    /// networks annotation, in that order.
    fn secondary_delegates(&self, r: &PodRef, p: &Pod) -> Result<Vec<Delegate>> {
        let mut out = Vec::new();
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
        let invalid = |source| Error::Annotation {
            pod: r.pod(),
            source: Box::new(source),
        };
        if let Some(v) = p.annotations.get(annotation::NETWORKS) {
            sels.extend(annotation::parse_networks(v).map_err(invalid)?);
        }
        let names = annotation::interface_names(&sels, &self.env.ifname).map_err(invalid)?;
        let listed = self.list_nads(r, &sels);
        for (sel, ifname) in sels.iter().zip(names) {
            out.push(self.selection_delegate(r, sel, ifname, &listed)?);
        }
        Ok(out)
    }

    /// The NADs of each namespace the pod asks several of (and may use), in one request
    /// each where the source can. A shortcut: a namespace whose list failed is left out
    /// and asked by name, so errors are those of the lookups by name.
    fn list_nads(&self, r: &PodRef, sels: &[NetworkSelection]) -> Listed {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for s in sels {
            let ns = s.namespace.as_deref().unwrap_or(&r.namespace);
            if self.isolation_allows(r, ns) {
                *count.entry(ns).or_default() += 1;
            }
        }
        count
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .filter_map(|(ns, _)| {
                let list = self.source.network_attachments(ns).ok()??;
                mark("multus: NADs listed");
                Some((
                    ns.to_string(),
                    list.into_iter().map(|n| (n.name.clone(), n)).collect(),
                ))
            })
            .collect()
    }

    fn isolation_allows(&self, r: &PodRef, ns: &str) -> bool {
        !self.cfg.multus.namespace_isolation
            || ns == r.namespace
            || self.cfg.global_namespaces().iter().any(|g| g == ns)
    }

    /// The readiness indicator file, when configured and missing.
    fn not_ready(&self) -> Option<std::path::PathBuf> {
        self.cfg
            .multus
            .readiness_indicator_file
            .as_ref()
            .filter(|f| !f.exists())
            .cloned()
    }

    /// What follows a delegate's ADD: its result parsed, and the default routes the pod
    /// asked for.
    fn finish_add(&self, d: &Delegate, raw: &Value, claimed: &[bool]) -> Result<CniResult> {
        let mut parsed = delegate::parse_result(d, raw)?;
        if let Some(netns) = &self.env.netns {
            let drop: Vec<bool> = claimed
                .iter()
                .copied()
                .filter(|v4| !d.default_route.iter().any(|g| g.is_ipv4() == *v4))
                .collect();
            let link = default_route::PodLink {
                netns,
                ifname: &d.ifname,
            };
            link.drop_defaults(&drop, &mut parsed)?;
            link.set_defaults(&d.default_route, &mut parsed)?;
        }
        Ok(parsed)
    }

    /// DEL of `delegates` in reverse order, every one tried; the failures.
    fn teardown(runner: &Runner, delegates: &[CachedDelegate]) -> Vec<Error> {
        delegates
            .iter()
            .rev()
            .filter_map(|c| {
                runner
                    .del_or_check(&c.delegate, Command::Del, c.result.as_ref())
                    .err()
            })
            .collect()
    }

    pub fn add(&self) -> Result<String> {
        if let Some(file) = self.not_ready() {
            return Err(Error::NotReady { file });
        }
        std::thread::scope(|scope| self.add_scoped(scope))
    }

    /// ADD of one delegate (through its chain) and what follows it: `(the raw result, the
    /// parsed one)`. The raw result is kept even when what follows fails, for the DEL.
    fn add_one(
        &self,
        runner: &Runner,
        d: &Delegate,
        claimed: &[bool],
    ) -> (Option<Value>, Result<CniResult>) {
        Self::finish_raw(self, d, runner.add(d), claimed)
    }

    fn finish_raw(
        &self,
        d: &Delegate,
        raw: Result<Value>,
        claimed: &[bool],
    ) -> (Option<Value>, Result<CniResult>) {
        match raw {
            Ok(raw) => {
                let parsed = self.finish_add(d, &raw, claimed);
                (Some(raw), parsed)
            }
            Err(e) => (None, Err(e)),
        }
    }

    /// ADD, overlapping what does not wait on an answer with the answers it does wait on:
    ///
    /// - The cluster network depends on the pod only through its default-network
    ///   annotation (and its UID, in the delegate's `CNI_ARGS`). When the runtime passed
    ///   `K8S_POD_UID`, the cluster network is resolved first (its NAD lookup, if any, is
    ///   the first request, and the pod read reuses the connection) and its ADD runs while
    ///   the pod is read; when the pod then turns out to name another default network (or
    ///   another UID), that early ADD is torn down and the call goes on as it would have.
    ///   With the API server unreachable for that lookup, nothing is added early.
    /// - Once the networks are resolved, every delegate's ADD runs at once (each in its
    ///   own thread): they attach different interfaces and IPAM serializes on its own
    ///   locks. Results, the cache and network-status keep the networks' order.
    ///
    /// Failures are reported as before: the first error in the order the steps had when
    /// they ran one after the other (the pod read, then the networks' resolution, then
    /// the delegates in order); every delegate that was started is torn down (in reverse
    /// order), and teardown failures are attached as cleanup steps.
    fn add_scoped<'s>(&'s self, scope: &'s std::thread::Scope<'s, '_>) -> Result<String> {
        let pod_ref = PodRef::from_env(self.env);
        type Early = (Delegate, Result<Value>);
        type Handle<'s> = std::thread::ScopedJoinHandle<'s, Result<Early>>;
        // The early cluster network: its thread sends the delegate as soon as it is
        // resolved (`None`: not resolved without the pod), then adds it.
        let early: Option<(Handle<'s>, std::sync::mpsc::Receiver<Option<Delegate>>)> =
            pod_ref.as_ref().filter(|r| !r.uid.is_empty()).map(|r| {
                let runner = self.runner(r.cni_args(&r.uid));
                let (tx, rx) = std::sync::mpsc::channel();
                let h = scope.spawn(move || {
                    let d = self.early_cluster_delegate();
                    let _ = tx.send(d.clone());
                    let d = d.ok_or(Error::NoClusterResult)?;
                    let raw = runner.add(&d);
                    mark("multus: cluster network added (early)");
                    Ok((d, raw))
                });
                (h, rx)
            });
        // The early ADD, joined: `Some` when it started a delegate (to use or tear down).
        let join = |h: Handle<'s>| -> Option<Early> {
            match h.join() {
                Ok(Ok(early)) => Some(early),
                // Not resolved without the pod: resolved again below, where its error
                // (if it is one still) names the pod as before.
                Ok(Err(_)) => None,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        };
        let abandon = |runner: &Runner, early: Option<Early>| -> Vec<Error> {
            match early {
                Some((d, raw)) => Self::teardown(
                    runner,
                    &[CachedDelegate {
                        delegate: d,
                        result: raw.ok(),
                    }],
                ),
                None => Vec::new(),
            }
        };
        let early_runner = pod_ref.as_ref().map(|r| self.runner(r.cni_args(&r.uid)));
        // The cluster network resolved before the pod is read: when that asked the API
        // server, the pod read then reuses its connection (two at once would pay for two
        // TLS handshakes); the ADD goes on while the pod is read.
        let early = early.map(|(h, rx)| (h, rx.recv().ok().flatten()));
        let pod = match &pod_ref {
            Some(r) => match self.source.pod(&r.namespace, &r.name) {
                Ok(p) => Some(p),
                Err(e) => {
                    let also = match (early, &early_runner) {
                        (Some((h, _)), Some(runner)) => abandon(runner, join(h)),
                        _ => Vec::new(),
                    };
                    return Err(error::with_cleanup(e, also));
                }
            },
            None => None,
        };
        mark("multus: pod read");
        let pair = pod_ref.as_ref().zip(pod.as_ref());
        // Whether the early ADD is the pod's cluster network.
        let early = match (early, pair, &early_runner) {
            (Some((h, Some(d))), Some((r, p)), Some(runner)) => {
                let fits = !p.annotations.contains_key(annotation::DEFAULT_NETWORK)
                    && (p.uid.is_empty() || p.uid == r.uid);
                if fits {
                    Some((h, d, runner, r, p))
                } else {
                    error::collect(abandon(runner, join(h)))?;
                    None
                }
            }
            // Not resolved early (its thread is done): the whole plan, as before.
            (Some((h, None)), _, _) => {
                let _ = join(h);
                None
            }
            _ => None,
        };
        let (early, delegates) = match early {
            Some((h, d, runner, r, p)) => {
                // The secondary networks resolve while the cluster network is added.
                match self.secondary_delegates(r, p) {
                    Err(e) => return Err(error::with_cleanup(e, abandon(runner, join(h)))),
                    Ok(rest) => (Some(h), std::iter::once(d).chain(rest).collect()),
                }
            }
            None => (None, self.plan(pair)?),
        };
        let delegates: Vec<Delegate> = delegates;
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
        // Families some network claims the default route for.
        let claimed: Vec<bool> = [true, false]
            .into_iter()
            .filter(|v4| {
                delegates
                    .iter()
                    .any(|d| d.default_route.iter().any(|g| g.is_ipv4() == *v4))
            })
            .collect();
        let skip = usize::from(early.is_some());
        let outcomes: Vec<(Option<Value>, Result<CniResult>)> = std::thread::scope(|inner| {
            let (runner, claimed) = (&runner, &claimed);
            let started: Vec<_> = delegates[skip..]
                .iter()
                .map(|d| inner.spawn(move || self.add_one(runner, d, claimed)))
                .collect();
            let mut outcomes = Vec::new();
            if let Some(h) = early {
                // It sent its delegate, so it was resolved and its ADD was tried.
                let (d, raw) =
                    join(h).unwrap_or_else(|| (delegates[0].clone(), Err(Error::NoClusterResult)));
                outcomes.push(self.finish_raw(&d, raw, claimed));
            }
            for h in started {
                outcomes.push(match h.join() {
                    Ok(o) => o,
                    Err(panic) => std::panic::resume_unwind(panic),
                });
            }
            outcomes
        });
        let mut done: Vec<CachedDelegate> = Vec::new();
        let mut results: Vec<(Delegate, CniResult)> = Vec::new();
        let mut first_error = None;
        for (d, (raw, outcome)) in delegates.iter().zip(outcomes) {
            // A failed delegate is torn down too, as Multus does: a chain that failed half
            // way, or an ADD whose default routes failed, is attached in part.
            done.push(CachedDelegate {
                delegate: d.clone(),
                result: raw,
            });
            match outcome {
                Ok(parsed) => results.push((d.clone(), parsed)),
                Err(e) => {
                    // Later failures ran beside the first; their delegates are torn
                    // down with the rest, the first error is the one reported.
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(error::with_cleanup(e, Self::teardown(&runner, &done)));
        }
        mark("multus: delegates done");
        // A launcher pod's namespace gets what its launcher cannot set in its container.
        let is_launcher = pod.as_ref().is_some_and(|p| {
            p.labels.get(crate::launcher::LABEL.0).map(String::as_str)
                == Some(crate::launcher::LABEL.1)
        });
        if let (true, Some(netns)) = (is_launcher, self.env.netns.as_deref()) {
            let v6 = results
                .iter()
                .any(|(_, r)| r.ips.iter().any(|ip| ip.address.addr().is_ipv6()));
            if let Err(e) = crate::launcher::prepare(netns, v6) {
                return Err(error::with_cleanup(e, Self::teardown(&runner, &done)));
            }
        }
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
        let written = cache::save(&self.cfg.multus.cni_dir, &entry).and_then(|()| match &pod_ref {
            Some(r) => self
                .source
                .set_network_status(
                    &r.namespace,
                    &r.name,
                    &status::network_status(&results).to_string(),
                )
                .map_err(|e| Error::NetworkStatus {
                    pod: r.pod(),
                    source: Box::new(e),
                }),
            None => Ok(()),
        });
        mark("multus: cache and network-status written");
        if let Err(e) = written {
            let mut also = Self::teardown(&runner, &entry.delegates);
            if let Err(c) = cache::remove(&self.cfg.multus.cni_dir, &self.env.container_id) {
                also.push(c);
            }
            return Err(error::with_cleanup(e, also));
        }
        let cluster = results
            .into_iter()
            .find(|(d, _)| d.cluster)
            .map(|(_, r)| r)
            .ok_or(Error::NoClusterResult)?;
        Ok(cluster.to_json(self.cfg.version))
    }

    /// The delegates to tear down: the cache, else the store, else the cluster network.
    /// Best effort by design: DEL must make progress without the source or a readable
    /// cache, so the lookups' failures only narrow what is torn down.
    fn known_delegates(&self) -> (Vec<CachedDelegate>, String) {
        match cache::load(&self.cfg.multus.cni_dir, &self.env.container_id) {
            Ok(Some(e)) => return (e.delegates, e.cni_args),
            Ok(None) => {}
            // Logged only: the store still tells which networks to tear down, and the
            // unreadable entry is removed after a successful DEL.
            Err(e) => eprintln!(
                "multus DEL: {}; tearing down from the object store",
                oxivirt_cni_spec::error::chain(&e)
            ),
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

    pub fn del(&self) -> Result<()> {
        let (delegates, cni_args) = self.known_delegates();
        let runner = self.runner(cni_args);
        let failed = Self::teardown(&runner, &delegates);
        if failed.is_empty() {
            cache::remove(&self.cfg.multus.cni_dir, &self.env.container_id)
        } else {
            // The cache stays so a retry can finish the job.
            error::collect(failed)
        }
    }

    pub fn check(&self) -> Result<()> {
        let not_cached = |source: Option<Error>| Error::NotCached {
            container_id: self.env.container_id.clone(),
            source: source.map(Box::new),
        };
        let entry = cache::load(&self.cfg.multus.cni_dir, &self.env.container_id)
            .map_err(|e| not_cached(Some(e)))?
            .ok_or_else(|| not_cached(None))?;
        let runner = self.runner(entry.cni_args.clone());
        for c in &entry.delegates {
            runner.del_or_check(&c.delegate, Command::Check, c.result.as_ref())?;
        }
        Ok(())
    }

    pub fn status(&self) -> Result<()> {
        if let Some(file) = self.not_ready() {
            return Err(Error::NotAvailable { file });
        }
        let d = self.cluster_delegate(None)?;
        self.runner(String::new())
            .status_or_gc(&d, Command::Status, None)
    }

    /// Tears down cached attachments that are no longer valid (a lost DEL), then forwards
    /// GC to the cluster network with the runtime's valid attachments, and to every
    /// secondary network seen in the cache with the valid attachments on it. When a valid
    /// container has no cache entry its secondary attachments are unknown, so secondary
    /// networks are left alone rather than risk releasing them. Every step is tried;
    /// every failure is reported.
    pub fn gc(&self, valid: &HashSet<(String, String)>) -> Result<()> {
        let dir = &self.cfg.multus.cni_dir;
        let entries = cache::list(dir);
        let mut failed = Vec::new();
        let mut secondary: BTreeMap<String, (Delegate, Vec<Value>)> = BTreeMap::new();
        for e in &entries {
            let keep = valid.contains(&(e.container_id.clone(), e.ifname.clone()));
            if !keep {
                let runner = Runner {
                    container_id: e.container_id.clone(),
                    netns: e.netns.clone(),
                    ..self.runner(e.cni_args.clone())
                };
                let torn = Self::teardown(&runner, &e.delegates);
                // The entry stays while a delegate is left, for the next GC to retry.
                if torn.is_empty() {
                    if let Err(err) = cache::remove(dir, &e.container_id) {
                        failed.push(err);
                    }
                }
                failed.extend(torn);
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
        match cluster {
            Ok(d) => {
                let list: Vec<Value> = valid
                    .iter()
                    .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
                    .collect();
                if let Err(e) = runner.status_or_gc(&d, Command::Gc, Some(&Value::Array(list))) {
                    failed.push(e);
                }
            }
            Err(e) => failed.push(e),
        }
        let cached: HashSet<&str> = entries.iter().map(|e| e.container_id.as_str()).collect();
        if valid.iter().all(|(id, _)| cached.contains(id.as_str())) {
            for (_, (d, attachments)) in secondary {
                if let Err(e) =
                    runner.status_or_gc(&d, Command::Gc, Some(&Value::Array(attachments)))
                {
                    failed.push(e);
                }
            }
        } else {
            // A log line, not an error: leaving them alone is the safe outcome.
            eprintln!("multus GC: some valid containers have no cache entry; secondary networks not collected");
        }
        error::collect(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment of a call for pod default/p1's `eth0`.
    fn pod_env(command: &str) -> Environment {
        let vars: HashMap<&str, String> = [
            ("CNI_COMMAND", command.to_string()),
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
        Environment::from_lookup(|k| vars.get(k).cloned()).expect("env")
    }
    use crate::source::DirSource;
    use oxivirt_cni_spec::error::chain;
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

        fn plan(&self, cfg: &Config, annotations: &[(&str, &str)]) -> Result<Vec<Delegate>> {
            let env = pod_env("ADD");
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
                ..Pod::default()
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
        assert!(
            matches!(&e, Error::NamespaceIsolation { pod, network, .. }
                if pod == "default/p1" && network == "other/shared"),
            "{e:?}"
        );
        assert!(chain(&e).contains("namespaceIsolation"), "{}", chain(&e));
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
            let msg = chain(&e);
            assert!(
                msg.contains(says) && msg.contains("pod default/p1"),
                "{ann}: {msg}"
            );
        }
        let e = f
            .plan(&cfg, &[(annotation::NETWORKS, "missing")])
            .expect_err("missing");
        assert!(
            matches!(&e, Error::NadNotFound { network, .. } if network == "default/missing"),
            "{e:?}"
        );
        let e = f
            .plan(&cfg, &[(annotation::NETWORKS, "not-json")])
            .expect_err("not json");
        assert!(matches!(&e, Error::NadConfigJson { .. }), "{e:?}");
        // The JSON parser's position survives in the chain.
        assert!(chain(&e).contains("column"), "{}", chain(&e));
        let e = f
            .plan(&cfg, &[(annotation::NETWORKS, "Bad")])
            .expect_err("bad");
        assert!(matches!(&e, Error::Annotation { .. }), "{e:?}");
        let text = format!(
            r#"{{"cniVersion":"1.0.0","name":"multus","type":"multus","clusterNetwork":"nowhere","confDir":"{}"}}"#,
            f.dir.path().join("net.d").display()
        );
        let cfg = Config::load(text.as_bytes()).expect("config");
        let e = f.plan(&cfg, &[]).expect_err("no cluster network");
        assert!(
            matches!(&e, Error::NetworkNotFound { name, .. } if name == "nowhere"),
            "{e:?}"
        );
        assert!(chain(&e).contains("nowhere"), "{}", chain(&e));
    }

    /// A plugin that is a shell script: ADD prints an empty result, unless `add_fails`;
    /// DEL always fails, with `del_code`.
    fn fake_plugin(dir: &std::path::Path, name: &str, add_fails: bool, del_code: u32) {
        use std::os::unix::fs::PermissionsExt;
        let add = if add_fails {
            r#"echo '{"code":7,"msg":"bad add","details":"from the delegate"}'; exit 1"#
        } else {
            r#"echo '{"cniVersion":"1.0.0","interfaces":[],"ips":[]}'"#
        };
        let script = format!(
            "#!/bin/sh\ncat >/dev/null\ncase \"$CNI_COMMAND\" in\nADD) {add} ;;\nDEL) echo '{{\"code\":{del_code},\"msg\":\"del of {name} failed\"}}'; exit 1 ;;\nesac\n"
        );
        let path = dir.join(name);
        std::fs::write(&path, script).expect("plugin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    struct Plugins {
        f: Fixture,
        cfg: Config,
    }

    impl Plugins {
        fn new() -> Self {
            let f = Fixture::new();
            let bin = f.dir.path().join("bin");
            std::fs::create_dir_all(&bin).expect("bin");
            fake_plugin(&bin, "okplug", false, 11);
            fake_plugin(&bin, "badplug", true, 5);
            let s = f.store();
            s.put(
                &json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "good", "namespace": "default"},
                "spec": {"config": r#"{"cniVersion":"1.0.0","type":"okplug"}"#}}),
            )
            .expect("nad");
            s.put(
                &json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "failing", "namespace": "default"},
                "spec": {"config": r#"{"cniVersion":"1.0.0","type":"badplug"}"#}}),
            )
            .expect("nad");
            s.put(&json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p1", "namespace": "default", "uid": "u1",
                    "annotations": {annotation::NETWORKS: "good,failing"}}}))
                .expect("pod");
            let text = json!({"cniVersion": "1.0.0", "name": "multus", "type": "multus",
                "delegates": [{"cniVersion": "1.0.0", "name": "cluster", "type": "okplug"}],
                "confDir": f.dir.path().join("net.d"), "cniDir": f.dir.path().join("cache"),
                "binDir": bin})
            .to_string();
            let cfg = Config::load(text.as_bytes()).expect("config");
            Self { f, cfg }
        }

        fn run<T>(&self, command: &str, call: impl FnOnce(&Meta<'_>) -> T) -> T {
            let env = pod_env(command);
            let src = self.f.store();
            call(&Meta {
                cfg: &self.cfg,
                env: &env,
                stdin: b"",
                source: &src,
                in_process: None,
            })
        }
    }

    /// A plugin that logs each call (`<command> <ifname> <name>`) to `<dir>/log`; ADD
    /// sleeps `sleep` seconds, then succeeds with an empty result or fails; DEL succeeds.
    fn logging_plugin(dir: &std::path::Path, name: &str, add_fails: bool, sleep: &str) {
        use std::os::unix::fs::PermissionsExt;
        let add = if add_fails {
            r#"echo '{"code":7,"msg":"bad add"}'; exit 1"#
        } else {
            r#"echo '{"cniVersion":"1.0.0","interfaces":[],"ips":[]}'"#
        };
        let log = dir.join("log");
        let script = format!(
            "#!/bin/sh\ncat >/dev/null\necho \"$CNI_COMMAND $CNI_IFNAME {name}\" >> {log}\ncase \"$CNI_COMMAND\" in\nADD) sleep {sleep}; {add} ;;\nesac\n",
            log = log.display()
        );
        let path = dir.join(name);
        std::fs::write(&path, script).expect("plugin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// Pod default/p1 (UID u1, given in CNI_ARGS as runtimes do) with `annotations`; the
    /// cluster network is a `slow` plugin; NADs `slow`, `fast`, `failing` and
    /// `kube-system/alt`, each a logging plugin.
    struct Logged {
        f: Fixture,
        cfg: Config,
        log: std::path::PathBuf,
    }

    impl Logged {
        fn new(annotations: Option<Value>) -> Self {
            let f = Fixture::new();
            let bin = f.dir.path().join("bin");
            std::fs::create_dir_all(&bin).expect("bin");
            logging_plugin(&bin, "slow", false, "0.5");
            logging_plugin(&bin, "fast", false, "0");
            logging_plugin(&bin, "failing", true, "0.2");
            logging_plugin(&bin, "alt", false, "0");
            let s = f.store();
            for (ns, name) in [
                ("default", "slow"),
                ("default", "fast"),
                ("default", "failing"),
                ("kube-system", "alt"),
            ] {
                s.put(&json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"config": json!({"cniVersion": "1.0.0", "type": name}).to_string()}}))
                    .expect("nad");
            }
            if let Some(a) = annotations {
                s.put(&json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p1", "namespace": "default", "uid": "u1", "annotations": a}}))
                    .expect("pod");
            }
            let text = json!({"cniVersion": "1.0.0", "name": "multus", "type": "multus",
                "delegates": [{"cniVersion": "1.0.0", "name": "cluster", "type": "slow"}],
                "confDir": f.dir.path().join("net.d"), "cniDir": f.dir.path().join("cache"),
                "binDir": bin})
            .to_string();
            let cfg = Config::load(text.as_bytes()).expect("config");
            Self {
                log: bin.join("log"),
                f,
                cfg,
            }
        }

        fn add(&self) -> Result<String> {
            self.add_with(&self.cfg, &self.f.store())
        }

        fn add_with(&self, cfg: &Config, src: &dyn ClusterSource) -> Result<String> {
            let vars: HashMap<&str, String> = [
                ("CNI_COMMAND", "ADD".to_string()),
                ("CNI_CONTAINERID", "c1".into()),
                ("CNI_IFNAME", "eth0".into()),
                ("CNI_NETNS", "/run/netns/x".into()),
                (
                    "CNI_ARGS",
                    "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1;K8S_POD_UID=u1".into(),
                ),
            ]
            .into_iter()
            .collect();
            let env = Environment::from_lookup(|k| vars.get(k).cloned()).expect("env");
            Meta {
                cfg,
                env: &env,
                stdin: b"",
                source: src,
                in_process: None,
            }
            .add()
        }

        fn calls(&self) -> Vec<String> {
            std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect()
        }

        fn network_status(&self) -> Vec<String> {
            let pod = self.f.store().pod("default", "p1").expect("pod");
            let status: Value = pod
                .annotations
                .get(annotation::NETWORK_STATUS)
                .map(|s| serde_json::from_str(s).expect("status json"))
                .unwrap_or_default();
            status
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["name"].as_str().unwrap_or_default().to_string())
                .collect()
        }
    }

    #[test]
    fn delegates_run_at_once_and_keep_their_order() {
        let l = Logged::new(Some(json!({annotation::NETWORKS: "slow,fast"})));
        let t = std::time::Instant::now();
        l.add().expect("ADD");
        // Two delegates of 0.5 s each: one after the other would take 1 s or more.
        assert!(
            t.elapsed() < std::time::Duration::from_millis(900),
            "{:?}",
            t.elapsed()
        );
        // The fast one finished first; results keep the networks' order.
        assert_eq!(
            l.network_status(),
            ["cluster", "default/slow", "default/fast"]
        );
        let entry = cache::load(&l.cfg.multus.cni_dir, "c1")
            .expect("cache")
            .expect("entry");
        let cached: Vec<&str> = entry
            .delegates
            .iter()
            .map(|c| c.delegate.network.as_str())
            .collect();
        assert_eq!(cached, ["cluster", "default/slow", "default/fast"]);
        assert!(
            entry.cni_args.contains("K8S_POD_UID=u1"),
            "{}",
            entry.cni_args
        );
    }

    #[test]
    fn a_failing_delegate_rolls_back_the_ones_that_ran_beside_it() {
        let l = Logged::new(Some(json!({annotation::NETWORKS: "failing,fast"})));
        let e = l.add().expect_err("failing fails");
        // The same error as when they ran one after the other; every DEL succeeded.
        assert!(
            matches!(&e, Error::Delegate { network, .. } if network == "default/failing"),
            "{e:?}"
        );
        assert!(chain(&e).contains("bad add"), "{}", chain(&e));
        let calls = l.calls();
        // `fast` ran beside `failing` (it was not held back), and is torn down with it.
        assert!(calls.contains(&"ADD net2 fast".to_string()), "{calls:?}");
        let dels: Vec<&str> = calls
            .iter()
            .filter(|c| c.starts_with("DEL"))
            .map(String::as_str)
            .collect();
        assert_eq!(dels, ["DEL net2 fast", "DEL net1 failing", "DEL eth0 slow"]);
        assert!(cache::load(&l.cfg.multus.cni_dir, "c1")
            .expect("cache")
            .is_none());
        assert!(l.network_status().is_empty());
    }

    #[test]
    fn the_early_cluster_network_gives_way_to_the_pods_default_network() {
        let l = Logged::new(Some(
            json!({annotation::DEFAULT_NETWORK: "kube-system/alt"}),
        ));
        l.add().expect("ADD");
        let calls = l.calls();
        let eth0: Vec<&str> = calls
            .iter()
            .filter(|c| c.contains(" eth0 "))
            .map(String::as_str)
            .collect();
        // The configured cluster network may have been added before the pod was read;
        // if so it is gone again before the pod's own default network is added.
        assert!(
            eth0 == ["ADD eth0 slow", "DEL eth0 slow", "ADD eth0 alt"] || eth0 == ["ADD eth0 alt"],
            "{calls:?}"
        );
        assert_eq!(l.network_status(), ["kube-system/alt"]);
    }

    #[test]
    fn a_pod_that_cannot_be_read_leaves_no_early_cluster_network() {
        let l = Logged::new(None);
        let e = l.add().expect_err("no pod");
        assert!(
            matches!(
                &e,
                Error::StoreUnreachable { .. } | Error::PodNotFound { .. }
            ),
            "{e:?}"
        );
        let calls = l.calls();
        let adds = calls.iter().filter(|c| c.starts_with("ADD")).count();
        let dels = calls.iter().filter(|c| c.starts_with("DEL")).count();
        assert_eq!(adds, dels, "{calls:?}");
    }

    /// The directory store, counting lookups by name, with lists of a namespace's NADs
    /// (that fail when `list_fails`).
    struct Listing {
        inner: DirSource,
        list_fails: bool,
        calls: std::sync::Mutex<Vec<String>>,
    }

    impl ClusterSource for Listing {
        fn pod(&self, ns: &str, name: &str) -> Result<Pod> {
            self.inner.pod(ns, name)
        }
        fn network_attachment(
            &self,
            ns: &str,
            name: &str,
        ) -> Result<Option<NetworkAttachmentDefinition>> {
            self.calls
                .lock()
                .expect("lock")
                .push(format!("get {ns}/{name}"));
            self.inner.network_attachment(ns, name)
        }
        fn set_network_status(&self, ns: &str, name: &str, status: &str) -> Result<()> {
            self.inner.set_network_status(ns, name, status)
        }
        fn network_attachments(
            &self,
            ns: &str,
        ) -> Result<Option<Vec<NetworkAttachmentDefinition>>> {
            self.calls.lock().expect("lock").push(format!("list {ns}"));
            if self.list_fails {
                return Err(Error::NoClusterSource);
            }
            Ok(Some(
                ["multus-br", "empty-nad", "not-json"]
                    .iter()
                    .filter_map(|n| self.inner.network_attachment(ns, n).ok().flatten())
                    .collect(),
            ))
        }
    }

    #[test]
    fn with_the_api_down_nothing_is_added_early() {
        let l = Logged::new(None);
        std::fs::write(
            l.f.dir.path().join("net.d/05-logged.conf"),
            r#"{"cniVersion":"1.0.0","name":"logged","type":"slow"}"#,
        )
        .expect("conf");
        let text = json!({"cniVersion": "1.0.0", "name": "multus", "type": "multus",
            "clusterNetwork": "logged", "confDir": l.f.dir.path().join("net.d"),
            "cniDir": l.f.dir.path().join("cache"), "binDir": l.f.dir.path().join("bin")})
        .to_string();
        let cfg = Config::load(text.as_bytes()).expect("config");
        let e = l.add_with(&cfg, &src::Unconfigured).expect_err("no API");
        assert!(matches!(&e, Error::NoClusterSource), "{e:?}");
        assert_eq!(l.calls(), Vec::<String>::new());
    }

    #[test]
    fn several_nads_of_one_namespace_come_in_one_list() {
        let f = Fixture::new();
        let cfg = f.config("");
        let env = pod_env("ADD");
        let r = PodRef::from_env(&env).expect("pod ref");
        let pod = |networks: &str| Pod {
            namespace: "default".into(),
            name: "p1".into(),
            uid: "u".into(),
            annotations: [(annotation::NETWORKS.to_string(), networks.to_string())].into(),
            ..Pod::default()
        };
        for list_fails in [false, true] {
            let src = Listing {
                inner: f.store(),
                list_fails,
                calls: Default::default(),
            };
            let meta = Meta {
                cfg: &cfg,
                env: &env,
                stdin: b"",
                source: &src,
                in_process: None,
            };
            let plan = meta
                .secondary_delegates(&r, &pod("multus-br,other/shared,empty-nad"))
                .expect("plan");
            let got: Vec<(&str, &str)> = plan
                .iter()
                .map(|d| (d.network.as_str(), d.ifname.as_str()))
                .collect();
            assert_eq!(
                got,
                [
                    ("default/multus-br", "net1"),
                    ("other/shared", "net2"),
                    ("default/empty-nad", "net3")
                ]
            );
            let calls = src.calls.lock().expect("lock").clone();
            let want: &[&str] = if list_fails {
                // The list failed: asked by name, as without the list.
                &[
                    "list default",
                    "get default/multus-br",
                    "get other/shared",
                    "get default/empty-nad",
                ]
            } else {
                // One NAD of `other`: asked by name.
                &["list default", "get other/shared"]
            };
            assert_eq!(calls, want, "list fails: {list_fails}");
            // A name the list does not have: the error the lookup by name gives.
            let e = meta
                .secondary_delegates(&r, &pod("multus-br,missing"))
                .expect_err("missing");
            assert!(
                matches!(&e, Error::NadNotFound { network, .. } if network == "default/missing"),
                "{e:?}"
            );
            let e = meta
                .secondary_delegates(&r, &pod("multus-br,not-json"))
                .expect_err("not json");
            assert!(matches!(&e, Error::NadConfigJson { .. }), "{e:?}");
        }
    }

    #[test]
    fn failed_add_rolls_back_and_reports_every_failed_step() {
        let p = Plugins::new();
        let e = p.run("ADD", |m| m.add()).expect_err("badplug fails");
        // The failed delegate, then the two added before it, are deleted; each DEL fails.
        let Error::Cleanup(c) = &e else {
            panic!("{e:?}");
        };
        assert!(
            matches!(&*c.error, Error::Delegate { network, .. } if network == "default/failing"),
            "{:?}",
            c.error
        );
        let torn: Vec<String> = c.also.iter().map(|e| chain(e)).collect();
        assert_eq!(torn.len(), 3, "{torn:?}");
        assert!(torn[0].contains("del of badplug failed"), "{torn:?}");
        assert!(torn[1].contains("network default/good"), "{torn:?}");
        assert!(torn[2].contains("network cluster"), "{torn:?}");
        let msg = chain(&e);
        assert!(
            msg.starts_with("3 cleanup steps failed (")
                && msg.contains("after this error: network default/failing")
                && msg.contains("bad add"),
            "{msg}"
        );
        // The delegate's own code and details are what the boundary reports.
        let wire =
            oxivirt_cni_spec::CniError::from_error(oxivirt_cni_spec::ErrorCode::Plugin(999), &e);
        assert_eq!(wire.code.as_u32(), 7);
        assert_eq!(wire.details, "from the delegate");
        assert!(cache::load(&p.cfg.multus.cni_dir, "c1")
            .expect("cache")
            .is_none());
    }

    #[test]
    fn del_tries_every_delegate_and_keeps_the_cache() {
        let p = Plugins::new();
        let delegates = ["cluster", "default/good"]
            .iter()
            .map(|n| CachedDelegate {
                delegate: Delegate::new(
                    n.to_string(),
                    "eth0".into(),
                    json!({"cniVersion": "1.0.0", "type": "okplug"}),
                    *n == "cluster",
                    None,
                ),
                result: None,
            })
            .collect();
        let entry = Entry {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: None,
            cni_args: String::new(),
            pod_namespace: "default".into(),
            pod_name: "p1".into(),
            delegates,
        };
        cache::save(&p.cfg.multus.cni_dir, &entry).expect("save");
        let e = p.run("DEL", |m| m.del()).expect_err("DEL fails");
        let Error::Cleanup(c) = &e else {
            panic!("{e:?}");
        };
        // Reverse order: the secondary network first.
        assert!(
            chain(&*c.error).contains("network default/good"),
            "{}",
            chain(&e)
        );
        assert_eq!(c.also.len(), 1);
        assert!(chain(&c.also[0]).contains("network cluster"));
        assert!(chain(&e).starts_with("1 cleanup step failed (network cluster"));
        assert_eq!(
            cache::load(&p.cfg.multus.cni_dir, "c1").expect("cache"),
            Some(entry),
            "a failed DEL keeps the cache for the retry"
        );
    }

    #[test]
    fn check_without_a_readable_cache() {
        let p = Plugins::new();
        let e = p.run("CHECK", |m| m.check()).expect_err("nothing cached");
        assert!(
            matches!(&e, Error::NotCached { container_id, source: None } if container_id == "c1"),
            "{e:?}"
        );
        std::fs::create_dir_all(&p.cfg.multus.cni_dir).expect("dir");
        std::fs::write(p.cfg.multus.cni_dir.join("c1"), "{not json").expect("corrupt");
        let e = p.run("CHECK", |m| m.check()).expect_err("corrupt");
        let Error::NotCached {
            source: Some(why), ..
        } = &e
        else {
            panic!("{e:?}");
        };
        assert!(matches!(&**why, Error::CacheJson { .. }), "{why:?}");
        assert!(chain(&e).contains("line 1 column 2"), "{}", chain(&e));
    }

    #[test]
    fn readiness_gate() {
        let mut p = Plugins::new();
        let file = p.f.dir.path().join("ready");
        p.cfg.multus.readiness_indicator_file = Some(file.clone());
        let e = p.run("ADD", |m| m.add()).expect_err("not ready");
        assert!(
            matches!(&e, Error::NotReady { file: f } if *f == file),
            "{e:?}"
        );
        let e = p.run("STATUS", |m| m.status()).expect_err("not ready");
        assert!(
            matches!(&e, Error::NotAvailable { file: f } if *f == file),
            "{e:?}"
        );
    }
}
