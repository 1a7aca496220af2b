//! The kinds this API serves: one static table with what discovery, routing, admission
//! and Table output need to know of each (group, version, names, scope, columns).

/// One served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub categories: &'static [&'static str],
    /// Has a `/status` subresource (spec and status written apart).
    pub status_subresource: bool,
}

impl Resource {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store's name for the resource: `group/plural` (`/pods` for the core group).
    pub fn store_key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// `virtualmachines.kubevirt.io`, `pods`: how Kubernetes names the resource in errors.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `VirtualMachine.kubevirt.io`, `Pod`: how admission errors name the kind.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// The verbs every resource here takes (discovery lists them; kubectl checks them).
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub const NAMESPACE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    singular: "namespace",
    short_names: &["ns"],
    namespaced: false,
    categories: &[],
    status_subresource: true,
};

pub const POD: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Pod",
    plural: "pods",
    singular: "pod",
    short_names: &["po"],
    namespaced: true,
    categories: &["all"],
    status_subresource: true,
};

pub const EVENT: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    short_names: &["ev"],
    namespaced: true,
    categories: &[],
    status_subresource: false,
};

pub const NAD: Resource = Resource {
    group: "k8s.cni.cncf.io",
    version: "v1",
    kind: "NetworkAttachmentDefinition",
    plural: "network-attachment-definitions",
    singular: "network-attachment-definition",
    short_names: &["net-attach-def"],
    namespaced: true,
    categories: &[],
    status_subresource: false,
};

pub const VM: Resource = Resource {
    group: "kubevirt.io",
    version: "v1",
    kind: "VirtualMachine",
    plural: "virtualmachines",
    singular: "virtualmachine",
    short_names: &["vm", "vms"],
    namespaced: true,
    categories: &["all"],
    status_subresource: true,
};

pub const VMI: Resource = Resource {
    group: "kubevirt.io",
    version: "v1",
    kind: "VirtualMachineInstance",
    plural: "virtualmachineinstances",
    singular: "virtualmachineinstance",
    short_names: &["vmi", "vmis"],
    namespaced: true,
    categories: &["all"],
    status_subresource: true,
};

/// `coordination.k8s.io/v1` Lease: what controllers elect their leader with (a plain
/// namespaced kind; updates take the resourceVersion precondition like every kind here).
pub const LEASE: Resource = Resource {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    singular: "lease",
    short_names: &[],
    namespaced: true,
    categories: &[],
    status_subresource: false,
};

/// What a cluster's oxivirt components keep their certificates in (oxivirt-api makes them
/// on first start); served here so oxivirtd stands in for a cluster's API in their tests.
pub const SECRET: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Secret",
    plural: "secrets",
    singular: "secret",
    short_names: &[],
    namespaced: true,
    categories: &[],
    status_subresource: false,
};

/// `kube-system/extension-apiserver-authentication` tells an aggregated API server whom
/// to trust as the front proxy; served for the same reason as [`SECRET`].
pub const CONFIGMAP: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
    singular: "configmap",
    short_names: &["cm"],
    namespaced: true,
    categories: &[],
    status_subresource: false,
};

/// `apiregistration.k8s.io/v1` APIService: the registration of an aggregated API, whose
/// CA bundle oxivirt-api keeps current; stored, not acted on (oxivirtd serves virtctl's
/// group itself).
pub const APISERVICE: Resource = Resource {
    group: "apiregistration.k8s.io",
    version: "v1",
    kind: "APIService",
    plural: "apiservices",
    singular: "apiservice",
    short_names: &[],
    namespaced: false,
    categories: &["api-extensions"],
    status_subresource: true,
};

/// Every resource served, core group first.
pub const ALL: &[Resource] = &[
    NAMESPACE, POD, EVENT, SECRET, CONFIGMAP, APISERVICE, LEASE, NAD, VM, VMI,
];

/// The API groups besides the core one, in discovery order.
pub const GROUPS: &[&str] = &[
    "apiregistration.k8s.io",
    "coordination.k8s.io",
    "k8s.cni.cncf.io",
    "kubevirt.io",
];

/// The resource at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    ALL.iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of an object's `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    ALL.iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// The resources of a group.
pub fn in_group(group: &str) -> impl Iterator<Item = &'static Resource> + '_ {
    ALL.iter().filter(move |r| r.group == group)
}
