//! Errors of the CNI contract: [`CniError`], the wire form a plugin prints (one spec code,
//! a message, details) and reads back from its delegates; and [`Error`], what this crate's
//! parsing, environment and exec client report. Which code an [`Error`] becomes is chosen
//! at the binaries' boundary, not here.

use crate::version::Version;
use serde::Serialize;
use std::fmt;
use std::io;

/// What the spec layer reports: configs, results, the `CNI_*` environment, `CNI_ARGS`,
/// versions, and delegates run through the exec client. Messages do not repeat their
/// source; [`chain`] prints an error with all of its sources.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// JSON that does not decode (malformed) or does not fit the expected shape.
    #[error("{what}{}", field_at(path))]
    Json {
        what: String,
        /// The failing field's path (`ipam.ranges[0]`); empty for the whole document.
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// A config field the spec or the plugin refuses.
    #[error("{what}: field `{field}` {reason}")]
    Field {
        what: String,
        field: String,
        reason: String,
    },
    /// A `cniVersion` this implementation does not speak.
    #[error(
        "cniVersion {version:?} {reason}: supported versions are {}",
        Version::supported_list()
    )]
    Version { version: String, reason: String },
    /// CHECK asked of a config older than 0.4.0.
    #[error("config version {0} does not allow CHECK")]
    CheckNotAllowed(Version),
    /// A `CNI_*` variable (or a `CNI_ARGS` entry) that is missing or invalid.
    #[error("{var} {reason}")]
    Env { var: String, reason: String },
    /// Reading the config from stdin failed.
    #[error("failed to read config from stdin")]
    Stdin(#[source] io::Error),
    /// A plugin `type` that cannot name a file.
    #[error("plugin type {0:?} is not a valid plugin name")]
    PluginName(String),
    /// A delegate plugin is in none of the `CNI_PATH` directories.
    #[error("failed to find plugin {name:?} in path {path:?}")]
    PluginNotFound { name: String, path: Vec<String> },
    /// A delegate could not be started, fed or waited for.
    #[error("failed to {step} plugin {plugin}")]
    Exec {
        plugin: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    /// A delegate reported an error (its code and details are kept).
    #[error("plugin {plugin}")]
    Delegate {
        plugin: String,
        #[source]
        source: CniError,
    },
    /// A delegate failed without printing a CNI error.
    #[error("plugin {plugin} failed ({status}) without a CNI error: {stdout}")]
    DelegateCrashed {
        plugin: String,
        status: String,
        stdout: String,
    },
    /// Where an error happened (a field, a document), around it.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
}

fn field_at(path: &str) -> String {
    if path == "." || path == "?" || path.is_empty() {
        String::new()
    } else {
        format!(": field `{path}`")
    }
}

impl Error {
    /// Wraps the error with where it happened.
    pub fn context(self, context: impl Into<String>) -> Self {
        Self::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The error under any [`Error::Context`] layers.
    pub fn root(&self) -> &Error {
        match self {
            Self::Context { source, .. } => source.root(),
            other => other,
        }
    }

    /// Whether JSON failed to parse at all (as opposed to decoding into the wrong shape).
    pub fn is_malformed_json(&self) -> bool {
        matches!(self.root(), Self::Json { source, .. }
            if matches!(source.classify(), serde_json::error::Category::Syntax | serde_json::error::Category::Eof))
    }
}

/// An error and all of its sources, joined by `: ` (the errno of an `io::Error` source
/// survives as its text).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = match e.downcast_ref::<CniError>() {
            // A delegate's details travel in their own field.
            Some(cni) => cni.msg.clone(),
            None => e.to_string(),
        };
        if !s.is_empty() && !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}

/// A step that failed and the cleanup steps that failed after it (a failed ADD's rollback,
/// the rest of a DEL). The first error decides the CNI code at the boundary and is the
/// source; the others are said in the message, so no failure is dropped.
#[derive(Debug)]
pub struct Cleanup<E> {
    pub error: Box<E>,
    pub also: Vec<E>,
}

impl<E: std::error::Error + 'static> fmt::Display for Cleanup<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.also.len();
        let steps = if n == 1 { "step" } else { "steps" };
        let also: Vec<String> = self.also.iter().map(|e| chain(e)).collect();
        write!(
            f,
            "{n} cleanup {steps} failed ({}) after this error",
            also.join("; ")
        )
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Cleanup<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.error)
    }
}

