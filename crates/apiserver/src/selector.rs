//! `labelSelector` and `fieldSelector` as list and watch take them.

use serde_json::Value;

/// A parsed selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    reqs: Vec<Req>,
}

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A selector that does not parse; the message says which part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

/// Splits on commas outside parentheses.
fn parts(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn set(body: &str, whole: &str) -> Result<Vec<String>, SelectorError> {
    let inner = body
        .trim()
        .strip_prefix('(')
        .and_then(|b| b.strip_suffix(')'))
        .ok_or_else(|| SelectorError(format!("{whole:?}: expected a (set)")))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

fn key(k: &str, whole: &str) -> Result<String, SelectorError> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_string())
    } else {
        Err(SelectorError(format!("{whole:?}: invalid key {k:?}")))
    }
}

impl Selector {
    /// A label selector (`a=b,c!=d,e in (f,g),!h,i`).
    pub fn labels(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for p in parts(s) {
            let r = if let Some(k) = p.strip_prefix('!') {
                Req::NotExists(key(k, p)?)
            } else if let Some((k, v)) = p.split_once("!=") {
                Req::NotEq(key(k, p)?, v.trim().to_string())
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Req::Eq(key(k, p)?, v.trim().to_string())
            } else if let Some((k, v)) = p.split_once(" notin ") {
                Req::NotIn(key(k, p)?, set(v, p)?)
            } else if let Some((k, v)) = p.split_once(" in ") {
                Req::In(key(k, p)?, set(v, p)?)
            } else {
                Req::Exists(key(p, p)?)
            };
            reqs.push(r);
        }
        Ok(Selector { reqs })
    }

    /// A field selector (`metadata.name=x,status.phase!=Running`).
    pub fn fields(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for p in parts(s) {
            let r = if let Some((k, v)) = p.split_once("!=") {
                Req::NotEq(key(k, p)?, v.trim().to_string())
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Req::Eq(key(k, p)?, v.trim().to_string())
            } else {
                return Err(SelectorError(format!(
                    "{p:?}: expected field=value or field!=value"
                )));
            };
            reqs.push(r);
        }
        Ok(Selector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether the labels of `object` satisfy the selector.
    pub fn matches_labels(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.matches(|k| labels.get(k).and_then(Value::as_str).map(str::to_string))
    }

    /// Whether the fields of `object` (dotted paths) satisfy the selector.
    pub fn matches_fields(&self, object: &Value) -> bool {
        self.matches(|k| {
            let v = k.split('.').try_fold(object, |v, part| v.get(part));
            match v {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => Some(String::new()),
                Some(other) => Some(other.to_string()),
            }
        })
    }

    fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => get(k).as_deref() == Some(v),
            Req::NotEq(k, v) => get(k).as_deref() != Some(v),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}});
        for (s, want) in [
            ("app=web", true),
            ("app==web,tier=fe", true),
            ("app!=web", false),
            ("app in (db, web)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("missing notin (x)", true),
        ] {
            assert_eq!(
                Selector::labels(s).expect(s).matches_labels(&o),
                want,
                "{s}"
            );
        }
        assert!(Selector::labels("a in x").is_err());
        assert!(Selector::labels("=x").is_err());
    }

    #[test]
    fn field_selectors() {
        let o = json!({"metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"name": "testvm-2", "kind": "VirtualMachine"}});
        let s = Selector::fields("involvedObject.name=testvm-2,metadata.namespace=default")
            .expect("parse");
        assert!(s.matches_fields(&o));
        assert!(!Selector::fields("metadata.name!=e1")
            .expect("parse")
            .matches_fields(&o));
        assert!(Selector::fields("spec.nodeName=")
            .expect("parse")
            .matches_fields(&o));
        assert!(Selector::fields("justakey").is_err());
    }
}
