//! `kubectl apply`'s bookkeeping for objects without a strategic-merge schema (CRDs, and
//! here every kind): the `last-applied-configuration` annotation and the three-way JSON merge
//! patch computed from it, the new configuration and the live object.

use serde_json::{Map, Value};

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The configuration as applied: the manifest with its namespace set and the
/// last-applied annotation holding the manifest itself, serialized as kubectl does (keys
/// sorted, compact, a trailing newline, `annotations: {}` left when it had none).
pub fn with_last_applied(mut config: Value, namespace: Option<&str>) -> Value {
    let Some(obj) = config.as_object_mut() else {
        return config;
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        if let Some(ns) = namespace {
            meta.insert("namespace".into(), Value::String(ns.into()));
        }
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(ann) = ann.as_object_mut() {
            ann.remove(LAST_APPLIED);
        }
    }
    // serde_json's maps are sorted (no `preserve_order`), like Go's encoding of maps.
    let mut recorded = config.to_string();
    recorded.push('\n');
    if let Some(ann) = config
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        ann.insert(LAST_APPLIED.into(), Value::String(recorded));
    }
    config
}

/// The configuration last applied to a live object, if it records one that parses.
pub fn last_applied(live: &Value) -> Option<Value> {
    let text = live["metadata"]["annotations"][LAST_APPLIED].as_str()?;
    serde_json::from_str(text).ok()
}

/// The JSON merge patch (RFC 7386) that takes `current` to `modified` while removing what
/// `original` (the last applied configuration) had and `modified` dropped; fields that
/// only the server or other writers set are left alone. `None` when there is nothing to do.
pub fn three_way(original: Option<&Value>, modified: &Value, current: &Value) -> Option<Value> {
    let deletions = original.and_then(|o| deletions(o, modified));
    let changes = changes(current, modified);
    match (deletions, changes) {
        (None, None) => None,
        (Some(d), None) => Some(d),
        (None, Some(c)) => Some(c),
        (Some(mut d), Some(c)) => {
            merge_into(&mut d, c);
            Some(d)
        }
    }
}

/// `null` for every field `original` had and `modified` has not (objects recursed into;
/// arrays and scalars are replaced whole by a merge patch, so never looked inside).
fn deletions(original: &Value, modified: &Value) -> Option<Value> {
    let (Value::Object(o), Value::Object(m)) = (original, modified) else {
        return None;
    };
    let mut out = Map::new();
    for (k, ov) in o {
        match m.get(k) {
            None => {
                out.insert(k.clone(), Value::Null);
            }
            Some(mv) => {
                if let Some(d) = deletions(ov, mv) {
                    out.insert(k.clone(), d);
                }
            }
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// Every field of `modified` that `current` lacks or has with another value.
fn changes(current: &Value, modified: &Value) -> Option<Value> {
    let (Value::Object(c), Value::Object(m)) = (current, modified) else {
        return (current != modified).then(|| modified.clone());
    };
    let mut out = Map::new();
    for (k, mv) in m {
        match c.get(k) {
            None if mv.is_null() => {}
            None => {
                out.insert(k.clone(), mv.clone());
            }
            Some(cv) if cv.is_object() && mv.is_object() => {
                if let Some(d) = changes(cv, mv) {
                    out.insert(k.clone(), d);
                }
            }
            Some(cv) if cv != mv => {
                out.insert(k.clone(), mv.clone());
            }
            Some(_) => {}
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn merge_into(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k.as_str()) {
                    Some(bv) if bv.is_object() && v.is_object() => merge_into(bv, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn last_applied_is_recorded_as_kubectl_writes_it() {
        let cfg = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "a"}});
        let applied = with_last_applied(cfg, Some("default"));
        assert_eq!(
            applied["metadata"]["annotations"][LAST_APPLIED],
            "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"annotations\":{},\"name\":\"a\",\"namespace\":\"default\"}}\n"
        );
        assert_eq!(applied["metadata"]["namespace"], "default");
        // Re-applying what was applied records the same thing.
        let again = with_last_applied(applied.clone(), Some("default"));
        assert_eq!(again, applied);
        assert_eq!(
            last_applied(&applied).expect("recorded")["metadata"]["name"],
            "a"
        );
    }

    #[test]
    fn unchanged_config_gives_no_patch_even_with_server_fields() {
        let m = with_last_applied(
            json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"x": 1}}),
            Some("default"),
        );
        let mut live = m.clone();
        live["metadata"]["uid"] = json!("u");
        live["metadata"]["resourceVersion"] = json!("7");
        live["status"] = json!({"ready": false});
        live["spec"]["defaulted"] = json!(true);
        assert_eq!(three_way(last_applied(&live).as_ref(), &m, &live), None);
    }

    #[test]
    fn changes_and_deletions_are_one_patch() {
        let old = with_last_applied(
            json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "labels": {"l": "1", "gone": "x"}}, "spec": {"running": false, "list": [1, 2], "drop": {"y": 1}}}),
            None,
        );
        let mut live = old.clone();
        live["spec"]["serverSide"] = json!("kept");
        live["metadata"]["labels"]["someoneElse"] = json!("kept");
        let new = with_last_applied(
            json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "labels": {"l": "2"}}, "spec": {"running": true, "list": [1]}}),
            None,
        );
        let patch = three_way(last_applied(&live).as_ref(), &new, &live).expect("patch");
        assert_eq!(
            patch,
            json!({
                "metadata": {
                    "annotations": {LAST_APPLIED: new["metadata"]["annotations"][LAST_APPLIED]},
                    "labels": {"l": "2", "gone": null},
                },
                "spec": {"running": true, "list": [1], "drop": null},
            })
        );
    }

    #[test]
    fn without_last_applied_nothing_is_deleted() {
        let live = json!({"metadata": {"name": "a"}, "spec": {"a": 1, "b": 2}});
        let new = json!({"metadata": {"name": "a"}, "spec": {"a": 2}});
        assert_eq!(
            three_way(None, &new, &live),
            Some(json!({"spec": {"a": 2}}))
        );
    }

    #[test]
    fn a_field_the_user_set_and_someone_changed_is_set_back() {
        let original = json!({"spec": {"a": 1}});
        let live = json!({"spec": {"a": 5}});
        let new = json!({"spec": {"a": 1}});
        assert_eq!(
            three_way(Some(&original), &new, &live),
            Some(json!({"spec": {"a": 1}}))
        );
    }
}