impl<E> Cleanup<E> {
    /// `error` itself when nothing else failed, else `wrap` of both.
    pub fn or_alone(error: E, also: Vec<E>, wrap: impl FnOnce(Self) -> E) -> E {
        if also.is_empty() {
            error
        } else {
            wrap(Self {
                error: Box::new(error),
                also,
            })
        }
    }

    /// The failures of steps that all ran: none is `Ok`, one is itself, more are `wrap`
    /// of the first and the rest.
    pub fn collect(errors: Vec<E>, wrap: impl FnOnce(Self) -> E) -> Result<(), E> {
        let mut it = errors.into_iter();
        match it.next() {
            None => Ok(()),
            Some(first) => Err(Self::or_alone(first, it.collect(), wrap)),
        }
    }
}

/// The first delegate error in `err`'s chain, if any: its code and details win, since the
/// delegate already chose them.
pub fn delegate_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a CniError> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(cni) = e.downcast_ref::<CniError>() {
            return Some(cni);
        }
        next = e.source();
    }
    None
}

/// Error codes from the CNI spec ("Error" section), plus the range reserved for plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: incompatible CNI version.
    IncompatibleVersion,
    /// 2: unsupported field in network configuration.
    UnsupportedField,
    /// 3: container unknown or does not exist.
    UnknownContainer,
    /// 4: invalid necessary environment variables.
    InvalidEnvironment,
    /// 5: I/O failure.
    IoFailure,
    /// 6: failed to decode content.
    DecodingFailure,
    /// 7: invalid network config.
    InvalidNetworkConfig,
    /// 11: try again later.
    TryAgainLater,
    /// 50: the plugin is not available (cannot service ADD).
    PluginNotAvailable,
    /// 51: the plugin is not available, existing containers may have limited connectivity.
    PluginNotAvailableLimitedConnectivity,
    /// 100+: plugin-specific.
    Plugin(u32),
}

impl ErrorCode {
    pub fn as_u32(self) -> u32 {
        match self {
            Self::IncompatibleVersion => 1,
            Self::UnsupportedField => 2,
            Self::UnknownContainer => 3,
            Self::InvalidEnvironment => 4,
            Self::IoFailure => 5,
            Self::DecodingFailure => 6,
            Self::InvalidNetworkConfig => 7,
            Self::TryAgainLater => 11,
            Self::PluginNotAvailable => 50,
            Self::PluginNotAvailableLimitedConnectivity => 51,
            Self::Plugin(c) => c,
        }
    }

    pub fn from_u32(code: u32) -> Self {
        match code {
            1 => Self::IncompatibleVersion,
            2 => Self::UnsupportedField,
            3 => Self::UnknownContainer,
            4 => Self::InvalidEnvironment,
            5 => Self::IoFailure,
            6 => Self::DecodingFailure,
            7 => Self::InvalidNetworkConfig,
            11 => Self::TryAgainLater,
            50 => Self::PluginNotAvailable,
            51 => Self::PluginNotAvailableLimitedConnectivity,
            c => Self::Plugin(c),
        }
    }
}

/// An error a plugin reports to its caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CniError {
    pub code: ErrorCode,
    pub msg: String,
    pub details: String,
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "{}: {}", self.msg, self.details)
        }
    }
}

#[derive(Serialize)]
struct WireError<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    code: u32,
    msg: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    details: &'a str,
}

impl CniError {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The wire form of `err` with `code`: the message is the error with its whole chain
    /// ([`chain`]); a delegate's error in the chain gives its code and details instead.
    pub fn from_error(code: ErrorCode, err: &(dyn std::error::Error + 'static)) -> Self {
        match delegate_error(err) {
            Some(d) => Self {
                code: d.code,
                msg: chain(err),
                details: d.details.clone(),
            },
            None => Self::new(code, chain(err)),
        }
    }

    /// The spec's error JSON.
    pub fn to_json(&self, cni_version: &str) -> String {
        let wire = WireError {
            cni_version,
            code: self.code.as_u32(),
            msg: &self.msg,
            details: &self.details,
        };
        serde_json::to_string(&wire).unwrap_or_else(|_| {
            format!(
                r#"{{"code":{},"msg":"unprintable error"}}"#,
                self.code.as_u32()
            )
        })
    }

    /// Reads the error JSON a delegate printed.
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        #[derive(serde::Deserialize)]
        struct In {
            code: u32,
            #[serde(default)]
            msg: String,
            #[serde(default)]
            details: String,
        }
        let e: In = serde_json::from_slice(bytes).ok()?;
        Some(Self {
            code: ErrorCode::from_u32(e.code),
            msg: e.msg,
            details: e.details,
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
