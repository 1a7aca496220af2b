//! What the store's tests share: temp stores and VM objects.
#![allow(dead_code)]

use std::path::PathBuf;

use oxivirt_store::{Key, Options, Store};
use oxivirt_testkit::cleanup::TempDir;
use serde_json::{json, Value};

pub const VMS: &str = "kubevirt.io/virtualmachines";

/// A temp directory (removed on drop) and the store file's path in it.
pub fn temp(what: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(what).expect("temp dir");
    let path = dir.path().join("store.redb");
    (dir, path)
}

/// A store in a fresh temp directory.
pub fn open(what: &str) -> (TempDir, Store) {
    open_with(what, Options::default())
}

pub fn open_with(what: &str, options: Options) -> (TempDir, Store) {
    let (dir, path) = temp(what);
    let store = Store::open_with(&path, options).expect("open store");
    (dir, store)
}

pub fn vm_key(ns: &str, name: &str) -> Key {
    Key::namespaced(VMS, ns, name)
}

/// A VirtualMachine of roughly the size oxivirtd stores (~1 KiB).
pub fn vm(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": format!("0b7e3c1a-{name:0>8}-4e1f-9a55-3f0c2d7e6b19"),
            "labels": {"app": "bench", "kubevirt.io/vm": name},
            "annotations": {"kubevirt.io/latest-observed-api-version": "v1"}
        },
        "spec": {
            "runStrategy": "Always",
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": name}},
                "spec": {
                    "domain": {
                        "cpu": {"cores": 1, "sockets": 1, "threads": 1},
                        "memory": {"guest": "128Mi"},
                        "devices": {
                            "disks": [
                                {"name": "containerdisk", "disk": {"bus": "virtio"}},
                                {"name": "cloudinitdisk", "disk": {"bus": "virtio"}}
                            ],
                            "interfaces": [{"name": "default", "masquerade": {}}]
                        },
                        "resources": {"requests": {"memory": "128Mi"}}
                    },
                    "networks": [{"name": "default", "pod": {}}],
                    "volumes": [
                        {"name": "containerdisk", "containerDisk": {"image": "quay.io/kubevirt/cirros-container-disk-demo:v1.4.0"}},
                        {"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": "#cloud-config\npassword: cirros\nchpasswd: { expire: False }\nssh_pwauth: True\n"}}
                    ]
                }
            }
        }
    })
}

/// The `metadata.resourceVersion` string of a stored value.
pub fn rv_field(value: &Value) -> String {
    value["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion string")
        .to_string()
}
