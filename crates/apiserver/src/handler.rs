//! Requests to the API: routing of Kubernetes paths to discovery, OpenAPI and the verbs
//! on resources (get, list, watch, create, update, patch, delete, deletecollection, and
//! the `status` subresource), with the API server's object semantics. Transport (TLS,
//! HTTP, authentication) is [`crate::server`]'s business; this module sees a parsed
//! request and returns a reply.

use std::collections::HashMap;
use std::time::SystemTime;

use bytes::Bytes;
use oxivirt_store::{Key, Object, Store};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::admission;
use crate::error::ApiError;
use crate::patch::{self, PatchType};
use crate::resources::{self, Resource};
use crate::selector::Selector;
use crate::table::{self, Include};
use oxivirt_api::time::{now_secs, rfc3339};

/// A request as the transport parsed it.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub accept: String,
    pub content_type: String,
    pub body: Bytes,
}

/// What goes back: a JSON body, or a watch stream.
#[derive(Debug)]
pub enum Reply {
    Json {
        status: u16,
        body: Vec<u8>,
        warnings: Vec<String>,
    },
    /// Newline-separated watch events, sent as they come.
    Stream(mpsc::Receiver<Bytes>),
    /// A body that is not JSON, with its media type.
    Other {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
}

impl Reply {
    fn ok(v: &Value) -> Self {
        Reply::json(200, v)
    }

    fn json(status: u16, v: &Value) -> Self {
        Reply::Json {
            status,
            body: serde_json::to_vec(v).unwrap_or_default(),
            warnings: Vec::new(),
        }
    }

    fn raw(status: u16, body: Vec<u8>) -> Self {
        Reply::Json {
            status,
            body,
            warnings: Vec::new(),
        }
    }

    pub fn error(e: &ApiError) -> Self {
        Reply::json(e.code_reason().0, &e.status())
    }
}

/// The API over one store.
#[derive(Clone)]
pub struct Api {
    store: Store,
    server_address: String,
    /// `<data-dir>/launchers`: where the subresources find a VMI's launcher sockets.
    launchers_root: Option<std::path::PathBuf>,
}

/// Which resource a path names, and where.
struct Target {
    resource: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// The namespace every object without one goes to, created on first start.
pub const DEFAULT_NAMESPACE: &str = "default";

const MAX_BODY: usize = admission::MAX_OBJECT_BYTES;

fn q<'a>(req: &'a Request, k: &str) -> Option<&'a str> {
    req.query.get(k).map(String::as_str)
}

fn parse_body(req: &Request) -> Result<Value, ApiError> {
    if req.body.len() > MAX_BODY {
        return Err(ApiError::TooLarge { limit: MAX_BODY });
    }
    serde_json::from_slice(&req.body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the request body is not JSON: line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
    })
}

fn meta_str<'a>(o: &'a Value, field: &str) -> Option<&'a str> {
    o["metadata"][field].as_str()
}

fn metadata_mut(o: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let m = o
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("the object is not a JSON object".into()))?;
    let meta = m
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if meta.is_null() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))
}

fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {s:?}")))
}

/// Five random lowercase letters and digits, as the API server appends to generateName
/// (without vowels that could spell words, like Kubernetes).
pub fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .take(n)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

