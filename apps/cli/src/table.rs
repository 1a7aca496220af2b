//! `kubectl get`'s output: the server's `meta.k8s.io/v1` Table printed the way kubectl's
//! tab writer does (uppercase headers, cells padded to the widest plus 3, at least 6 wide),
//! and a `NAME AGE` table for servers that answer without one.

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

/// The `Accept` header kubectl sends for `get`: a Table, or plain JSON from servers without.
pub const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub priority: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cells: Vec<String>,
    /// From the row's object (the server sends its metadata), for `-A`.
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
}

impl Table {
    /// The Table in a server's answer; `None` when the answer is an object or a list.
    pub fn from_response(v: &Value) -> Option<Table> {
        if v["kind"] != "Table" {
            return None;
        }
        let columns = v["columnDefinitions"]
            .as_array()?
            .iter()
            .map(|c| Column {
                name: c["name"].as_str().unwrap_or_default().to_string(),
                priority: c["priority"].as_i64().unwrap_or(0),
            })
            .collect();
        let rows = v["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| Row {
                        cells: r["cells"]
                            .as_array()
                            .map(|cells| cells.iter().map(cell_text).collect())
                            .unwrap_or_default(),
                        namespace: r["object"]["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Table { columns, rows })
    }

    /// `NAME AGE` for plain objects: what a server without Table support gets.
    pub fn fallback(objects: &[Value], now: Timestamp) -> Table {
        let columns = vec![
            Column {
                name: "Name".into(),
                priority: 0,
            },
            Column {
                name: "Age".into(),
                priority: 0,
            },
        ];
        let rows = objects
            .iter()
            .map(|o| {
                let meta = &o["metadata"];
                Row {
                    cells: vec![
                        meta["name"].as_str().unwrap_or_default().to_string(),
                        age(meta["creationTimestamp"].as_str(), now),
                    ],
                    namespace: meta["namespace"].as_str().unwrap_or_default().to_string(),
                }
            })
            .collect();
        Table { columns, rows }
    }
}

/// How kubectl shows a cell: strings as they are, numbers and booleans as JSON writes them,
/// a missing value as nothing.
fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Prints tables and, for `-w`, rows that come later in the same columns: widths only grow,
/// like kubectl's tab writer that remembers them.
#[derive(Debug, Default)]
pub struct Printer {
    pub wide: bool,
    pub all_namespaces: bool,
    widths: Vec<usize>,
}

const PADDING: usize = 3;
const MIN_WIDTH: usize = 6;

impl Printer {
    pub fn new(wide: bool, all_namespaces: bool) -> Self {
        Printer {
            wide,
            all_namespaces,
            widths: Vec::new(),
        }
    }

    fn shown(&self, table: &Table) -> Vec<usize> {
        table
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| self.wide || c.priority == 0)
            .map(|(i, _)| i)
            .collect()
    }

    fn lines(&self, table: &Table, header: bool) -> Vec<Vec<String>> {
        let shown = self.shown(table);
        let mut lines = Vec::new();
        if header {
            let mut h: Vec<String> = Vec::new();
            if self.all_namespaces {
                h.push("NAMESPACE".into());
            }
            h.extend(shown.iter().map(|&i| table.columns[i].name.to_uppercase()));
            lines.push(h);
        }
        for row in &table.rows {
            let mut l: Vec<String> = Vec::new();
            if self.all_namespaces {
                l.push(row.namespace.clone());
            }
            l.extend(
                shown
                    .iter()
                    .map(|&i| row.cells.get(i).cloned().unwrap_or_default()),
            );
            lines.push(l);
        }
        lines
    }

    /// The text for `table`, with the header line when `header`.
    pub fn render(&mut self, table: &Table, header: bool) -> String {
        let lines = self.lines(table, header);
        for l in &lines {
            // The last cell ends the line and is not a column the writer aligns.
            for (i, cell) in l.iter().enumerate().take(l.len().saturating_sub(1)) {
                let w = (cell.chars().count() + PADDING).max(MIN_WIDTH);
                match self.widths.get_mut(i) {
                    Some(old) => *old = (*old).max(w),
                    None => self.widths.push(w),
                }
            }
        }
        let mut out = String::new();
        for l in &lines {
            for (i, cell) in l.iter().enumerate() {
                if i + 1 == l.len() {
                    out.push_str(cell);
                } else {
                    let w = self.widths.get(i).copied().unwrap_or(MIN_WIDTH);
                    out.push_str(cell);
                    out.extend(std::iter::repeat_n(
                        ' ',
                        w.saturating_sub(cell.chars().count()),
                    ));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// The age of an RFC 3339 timestamp as kubectl writes it (`<unknown>` without one).
pub fn age(ts: Option<&str>, now: Timestamp) -> String {
    match ts.and_then(|t| t.parse::<Timestamp>().ok()) {
        Some(t) => human_duration(now.as_second() - t.as_second()),
        None => "<unknown>".into(),
    }
}

pub use oxivirt_api::time::human_duration;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vm_table() -> Value {
        json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": "12"},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "priority": 0},
                {"name": "Age", "type": "date", "priority": 0},
                {"name": "Status", "type": "string", "priority": 0},
                {"name": "Ready", "type": "string", "priority": 0},
                {"name": "Node", "type": "string", "priority": 1},
            ],
            "rows": [
                {"cells": ["testvm-2", "5m", "Stopped", "False", null],
                 "object": {"kind": "PartialObjectMetadata", "metadata": {"name": "testvm-2", "namespace": "default"}}},
                {"cells": ["a-much-longer-vm-name", "2d3h", "Running", "True", "node-1"],
                 "object": {"kind": "PartialObjectMetadata", "metadata": {"name": "a-much-longer-vm-name", "namespace": "tenant-a"}}},
            ]
        })
    }

    #[test]
    fn prints_like_kubectl() {
        let t = Table::from_response(&vm_table()).expect("table");
        insta::assert_snapshot!(Printer::new(false, false).render(&t, true), @r"
        NAME                    AGE    STATUS    READY
        testvm-2                5m     Stopped   False
        a-much-longer-vm-name   2d3h   Running   True
        ");
    }

    #[test]
    fn wide_adds_priority_columns_and_all_namespaces_the_namespace() {
        let t = Table::from_response(&vm_table()).expect("table");
        insta::assert_snapshot!(Printer::new(true, true).render(&t, true), @r"
        NAMESPACE   NAME                    AGE    STATUS    READY   NODE
        default     testvm-2                5m     Stopped   False   
        tenant-a    a-much-longer-vm-name   2d3h   Running   True    node-1
        ");
    }

    #[test]
    fn watch_rows_keep_the_columns_and_widen_them() {
        let mut full = Table::from_response(&vm_table()).expect("table");
        full.rows.truncate(1);
        let mut p = Printer::new(false, false);
        let first = p.render(&full, true);
        full.rows[0].cells[2] = "WaitingForVolumeBinding".into();
        let later = p.render(&full, false);
        insta::assert_snapshot!(format!("{first}{later}"), @r"
        NAME       AGE   STATUS    READY
        testvm-2   5m    Stopped   False
        testvm-2   5m    WaitingForVolumeBinding   False
        ");
    }

    #[test]
    fn fallback_is_name_and_age() {
        let now: Timestamp = "2024-01-01T01:00:00Z".parse().expect("now");
        let objs = [
            json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}}),
            json!({"metadata": {"name": "y"}}),
        ];
        insta::assert_snapshot!(Printer::new(false, false).render(&Table::fallback(&objs, now), true), @r"
        NAME   AGE
        x      60m
        y      <unknown>
        ");
        assert!(Table::from_response(&objs[0]).is_none());
    }

    #[test]
    fn human_durations() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 120, "3h2m"),
            (47 * 3600, "47h"),
            (2 * 86400 + 3600, "2d1h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }
}
