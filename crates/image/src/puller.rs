//! The pull: a registry's (or its mirror's) manifest, the linux/amd64 manifest of an
//! index, the config and the layers, each streamed into the [`Cache`] and checked
//! against its digest and size; anonymous bearer tokens where a registry asks for them.

use crate::cache::{Cache, HashingWriter};
use crate::error::{Error, Result};
use crate::manifest::{self, Descriptor, Index, Kind, Manifest};
use crate::reference::{Reference, DOCKER_HUB, DOCKER_HUB_ENDPOINT};
use crate::transport::{HttpResponse, Transport, UreqTransport};
use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;

/// Manifests above this are refused (as containerd does): they are read into memory.
const MANIFEST_LIMIT: u64 = 4 << 20;

/// `registry=endpoint`: the registry's content is fetched from `endpoint` instead. A mirror
/// may be plain HTTP; several mirrors of one registry are tried in order while they are
/// unreachable (an HTTP answer is final).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// As in references: `quay.io`, `docker.io`.
    pub registry: String,
    /// `http://127.0.0.1:5000`, `https://mirror.example/prefix`.
    pub endpoint: String,
}

impl std::str::FromStr for Mirror {
    type Err = Error;
    /// `quay.io=http://127.0.0.1:5000` (the launcher's `--registry-mirror`).
    fn from_str(spec: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidMirror {
            spec: spec.to_string(),
            reason,
        };
        let (registry, endpoint) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected registry=URL"))?;
        if registry.is_empty() || registry.contains('/') {
            return Err(bad("the registry is a host name (with an optional port)"));
        }
        let rest = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"))
            .ok_or_else(|| bad("the endpoint must be an http:// or https:// URL"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(bad("the endpoint has no host"));
        }
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        Ok(Self {
            registry: registry.to_string(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
        })
    }
}

/// When to ask the registry (Kubernetes' `imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Resolve the tag with the registry every time (blobs still come from the cache).
    Always,
    /// Use what the cache has for the reference; pull only what is missing.
    IfNotPresent,
    /// Never contact a registry.
    Never,
}

impl PullPolicy {
    /// Kubernetes' default: `Always` for `:latest` (or no tag), else `IfNotPresent`.
    pub fn default_for(reference: &Reference) -> Self {
        if reference.digest.is_none() && reference.tag.as_deref() == Some("latest") {
            Self::Always
        } else {
            Self::IfNotPresent
        }
    }
}

/// What a pull cost: requests made and bytes downloaded (all zero on a cache hit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullStats {
    pub manifest_requests: u32,
    pub blob_requests: u32,
    pub blob_bytes: u64,
}

/// A blob in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedBlob {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub path: PathBuf,
}

/// An image whose manifest, config and layers are all in the cache.
#[derive(Debug, Clone)]
pub struct PulledImage {
    pub reference: Reference,
    /// What the reference resolved to (an index or a manifest): the image's ID.
    pub digest: String,
    /// The linux/amd64 image manifest (equal to `digest` for a single-platform image).
    pub manifest_digest: String,
    pub config: CachedBlob,
    /// Lowest first.
    pub layers: Vec<CachedBlob>,
    pub stats: PullStats,
}

/// Where a registry's API is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    base: String,
    allow_http: bool,
}

/// Pulls images into a cache directory.
pub struct Puller {
    cache: Cache,
    mirrors: Vec<Mirror>,
    insecure: Vec<String>,
    transport: Box<dyn Transport>,
    progress: bool,
    /// Anonymous tokens by (endpoint, repository).
    tokens: Mutex<HashMap<(String, String), String>>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("cache", &self.cache)
            .field("mirrors", &self.mirrors)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

/// Per-pull context for error messages.
struct Ctx<'a> {
    reference: &'a Reference,
    display: String,
    registry: String,
}

