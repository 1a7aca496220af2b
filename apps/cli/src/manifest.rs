//! Reading what `apply -f`/`delete -f` are given: files, directories (their `.yaml`, `.yml`
//! and `.json` files, sorted) or `-` for stdin; every document of every file is parsed before
//! any is used, so a broken document 3 means nothing is sent.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_saphyr::MessageFormatter;

/// One object from a manifest, with where it came from for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// The file as given (or `STDIN`), as kubectl names it in `error when creating "…"`.
    pub origin: String,
    /// 1-based index of the document in its file.
    pub index: usize,
    pub value: Value,
}

impl Doc {
    pub fn api_version(&self) -> &str {
        self.value["apiVersion"].as_str().unwrap_or_default()
    }
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
    pub fn namespace(&self) -> Option<&str> {
        self.value["metadata"]["namespace"]
            .as_str()
            .filter(|s| !s.is_empty())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the path \"{}\" does not exist", .0.display())]
    Missing(PathBuf),
    #[error("error reading {origin}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// The parser's own words, with the position it reports (1-based line and column).
    #[error("error parsing {origin}: {}{message}", position(*line, *column))]
    Parse {
        origin: String,
        line: Option<u64>,
        column: Option<u64>,
        message: String,
    },
    #[error("error validating \"{origin}\": document {index}: {}", .missing.join(", "))]
    Invalid {
        origin: String,
        index: usize,
        missing: Vec<&'static str>,
    },
    #[error("no objects passed to {0}")]
    Empty(&'static str),
}

fn position(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}

/// Reads every source (`-` is stdin, at most once) and parses all their documents.
pub fn load(sources: &[PathBuf]) -> Result<Vec<Doc>, Error> {
    let mut docs = Vec::new();
    for src in sources {
        if src.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| Error::Read {
                    origin: "STDIN".into(),
                    source,
                })?;
            docs.extend(parse("STDIN", &text)?);
            continue;
        }
        for file in files(src)? {
            let origin = file.display().to_string();
            let text = std::fs::read_to_string(&file).map_err(|source| Error::Read {
                origin: origin.clone(),
                source,
            })?;
            docs.extend(parse(&origin, &text)?);
        }
    }
    Ok(docs)
}

/// A file as itself; a directory as its manifests, sorted by name (not recursive, like
/// kubectl without `-R`).
fn files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let meta = std::fs::metadata(path).map_err(|_| Error::Missing(path.to_path_buf()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let read_err = |source| Error::Read {
        origin: path.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_err)? {
        let p = entry.map_err(read_err)?.path();
        let manifest = matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        );
        if manifest && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Parses a stream of YAML documents, or of JSON objects when the text starts with `{`;
/// `List`s are unpacked into their items; every object must have `apiVersion` and `kind`.
pub fn parse(origin: &str, text: &str) -> Result<Vec<Doc>, Error> {
    let values: Vec<Value> = if text.trim_start().starts_with('{') {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Parse {
                origin: origin.to_string(),
                line: Some(e.line() as u64),
                column: Some(e.column() as u64),
                message: json_message(&e),
            })?
    } else {
        serde_saphyr::from_multiple::<Value>(text).map_err(|e| {
            let loc = e.location();
            Error::Parse {
                origin: origin.to_string(),
                line: loc.map(|l| l.line()),
                column: loc.map(|l| l.column()),
                message: serde_saphyr::DefaultMessageFormatter
                    .format_message(e.without_snippet())
                    .into_owned(),
            }
        })?
    };
    let mut docs = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let index = i + 1;
        if value.is_null() {
            continue;
        }
        check(origin, index, &value)?;
        if value["kind"] == "List" {
            // A List's items are objects of their own; the document index stays the List's.
            let items = match value.get("items") {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            };
            for item in items {
                check(origin, index, &item)?;
                docs.push(Doc {
                    origin: origin.to_string(),
                    index,
                    value: item,
                });
            }
            continue;
        }
        docs.push(Doc {
            origin: origin.to_string(),
            index,
            value,
        });
    }
    Ok(docs)
}

