//! `kubectl get` output: the `meta.k8s.io/v1` Table the API server renders for a list or
//! an object, with each kind's columns as its owner declares them (KubeVirt's CRD printer
//! columns, Multus's, Kubernetes' own for pods, namespaces and events).

use serde_json::{json, Value};

use crate::resources::Resource;
use oxivirt_api::time::{human_duration, parse_rfc3339};

/// One column: its header, type, and where the value comes from.
struct Column {
    name: &'static str,
    kind: &'static str,
    priority: u8,
    description: &'static str,
    value: fn(&Value, i64) -> Value,
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    priority: 0,
    description: "Name must be unique within a namespace.",
    value: |o, _| o["metadata"]["name"].clone(),
};

const AGE: Column = Column {
    name: "Age",
    kind: "date",
    priority: 0,
    description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
    value: |o, now| age(&o["metadata"]["creationTimestamp"], now),
};

fn age(ts: &Value, now: i64) -> Value {
    match ts.as_str().and_then(parse_rfc3339) {
        Some(t) => Value::String(human_duration(now - t)),
        None => Value::Null,
    }
}

/// The `status` of the condition of type `kind`, as KubeVirt's printer columns select it.
fn condition(o: &Value, kind: &str) -> Value {
    o["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .map(|c| c["status"].clone())
        .unwrap_or(Value::Null)
}

fn columns(r: &Resource) -> Vec<Column> {
    match r.kind {
        "VirtualMachine" => vec![
            NAME,
            AGE,
            Column {
                name: "Status",
                kind: "string",
                priority: 0,
                description: "Human Readable Status",
                value: |o, _| o["status"]["printableStatus"].clone(),
            },
            Column {
                name: "Ready",
                kind: "string",
                priority: 0,
                description: "Ready",
                value: |o, _| condition(o, "Ready"),
            },
        ],
        "VirtualMachineInstance" => vec![
            NAME,
            AGE,
            Column {
                name: "Phase",
                kind: "string",
                priority: 0,
                description: "",
                value: |o, _| o["status"]["phase"].clone(),
            },
            Column {
                name: "IP",
                kind: "string",
                priority: 0,
                description: "",
                value: |o, _| o["status"]["interfaces"][0]["ipAddress"].clone(),
            },
            Column {
                name: "NodeName",
                kind: "string",
                priority: 0,
                description: "",
                value: |o, _| o["status"]["nodeName"].clone(),
            },
            Column {
                name: "Ready",
                kind: "string",
                priority: 0,
                description: "",
                value: |o, _| condition(o, "Ready"),
            },
            Column {
                name: "Live-Migratable",
                kind: "string",
                priority: 1,
                description: "",
                value: |o, _| condition(o, "LiveMigratable"),
            },
            Column {
                name: "Paused",
                kind: "string",
                priority: 1,
                description: "",
                value: |o, _| condition(o, "Paused"),
            },
        ],
        "Pod" => vec![
            NAME,
            Column {
                name: "Ready",
                kind: "string",
                priority: 0,
                description: "The aggregate readiness state of this pod for accepting traffic.",
                value: |o, _| pod_ready(o),
            },
            Column {
                name: "Status",
                kind: "string",
                priority: 0,
                description: "The aggregate status of the containers in this pod.",
                value: |o, _| pod_status(o),
            },
            Column {
                name: "Restarts",
                kind: "string",
                priority: 0,
                description: "The number of times the containers in this pod have been restarted.",
                value: |o, _| json!(pod_restarts(o).to_string()),
            },
            AGE,
            Column {
                name: "IP",
                kind: "string",
                priority: 1,
                description: "The IP address assigned to the pod",
                value: |o, _| none_if_null(o["status"]["podIP"].clone()),
            },
            Column {
                name: "Node",
                kind: "string",
                priority: 1,
                description: "The name of the node this pod is assigned to",
                value: |o, _| none_if_null(o["spec"]["nodeName"].clone()),
            },
            Column {
                name: "Nominated Node",
                kind: "string",
                priority: 1,
                description: "The nominated node for this pod",
                value: |o, _| none_if_null(o["status"]["nominatedNodeName"].clone()),
            },
            Column {
                name: "Readiness Gates",
                kind: "string",
                priority: 1,
                description: "The readiness gates of this pod",
                value: |_, _| json!("<none>"),
            },
        ],
        "Namespace" => vec![
            NAME,
            Column {
                name: "Status",
                kind: "string",
                priority: 0,
                description: "The status of the namespace",
                value: |o, _| o["status"]["phase"].clone(),
            },
            AGE,
        ],
        "Event" => vec![
            Column {
                name: "Last Seen",
                kind: "string",
                priority: 0,
                description: "Time when last this event was observed.",
                value: |o, now| {
                    let last = &o["lastTimestamp"];
                    if last.is_null() {
                        age(&o["eventTime"], now)
                    } else {
                        age(last, now)
                    }
                },
            },
            Column {
                name: "Type",
                kind: "string",
                priority: 0,
                description: "Type of this event (Normal, Warning).",
                value: |o, _| o["type"].clone(),
            },
            Column {
                name: "Reason",
                kind: "string",
                priority: 0,
                description: "Short, machine understandable string that gives the reason for this event being generated.",
                value: |o, _| o["reason"].clone(),
            },
            Column {
                name: "Object",
                kind: "string",
                priority: 0,
                description: "The object that this event is about.",
                value: |o, _| {
                    let io = &o["involvedObject"];
                    json!(format!(
                        "{}/{}",
                        io["kind"].as_str().unwrap_or("").to_lowercase(),
                        io["name"].as_str().unwrap_or("")
                    ))
                },
            },
            Column {
                name: "Message",
                kind: "string",
                priority: 0,
                description: "A human-readable description of the status of this operation.",
                value: |o, _| o["message"].clone(),
            },
        ],
        "Lease" => vec![
            NAME,
            Column {
                name: "Holder",
                kind: "string",
                priority: 0,
                description: "holderIdentity contains the identity of the holder of a current lease.",
                value: |o, _| o["spec"]["holderIdentity"].clone(),
            },
            AGE,
        ],
        // NetworkAttachmentDefinition (Multus's CRD declares no columns) and anything else.
        _ => vec![NAME, AGE],
    }
}

fn none_if_null(v: Value) -> Value {
    if v.is_null() {
        json!("<none>")
    } else {
        v
    }
}

fn pod_ready(o: &Value) -> Value {
    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = o["status"]["containerStatuses"]
        .as_array()
        .map_or(0, |cs| cs.iter().filter(|c| c["ready"] == true).count());
    json!(format!("{ready}/{total}"))
}

fn pod_status(o: &Value) -> Value {
    if !o["metadata"]["deletionTimestamp"].is_null() {
        return json!("Terminating");
    }
    let waiting = o["status"]["containerStatuses"].as_array().and_then(|cs| {
        cs.iter()
            .find_map(|c| c["state"]["waiting"]["reason"].as_str().map(str::to_string))
    });
    match (
        waiting,
        o["status"]["reason"].as_str(),
        o["status"]["phase"].as_str(),
    ) {
        (Some(w), _, _) => json!(w),
        (None, Some(r), _) => json!(r),
        (None, None, Some(p)) => json!(p),
        (None, None, None) => json!("Pending"),
    }
}

fn pod_restarts(o: &Value) -> i64 {
    o["status"]["containerStatuses"].as_array().map_or(0, |cs| {
        cs.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
    })
}

/// The column definitions of `r`'s Table.
pub fn column_definitions(r: &Resource) -> Value {
    Value::Array(
        columns(r)
            .iter()
            .map(|c| {
                let mut d = json!({
                    "name": c.name, "type": c.kind, "format": "",
                    "description": c.description, "priority": c.priority,
                });
                if c.name == "Name" {
                    d["format"] = json!("name");
                }
                d
            })
            .collect(),
    )
}

/// One row: the cells and the object's metadata (`includeObject=Metadata`, the default),
/// the whole object (`Object`) or nothing (`None`).
pub fn row(r: &Resource, object: &Value, now: i64, include: Include) -> Value {
    let cells: Vec<Value> = columns(r).iter().map(|c| (c.value)(object, now)).collect();
    let mut row = json!({ "cells": cells });
    match include {
        Include::None => {}
        Include::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object["metadata"],
            })
        }
        Include::Object => row["object"] = object.clone(),
    }
    row
}

/// What a Table row carries besides its cells (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// The Table of `objects`; `with_columns` false leaves the definitions out (watch events
/// after the first, as the API server sends them).
pub fn table(
    r: &Resource,
    objects: &[&Value],
    resource_version: Option<String>,
    now: i64,
    include: Include,
    with_columns: bool,
) -> Value {
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "rows": objects.iter().map(|o| row(r, o, now, include)).collect::<Vec<_>>(),
    });
    if with_columns {
        t["columnDefinitions"] = column_definitions(r);
    } else {
        t["columnDefinitions"] = Value::Null;
    }
    if let Some(rv) = resource_version {
        t["metadata"]["resourceVersion"] = json!(rv);
    }
    t
}

/// Whether an `Accept` header asks for a Table (`as=Table;g=meta.k8s.io`, v1 or v1beta1).
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
    })
}
