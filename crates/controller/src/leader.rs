//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection
//! does it, so two controller replicas never act at once:
//!
//! - a candidate takes the Lease when it does not exist (create), when it names no holder,
//!   or when its record has not changed for `lease_duration` *as this candidate observed
//!   it* (local clock only: the holder's `renewTime` is never compared with ours, so clock
//!   skew between nodes does not matter);
//! - every write is a PUT carrying the resourceVersion read (optimistic concurrency): of
//!   two candidates racing for an expired Lease, the API lets exactly one win (409 for the
//!   other);
//! - the leader renews every `retry_period`; when it sees another holder, or cannot renew
//!   for `renew_deadline` (less than `lease_duration`, so it stops before anyone else may
//!   start), it steps down: the work is dropped;
//! - when the work ends (shutdown), the leader releases the Lease (empty holder), so the
//!   next one takes over at once instead of after the lease duration.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{json, Value};

use oxivirt_api::time::rfc3339_micros;

/// Where the Lease is, who we are and the timings (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate (the pod's name on a cluster).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lost the lease {0}: another holder took it")]
    Taken(String),
    #[error("lost the lease {0}: not renewed within the renew deadline")]
    NotRenewed(String),
}

fn lease_resource() -> ApiResource {
    ApiResource {
        group: "coordination.k8s.io".into(),
        version: "v1".into(),
        api_version: "coordination.k8s.io/v1".into(),
        kind: "Lease".into(),
        plural: "leases".into(),
    }
}

/// A candidate for one Lease.
pub struct Elector {
    api: Api<DynamicObject>,
    config: LeaseConfig,
    /// The Lease's spec as last read, and when (our clock) it last changed.
    observed: Option<(Value, Instant)>,
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        let api = Api::namespaced_with(client, &config.namespace, &lease_resource());
        Elector {
            api,
            config,
            observed: None,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    fn spec(&self, acquire_time: Option<&Value>, transitions: i64) -> Value {
        let now = rfc3339_micros(SystemTime::now());
        json!({
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": self.config.lease_duration.as_secs().max(1),
            "acquireTime": acquire_time.cloned().unwrap_or_else(|| json!(now)),
            "renewTime": now,
            "leaseTransitions": transitions,
        })
    }

    /// One attempt: `Ok(true)` when we hold the Lease afterwards (acquired or renewed),
    /// `Ok(false)` when another candidate does (or won the race).
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let name = self.config.name.clone();
        let current = match self.api.get(&name).await {
            Ok(o) => o,
            Err(e) if status_code(&e) == Some(404) => {
                let obj = json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": self.config.namespace},
                    "spec": self.spec(None, 0),
                });
                let obj: DynamicObject =
                    serde_json::from_value(obj).map_err(kube::Error::SerdeError)?;
                return match self.api.create(&PostParams::default(), &obj).await {
                    Ok(created) => {
                        self.observe(&created);
                        Ok(true)
                    }
                    // Another candidate created it first.
                    Err(e) if status_code(&e) == Some(409) => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let spec = current.data.get("spec").cloned().unwrap_or(Value::Null);
        self.observe(&current);
        let holder = spec["holderIdentity"].as_str().unwrap_or("");
        let ours = holder == self.config.identity;
        if !ours && !holder.is_empty() {
            let duration = spec["leaseDurationSeconds"]
                .as_u64()
                .map_or(self.config.lease_duration, Duration::from_secs);
            let since = self.observed.as_ref().map(|(_, t)| t.elapsed());
            if since.is_some_and(|s| s < duration) {
                return Ok(false);
            }
        }
        let transitions = spec["leaseTransitions"].as_i64().unwrap_or(0);
        let new_spec = if ours {
            self.spec(spec.get("acquireTime"), transitions)
        } else {
            self.spec(None, transitions + 1)
        };
        let mut next = current;
        next.data["spec"] = new_spec;
        // `next` carries the resourceVersion read: a concurrent write makes this a 409.
        match self.api.replace(&name, &PostParams::default(), &next).await {
            Ok(o) => {
                self.observe(&o);
                Ok(true)
            }
            Err(e) if status_code(&e) == Some(409) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn observe(&mut self, o: &DynamicObject) {
        let spec = o.data.get("spec").cloned().unwrap_or(Value::Null);
        match &self.observed {
            Some((s, _)) if *s == spec => {}
            _ => self.observed = Some((spec, Instant::now())),
        }
    }

    /// Gives the Lease up if we hold it (empty holder, so the next candidate need not
    /// wait for it to expire).
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let mut current = self.api.get(&self.config.name).await?;
        if current.data["spec"]["holderIdentity"].as_str() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        current.data["spec"]["holderIdentity"] = Value::Null;
        current.data["spec"]["leaseDurationSeconds"] = json!(1);
        current.data["spec"]["renewTime"] = json!(rfc3339_micros(SystemTime::now()));
        self.api
            .replace(&self.config.name, &PostParams::default(), &current)
            .await?;
        Ok(())
    }

    /// Waits until this candidate leads, then runs `work` while renewing the Lease.
    /// Returns `Ok` when `work` ends (the Lease released), or the reason leadership was
    /// lost (`work` dropped at once: the caller should exit, as client-go's users do).
    pub async fn run<F: Future<Output = ()>>(mut self, work: F) -> Result<(), LeaderError> {
        let who = format!("{}/{}", self.config.namespace, self.config.name);
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => eprintln!("oxivirt-controller: lease {who}: {e}"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
        eprintln!(
            "oxivirt-controller: {} leads (lease {who})",
            self.config.identity
        );
        let mut renewed = Instant::now();
        tokio::pin!(work);
        loop {
            tokio::select! {
                () = &mut work => {
                    if let Err(e) = self.release().await {
                        eprintln!("oxivirt-controller: release lease {who}: {e}");
                    }
                    return Ok(());
                }
                () = tokio::time::sleep(self.config.retry_period) => {
                    // A renewal that hangs must not outlive the deadline either.
                    let left = self.config.renew_deadline.saturating_sub(renewed.elapsed());
                    match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                        Ok(Ok(true)) => renewed = Instant::now(),
                        Ok(Ok(false)) => return Err(LeaderError::Taken(who)),
                        Ok(Err(e)) => eprintln!("oxivirt-controller: renew lease {who}: {e}"),
                        Err(_) => eprintln!("oxivirt-controller: renew lease {who}: timed out"),
                    }
                    if renewed.elapsed() > self.config.renew_deadline {
                        return Err(LeaderError::NotRenewed(who));
                    }
                }
            }
        }
    }
}
