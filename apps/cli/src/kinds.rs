//! The kinds the CLI knows without asking the server (so `oxivirt get vm` costs one request),
//! resolved from any of the names kubectl accepts, and the URLs of their objects.

/// One API resource: enough to build its URLs and name its objects like kubectl does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short: &'static [&'static str],
    pub namespaced: bool,
}

pub const KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        short: &["ns"],
        namespaced: false,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        short: &["po"],
        namespaced: true,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        short: &["ev"],
        namespaced: true,
    },
    Kind {
        group: "k8s.cni.cncf.io",
        version: "v1",
        kind: "NetworkAttachmentDefinition",
        plural: "network-attachment-definitions",
        singular: "network-attachment-definition",
        short: &["net-attach-def", "nad"],
        namespaced: true,
    },
    Kind {
        group: "kubevirt.io",
        version: "v1",
        kind: "VirtualMachine",
        plural: "virtualmachines",
        singular: "virtualmachine",
        short: &["vm", "vms"],
        namespaced: true,
    },
    Kind {
        group: "kubevirt.io",
        version: "v1",
        kind: "VirtualMachineInstance",
        plural: "virtualmachineinstances",
        singular: "virtualmachineinstance",
        short: &["vmi", "vmis"],
        namespaced: true,
    },
];

impl Kind {
    /// `group/version`, or `version` for the core group: the object's `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `virtualmachines.kubevirt.io`, `pods`: how kubectl names the resource in errors.
    pub fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `virtualmachine.kubevirt.io`, `pod`: the prefix of `-o name` and of `deleted`.
    pub fn singular_resource(&self) -> String {
        let lower = self.kind.to_ascii_lowercase();
        if self.group.is_empty() {
            lower
        } else {
            format!("{lower}.{}", self.group)
        }
    }

    /// `VirtualMachine.kubevirt.io`: how the API server names the kind in `Status` messages.
    pub fn kind_group(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The collection's path: `namespace` is ignored for cluster-scoped kinds and `None`
    /// lists across all namespaces.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }

    pub fn object_path(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection_path(Some(namespace)))
    }

    fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        [self.plural, self.singular]
            .into_iter()
            .chain(self.short.iter().copied())
    }
}

/// Resolves what a user types after `get`/`describe`/`delete`: a plural, singular, short name
/// or kind (any case), optionally qualified by group (`virtualmachines.kubevirt.io`) or by
/// version and group (`virtualmachines.v1.kubevirt.io`), as kubectl does.
pub fn resolve(name: &str) -> Option<&'static Kind> {
    resolve_in(KINDS, name)
}

/// [`resolve`] over another table (what discovery found).
pub fn resolve_in<'a>(kinds: &'a [Kind], name: &str) -> Option<&'a Kind> {
    let lower = name.to_ascii_lowercase();
    let (base, qualifier) = match lower.split_once('.') {
        Some((b, q)) => (b.to_string(), Some(q.to_string())),
        None => (lower, None),
    };
    kinds.iter().find(|k| {
        let name_ok = k.kind.eq_ignore_ascii_case(&base) || k.names().any(|n| n == base);
        let group_ok = match &qualifier {
            None => true,
            Some(q) => *q == k.group || *q == format!("{}.{}", k.version, k.group),
        };
        name_ok && group_ok
    })
}

/// The kind of an object from its `apiVersion` and `kind`.
pub fn for_object(api_version: &str, kind: &str) -> Option<&'static Kind> {
    for_object_in(KINDS, api_version, kind)
}

pub fn for_object_in<'a>(kinds: &'a [Kind], api_version: &str, kind: &str) -> Option<&'a Kind> {
    kinds
        .iter()
        .find(|k| k.kind == kind && k.api_version() == api_version)
}

