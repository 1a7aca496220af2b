//! `k8s.v1.cni.cncf.io/network-status`, in Multus's format.

use crate::delegate::Delegate;
use oxivirt_cni_spec::CniResult;
use serde_json::{json, Map, Value};

/// One entry per attached network, in attachment order.
pub fn network_status(attached: &[(Delegate, CniResult)]) -> Value {
    let entries: Vec<Value> = attached
        .iter()
        .map(|(d, r)| {
            let mut m = Map::new();
            m.insert("name".into(), json!(d.network));
            // The interface the result says is in the sandbox, else the requested name.
            let iface = r.interfaces.iter().find(|i| !i.sandbox.is_empty());
            m.insert(
                "interface".into(),
                json!(iface
                    .map(|i| i.name.clone())
                    .unwrap_or_else(|| d.ifname.clone())),
            );
            let ips: Vec<String> = r
                .ips
                .iter()
                .map(|ip| ip.address.addr().to_string())
                .collect();
            if !ips.is_empty() {
                m.insert("ips".into(), json!(ips));
            }
            if let Some(i) = iface.filter(|i| !i.mac.is_empty()) {
                m.insert("mac".into(), json!(i.mac));
            }
            if let Some(mtu) = iface.and_then(|i| i.mtu) {
                m.insert("mtu".into(), json!(mtu));
            }
            if d.cluster {
                m.insert("default".into(), json!(true));
            }
            m.insert(
                "dns".into(),
                serde_json::to_value(&r.dns).unwrap_or_else(|_| json!({})),
            );
            let gws: Vec<String> = r
                .routes
                .iter()
                .filter(|rt| rt.dst.prefix_len() == 0)
                .filter_map(|rt| rt.gw.map(|g| g.to_string()))
                .collect();
            if (d.cluster || !d.default_route.is_empty()) && !gws.is_empty() {
                m.insert("gateway".into(), json!(gws));
            }
            if let Some(dev) = r.interfaces.iter().find_map(|i| i.pci_id.clone()) {
                m.insert(
                    "device-info".into(),
                    json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": dev}}),
                );
            }
            Value::Object(m)
        })
        .collect();
    Value::Array(entries)
}
