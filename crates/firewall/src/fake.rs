//! A firewall for unit tests: records every call, keeps the comments of the rules it was
//! asked to add (so DEL and GC see them), and fails the calls a test chooses.

use crate::{Error, Firewall, Loading, Op, Owner, Result, Ruleset, Table};
use ipnet::IpNet;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard};

/// One call made to a [`RecordingFirewall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    AddMasquerade {
        owner: Owner,
        addrs: Vec<IpNet>,
    },
    AddSpoofcheck {
        owner: Owner,
        host_if: String,
        mac: String,
    },
    Remove(Owner),
    Comments,
    RemoveComments(Vec<String>),
    Load(Ruleset),
    /// [`Loading::finish`] of the load of these tables.
    Finish(Vec<Table>),
    RemoveTables(Vec<Table>),
}

type FailWhen = Box<dyn Fn(&Call) -> bool + Send + Sync>;

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    /// Comments of the rules in place.
    rules: Vec<String>,
    fail_when: Option<FailWhen>,
}

/// The recording fake. Clones share their record.
#[derive(Clone, Default)]
pub struct RecordingFirewall {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for RecordingFirewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingFirewall")
            .field("calls", &self.lock().calls)
            .finish()
    }
}

impl RecordingFirewall {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts with rules carrying these comments in place (left by earlier runs).
    pub fn with_rules(self, comments: &[&str]) -> Self {
        self.lock()
            .rules
            .extend(comments.iter().map(|c| c.to_string()));
        self
    }

    /// Makes every call for which `when` is true fail (after recording it), as nft
    /// refusing the change would.
    pub fn failing(self, when: impl Fn(&Call) -> bool + Send + Sync + 'static) -> Self {
        self.lock().fail_when = Some(Box::new(when));
        self
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The comments of the rules in place now.
    pub fn rules(&self) -> Vec<String> {
        self.lock().rules.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock left a record that is still useful.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `call`; `Err` if the test chose it to fail.
    fn record(&self, call: Call, op: Op) -> Result<MutexGuard<'_, State>> {
        let mut state = self.lock();
        let fail = state.fail_when.as_ref().is_some_and(|f| f(&call));
        state.calls.push(call);
        if fail {
            return Err(Error::Refused {
                op,
                status: ExitStatus::from_raw(1 << 8),
                stderr: "refused by the test".into(),
            });
        }
        Ok(state)
    }

    /// Records `call`, which adds rules for `owner`; unless it fails, they are in place
    /// under the owner's comment.
    fn add_rules(&self, owner: &Owner, call: Call, op: Op) -> Result<()> {
        self.record(call, op)?.rules.push(owner.comment());
        Ok(())
    }
}

struct FakeLoading {
    fw: RecordingFirewall,
    tables: Vec<Table>,
}

impl Loading for FakeLoading {
    fn finish(self: Box<Self>) -> Result<()> {
        let op = Op::Load(self.tables.clone());
        self.fw.record(Call::Finish(self.tables), op).map(drop)
    }
}

impl Firewall for RecordingFirewall {
    fn add_masquerade(&self, owner: &Owner, addrs: &[IpNet]) -> Result<()> {
        let call = Call::AddMasquerade {
            owner: owner.clone(),
            addrs: addrs.to_vec(),
        };
        self.add_rules(owner, call, Op::AddMasquerade)
    }

    fn add_spoofcheck(&self, owner: &Owner, host_if: &str, mac: &str) -> Result<()> {
        let call = Call::AddSpoofcheck {
            owner: owner.clone(),
            host_if: host_if.into(),
            mac: mac.into(),
        };
        self.add_rules(owner, call, Op::AddSpoofcheck)
    }

    fn remove(&self, owner: &Owner) -> Result<()> {
        let comment = owner.comment();
        self.record(Call::Remove(owner.clone()), Op::RemoveRules)?
            .rules
            .retain(|c| *c != comment);
        Ok(())
    }

    fn comments(&self) -> Result<Vec<String>> {
        let table = crate::rules::masquerade_table();
        Ok(self.record(Call::Comments, Op::List(table))?.rules.clone())
    }

    fn remove_comments(&self, comments: &[String]) -> Result<()> {
        self.record(Call::RemoveComments(comments.to_vec()), Op::RemoveRules)?
            .rules
            .retain(|c| !comments.contains(c));
        Ok(())
    }

    fn load(&self, ruleset: Ruleset) -> Result<Box<dyn Loading>> {
        let tables = ruleset.tables.clone();
        drop(self.record(Call::Load(ruleset), Op::Load(tables.clone()))?);
        Ok(Box::new(FakeLoading {
            fw: self.clone(),
            tables,
        }))
    }

    fn remove_tables(&self, tables: &[Table]) -> Result<()> {
        let op = Op::RemoveTables(tables.to_vec());
        self.record(Call::RemoveTables(tables.to_vec()), op)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(c: &str) -> Owner {
        Owner {
            network: "n".into(),
            container_id: c.into(),
            ifname: "eth0".into(),
        }
    }

    #[test]
    fn records_calls_and_keeps_rules() {
        let fw = RecordingFirewall::new().with_rules(&["oxivirt:n:old:eth0"]);
        fw.add_spoofcheck(&owner("a"), "veth0", "02:00:00:00:00:01")
            .expect("add");
        assert_eq!(
            fw.comments().expect("comments"),
            ["oxivirt:n:old:eth0", "oxivirt:n:a:eth0"]
        );
        fw.remove(&owner("a")).expect("remove");
        assert_eq!(fw.rules(), ["oxivirt:n:old:eth0"]);
        assert_eq!(fw.calls().len(), 3);
    }

    #[test]
    fn fails_the_chosen_call_after_recording_it() {
        let fw = RecordingFirewall::new().failing(|c| matches!(c, Call::Finish(_)));
        let t = vec![Table::new(crate::Family::Ip, "nat")];
        let loading = fw
            .load(Ruleset {
                tables: t.clone(),
                body: String::new(),
            })
            .expect("load starts");
        let e = loading.finish().expect_err("finish fails");
        assert_eq!(e.op(), Op::Load(t.clone()));
        assert_eq!(
            e.to_string(),
            "nft refused to load table ip nat (exit status: 1): refused by the test"
        );
        assert_eq!(fw.calls().last(), Some(&Call::Finish(t)));
    }
}
