//! The verbs: each prints what kubectl prints and returns the first error it met (after
//! doing the rest, as kubectl goes on past a missing object).

use std::io::Write;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use crate::api::{Api, Error as ApiError, ListParams};
use crate::cli::{ApplyArgs, DeleteArgs, DescribeArgs, GetArgs, Output};
use crate::kinds::{self, Kind};
use crate::manifest::{self, Doc};
use crate::table::{Printer, Table, ACCEPT_TABLE};
use crate::{describe, merge};

/// Errors of the verbs; `Display` is the whole line kubectl would print.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("error: {0}")]
    Manifest(#[from] manifest::Error),
    #[error("error: the server doesn't have a resource type \"{0}\"")]
    UnknownType(String),
    #[error("error: resource mapping not found for name: \"{name}\" namespace: \"{namespace}\" from \"{origin}\": no matches for kind \"{kind}\" in version \"{api_version}\"")]
    UnknownKind {
        name: String,
        namespace: String,
        origin: String,
        kind: String,
        api_version: String,
    },
    #[error("error: {0}")]
    Usage(String),
    #[error("error: timed out waiting for the condition on {0}")]
    Timeout(String),
    #[error("error: writing the output")]
    Io(#[from] std::io::Error),
}

pub struct Ctx<'a> {
    pub api: &'a Api,
    /// `-n`, else the kubeconfig context's namespace.
    pub namespace: String,
}

/// `TYPE NAME…` or `TYPE/NAME …` into the kind and names: the static table first (no round
/// trip), discovery for anything else.
async fn target(ctx: &Ctx<'_>, kind: &str, names: &[String]) -> Result<(Kind, Vec<String>), Error> {
    let mut names = names.to_vec();
    let kind = match kind.split_once('/') {
        Some((k, n)) => {
            names.insert(0, n.to_string());
            k
        }
        None => kind,
    };
    if let Some(k) = kinds::resolve(kind) {
        return Ok((*k, names));
    }
    let found = ctx.api.discover().await?;
    let k = kinds::resolve_in(&found, kind).ok_or_else(|| Error::UnknownType(kind.to_string()))?;
    Ok((*k, names))
}

fn namespace_of<'a>(ctx: &'a Ctx<'_>, doc: &'a Doc) -> &'a str {
    doc.namespace().unwrap_or(&ctx.namespace)
}

/// The kind of a manifest's object: the static table, else the discovery of its API version
/// (asked once per version).
async fn kind_of(
    ctx: &Ctx<'_>,
    discovered: &mut std::collections::HashMap<String, Vec<Kind>>,
    doc: &Doc,
) -> Result<Kind, Error> {
    if let Some(k) = kinds::for_object(doc.api_version(), doc.kind()) {
        return Ok(*k);
    }
    let av = doc.api_version().to_string();
    if !discovered.contains_key(&av) {
        let ks = ctx.api.discover_version(&av).await?;
        discovered.insert(av.clone(), ks);
    }
    let found = discovered
        .get(&av)
        .and_then(|ks| kinds::for_object_in(ks, doc.api_version(), doc.kind()));
    found.copied().ok_or_else(|| Error::UnknownKind {
        name: doc.name().to_string(),
        namespace: namespace_of(ctx, doc).to_string(),
        origin: doc.origin.clone(),
        kind: doc.kind().to_string(),
        api_version: doc.api_version().to_string(),
    })
}

/// Keeps the first error, reports the others on stderr as they come.
fn note(first: &mut Option<Error>, e: Error) {
    if first.is_none() {
        *first = Some(e);
    } else {
        eprintln!("{e}");
    }
}

fn done(first: Option<Error>) -> Result<(), Error> {
    first.map_or(Ok(()), Err)
}

/// Reads what `apply -f` names: before connecting, so a broken file is reported as such
/// whatever the state of the server, and nothing is sent.
pub fn load_for_apply(args: &ApplyArgs) -> Result<Vec<Doc>, Error> {
    Ok(manifest::load(&args.files)?)
}

pub async fn apply(ctx: &Ctx<'_>, docs: Vec<Doc>) -> Result<(), Error> {
    // Every kind known before anything is sent.
    if docs.is_empty() {
        return Err(manifest::Error::Empty("apply").into());
    }
    let mut discovered = std::collections::HashMap::new();
    let mut kinds = Vec::new();
    for d in &docs {
        kinds.push(kind_of(ctx, &mut discovered, d).await?);
    }
    let mut out = std::io::stdout().lock();
    let mut first = None;
    for (doc, kind) in docs.iter().zip(kinds) {
        match apply_one(ctx, doc, &kind).await {
            Ok(what) => writeln!(out, "{}/{} {what}", kind.singular_resource(), doc.name())?,
            Err(e) => note(&mut first, e),
        }
    }
    done(first)
}