/// An object without `apiVersion` or `kind` cannot be sent anywhere: refused here.
fn check(origin: &str, index: usize, value: &Value) -> Result<(), Error> {
    let mut missing = Vec::new();
    if value["apiVersion"].as_str().is_none_or(str::is_empty) {
        missing.push("apiVersion not set");
    }
    if value["kind"].as_str().is_none_or(str::is_empty) {
        missing.push("kind not set");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid {
            origin: origin.to_string(),
            index,
            missing,
        })
    }
}

/// serde_json's message without its own ` at line L column C` suffix (we say it first).
fn json_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/seed")
            .join(name)
    }

    #[test]
    fn the_seeds_unclosed_quote_is_line_6_column_11() {
        let path = seed("multus-bridge.yaml");
        let err = load(std::slice::from_ref(&path)).expect_err("unclosed quote");
        match &err {
            Error::Parse { line, column, .. } => assert_eq!((*line, *column), (Some(6), Some(11))),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "error parsing {}: line 6, column 11: unclosed quote",
                path.display()
            )
        );
    }

    #[test]
    fn the_seed_with_the_quote_closed_parses() {
        let text = std::fs::read_to_string(seed("multus-bridge.yaml")).expect("seed");
        let docs = parse("nad.yaml", &format!("{}'\n", text.trim_end())).expect("closed");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].kind(), "NetworkAttachmentDefinition");
        assert_eq!(docs[0].name(), "multus-br");
        let config = docs[0].value["spec"]["config"].as_str().expect("config");
        let cni: Value = serde_json::from_str(config).expect("the config is JSON");
        assert_eq!(cni["type"], "bridge");
    }

    #[test]
    fn the_seed_vm_parses_and_fits_our_types() {
        let docs = load(&[seed("vm-2.yaml")]).expect("vm-2");
        assert_eq!(docs.len(), 1);
        assert_eq!(
            (docs[0].kind(), docs[0].name()),
            ("VirtualMachine", "testvm-2")
        );
    }

    #[test]
    fn multi_document_positions_count_from_the_top_of_the_file() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: [b\n";
        let err = parse("x.yaml", text).expect_err("bad doc 3");
        assert!(
            err.to_string()
                .starts_with("error parsing x.yaml: line 8, column "),
            "{err}"
        );
        let ok = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\n";
        let docs = parse("x.yaml", ok).expect("ok");
        assert_eq!(
            docs.iter().map(|d| d.name()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn json_streams_and_lists() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}]}
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"b"}}"#;
        let docs = parse("x.json", text).expect("json");
        assert_eq!(
            docs.iter().map(|d| d.name()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let err = parse("x.json", "{\"a\":\n  [1,}").expect_err("bad json");
        assert_eq!(
            err.to_string(),
            "error parsing x.json: line 2, column 6: expected value"
        );
    }

    #[test]
    fn objects_without_api_version_or_kind_are_refused_with_their_index() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\nmetadata: {name: b}\n";
        let err = parse("x.yaml", text).expect_err("no kind");
        assert_eq!(
            err.to_string(),
            "error validating \"x.yaml\": document 2: apiVersion not set, kind not set"
        );
    }

    #[test]
    fn directories_give_their_manifests_sorted() {
        let tmp = oxivirt_testkit::cleanup::TempDir::new("cli-manifest").expect("tmp");
        let pod = |n: &str| format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {n}\n");
        std::fs::write(tmp.path().join("b.yml"), pod("b")).expect("b");
        std::fs::write(tmp.path().join("a.yaml"), pod("a")).expect("a");
        std::fs::write(
            tmp.path().join("c.json"),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"c"}}"#,
        )
        .expect("c");
        std::fs::write(tmp.path().join("README.md"), "not a manifest").expect("md");
        let docs = load(&[tmp.path().to_path_buf()]).expect("dir");
        assert_eq!(
            docs.iter().map(|d| d.name()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let missing = tmp.path().join("nope.yaml");
        assert_eq!(
            load(std::slice::from_ref(&missing))
                .expect_err("missing")
                .to_string(),
            format!("the path \"{}\" does not exist", missing.display())
        );
    }
}