impl Api {
    /// Opens the API over `store`, creating the `default` namespace if it is missing.
    pub async fn new(store: Store, server_address: String) -> Result<Self, ApiError> {
        let api = Api {
            store,
            server_address,
            launchers_root: None,
        };
        let key = Key::cluster(&resources::NAMESPACE.store_key(), DEFAULT_NAMESPACE);
        if api.store.get(&key)?.is_none() {
            let mut ns = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": DEFAULT_NAMESPACE}, "spec": {"finalizers": ["kubernetes"]}});
            init_meta(&mut ns)?;
            admission::admit(&resources::NAMESPACE, DEFAULT_NAMESPACE, &mut ns)?;
            match api.store.create(key, ns).await {
                Ok(_) | Err(oxivirt_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(api)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where the launchers' state directories are (`<data-dir>/launchers`), for the
    /// subresources that reach a launcher (pause, unpause, console).
    pub fn with_launchers_root(mut self, root: std::path::PathBuf) -> Self {
        self.launchers_root = Some(root);
        self
    }

    pub fn launchers_root(&self) -> Option<&std::path::Path> {
        self.launchers_root.as_deref()
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request) -> Reply {
        match self.route(&req).await {
            Ok(r) => r,
            Err(e) => Reply::error(&e),
        }
    }

    async fn route(&self, req: &Request) -> Result<Reply, ApiError> {
        let path = req.path.trim_end_matches('/');
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let get = req.method == "GET";
        // virt-api's group (`subresources.kubevirt.io`) lives in its own module.
        if let Some(reply) = crate::subresources::route(self, req, &segs).await {
            return Ok(reply);
        }
        match segs.as_slice() {
            ["version"] if get => return Ok(Reply::ok(&crate::discovery::version())),
            ["healthz" | "livez" | "readyz"] if get => return Ok(Reply::raw(200, b"ok".to_vec())),
            ["api"] if get => {
                return Ok(Reply::ok(&crate::discovery::core_versions(
                    &self.server_address,
                )))
            }
            ["api", "v1"] if get => {
                return crate::discovery::resource_list("", "v1")
                    .map(|v| Reply::ok(&v))
                    .ok_or(ApiError::NoRoute)
            }
            ["apis"] if get => return Ok(Reply::ok(&crate::discovery::groups())),
            ["apis", g] if get => {
                return crate::discovery::group(g)
                    .map(|v| Reply::ok(&v))
                    .ok_or(ApiError::NoRoute)
            }
            ["apis", g, v] if get => {
                return crate::discovery::resource_list(g, v)
                    .map(|v| Reply::ok(&v))
                    .ok_or(ApiError::NoRoute)
            }
            ["openapi", "v3"] if get => return Ok(Reply::ok(&crate::openapi::root())),
            // OpenAPI v2 is what kubectl falls back to for a kind the v3 index does not
            // list (`kubevirt.io/v2`, `kind: VirtualMachin`). An empty document (an empty
            // protobuf message) says "no schema for it", so kubectl goes on to its own
            // "no matches for kind ... ensure CRDs are installed first" instead of
            // failing validation with a 404.
            ["openapi", "v2"] if get => {
                return Ok(if req.accept.contains("protobuf") {
                    Reply::Other {
                        status: 200,
                        content_type: "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                        body: Vec::new(),
                    }
                } else {
                    Reply::ok(&crate::openapi::v2_empty())
                })
            }
            ["openapi", "v3", rest @ ..] if get => {
                return crate::openapi::document(&rest.join("/"))
                    .map(Reply::ok)
                    .ok_or(ApiError::NoRoute)
            }
            _ => {}
        }
        let target = resolve(&segs).ok_or(ApiError::NoRoute)?;
        self.verb(req, target).await
    }

    async fn verb(&self, req: &Request, t: Target) -> Result<Reply, ApiError> {
        let watch = matches!(q(req, "watch"), Some("true" | "1"));
        let sub = t.subresource.as_deref();
        if let Some(s) = sub {
            if s != "status" || !t.resource.status_subresource {
                return Err(ApiError::NoRoute);
            }
        }
        match (req.method.as_str(), &t.name) {
            ("GET", None) if watch => self.watch(req, &t).await,
            ("GET", None) => self.list(req, &t),
            ("GET", Some(name)) => self.get(req, &t, name),
            ("POST", None) => self.create(req, &t).await,
            ("PUT", Some(name)) => self.update(req, &t, name).await,
            ("PATCH", Some(name)) => self.patch(req, &t, name).await,
            ("DELETE", Some(name)) => self.delete(req, &t, name).await,
            ("DELETE", None) => self.delete_collection(req, &t).await,
            _ => Err(ApiError::MethodNotAllowed),
        }
    }

    fn key(&self, t: &Target, name: &str) -> Key {
        match &t.namespace {
            Some(ns) if t.resource.namespaced => Key::namespaced(&t.resource.store_key(), ns, name),
            _ => Key::cluster(&t.resource.store_key(), name),
        }
    }

    fn current(&self, t: &Target, name: &str) -> Result<(Object, Value), ApiError> {
        let obj = self
            .store
            .get(&self.key(t, name))?
            .ok_or_else(|| ApiError::NotFound {
                resource: t.resource,
                name: name.to_string(),
            })?;
        let v = obj.value()?;
        Ok((obj, v))
    }

    fn render_one(
        &self,
        req: &Request,
        t: &Target,
        obj: &Object,
        v: Option<&Value>,
    ) -> Result<Reply, ApiError> {
        if table::wants_table(&req.accept) {
            let owned;
            let v = match v {
                Some(v) => v,
                None => {
                    owned = obj.value()?;
                    &owned
                }
            };
            let include = Include::parse(q(req, "includeObject"));
            return Ok(Reply::ok(&table::table(
                t.resource,
                &[v],
                Some(obj.resource_version.to_string()),
                now_secs(),
                include,
                true,
            )));
        }
        Ok(Reply::raw(200, obj.json().to_vec()))
    }

    fn get(&self, req: &Request, t: &Target, name: &str) -> Result<Reply, ApiError> {
        let (obj, v) = self.current(t, name)?;
        self.render_one(req, t, &obj, Some(&v))
    }

    fn selectors(req: &Request) -> Result<(Selector, Selector), ApiError> {
        let labels = Selector::labels(q(req, "labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let fields = Selector::fields(q(req, "fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok((labels, fields))
    }

    fn list(&self, req: &Request, t: &Target) -> Result<Reply, ApiError> {
        let (labels, fields) = Self::selectors(req)?;
        let ns = t.namespace.as_deref().filter(|_| t.resource.namespaced);
        let (objects, rv) = self.store.list(&t.resource.store_key(), ns)?;
        let filtering = !labels.is_empty() || !fields.is_empty();
        let wants_table = table::wants_table(&req.accept);
        if !filtering && !wants_table {
            // The stored bytes go out as they are: no parse, no re-encode.
            let mut body =
                Vec::with_capacity(objects.iter().map(|o| o.json().len() + 1).sum::<usize>() + 128);
            body.extend_from_slice(
                format!(
                    r#"{{"kind":"{}List","apiVersion":"{}","metadata":{{"resourceVersion":"{rv}"}},"items":["#,
                    t.resource.kind,
                    t.resource.api_version()
                )
                .as_bytes(),
            );
            for (i, o) in objects.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(o.json());
            }
            body.extend_from_slice(b"]}");
            return Ok(Reply::raw(200, body));
        }
        let mut values = Vec::with_capacity(objects.len());
        for o in &objects {
            let v = o.value()?;
            if labels.matches_labels(&v) && fields.matches_fields(&v) {
                values.push(v);
            }
        }
        if wants_table {
            let refs: Vec<&Value> = values.iter().collect();
            return Ok(Reply::ok(&table::table(
                t.resource,
                &refs,
                Some(rv.to_string()),
                now_secs(),
                Include::parse(q(req, "includeObject")),
                true,
            )));
        }
        Ok(Reply::ok(&json!({
            "kind": format!("{}List", t.resource.kind),
            "apiVersion": t.resource.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": values,
        })))
    }

    async fn namespace_exists(&self, t: &Target) -> Result<(), ApiError> {
        if let (true, Some(ns)) = (t.resource.namespaced, &t.namespace) {
            let key = Key::cluster(&resources::NAMESPACE.store_key(), ns);
            if self.store.get(&key)?.is_none() {
                return Err(ApiError::NamespaceNotFound(ns.clone()));
            }
        }
        Ok(())
    }

    /// Checks apiVersion, kind and namespace of a body against the path.
    fn check_identity(t: &Target, o: &mut Value) -> Result<(), ApiError> {
        let r = t.resource;
        let av = o["apiVersion"].as_str().unwrap_or("");
        let kind = o["kind"].as_str().unwrap_or("");
        if !av.is_empty() && av != r.api_version() {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                r.api_version()
            )));
        }
        if !kind.is_empty() && kind != r.kind {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                r.kind
            )));
        }
        if let Some(m) = o.as_object_mut() {
            m.insert("apiVersion".into(), json!(r.api_version()));
            m.insert("kind".into(), json!(r.kind));
        }
        let body_ns = meta_str(o, "namespace").map(str::to_string);
        match (&t.namespace, body_ns, r.namespaced) {
            (Some(path_ns), Some(b), true) if *path_ns != b => Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            )),
            (Some(path_ns), _, true) => {
                metadata_mut(o)?.insert("namespace".into(), json!(path_ns));
                Ok(())
            }
            (_, _, false) => {
                metadata_mut(o)?.remove("namespace");
                Ok(())
            }
            (None, _, true) => Err(ApiError::BadRequest(
                "a namespaced object is created under /namespaces/<namespace>/".into(),
            )),
        }
    }

    async fn create(&self, req: &Request, t: &Target) -> Result<Reply, ApiError> {
        let mut o = parse_body(req)?;
        Self::check_identity(t, &mut o)?;
        self.namespace_exists(t).await?;
        let name = match (meta_str(&o, "name"), meta_str(&o, "generateName")) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(g)) if !g.is_empty() => format!("{g}{}", random_suffix(5)),
            _ => {
                return Err(ApiError::Invalid {
                    resource: t.resource,
                    name: String::new(),
                    causes: vec![crate::error::Cause {
                        field: "metadata.name".into(),
                        message: "Required value: name or generateName is required".into(),
                    }],
                })
            }
        };
        admission::check_name(t.resource, &name)?;
        metadata_mut(&mut o)?.insert("name".into(), json!(name));
        init_meta(&mut o)?;
        if t.resource.status_subresource {
            if let Some(m) = o.as_object_mut() {
                m.remove("status");
            }
        }
        let admitted = admission::admit(t.resource, &name, &mut o)?;
        if q(req, "dryRun") == Some("All") {
            return Ok(with_warnings(Reply::json(201, &o), admitted.warnings));
        }
        let stored = self
            .store
            .create(self.key(t, &name), o)
            .await
            .map_err(|e| store_error(e, t.resource, &name))?;
        Ok(with_warnings(
            Reply::raw(201, stored.json().to_vec()),
            admitted.warnings,
        ))
    }

    async fn update(&self, req: &Request, t: &Target, name: &str) -> Result<Reply, ApiError> {
        let mut o = parse_body(req)?;
        Self::check_identity(t, &mut o)?;
        if meta_str(&o, "name").is_some_and(|n| n != name) {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&o, "name").unwrap_or("")
            )));
        }
        let precondition = match meta_str(&o, "resourceVersion") {
            Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
            _ => None,
        };
        let (cur, current) = self.current(t, name)?;
        if let Some(p) = precondition {
            if p != cur.resource_version {
                return Err(conflict(t.resource, name));
            }
        }
        self.replace(req, t, name, cur, current, o).await
    }

    /// Stores `new` in place of `current` with the API server's rules: system metadata
    /// kept, status or spec kept depending on the subresource, generation bumped when the
    /// spec changes, no write for a no-op, deletion once the last finalizer is gone.
    async fn replace(
        &self,
        req: &Request,
        t: &Target,
        name: &str,
        cur: Object,
        current: Value,
        mut new: Value,
    ) -> Result<Reply, ApiError> {
        let status_only = t.subresource.as_deref() == Some("status");
        if status_only {
            // Only the status changes through /status.
            let status = new.get("status").cloned().unwrap_or(Value::Null);
            new = current.clone();
            if let Some(m) = new.as_object_mut() {
                if status.is_null() {
                    m.remove("status");
                } else {
                    m.insert("status".into(), status);
                }
            }
        } else {
            carry_system_meta(&current, &mut new)?;
            if t.resource.status_subresource {
                if let Some(m) = new.as_object_mut() {
                    match current.get("status") {
                        Some(s) => m.insert("status".into(), s.clone()),
                        None => m.remove("status"),
                    };
                }
            }
        }
        let gen = current["metadata"]["generation"].as_i64().unwrap_or(1);
        let spec_changed = current.get("spec") != new.get("spec");
        metadata_mut(&mut new)?.insert(
            "generation".into(),
            json!(if spec_changed { gen + 1 } else { gen }),
        );
        let warnings = if status_only {
            Vec::new()
        } else {
            admission::admit(t.resource, name, &mut new)?.warnings
        };
        // The stored resourceVersion is the store's; compare without it.
        let same = {
            let mut a = current.clone();
            let mut b = new.clone();
            for x in [&mut a, &mut b] {
                if let Some(m) = x["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
            }
            a == b
        };
        if same {
            return Ok(with_warnings(
                Reply::raw(200, cur.json().to_vec()),
                warnings,
            ));
        }
        if q(req, "dryRun") == Some("All") {
            return Ok(with_warnings(Reply::ok(&new), warnings));
        }
        // The last finalizer of an object being deleted gone: it goes (a pod in its
        // grace period without finalizers stays until its node deletes it).
        let deleting = !new["metadata"]["deletionTimestamp"].is_null();
        let finalizers = |v: &Value| v["metadata"]["finalizers"].as_array().map_or(0, Vec::len);
        let key = self.key(t, name);
        if deleting && finalizers(&current) > 0 && finalizers(&new) == 0 {
            let gone = self
                .store
                .delete(key, Some(cur.resource_version))
                .await
                .map_err(|e| store_error(e, t.resource, name))?;
            return Ok(Reply::raw(200, gone.json().to_vec()));
        }
        let stored = self
            .store
            .update(key, new, Some(cur.resource_version))
            .await
            .map_err(|e| store_error(e, t.resource, name))?;
        Ok(with_warnings(
            Reply::raw(200, stored.json().to_vec()),
            warnings,
        ))
    }

    async fn patch(&self, req: &Request, t: &Target, name: &str) -> Result<Reply, ApiError> {
        let kind = PatchType::from_content_type(&req.content_type).ok_or_else(|| {
            ApiError::UnsupportedMediaType(
                "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json".into(),
            )
        })?;
        let body = parse_body(req)?;
        // As the API server's GuaranteedUpdate: a patch races nobody's precondition, so a
        // conflict with a concurrent writer is retried on the newer object.
        for _ in 0..5 {
            let (cur, current) = self.current(t, name)?;
            let mut new = current.clone();
            match kind {
                PatchType::Merge => patch::merge(&mut new, &body),
                PatchType::Json => {
                    new = patch::json_patch(&current, &body)
                        .map_err(|e| unprocessable(t.resource, name, e.0))?
                }
                PatchType::StrategicMerge => {
                    if !t.resource.group.is_empty() {
                        return Err(ApiError::UnsupportedMediaType(
                            "application/json-patch+json, application/merge-patch+json (strategic merge patch is not supported for custom resources)".into(),
                        ));
                    }
                    patch::strategic_merge(&mut new, &body)
                        .map_err(|e| unprocessable(t.resource, name, e.0))?
                }
                PatchType::Apply => return Err(ApiError::UnsupportedMediaType(
                    "server-side apply is not supported; use kubectl apply without --server-side"
                        .into(),
                )),
            }
            // A resourceVersion in the patch is a precondition.
            if let Some(rv) = meta_str(&new, "resourceVersion") {
                if meta_str(&body, "resourceVersion").is_some()
                    && parse_rv(rv)? != cur.resource_version
                {
                    return Err(conflict(t.resource, name));
                }
            }
            Self::check_identity(t, &mut new)?;
            match self.replace(req, t, name, cur, current, new).await {
                Err(ApiError::Conflict { .. }) if meta_str(&body, "resourceVersion").is_none() => {
                    continue
                }
                other => return other,
            }
        }
        Err(conflict(t.resource, name))
    }

    async fn delete(&self, req: &Request, t: &Target, name: &str) -> Result<Reply, ApiError> {
        if t.resource.kind == "Namespace" && name == DEFAULT_NAMESPACE {
            return Err(ApiError::Forbidden(
                "namespaces \"default\" is forbidden: this namespace may not be deleted".into(),
            ));
        }
        let opts = if req.body.is_empty() {
            Value::Null
        } else {
            parse_body(req)?
        };
        // As the API server's GuaranteedUpdate: marking races other writers (a controller
        // adding its finalizer), so a conflict is retried on the newer object unless the
        // client named the version it deletes.
        let pinned = !opts["preconditions"]["resourceVersion"].is_null();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.delete_attempt(req, t, name, &opts).await {
                Err(ApiError::Conflict { .. }) if !pinned && attempt < 5 => continue,
                other => return other,
            }
        }
    }

    async fn delete_attempt(
        &self,
        req: &Request,
        t: &Target,
        name: &str,
        opts: &Value,
    ) -> Result<Reply, ApiError> {
        let (cur, mut current) = self.current(t, name)?;
        let pre = &opts["preconditions"];
        if let Some(uid) = pre["uid"].as_str() {
            if meta_str(&current, "uid") != Some(uid) {
                return Err(ApiError::Conflict {
                    resource: t.resource,
                    name: name.to_string(),
                    why: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&current, "uid").unwrap_or("")
                    ),
                });
            }
        }
        if let Some(rv) = pre["resourceVersion"].as_str() {
            if parse_rv(rv)? != cur.resource_version {
                return Err(conflict(t.resource, name));
            }
        }
        if q(req, "dryRun") == Some("All") {
            return Ok(Reply::raw(200, cur.json().to_vec()));
        }
        if t.resource.kind == "Pod" {
            if let Some(reply) = self
                .graceful_pod_delete(req, opts, t, name, &cur, &mut current)
                .await?
            {
                return Ok(reply);
            }
        }
        let has_finalizers = current["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            // Marked; whoever owns a finalizer removes it, and the last removal deletes.
            if current["metadata"]["deletionTimestamp"].is_null() {
                let m = metadata_mut(&mut current)?;
                m.insert("deletionTimestamp".into(), json!(rfc3339(now_secs())));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                let stored = self
                    .store
                    .update(self.key(t, name), current, Some(cur.resource_version))
                    .await
                    .map_err(|e| store_error(e, t.resource, name))?;
                return Ok(Reply::raw(200, stored.json().to_vec()));
            }
            return Ok(Reply::raw(200, cur.json().to_vec()));
        }
        if t.resource.kind == "Namespace" {
            self.empty_namespace(name).await?;
        }
        let gone = self
            .store
            .delete(self.key(t, name), Some(cur.resource_version))
            .await
            .map_err(|e| store_error(e, t.resource, name))?;
        Ok(Reply::raw(200, gone.json().to_vec()))
    }

    /// A Pod bound to a node and still running goes as in Kubernetes: the DELETE marks it
    /// (`deletionTimestamp`, `deletionGracePeriodSeconds`) and its node stops it within the
    /// grace period, then deletes it with `gracePeriodSeconds=0`. `None`: delete now.
    async fn graceful_pod_delete(
        &self,
        req: &Request,
        opts: &Value,
        t: &Target,
        name: &str,
        cur: &Object,
        current: &mut Value,
    ) -> Result<Option<Reply>, ApiError> {
        let bound = current["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            current["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        let grace = q(req, "gracePeriodSeconds")
            .and_then(|g| g.parse::<i64>().ok())
            .or_else(|| opts["gracePeriodSeconds"].as_i64())
            .or_else(|| current["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30)
            .max(0);
        if !bound || finished || grace == 0 {
            return Ok(None);
        }
        let marked = current["metadata"]["deletionGracePeriodSeconds"].as_i64();
        if marked.is_some_and(|m| m <= grace) {
            return Ok(Some(Reply::raw(200, cur.json().to_vec())));
        }
        // A shorter grace period than the one marked shortens it, as in Kubernetes.
        let m = metadata_mut(current)?;
        m.insert(
            "deletionTimestamp".into(),
            json!(rfc3339(now_secs() + grace)),
        );
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        let stored = self
            .store
            .update(
                self.key(t, name),
                current.clone(),
                Some(cur.resource_version),
            )
            .await
            .map_err(|e| store_error(e, t.resource, name))?;
        Ok(Some(Reply::raw(200, stored.json().to_vec())))
    }

    /// A namespace takes its objects with it.
    async fn empty_namespace(&self, ns: &str) -> Result<(), ApiError> {
        for r in resources::ALL.iter().filter(|r| r.namespaced) {
            let (objects, _) = self.store.list(&r.store_key(), Some(ns))?;
            for o in objects {
                match self.store.delete(o.key.clone(), None).await {
                    Ok(_) | Err(oxivirt_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    async fn delete_collection(&self, req: &Request, t: &Target) -> Result<Reply, ApiError> {
        let (labels, fields) = Self::selectors(req)?;
        let ns = t.namespace.as_deref().filter(|_| t.resource.namespaced);
        let (objects, _) = self.store.list(&t.resource.store_key(), ns)?;
        let mut items = Vec::new();
        for o in objects {
            let v = o.value()?;
            if !(labels.matches_labels(&v) && fields.matches_fields(&v)) {
                continue;
            }
            let target = Target {
                resource: t.resource,
                namespace: o.key.namespace.clone(),
                name: Some(o.key.name.clone()),
                subresource: None,
            };
            let sub = Request {
                method: "DELETE".into(),
                path: String::new(),
                query: req.query.clone(),
                accept: String::new(),
                content_type: String::new(),
                body: req.body.clone(),
            };
            match self.delete(&sub, &target, &o.key.name).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => items.push(v),
                Err(e) => return Err(e),
            }
        }
        Ok(Reply::ok(&json!({
            "kind": format!("{}List", t.resource.kind),
            "apiVersion": t.resource.api_version(),
            "metadata": {},
            "items": items,
        })))
    }

    async fn watch(&self, req: &Request, t: &Target) -> Result<Reply, ApiError> {
        let (labels, fields) = Self::selectors(req)?;
        let ns = t.namespace.clone().filter(|_| t.resource.namespaced);
        let resource = t.resource;
        let as_table = table::wants_table(&req.accept);
        let include = Include::parse(q(req, "includeObject"));
        let timeout = q(req, "timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1800);
        let since = match q(req, "resourceVersion") {
            None | Some("") | Some("0") => None,
            Some(rv) => Some(parse_rv(rv)?),
        };
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        // With no version, the watch starts with every object as ADDED (a list at the
        // store's version, then the changes after it).
        let (initial, from) = match since {
            Some(rv) => (Vec::new(), rv),
            None => {
                let (objects, rv) = self.store.list(&resource.store_key(), ns.as_deref())?;
                (objects, rv)
            }
        };
        let mut w = match self.store.watch(&resource.store_key(), ns.as_deref(), from) {
            Ok(w) => w,
            Err(oxivirt_store::Error::Gone { requested, oldest }) => {
                // As the API server does: the stream opens and says 410 in an ERROR event.
                let e = ApiError::Gone {
                    asked: requested,
                    oldest,
                };
                let line = event_line("ERROR", &e.status());
                let _ = tx.send(line).await;
                return Ok(Reply::Stream(rx));
            }
            Err(e) => return Err(e.into()),
        };
        tokio::spawn(async move {
            let mut first = true;
            let mut send = |kind: &str, v: &Value| {
                let obj = if as_table {
                    let rv = v["metadata"]["resourceVersion"]
                        .as_str()
                        .map(str::to_string);
                    let t = table::table(resource, &[v], rv, now_secs(), include, first);
                    first = false;
                    t
                } else {
                    v.clone()
                };
                event_line(kind, &obj)
            };
            for o in initial {
                let Ok(v) = o.value() else { continue };
                if labels.matches_labels(&v)
                    && fields.matches_fields(&v)
                    && tx.send(send("ADDED", &v)).await.is_err()
                {
                    return;
                }
            }
            let deadline = tokio::time::sleep(std::time::Duration::from_secs(timeout));
            tokio::pin!(deadline);
            loop {
                let next = tokio::select! {
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                    n = w.next() => n,
                };
                match next {
                    None => return,
                    Some(Err(e)) => {
                        let api: ApiError = e.into();
                        let _ = tx.send(event_line("ERROR", &api.status())).await;
                        return;
                    }
                    Some(Ok(ev)) => {
                        let Ok(v) = ev.object.value() else { continue };
                        if labels.matches_labels(&v)
                            && fields.matches_fields(&v)
                            && tx.send(send(ev.kind.as_str(), &v)).await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Reply::Stream(rx))
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut b = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn with_warnings(mut r: Reply, w: Vec<String>) -> Reply {
    if let Reply::Json { warnings, .. } = &mut r {
        warnings.extend(w);
    }
    r
}

fn conflict(r: &'static Resource, name: &str) -> ApiError {
    ApiError::Conflict {
        resource: r,
        name: name.to_string(),
        why: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}

fn unprocessable(r: &'static Resource, name: &str, message: String) -> ApiError {
    ApiError::Invalid {
        resource: r,
        name: name.to_string(),
        causes: vec![crate::error::Cause {
            field: String::new(),
            message,
        }],
    }
}

/// The store's per-object errors in the API's words.
fn store_error(e: oxivirt_store::Error, r: &'static Resource, name: &str) -> ApiError {
    match e {
        oxivirt_store::Error::NotFound { .. } => ApiError::NotFound {
            resource: r,
            name: name.to_string(),
        },
        oxivirt_store::Error::AlreadyExists { .. } => ApiError::AlreadyExists {
            resource: r,
            name: name.to_string(),
        },
        oxivirt_store::Error::Conflict { .. } => conflict(r, name),
        other => other.into(),
    }
}

/// System metadata of a new object: uid, creation time, generation; what a client sent
/// there is not its to set.
fn init_meta(o: &mut Value) -> Result<(), ApiError> {
    let m = metadata_mut(o)?;
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert(
        "creationTimestamp".into(),
        json!(rfc3339(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        )),
    );
    m.insert("generation".into(), json!(1));
    for k in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ] {
        m.remove(k);
    }
    Ok(())
}

/// Keeps what only the server sets across an update.
fn carry_system_meta(current: &Value, new: &mut Value) -> Result<(), ApiError> {
    let m = metadata_mut(new)?;
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match current["metadata"].get(k) {
            Some(v) => m.insert(k.to_string(), v.clone()),
            None => m.remove(k),
        };
    }
    m.remove("managedFields");
    Ok(())
}

/// The resource a path names: `/api/v1/...` or `/apis/<group>/<version>/...`, then
/// `[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]`.
fn resolve(segs: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let lookup = |plural: &str| resources::find(group, version, plural);
    match rest {
        ["namespaces", ns, plural, tail @ ..] if lookup(plural).is_some_and(|r| r.namespaced) => {
            let resource = lookup(plural)?;
            let (name, sub) = match tail {
                [] => (None, None),
                [n] => (Some(n.to_string()), None),
                [n, s] => (Some(n.to_string()), Some(s.to_string())),
                _ => return None,
            };
            Some(Target {
                resource,
                namespace: Some(ns.to_string()),
                name,
                subresource: sub,
            })
        }
        [plural, tail @ ..] => {
            let resource = lookup(plural)?;
            let (name, sub) = match tail {
                [] => (None, None),
                [n] if !resource.namespaced => (Some(n.to_string()), None),
                [n, s] if !resource.namespaced => (Some(n.to_string()), Some(s.to_string())),
                _ => return None,
            };
            Some(Target {
                resource,
                namespace: None,
                name,
                subresource: sub,
            })
        }
        _ => None,
    }
}