async fn apply_one(ctx: &Ctx<'_>, doc: &Doc, kind: &Kind) -> Result<&'static str, Error> {
    let ns = if kind.namespaced {
        Some(namespace_of(ctx, doc))
    } else {
        None
    };
    let modified = merge::with_last_applied(doc.value.clone(), ns);
    let ns = ns.unwrap_or_default();
    let live = match ctx.api.get(kind, ns, doc.name(), "application/json").await {
        Ok(live) => live,
        Err(e) if e.is_not_found() => {
            ctx.api
                .create(kind, ns, &modified)
                .await
                .map_err(|e| e.when(&format!("error when creating \"{}\"", doc.origin)))?;
            return Ok("created");
        }
        Err(e) => {
            return Err(e
                .when(&format!(
                    "error when retrieving current configuration of \"{}\"",
                    doc.origin
                ))
                .into())
        }
    };
    let original = merge::last_applied(&live);
    match merge::three_way(original.as_ref(), &modified, &live) {
        None => Ok("unchanged"),
        Some(patch) => {
            ctx.api
                .merge_patch(kind, ns, doc.name(), &patch)
                .await
                .map_err(|e| e.when(&format!("error when patching \"{}\"", doc.origin)))?;
            Ok("configured")
        }
    }
}

fn write_json(out: &mut impl Write, v: &Value) -> Result<(), Error> {
    // kubectl indents JSON by four spaces.
    let mut ser = serde_json::Serializer::with_formatter(
        &mut *out,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    serde::Serialize::serialize(v, &mut ser).map_err(|e| Error::Io(e.into()))?;
    writeln!(out)?;
    Ok(())
}

fn write_yaml(out: &mut impl Write, v: &Value) -> Result<(), Error> {
    let text =
        serde_saphyr::to_string(v).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(())
}

/// Items of a list answer carry no `apiVersion`/`kind` for built-in kinds: put them back.
fn typed(mut item: Value, kind: &Kind) -> Value {
    if let Some(o) = item.as_object_mut() {
        o.entry("apiVersion")
            .or_insert_with(|| Value::String(kind.api_version()));
        o.entry("kind")
            .or_insert_with(|| Value::String(kind.kind.to_string()));
    }
    item
}

fn no_resources(ns: Option<&str>) {
    match ns {
        Some(ns) => eprintln!("No resources found in {ns} namespace."),
        None => eprintln!("No resources found"),
    }
}

pub async fn get(ctx: &Ctx<'_>, args: &GetArgs) -> Result<(), Error> {
    let (kind, names) = target(ctx, &args.kind, &args.names).await?;
    let kind = &kind;
    if args.all_namespaces && !names.is_empty() {
        return Err(Error::Usage(
            "a resource cannot be retrieved by name across all namespaces".into(),
        ));
    }
    let ns: Option<&str> = if args.all_namespaces || !kind.namespaced {
        None
    } else {
        Some(&ctx.namespace)
    };
    let params = ListParams {
        label_selector: args.selector.clone(),
        field_selector: args.field_selector.clone(),
        resource_version: None,
    };
    let tabular = matches!(args.output, None | Some(Output::Wide));
    let accept = if tabular {
        ACCEPT_TABLE
    } else {
        "application/json"
    };
    let mut first = None;
    // One answer per name, or the list.
    let mut answers = Vec::new();
    if names.is_empty() {
        answers.push(ctx.api.list(kind, ns, &params, accept).await?);
    } else {
        for n in &names {
            match ctx
                .api
                .get(kind, ns.unwrap_or(&ctx.namespace), n, accept)
                .await
            {
                Ok(v) => answers.push(v),
                Err(e) => note(&mut first, e.into()),
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let all_ns = args.all_namespaces && kind.namespaced;
    let mut printer = Printer::new(args.output == Some(Output::Wide), all_ns);
    let mut rv = None;
    let mut header_done = false;
    if tabular {
        let mut table = Table::default();
        for a in &answers {
            rv = a["metadata"]["resourceVersion"].as_str().map(String::from);
            let t = Table::from_response(a)
                .unwrap_or_else(|| Table::fallback(&objects(a), Timestamp::now()));
            if table.columns.is_empty() {
                table.columns = t.columns;
            }
            table.rows.extend(t.rows);
        }
        if table.rows.is_empty() && names.is_empty() && !args.watch {
            no_resources(ns);
        } else if !table.rows.is_empty() {
            out.write_all(printer.render(&table, true).as_bytes())?;
            header_done = true;
        }
    } else {
        let mut items: Vec<Value> = Vec::new();
        for a in answers {
            items.extend(objects(&a).into_iter().map(|o| typed(o, kind)));
        }
        let single = names.len() == 1 && items.len() == 1;
        if items.is_empty() && names.is_empty() && args.output != Some(Output::Name) && !args.watch
        {
            no_resources(ns);
        }
        match args.output {
            Some(Output::Name) => {
                for i in &items {
                    writeln!(
                        out,
                        "{}/{}",
                        kind.singular_resource(),
                        i["metadata"]["name"].as_str().unwrap_or_default()
                    )?;
                }
                if items.is_empty() && names.is_empty() {
                    no_resources(ns);
                }
            }
            Some(o) if !items.is_empty() || names.is_empty() => {
                let v = match items.pop() {
                    Some(one) if single => one,
                    last => {
                        items.extend(last);
                        json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
                    }
                };
                if o == Output::Json {
                    write_json(&mut out, &v)?;
                } else {
                    write_yaml(&mut out, &v)?;
                }
            }
            _ => {}
        }
    }
    out.flush()?;
    drop(out);
    if let Some(e) = first {
        return Err(e);
    }
    if args.watch {
        let printed = Printed {
            printer,
            header_done,
        };
        watch(ctx, args, kind, ns, &names, printed, rv, accept).await?;
    }
    Ok(())
}

/// The objects of an answer: a list's items, or the object itself.
fn objects(v: &Value) -> Vec<Value> {
    match v.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ if v.is_object() && v["kind"] != "Table" => vec![v.clone()],
        _ => Vec::new(),
    }
}

/// What `get` printed before watching: the widths to keep, whether the header is out.
struct Printed {
    printer: Printer,
    header_done: bool,
}

#[allow(clippy::too_many_arguments)]
async fn watch(
    ctx: &Ctx<'_>,
    args: &GetArgs,
    kind: &Kind,
    ns: Option<&str>,
    names: &[String],
    printed: Printed,
    mut rv: Option<String>,
    accept: &str,
) -> Result<(), Error> {
    let mut params = ListParams {
        label_selector: args.selector.clone(),
        field_selector: args.field_selector.clone(),
        resource_version: None,
    };
    if let [name] = names {
        params.field_selector = Some(format!("metadata.name={name}"));
    }
    let Printed {
        mut printer,
        header_done,
    } = printed;
    let mut header = !header_done;
    loop {
        params.resource_version = rv.clone();
        let stream = ctx.api.watch(kind, ns, &params, accept).await?;
        futures_util::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let ev = ev?;
            if ev["type"] == "ERROR" {
                // An expired resourceVersion: start again from now, as kubectl's watcher does.
                rv = None;
                break;
            }
            if ev["type"] == "BOOKMARK" {
                continue;
            }
            let obj = &ev["object"];
            let mut out = std::io::stdout().lock();
            match args.output {
                None | Some(Output::Wide) => {
                    let t = Table::from_response(obj)
                        .unwrap_or_else(|| Table::fallback(&objects(obj), Timestamp::now()));
                    for row in t.rows.iter() {
                        if let Some(v) = row_rv(obj) {
                            rv = Some(v);
                        }
                        let one = Table {
                            columns: t.columns.clone(),
                            rows: vec![row.clone()],
                        };
                        out.write_all(printer.render(&one, header).as_bytes())?;
                        header = false;
                    }
                }
                Some(Output::Name) => {
                    rv = obj["metadata"]["resourceVersion"]
                        .as_str()
                        .map(String::from);
                    writeln!(
                        out,
                        "{}/{}",
                        kind.singular_resource(),
                        obj["metadata"]["name"].as_str().unwrap_or_default()
                    )?;
                }
                Some(o) => {
                    rv = obj["metadata"]["resourceVersion"]
                        .as_str()
                        .map(String::from);
                    let v = typed(obj.clone(), kind);
                    if o == Output::Json {
                        write_json(&mut out, &v)?;
                    } else {
                        writeln!(out, "---")?;
                        write_yaml(&mut out, &v)?;
                    }
                }
            }
            out.flush()?;
        }
    }
}

/// The resourceVersion of a Table event's object, to resume a watch from.
fn row_rv(table: &Value) -> Option<String> {
    table["rows"][0]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .or(table["metadata"]["resourceVersion"].as_str())
        .map(String::from)
}

pub async fn describe(ctx: &Ctx<'_>, args: &DescribeArgs) -> Result<(), Error> {
    let (kind, mut names) = target(ctx, &args.kind, &args.names).await?;
    let kind = &kind;
    let ns = ctx.namespace.as_str();
    if names.is_empty() {
        let list = ctx
            .api
            .list(kind, Some(ns), &ListParams::default(), "application/json")
            .await?;
        names = objects(&list)
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
            .collect();
    }
    let events_kind =
        kinds::resolve("events").ok_or_else(|| Error::UnknownType("events".into()))?;
    let mut first = None;
    let mut out = std::io::stdout().lock();
    for (i, name) in names.iter().enumerate() {
        let obj = match ctx.api.get(kind, ns, name, "application/json").await {
            Ok(o) => o,
            Err(e) => {
                note(&mut first, e.into());
                continue;
            }
        };
        let obj_ns = obj["metadata"]["namespace"].as_str().unwrap_or(ns);
        let mut selector = format!("involvedObject.name={name},involvedObject.namespace={obj_ns}");
        if let Some(uid) = obj["metadata"]["uid"].as_str() {
            selector.push_str(&format!(",involvedObject.uid={uid}"));
        }
        let params = ListParams {
            field_selector: Some(selector),
            ..Default::default()
        };
        // A server that keeps no events still gets its object described.
        let events = match ctx
            .api
            .list(events_kind, Some(obj_ns), &params, "application/json")
            .await
        {
            Ok(l) => objects(&l),
            Err(_) => Vec::new(),
        };
        if i > 0 {
            writeln!(out)?;
            writeln!(out)?;
        }
        out.write_all(describe::describe(&typed(obj, kind), &events, Timestamp::now()).as_bytes())?;
    }
    done(first)
}

/// Reads what `delete -f` names, before connecting.
pub fn load_for_delete(args: &DeleteArgs) -> Result<Vec<Doc>, Error> {
    if args.files.is_empty() {
        return Ok(Vec::new());
    }
    if args.kind.is_some() {
        return Err(Error::Usage(
            "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form or with -f".into(),
        ));
    }
    Ok(manifest::load(&args.files)?)
}

pub async fn delete(ctx: &Ctx<'_>, args: &DeleteArgs, docs: Vec<Doc>) -> Result<(), Error> {
    let mut targets: Vec<(Kind, String, String, Option<String>)> = Vec::new();
    let mut discovered = std::collections::HashMap::new();
    if !args.files.is_empty() {
        for d in &docs {
            let k = kind_of(ctx, &mut discovered, d).await?;
            targets.push((
                k,
                namespace_of(ctx, d).to_string(),
                d.name().to_string(),
                Some(d.origin.clone()),
            ));
        }
    } else if let Some(kind) = &args.kind {
        let (k, names) = target(ctx, kind, &args.names).await?;
        if names.is_empty() {
            return Err(Error::Usage(
                "resource(s) were provided, but no name was specified".into(),
            ));
        }
        for n in names {
            targets.push((k, ctx.namespace.clone(), n, None));
        }
    }
    let grace = if args.now {
        Some(1)
    } else if args.grace_period >= 0 {
        Some(args.grace_period)
    } else {
        None
    };
    let mut first = None;
    let mut deleted = Vec::new();
    for (kind, ns, name, origin) in &targets {
        match ctx.api.delete(kind, ns, name, grace).await {
            Ok(_) => {
                println!("{} \"{name}\" deleted", kind.singular_resource());
                deleted.push((kind, ns.as_str(), name.as_str()));
            }
            Err(e) if e.is_not_found() && args.ignore_not_found => {}
            Err(e) => {
                let e = match origin {
                    Some(o) => e.when(&format!("error when deleting \"{o}\"")),
                    None => e,
                };
                note(&mut first, e.into());
            }
        }
    }
    if args.wait {
        let deadline = (!args.timeout.is_zero()).then(|| Instant::now() + args.timeout);
        for (kind, ns, name) in deleted {
            wait_gone(ctx, kind, ns, name, deadline).await?;
        }
    }
    done(first)
}

/// Polls until the object is gone (its finalizers done), as `kubectl delete --wait` does.
async fn wait_gone(
    ctx: &Ctx<'_>,
    kind: &Kind,
    ns: &str,
    name: &str,
    deadline: Option<Instant>,
) -> Result<(), Error> {
    let mut pause = Duration::from_millis(20);
    loop {
        match ctx.api.get(kind, ns, name, "application/json").await {
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::Timeout(format!(
                "{}/{name}",
                kind.singular_resource()
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}
