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
    let lower = name.to_ascii_lowercase();
    let (base, qualifier) = match lower.split_once('.') {
        Some((b, q)) => (b.to_string(), Some(q.to_string())),
        None => (lower, None),
    };
    KINDS.iter().find(|k| {
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
    KINDS
        .iter()
        .find(|k| k.kind == kind && k.api_version() == api_version)
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
