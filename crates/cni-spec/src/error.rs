//! CNI errors: one spec code each, printed as the spec's JSON on stdout.

use serde::Serialize;
use std::fmt;

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

/// oxivirt's own codes (the spec reserves 100 and above for plugins).
pub mod codes {
    /// A netlink or kernel operation failed.
    pub const NETLINK: u32 = 100;
    /// IP address allocation failed (pool exhausted, address taken).
    pub const IPAM: u32 = 101;
    /// A delegate plugin failed without a spec error.
    pub const DELEGATE: u32 = 102;
    /// Firewall (nftables) programming failed.
    pub const FIREWALL: u32 = 103;
    /// CHECK found the interface state differs from the result.
    pub const CHECK_MISMATCH: u32 = 104;
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

    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidNetworkConfig, msg)
    }

    pub fn env(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidEnvironment, msg)
    }

    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::IoFailure, msg)
    }

    pub fn decode(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::DecodingFailure, msg)
    }

    pub fn plugin(code: u32, msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::Plugin(code), msg)
    }

    /// Prefixes the message with context, keeping the code.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.msg = format!("{ctx}: {}", self.msg);
        self
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

pub type Result<T, E = CniError> = std::result::Result<T, E>;
