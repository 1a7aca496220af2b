//! PATCH bodies as the API server applies them: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902) and strategic merge patch as kubectl sends it for built-in kinds (lists of
//! objects merged by their merge key, `$patch`, `$retainKeys`, `$setElementOrder` and
//! `$deleteFromPrimitiveList` directives).

use serde_json::{Map, Value};

/// Why a patch could not be applied (a 422 or 400 for the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// The patch types of `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    StrategicMerge,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().map(str::trim) {
            Some("application/merge-patch+json") => Some(Self::Merge),
            Some("application/json-patch+json") => Some(Self::Json),
            Some("application/strategic-merge-patch+json") => Some(Self::StrategicMerge),
            Some("application/apply-patch+yaml") => Some(Self::Apply),
            _ => None,
        }
    }
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// RFC 6902 operations, applied in order to a copy: all or nothing.
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, PatchError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| PatchError("a JSON patch must be an array of operations".into()))?;
    let mut doc = target.clone();
    for (i, op) in ops.iter().enumerate() {
        let field = |name: &str| -> Result<&str, PatchError> {
            op[name]
                .as_str()
                .ok_or_else(|| PatchError(format!("operation {i}: missing {name:?}")))
        };
        let path = field("path")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| PatchError(format!("operation {i}: missing \"value\"")))
        };
        match field("op")? {
            "add" => add(&mut doc, path, value()?),
            "remove" => remove(&mut doc, path).map(drop),
            "replace" => {
                remove(&mut doc, path)?;
                add(&mut doc, path, value()?)
            }
            "move" => {
                let v = remove(&mut doc, field("from")?)?;
                add(&mut doc, path, v)
            }
            "copy" => {
                let v = pointer(&doc, field("from")?)?.clone();
                add(&mut doc, path, v)
            }
            "test" => {
                if pointer(&doc, path)? == &value()? {
                    Ok(())
                } else {
                    Err(PatchError(format!("testing value {path} failed")))
                }
            }
            other => Err(PatchError(format!("unknown operation {other:?}"))),
        }
        .map_err(|e| PatchError(format!("operation {i}: {}", e.0)))?;
    }
    Ok(doc)
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split(path: &str) -> Result<(Vec<String>, String), PatchError> {
    if path.is_empty() {
        return Err(PatchError("the whole document cannot be patched".into()));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PatchError(format!("path {path:?} does not start with /")));
    };
    let mut tokens: Vec<String> = rest.split('/').map(unescape).collect();
    let last = tokens.pop().unwrap_or_default();
    Ok((tokens, last))
}

fn walk<'a>(
    doc: &'a mut Value,
    tokens: &[String],
    path: &str,
) -> Result<&'a mut Value, PatchError> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| PatchError(format!("path {path}: {t:?} does not exist")))?;
    }
    Ok(cur)
}

fn pointer<'a>(doc: &'a Value, path: &str) -> Result<&'a Value, PatchError> {
    doc.pointer(path)
        .ok_or_else(|| PatchError(format!("path {path} does not exist")))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let (parents, last) = split(path)?;
    match walk(doc, &parents, path)? {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| PatchError(format!("path {path}: bad index {last:?}")))?
            };
            a.insert(i, value);
            Ok(())
        }
        _ => Err(PatchError(format!(
            "path {path}: parent is not a container"
        ))),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let (parents, last) = split(path)?;
    match walk(doc, &parents, path)? {
        Value::Object(m) => m
            .remove(&last)
            .ok_or_else(|| PatchError(format!("path {path} does not exist"))),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(PatchError(format!("path {path}: bad index {last:?}"))),
        },
        _ => Err(PatchError(format!("path {path} does not exist"))),
    }
}

/// The merge key of the lists strategic merge patch merges element by element
/// (Kubernetes' `patchMergeKey` tags of the built-in kinds served here); other lists are
/// replaced whole.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" => "containerPort",
        "hostAliases" => "ip",
        "conditions" => "type",
        "ownerReferences" => "uid",
        _ => return None,
    })
}

/// Strategic merge patch (the subset the built-in kinds here need).
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut v = patch.clone();
        if let Value::Object(m) = &mut v {
            m.remove("$patch");
        }
        *target = v;
        return Ok(());
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(gone)) = (t.get_mut(field), v.as_array()) {
                list.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (merge_key(k), v) {
            // metadata.finalizers merges as a set of strings.
            (None, Value::Array(items)) if k == "finalizers" => {
                let cur = t
                    .entry(k.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = cur {
                    for i in items {
                        if !list.contains(i) {
                            list.push(i.clone());
                        }
                    }
                } else {
                    *cur = v.clone();
                }
            }
            (Some(key), Value::Array(items)) => {
                let cur = t
                    .entry(k.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                merge_list(cur, items, key)?;
            }
            (_, Value::Object(_)) => {
                strategic_merge(t.entry(k.clone()).or_insert(Value::Null), v)?;
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(cur: &mut Value, items: &[Value], key: &str) -> Result<(), PatchError> {
    if !cur.is_array() {
        *cur = Value::Array(Vec::new());
    }
    let Value::Array(list) = cur else {
        return Ok(());
    };
    for item in items {
        let Some(id) = item.get(key) else {
            if item.get("$patch").and_then(Value::as_str) == Some("replace") {
                list.clear();
                continue;
            }
            return Err(PatchError(format!(
                "map in a list merged by {key:?} has no {key:?}: {item}"
            )));
        };
        let pos = list.iter().position(|e| e.get(key) == Some(id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                list.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut list[i], item)?,
            (None, false) => {
                let mut v = Value::Null;
                strategic_merge(&mut v, item)?;
                list.push(v);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_is_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge(&mut t, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn json_patch_ops_and_all_or_nothing() {
        let t = json!({"metadata": {"labels": {"a": "1"}}, "l": [1, 2]});
        let out = json_patch(
            &t,
            &json!([
                {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
                {"op": "replace", "path": "/l/0", "value": 9},
                {"op": "add", "path": "/l/-", "value": 3},
                {"op": "test", "path": "/l/1", "value": 2},
                {"op": "remove", "path": "/metadata/labels/a"},
            ]),
        )
        .expect("patch");
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b/c": "2"}}, "l": [9, 2, 3]})
        );
        let e = json_patch(
            &t,
            &json!([{"op": "add", "path": "/x", "value": 1}, {"op": "remove", "path": "/nope"}]),
        )
        .expect_err("missing path");
        assert_eq!(e.0, "operation 1: path /nope does not exist");
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        strategic_merge(
            &mut pod,
            &json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b", "image": "z"}, {"name": "a", "$patch": "delete"}]}}),
        )
        .expect("patch");
        assert_eq!(
            pod,
            json!({"spec": {"containers": [{"name": "b", "image": "z"}]}})
        );
    }
}
