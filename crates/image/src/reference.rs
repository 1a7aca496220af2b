//! Image references as Docker and Kubernetes write them: `[registry/]repository[:tag][@digest]`,
//! with Docker Hub's defaults (`ubuntu` → `docker.io/library/ubuntu:latest`).

use crate::error::{Error, Result};
use std::fmt;

/// Docker Hub's canonical name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API answers.
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `quay.io`, `127.0.0.1:5000`, `[::1]:5000`.
    pub registry: String,
    /// `library/ubuntu`, `kubevirt/cirros-container-disk-demo`.
    pub repository: String,
    /// `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>`; when present it wins over the tag.
    pub digest: Option<String>,
}

fn invalid(reference: &str, reason: &'static str) -> Error {
    Error::InvalidReference {
        reference: reference.to_string(),
        reason,
    }
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

fn valid_domain(d: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|x| x.is_ascii_alphanumeric() || x == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let (host_ok, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, after)) => (
                !h.is_empty() && h.bytes().all(|x| x.is_ascii_hexdigit() || x == b':'),
                after,
            ),
            None => return false,
        }
    } else {
        let (h, after) = match d.find(':') {
            Some(i) => (&d[..i], &d[i..]),
            None => (d, ""),
        };
        (!h.is_empty() && h.split('.').all(label_ok), after)
    };
    host_ok
        && (port.is_empty()
            || port.strip_prefix(':').is_some_and(|n| {
                !n.is_empty() && n.len() <= 5 && n.bytes().all(|x| x.is_ascii_digit())
            }))
}

pub(crate) fn valid_sha256(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|x| x.is_ascii_digit() || (b'a'..=b'f').contains(&x))
    })
}

impl Reference {
    /// Parses a reference the way Docker normalises one.
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(invalid(s, "empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let algo_ok = d.split_once(':').is_some_and(|(a, h)| {
                    !a.is_empty()
                        && a.bytes()
                            .all(|x| x.is_ascii_alphanumeric() || b"+._-".contains(&x))
                        && h.len() >= 32
                        && h.bytes().all(|x| x.is_ascii_hexdigit())
                });
                if !algo_ok {
                    return Err(invalid(s, "invalid digest"));
                }
                if !valid_sha256(d) {
                    return Err(invalid(
                        s,
                        "only sha256 digests (lower-case hex) are supported",
                    ));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag's colon comes after the last slash (a port's comes before it).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(invalid(s, "invalid tag"));
            }
        }
        if name.is_empty() {
            return Err(invalid(s, "no repository name"));
        }
        if name.len() > 255 {
            return Err(invalid(
                s,
                "repository name must not be more than 255 characters",
            ));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, more))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.starts_with('[') =>
            {
                if !valid_domain(first) {
                    return Err(invalid(s, "invalid registry host"));
                }
                (first.to_string(), more.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid(s, "repository name must be lowercase"));
        }
        if !path.split('/').all(valid_component) {
            return Err(invalid(s, "invalid repository name"));
        }
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What the manifest is asked for by: the digest if there is one, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).expect(s)
    }

    #[test]
    fn quay_with_default_tag() {
        let r = p("quay.io/kubevirt/cirros-container-disk-demo");
        assert_eq!(r.registry, "quay.io");
        assert_eq!(r.repository, "kubevirt/cirros-container-disk-demo");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(
            r.to_string(),
            "quay.io/kubevirt/cirros-container-disk-demo:latest"
        );
    }

    #[test]
    fn docker_hub_defaults() {
        assert_eq!(p("ubuntu").to_string(), "docker.io/library/ubuntu:latest");
        assert_eq!(p("user/img:1.0").to_string(), "docker.io/user/img:1.0");
        assert_eq!(p("index.docker.io/ubuntu").registry, "docker.io");
    }

    #[test]
    fn ports_tags_and_digests() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = p(&format!("127.0.0.1:5000/a/b:v1@{d}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_ref(), d);
        let r = p(&format!("localhost/x@{d}"));
        assert_eq!((r.registry.as_str(), r.tag), ("localhost", None));
        assert_eq!(p("[::1]:5000/x:t").registry, "[::1]:5000");
        assert_eq!(p("localhost:5000/x").tag.as_deref(), Some("latest"));
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "quay.io/Kubevirt/x",
            "x:",
            "x:-bad",
            "x@sha256:abc",
            "x@md5:0123456789abcdef0123456789abcdef",
            "a//b",
            "a/-b",
            "quay.io/",
        ] {
            assert!(
                matches!(Reference::parse(bad), Err(Error::InvalidReference { .. })),
                "{bad:?} parsed"
            );
        }
    }

    proptest! {
        /// What Display writes parses back to the same reference.
        #[test]
        fn display_round_trips(
            reg in prop::option::of("[a-z]{1,8}\\.(io|com)(:[0-9]{2,5})?"),
            path in prop::collection::vec("[a-z0-9]{1,6}([-_.][a-z0-9]{1,4})?", 1..4),
            tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            digest in prop::option::of("[0-9a-f]{64}"),
        ) {
            let mut s = String::new();
            if let Some(r) = &reg { s.push_str(r); s.push('/'); }
            s.push_str(&path.join("/"));
            if let Some(t) = &tag { s.push(':'); s.push_str(t); }
            if let Some(d) = &digest { s.push_str("@sha256:"); s.push_str(d); }
            let r = Reference::parse(&s).expect("generated reference parses");
            prop_assert_eq!(Reference::parse(&r.to_string()).expect("display parses"), r);
        }
    }
}
