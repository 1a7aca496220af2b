//! `kubectl describe` for any object: kubectl's generic describer (name, namespace, labels,
//! annotations, then every field sorted with "smart" labels) and the object's events.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};

use crate::merge::LAST_APPLIED;
use crate::table::age;

/// Lines of tab-separated cells aligned the way Go's tabwriter does (the last cell of a line
/// is not a column; a run of lines that share a column shares its width), with `padding`.
fn align(lines: &[Vec<String>], padding: usize) -> String {
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|l| vec![0; l.len()]).collect();
    let max_cols = lines.iter().map(Vec::len).max().unwrap_or(0);
    for col in 0..max_cols {
        let mut i = 0;
        while i < lines.len() {
            if lines[i].len() <= col + 1 {
                i += 1;
                continue;
            }
            let mut j = i;
            let mut w = 0;
            while j < lines.len() && lines[j].len() > col + 1 {
                w = w.max(lines[j][col].chars().count());
                j += 1;
            }
            for row in widths.iter_mut().take(j).skip(i) {
                row[col] = w + padding;
            }
            i = j;
        }
    }
    let mut out = String::new();
    for (line, ws) in lines.iter().zip(&widths) {
        for (c, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if c + 1 < line.len() {
                let pad = ws[c].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

fn indent(level: usize) -> String {
    "  ".repeat(level)
}

/// kubectl's label for a field: camelCase split into capitalised words, a few acronyms in
/// capitals; fields with anything but letters and `-` are shown as they are.
pub fn smart_label(field: &str) -> String {
    if field.chars().any(|c| !c.is_alphabetic() && c != '-') || field.is_empty() {
        return field.to_string();
    }
    const ACRONYMS: &[&str] = &["API", "URL", "UID", "OSB", "GUID"];
    split_camel(field)
        .into_iter()
        .map(|p| {
            let upper = p.to_uppercase();
            if ACRONYMS.contains(&upper.as_str()) {
                upper
            } else {
                let mut cs = p.chars();
                match cs.next() {
                    Some(f) => f.to_uppercase().chain(cs).collect(),
                    None => String::new(),
                }
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits at changes between lower case, upper case and other characters; an upper-case run
/// followed by lower case gives its last capital to the next word (`HTTPServer` → HTTP Server).
fn split_camel(s: &str) -> Vec<String> {
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Lower,
        Upper,
        Other,
    }
    let class = |c: char| {
        if c.is_lowercase() {
            Class::Lower
        } else if c.is_uppercase() {
            Class::Upper
        } else {
            Class::Other
        }
    };
    let mut runs: Vec<(Class, Vec<char>)> = Vec::new();
    for c in s.chars() {
        let k = class(c);
        match runs.last_mut() {
            Some((last, chars)) if *last == k => chars.push(c),
            _ => runs.push((k, vec![c])),
        }
    }
    for i in 0..runs.len().saturating_sub(1) {
        if runs[i].0 == Class::Upper && runs[i + 1].0 == Class::Lower {
            if let Some(c) = runs[i].1.pop() {
                runs[i + 1].1.insert(0, c);
            }
        }
    }
    runs.into_iter()
        .filter(|(_, cs)| !cs.is_empty())
        .map(|(_, cs)| cs.into_iter().collect())
        .collect()
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

const SKIP: &[&str] = &[
    ".metadata.managedFields",
    ".metadata.name",
    ".metadata.namespace",
    ".metadata.labels",
    ".metadata.annotations",
];

fn content(out: &mut Vec<Vec<String>>, level: usize, map: &Map<String, Value>, prefix: &str) {
    // serde_json's maps iterate sorted, as kubectl sorts the fields.
    for (field, value) in map {
        let path = format!("{prefix}.{field}");
        if SKIP.contains(&path.as_str()) {
            continue;
        }
        let label = format!("{}{}:", indent(level), smart_label(field));
        match value {
            Value::Object(m) => {
                out.push(vec![label]);
                content(out, level + 1, m, &path);
            }
            Value::Array(items) => {
                out.push(vec![label]);
                for item in items {
                    match item {
                        Value::Object(m) => content(out, level + 1, m, &path),
                        other => out.push(vec![format!("{}{}", indent(level + 1), scalar(other))]),
                    }
                }
            }
            other => out.push(vec![label, scalar(other)]),
        }
    }
}

/// Longer annotation values are cut, as kubectl does, to keep the page readable.
const MAX_ANNOTATION_LEN: usize = 140;

fn multiline(out: &mut Vec<Vec<String>>, title: &str, entries: Vec<String>) {
    let head = format!("{title}:");
    if entries.is_empty() {
        out.push(vec![head, "<none>".into()]);
        return;
    }
    for (i, e) in entries.into_iter().enumerate() {
        let key = if i == 0 { head.clone() } else { String::new() };
        out.push(vec![key, e]);
    }
}

/// The description of `obj` followed by its `events` (v1 Events), at time `now`.
pub fn describe(obj: &Value, events: &[Value], now: Timestamp) -> String {
    let meta = &obj["metadata"];
    let mut lines: Vec<Vec<String>> = vec![
        vec!["Name:".into(), scalar_or_empty(&meta["name"])],
        vec!["Namespace:".into(), scalar_or_empty(&meta["namespace"])],
    ];
    let labels = meta["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", scalar(v)))
                .collect()
        })
        .unwrap_or_default();
    multiline(&mut lines, "Labels", labels);
    let annotations = meta["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != LAST_APPLIED)
                .map(|(k, v)| {
                    let v = scalar(v);
                    if v.chars().count() > MAX_ANNOTATION_LEN {
                        let cut: String = v.chars().take(MAX_ANNOTATION_LEN).collect();
                        format!("{k}: {cut}...")
                    } else {
                        format!("{k}: {v}")
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    multiline(&mut lines, "Annotations", annotations);
    if let Some(map) = obj.as_object() {
        content(&mut lines, 0, map, "");
    }
    if events.is_empty() {
        lines.push(vec!["Events:".into(), "<none>".into()]);
        return align(&lines, 2);
    }
    let mut out = align(&lines, 2);
    let mut sorted: Vec<&Value> = events.iter().collect();
    sorted.sort_by_key(|e| e["lastTimestamp"].as_str().unwrap_or_default().to_string());
    let mut ev: Vec<Vec<String>> = vec![
        vec!["Events:".into()],
        ["  Type", "Reason", "Age", "From", "Message"]
            .map(String::from)
            .to_vec(),
        ["  ----", "------", "----", "----", "-------"]
            .map(String::from)
            .to_vec(),
    ];
    for e in sorted {
        ev.push(vec![
            format!("  {}", scalar_or_empty(&e["type"])),
            scalar_or_empty(&e["reason"]),
            event_age(e, now),
            e["source"]["component"]
                .as_str()
                .filter(|s| !s.is_empty())
                .or(e["reportingComponent"].as_str())
                .or(e["reportingController"].as_str())
                .unwrap_or_default()
                .to_string(),
            scalar_or_empty(&e["message"]).trim().to_string(),
        ]);
    }
    out.push_str(&align(&ev, 2));
    out
}

fn scalar_or_empty(v: &Value) -> String {
    if v.is_null() {
        String::new()
    } else {
        scalar(v)
    }
}

/// `5m`, or `2m (x3 over 10m)` for an event seen more than once.
fn event_age(e: &Value, now: Timestamp) -> String {
    let first = e["eventTime"]
        .as_str()
        .or(e["firstTimestamp"].as_str())
        .or(e["metadata"]["creationTimestamp"].as_str());
    let first_age = age(first, now);
    if let Some(count) = e["series"]["count"].as_i64() {
        let last = age(e["series"]["lastObservedTime"].as_str(), now);
        return format!("{last} (x{count} over {first_age})");
    }
    match e["count"].as_i64() {
        Some(count) if count > 1 => {
            let last = age(e["lastTimestamp"].as_str(), now);
            format!("{last} (x{count} over {first_age})")
        }
        _ => first_age,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn smart_labels() {
        for (f, want) in [
            ("apiVersion", "API Version"),
            ("creationTimestamp", "Creation Timestamp"),
            ("uid", "UID"),
            ("running", "Running"),
            ("userDataBase64", "userDataBase64"),
            ("kubevirt.io/size", "kubevirt.io/size"),
            ("HTTPServer", "HTTP Server"),
            ("networkName", "Network Name"),
        ] {
            assert_eq!(smart_label(f), want, "{f}");
        }
    }

    #[test]
    fn describes_a_vm_with_events() {
        let now: Timestamp = "2024-01-01T01:00:00Z".parse().expect("now");
        let vm = json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {
                "name": "testvm-2", "namespace": "default", "uid": "1234",
                "creationTimestamp": "2024-01-01T00:00:00Z", "generation": 1,
                "annotations": {LAST_APPLIED: "{}\n", "kubevirt.io/latest-observed-api-version": "v1"},
                "managedFields": [{"manager": "x"}],
            },
            "spec": {
                "running": false,
                "template": {"spec": {
                    "domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}]}},
                    "volumes": [{"name": "cloudinitdisk", "cloudInitNoCloud": {"userDataBase64": "SGkuXG4="}}],
                }},
            },
            "status": {"printableStatus": "Stopped", "volumeSnapshotStatuses": ["a", "b"]},
        });
        let events = [
            json!({"type": "Normal", "reason": "SuccessfulCreate", "message": "Created virtual machine pod virt-launcher-testvm-2-abcde\n",
                   "firstTimestamp": "2024-01-01T00:50:00Z", "lastTimestamp": "2024-01-01T00:58:00Z", "count": 3,
                   "source": {"component": "virtualmachine-controller"}}),
            json!({"type": "Warning", "reason": "Stopped", "message": "stopped",
                   "eventTime": "2024-01-01T00:59:00.000000Z", "reportingController": "oxivirtd"}),
        ];
        insta::assert_snapshot!(describe(&vm, &events, now));
        insta::assert_snapshot!(
            "no_events",
            describe(
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}}),
                &[],
                now
            )
        );
    }
}
