//! Object keys and their byte encoding on disk: `resource NUL namespace NUL name`, the
//! namespace empty for cluster-scoped objects. Byte order then puts every object of a
//! resource together, and within it every object of one namespace, so listing either is
//! one range scan (ordered by namespace, then name, as Kubernetes lists are).

use std::fmt;

use crate::{Error, Result};

const SEP: u8 = 0;

/// Where an object lives: its resource (`group/plural`, `/plural` for the core group, e.g.
/// `kubevirt.io/virtualmachines`, `/pods`), its namespace (`None` when cluster-scoped) and
/// its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl Key {
    /// A namespaced key.
    pub fn namespaced(resource: &str, namespace: &str, name: &str) -> Key {
        Key {
            resource: resource.to_string(),
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
        }
    }

    /// A cluster-scoped key.
    pub fn cluster(resource: &str, name: &str) -> Key {
        Key {
            resource: resource.to_string(),
            namespace: None,
            name: name.to_string(),
        }
    }

    /// The key's bytes on disk; refuses what would not decode back to the same key.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let invalid = |reason| Error::InvalidKey {
            key: self.clone(),
            reason,
        };
        if self.resource.is_empty() {
            return Err(invalid("empty resource"));
        }
        if self.name.is_empty() {
            return Err(invalid("empty name"));
        }
        // An empty namespace would be the cluster scope's encoding.
        if self.namespace.as_deref() == Some("") {
            return Err(invalid("empty namespace (use None for cluster-scoped)"));
        }
        let ns = self.namespace.as_deref().unwrap_or("");
        if [self.resource.as_str(), ns, self.name.as_str()]
            .iter()
            .any(|s| s.as_bytes().contains(&SEP))
        {
            return Err(invalid("NUL byte"));
        }
        let mut out = Vec::with_capacity(self.resource.len() + ns.len() + self.name.len() + 2);
        out.extend_from_slice(self.resource.as_bytes());
        out.push(SEP);
        out.extend_from_slice(ns.as_bytes());
        out.push(SEP);
        out.extend_from_slice(self.name.as_bytes());
        Ok(out)
    }

    /// The key stored as `bytes`; [`Error::Corrupt`] when they are not one of ours.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Key> {
        let corrupt = |reason: &str| Error::Corrupt {
            key: String::from_utf8_lossy(bytes).replace('\0', "|"),
            reason: format!("undecodable key: {reason}"),
        };
        let mut parts = bytes.splitn(3, |b| *b == SEP);
        let (Some(resource), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(corrupt("fewer than three parts"));
        };
        let text = |b: &[u8]| {
            std::str::from_utf8(b)
                .map(str::to_string)
                .map_err(|_| corrupt("not UTF-8"))
        };
        Ok(Key {
            resource: text(resource)?,
            namespace: (!ns.is_empty()).then(|| text(ns)).transpose()?,
            name: text(name)?,
        })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.resource, self.name),
            None => write!(f, "{} {}", self.resource, self.name),
        }
    }
}

/// The half-open byte range `[start, end)` holding every key of `resource` (in `namespace`
/// when given).
pub(crate) fn range(resource: &str, namespace: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let mut start = Vec::with_capacity(resource.len() + namespace.map_or(0, str::len) + 2);
    start.extend_from_slice(resource.as_bytes());
    start.push(SEP);
    if let Some(ns) = namespace {
        start.extend_from_slice(ns.as_bytes());
        start.push(SEP);
    }
    // Every key with the prefix sorts below the prefix with its closing NUL raised by one.
    let mut end = start.clone();
    if let Some(last) = end.last_mut() {
        *last = SEP + 1;
    }
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_ranges() {
        for key in [
            Key::namespaced("kubevirt.io/virtualmachines", "default", "vm1"),
            Key::cluster("/nodes", "node-a"),
        ] {
            let bytes = key.encode().expect("encodes");
            assert_eq!(Key::decode(&bytes).expect("decodes"), key);
            let (start, end) = range(&key.resource, key.namespace.as_deref());
            assert!(start <= bytes && bytes < end, "{key} outside its range");
            let (start, end) = range(&key.resource, None);
            assert!(start <= bytes && bytes < end, "{key} outside its resource");
        }
        // A resource that extends another's name is not in its range.
        let other = Key::namespaced("/podsx", "default", "a")
            .encode()
            .expect("encodes");
        let (start, end) = range("/pods", None);
        assert!(!(start <= other && other < end));
        let ns_longer = Key::namespaced("/pods", "defaultx", "a")
            .encode()
            .expect("encodes");
        let (start, end) = range("/pods", Some("default"));
        assert!(!(start <= ns_longer && ns_longer < end));
    }

    #[test]
    fn refuses_ambiguous_keys() {
        assert!(Key::namespaced("/pods", "", "a").encode().is_err());
        assert!(Key::namespaced("/pods", "a\0b", "a").encode().is_err());
        assert!(Key::cluster("/nodes", "").encode().is_err());
        assert!(Key::cluster("", "a").encode().is_err());
        assert!(Key::decode(b"only\0two").is_err());
    }
}