/// The kinds of one discovery document (`APIResourceList` of `/api/v1` or `/apis/G/V`);
/// subresources are left out. The strings are leaked: a CLI run discovers at most once and
/// then exits, and it keeps [`Kind`] the plain `'static` table entry.
pub fn from_discovery(api_version: &str, list: &serde_json::Value) -> Vec<Kind> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let (group, version) = (leak(group), leak(version));
    let Some(resources) = list["resources"].as_array() else {
        return Vec::new();
    };
    resources
        .iter()
        .filter_map(|r| {
            let plural = r["name"].as_str().filter(|n| !n.contains('/'))?;
            let kind = r["kind"].as_str()?;
            let singular = r["singularName"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| kind.to_ascii_lowercase());
            let short: Vec<&'static str> = r["shortNames"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str()).map(leak).collect())
                .unwrap_or_default();
            Some(Kind {
                group,
                version,
                kind: leak(kind),
                plural: leak(plural),
                singular: leak(&singular),
                short: Box::leak(short.into_boxed_slice()),
                namespaced: r["namespaced"].as_bool().unwrap_or(true),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_every_name_kubectl_accepts() {
        for n in [
            "vm",
            "vms",
            "virtualmachine",
            "virtualmachines",
            "VirtualMachine",
            "virtualmachines.kubevirt.io",
            "virtualmachine.kubevirt.io",
            "virtualmachines.v1.kubevirt.io",
        ] {
            assert_eq!(resolve(n).map(|k| k.kind), Some("VirtualMachine"), "{n}");
        }
        for n in [
            "vmi",
            "vmis",
            "VirtualMachineInstance",
            "virtualmachineinstances",
        ] {
            assert_eq!(
                resolve(n).map(|k| k.kind),
                Some("VirtualMachineInstance"),
                "{n}"
            );
        }
        for n in [
            "net-attach-def",
            "nad",
            "network-attachment-definitions",
            "NetworkAttachmentDefinition",
            "network-attachment-definitions.k8s.cni.cncf.io",
        ] {
            assert_eq!(
                resolve(n).map(|k| k.kind),
                Some("NetworkAttachmentDefinition"),
                "{n}"
            );
        }
        for n in ["pods", "po", "pod", "Pod"] {
            assert_eq!(resolve(n).map(|k| k.kind), Some("Pod"), "{n}");
        }
        assert_eq!(resolve("ns").map(|k| k.kind), Some("Namespace"));
        assert_eq!(resolve("ev").map(|k| k.kind), Some("Event"));
    }

    #[test]
    fn refuses_unknown_names_and_wrong_groups() {
        assert!(resolve("deployments").is_none());
        assert!(resolve("vm.apps").is_none());
        assert!(resolve("pods.kubevirt.io").is_none());
        assert!(resolve("").is_none());
    }

    #[test]
    fn discovery_documents() {
        let list = serde_json::json!({"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": [
            {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "shortNames": ["deploy"]},
            {"name": "deployments/status", "singularName": "", "namespaced": true, "kind": "Deployment"},
        ]});
        let kinds = from_discovery("apps/v1", &list);
        assert_eq!(kinds.len(), 1);
        let d = resolve_in(&kinds, "deploy").expect("short name");
        assert_eq!(
            d.collection_path(Some("x")),
            "/apis/apps/v1/namespaces/x/deployments"
        );
        assert_eq!(d.singular_resource(), "deployment.apps");
        assert!(for_object_in(&kinds, "apps/v1", "Deployment").is_some());
    }

    #[test]
    fn paths_and_names() {
        let vm = resolve("vm").expect("vm");
        assert_eq!(
            vm.object_path("default", "testvm-2"),
            "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/testvm-2"
        );
        assert_eq!(
            vm.collection_path(None),
            "/apis/kubevirt.io/v1/virtualmachines"
        );
        assert_eq!(vm.resource(), "virtualmachines.kubevirt.io");
        assert_eq!(vm.singular_resource(), "virtualmachine.kubevirt.io");
        assert_eq!(vm.kind_group(), "VirtualMachine.kubevirt.io");
        let pod = resolve("po").expect("pod");
        assert_eq!(pod.collection_path(Some("x")), "/api/v1/namespaces/x/pods");
        assert_eq!(pod.singular_resource(), "pod");
        let ns = resolve("ns").expect("ns");
        assert_eq!(ns.collection_path(Some("x")), "/api/v1/namespaces");
        assert_eq!(
            for_object("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition").map(|k| k.plural),
            Some("network-attachment-definitions")
        );
    }
}