impl Puller {
    /// A puller over `cache_dir` (created if missing). Progress bars are drawn when stderr
    /// is a terminal.
    pub fn new(cache_dir: impl Into<PathBuf>, mirrors: Vec<Mirror>) -> Result<Self> {
        Ok(Self {
            cache: Cache::open(cache_dir)?,
            mirrors,
            insecure: Vec::new(),
            transport: Box::new(UreqTransport::default()),
            progress: std::io::stderr().is_terminal(),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Registries (`host[:port]`) reached over plain HTTP. Loopback registries
    /// (`localhost`, `127.0.0.0/8`, `[::1]`) always are, as with Docker.
    pub fn with_insecure_registries(mut self, registries: Vec<String>) -> Self {
        self.insecure = registries;
        self
    }

    /// Replaces the HTTP client (tests).
    pub fn with_transport(mut self, transport: Box<dyn Transport>) -> Self {
        self.transport = transport;
        self
    }

    pub fn with_progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mirrors: Vec<Endpoint> = self
            .mirrors
            .iter()
            .filter(|m| m.registry == registry)
            .map(|m| Endpoint {
                base: m.endpoint.clone(),
                allow_http: m.endpoint.starts_with("http://"),
            })
            .collect();
        if !mirrors.is_empty() {
            return mirrors;
        }
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_ENDPOINT
        } else {
            registry
        };
        let plain = self.insecure.iter().any(|r| r == registry) || is_loopback(registry);
        vec![Endpoint {
            base: format!("{}://{host}", if plain { "http" } else { "https" }),
            allow_http: plain,
        }]
    }

    /// Pulls `reference` (or finds it in the cache, as `policy` allows).
    pub fn pull(&self, reference: &Reference, policy: PullPolicy) -> Result<PulledImage> {
        let cached = match (&reference.digest, &reference.tag) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(t)) => self
                .cache
                .read_ref(&reference.registry, &reference.repository, t),
            (None, None) => None,
        };
        // A digest names immutable content: the cache is as good as the registry.
        let offline_ok = policy != PullPolicy::Always || reference.digest.is_some();
        if let (true, Some(top)) = (offline_ok, &cached) {
            if let Some(img) = self.cached_image(reference, top) {
                return Ok(img);
            }
        }
        if policy == PullPolicy::Never {
            return Err(Error::NeverPull {
                reference: reference.to_string(),
            });
        }
        let endpoints = self.endpoints(&reference.registry);
        let mut last = None;
        for ep in &endpoints {
            match self.pull_from(ep, reference) {
                Err(e @ Error::Unreachable { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidMirror {
            spec: reference.registry.clone(),
            reason: "no endpoint for this registry",
        }))
    }

    /// The image from the cache alone, if everything it needs is there.
    fn cached_image(&self, reference: &Reference, top: &str) -> Option<PulledImage> {
        let top_bytes = std::fs::read(self.cache.blob(top, None)?).ok()?;
        let (manifest_digest, body) = match manifest::classify(&top_bytes, None).ok()? {
            Kind::Manifest => (top.to_string(), top_bytes),
            Kind::Index => {
                let idx: Index = serde_json::from_slice(&top_bytes).ok()?;
                let d = manifest::pick_platform(&idx).ok()?;
                let bytes = std::fs::read(self.cache.blob(&d.digest, Some(d.size))?).ok()?;
                (d.digest.clone(), bytes)
            }
        };
        let m: Manifest = serde_json::from_slice(&body).ok()?;
        let cached = |d: &Descriptor| {
            self.cache
                .blob(&d.digest, Some(d.size))
                .map(|path| CachedBlob {
                    digest: d.digest.clone(),
                    size: d.size,
                    media_type: d.media_type.clone(),
                    path,
                })
        };
        Some(PulledImage {
            reference: reference.clone(),
            digest: top.to_string(),
            manifest_digest,
            config: cached(&m.config)?,
            layers: m.layers.iter().map(cached).collect::<Option<_>>()?,
            stats: PullStats::default(),
        })
    }

    fn pull_from(&self, ep: &Endpoint, reference: &Reference) -> Result<PulledImage> {
        let ctx = Ctx {
            reference,
            display: reference.to_string(),
            registry: reference.registry.clone(),
        };
        let mut stats = PullStats::default();
        let (top_digest, top_body, content_type) =
            self.fetch_manifest(ep, &ctx, reference.manifest_ref(), &mut stats)?;
        let unsupported = |value: String| Error::Unsupported {
            reference: ctx.display.clone(),
            what: "manifest type",
            value,
        };
        let kind = manifest::classify(&top_body, content_type.as_deref()).map_err(unsupported)?;
        let (manifest_digest, body) = match kind {
            Kind::Manifest => (top_digest.clone(), top_body),
            Kind::Index => {
                let idx: Index = parse(&ctx, manifest::OCI_INDEX, &top_body)?;
                let d = manifest::pick_platform(&idx).map_err(|available| {
                    Error::NoMatchingPlatform {
                        reference: ctx.display.clone(),
                        platform: format!("{}/{}", manifest::PLATFORM_OS, manifest::PLATFORM_ARCH),
                        available,
                    }
                })?;
                let (digest, body, ct) = self.fetch_manifest(ep, &ctx, &d.digest, &mut stats)?;
                if body.len() as u64 != d.size {
                    return Err(Error::SizeMismatch {
                        registry: ctx.registry.clone(),
                        reference: ctx.display.clone(),
                        digest,
                        expected: d.size,
                        actual: body.len() as u64,
                    });
                }
                if manifest::classify(&body, ct.as_deref()).map_err(unsupported)? != Kind::Manifest
                {
                    return Err(unsupported("an index inside an index".into()));
                }
                (digest, body)
            }
        };
        let m: Manifest = parse(&ctx, manifest::OCI_MANIFEST, &body)?;
        for l in &m.layers {
            match manifest::layer_kind(&l.media_type) {
                Some(manifest::LayerKind::Tar | manifest::LayerKind::Gzip) => {}
                _ => {
                    return Err(Error::Unsupported {
                        reference: ctx.display.clone(),
                        what: "layer media type",
                        value: l.media_type.clone(),
                    })
                }
            }
        }
        let config = self.fetch_blob(ep, &ctx, &m.config, &mut stats)?;
        let layers = m
            .layers
            .iter()
            .map(|l| self.fetch_blob(ep, &ctx, l, &mut stats))
            .collect::<Result<Vec<_>>>()?;
        if let (None, Some(tag)) = (&reference.digest, &reference.tag) {
            self.cache
                .write_ref(&reference.registry, &reference.repository, tag, &top_digest)?;
        }
        Ok(PulledImage {
            reference: reference.clone(),
            digest: top_digest,
            manifest_digest,
            config,
            layers,
            stats,
        })
    }

    /// GET with the anonymous-token dance: a 401 with a Bearer challenge → a token from
    /// the realm → the same request again, once.
    fn get(
        &self,
        ep: &Endpoint,
        ctx: &Ctx<'_>,
        path: &str,
        accept: Option<&str>,
    ) -> Result<(String, HttpResponse)> {
        let repo = &ctx.reference.repository;
        let url = format!("{}/v2/{repo}/{path}", ep.base);
        let key = (ep.base.clone(), repo.clone());
        let send = |token: Option<&str>| {
            let auth = token.map(|t| format!("Bearer {t}"));
            let mut headers: Vec<(&str, &str)> = Vec::new();
            if let Some(a) = accept {
                headers.push(("Accept", a));
            }
            if let Some(a) = &auth {
                headers.push(("Authorization", a));
            }
            self.transport
                .get(&url, &headers, ep.allow_http)
                .map_err(|e| Error::Unreachable {
                    registry: ctx.registry.clone(),
                    url: url.clone(),
                    source: Box::new(e),
                })
        };
        let cached = self.tokens.lock().ok().and_then(|t| t.get(&key).cloned());
        let resp = send(cached.as_deref())?;
        if resp.status != 401 {
            return Ok((url, resp));
        }
        let Some(challenge) = resp.header("www-authenticate").and_then(parse_bearer) else {
            return Err(Error::Unauthorized {
                registry: ctx.registry.clone(),
                reference: ctx.display.clone(),
                status: 401,
            });
        };
        let token = self.fetch_token(ep, ctx, &challenge)?;
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(key, token.clone());
        }
        let resp = send(Some(&token))?;
        Ok((url, resp))
    }

    fn fetch_token(&self, ep: &Endpoint, ctx: &Ctx<'_>, ch: &Challenge) -> Result<String> {
        let scope = ch
            .scope
            .clone()
            .unwrap_or_else(|| format!("repository:{}:pull", ctx.reference.repository));
        let mut url = ch.realm.clone();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (k, v) in [
            ("service", ch.service.as_deref()),
            ("scope", Some(scope.as_str())),
        ] {
            if let Some(v) = v {
                url.push(sep);
                url.push_str(k);
                url.push('=');
                url.push_str(&percent_encode(v));
                sep = '&';
            }
        }
        let token_err = |status| Error::Token {
            registry: ctx.registry.clone(),
            realm: ch.realm.clone(),
            status,
        };
        let mut resp = self
            .transport
            .get(&url, &[("Accept", "application/json")], ep.allow_http)
            .map_err(|e| Error::Unreachable {
                registry: ctx.registry.clone(),
                url: ch.realm.clone(),
                source: Box::new(e),
            })?;
        if resp.status != 200 {
            return Err(token_err(resp.status));
        }
        let mut body = Vec::new();
        (&mut resp.body)
            .take(1 << 20)
            .read_to_end(&mut body)
            .map_err(|source| Error::Transfer {
                registry: ctx.registry.clone(),
                reference: ctx.display.clone(),
                what: "token".into(),
                source,
            })?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|_| token_err(resp.status))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_err(resp.status))
    }

    /// Maps a non-2xx answer to its error (reading the registry's error code).
    fn refusal(&self, ctx: &Ctx<'_>, url: String, what: String, mut resp: HttpResponse) -> Error {
        let mut body = Vec::new();
        let _ = (&mut resp.body).take(64 << 10).read_to_end(&mut body);
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string));
        match resp.status {
            401 | 403 => Error::Unauthorized {
                registry: ctx.registry.clone(),
                reference: ctx.display.clone(),
                status: resp.status,
            },
            404 => Error::NotFound {
                registry: ctx.registry.clone(),
                reference: ctx.display.clone(),
                what,
                status: 404,
                code,
            },
            status => Error::Status {
                registry: ctx.registry.clone(),
                reference: ctx.display.clone(),
                url,
                status,
                code,
            },
        }
    }

    /// A manifest by tag or digest: (its digest, its bytes, Content-Type). Stored in the
    /// cache as a blob.
    fn fetch_manifest(
        &self,
        ep: &Endpoint,
        ctx: &Ctx<'_>,
        reference: &str,
        stats: &mut PullStats,
    ) -> Result<(String, Vec<u8>, Option<String>)> {
        let (url, mut resp) = self.get(
            ep,
            ctx,
            &format!("manifests/{reference}"),
            Some(manifest::MANIFEST_ACCEPT),
        )?;
        stats.manifest_requests += 1;
        if !(200..300).contains(&resp.status) {
            return Err(self.refusal(ctx, url, format!("manifest {reference}"), resp));
        }
        let mut body = Vec::new();
        (&mut resp.body)
            .take(MANIFEST_LIMIT + 1)
            .read_to_end(&mut body)
            .map_err(|source| Error::Transfer {
                registry: ctx.registry.clone(),
                reference: ctx.display.clone(),
                what: format!("manifest {reference}"),
                source,
            })?;
        if body.len() as u64 > MANIFEST_LIMIT {
            return Err(Error::Unsupported {
                reference: ctx.display.clone(),
                what: "manifest size",
                value: format!("more than {MANIFEST_LIMIT} bytes"),
            });
        }
        let actual = crate::cache::sha256(&body);
        // By digest: it must hash to it. By tag: to what the registry says it is, if it says.
        let expected = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            resp.header("docker-content-digest")
                .filter(|d| d.starts_with("sha256:"))
                .map(str::to_string)
        };
        if let Some(expected) = expected {
            if expected != actual {
                return Err(Error::DigestMismatch {
                    registry: ctx.registry.clone(),
                    reference: ctx.display.clone(),
                    expected,
                    actual,
                });
            }
        }
        if self.cache.blob(&actual, Some(body.len() as u64)).is_none() {
            let mut tmp = self.cache.temp("manifest")?;
            tmp.file.write_all(&body).map_err(|source| Error::Cache {
                path: tmp.path.clone(),
                source,
            })?;
            tmp.commit(&self.cache.blob_path(&actual), 0o444)?;
        }
        let ct = resp.header("content-type").map(str::to_string);
        Ok((actual, body, ct))
    }

    /// A blob into the cache (or the one already there), checked before it gets its name.
    fn fetch_blob(
        &self,
        ep: &Endpoint,
        ctx: &Ctx<'_>,
        d: &Descriptor,
        stats: &mut PullStats,
    ) -> Result<CachedBlob> {
        if !crate::reference::valid_sha256(&d.digest) {
            return Err(Error::Unsupported {
                reference: ctx.display.clone(),
                what: "digest",
                value: d.digest.clone(),
            });
        }
        let done = |path: PathBuf| CachedBlob {
            digest: d.digest.clone(),
            size: d.size,
            media_type: d.media_type.clone(),
            path,
        };
        if let Some(p) = self.cache.blob(&d.digest, Some(d.size)) {
            return Ok(done(p));
        }
        let hex = d.digest.trim_start_matches("sha256:");
        let _lock = self.cache.lock(&format!("blob-{hex}"))?;
        if let Some(p) = self.cache.blob(&d.digest, Some(d.size)) {
            return Ok(done(p));
        }
        let (url, mut resp) = self.get(ep, ctx, &format!("blobs/{}", d.digest), None)?;
        stats.blob_requests += 1;
        if !(200..300).contains(&resp.status) {
            return Err(self.refusal(ctx, url, format!("blob {}", d.digest), resp));
        }
        let tmp = self.cache.temp("blob")?;
        let bar = self.progress_bar(d);
        let mut w = HashingWriter::new(&tmp.file);
        let mut buf = vec![0u8; 128 << 10];
        let transfer = |source| Error::Transfer {
            registry: ctx.registry.clone(),
            reference: ctx.display.clone(),
            what: format!("blob {}", d.digest),
            source,
        };
        loop {
            let n = match resp.body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(transfer(e)),
            };
            // A server that sends more than the descriptor says is stopped right there.
            if w.written + n as u64 > d.size {
                return Err(Error::SizeMismatch {
                    registry: ctx.registry.clone(),
                    reference: ctx.display.clone(),
                    digest: d.digest.clone(),
                    expected: d.size,
                    actual: w.written + n as u64,
                });
            }
            w.write_all(&buf[..n]).map_err(|source| Error::Cache {
                path: tmp.path.clone(),
                source,
            })?;
            if let Some(b) = &bar {
                b.set_position(w.written);
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let written = w.written;
        stats.blob_bytes += written;
        if written != d.size {
            return Err(Error::SizeMismatch {
                registry: ctx.registry.clone(),
                reference: ctx.display.clone(),
                digest: d.digest.clone(),
                expected: d.size,
                actual: written,
            });
        }
        let actual = w.digest();
        if actual != d.digest {
            return Err(Error::DigestMismatch {
                registry: ctx.registry.clone(),
                reference: ctx.display.clone(),
                expected: d.digest.clone(),
                actual,
            });
        }
        let dest = self.cache.blob_path(&d.digest);
        tmp.commit(&dest, 0o444)?;
        Ok(done(dest))
    }

    fn progress_bar(&self, d: &Descriptor) -> Option<indicatif::ProgressBar> {
        if !self.progress {
            return None;
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(d.size),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        let short: String = d
            .digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect();
        bar.set_message(short);
        Some(bar)
    }

    /// The disk of a containerDisk image (see [`crate::disk::container_disk`]).
    pub fn container_disk(
        &self,
        image: &PulledImage,
        path: Option<&str>,
    ) -> Result<crate::disk::DiskFile> {
        crate::disk::container_disk(&self.cache, image, path)
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    ctx: &Ctx<'_>,
    media_type: &str,
    body: &[u8],
) -> Result<T> {
    serde_json::from_slice(body).map_err(|source| Error::Manifest {
        registry: ctx.registry.clone(),
        reference: ctx.display.clone(),
        media_type: media_type.to_string(),
        source,
    })
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// A `WWW-Authenticate: Bearer …` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

/// Parses `Bearer realm="…",service="…",scope="…"` (quoted values may hold commas).
fn parse_bearer(header: &str) -> Option<Challenge> {
    let rest = header.trim();
    let (scheme, params) = rest.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut map = HashMap::new();
    let mut chars = params.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        map.insert(key.trim().to_ascii_lowercase(), value);
    }
    Some(Challenge {
        realm: map.remove("realm").filter(|r| !r.is_empty())?,
        service: map.remove("service"),
        scope: map.remove("scope"),
    })
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
