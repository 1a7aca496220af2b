//! oxivirt's definition of the `kubevirt.io/v1` API: VirtualMachine and
//! VirtualMachineInstance types (the subset oxivirt runs, KubeVirt's JSON), parsing from YAML
//! or JSON with positions in errors, Kubernetes quantities, and KubeVirt's defaults and
//! validation for that subset.
//!
//! The launcher's path: [`parse_instance`] (a VMI, or a VM whose template becomes the VMI) →
//! [`defaults::set_defaults`] → [`validate::validate_vmi`] → run.

pub mod defaults;
pub mod quantity;
pub mod report;
pub mod time;
pub mod types;
pub mod validate;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use quantity::{Quantity, QuantityError};
pub use types::*;
pub use validate::ValidationError;

/// Errors reading or parsing an object. Validation findings are [`ValidationError`]s.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// YAML that does not parse or does not fit the types; the source has the message.
    #[error("{origin}{}", position(*line, *column))]
    Yaml {
        origin: String,
        line: Option<u64>,
        column: Option<u64>,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// JSON that does not parse or does not fit the types; the source has the message.
    #[error("{origin}{}", position(Some(*line as u64), Some(*column as u64)))]
    Json {
        origin: String,
        line: usize,
        column: usize,
        #[source]
        source: serde_json::Error,
    },
    /// An object of another kind or API version than the one asked for.
    #[error("{origin}: expected apiVersion kubevirt.io/v1 kind {expected}, found apiVersion {api_version:?} kind {kind:?}")]
    Kind {
        origin: String,
        expected: &'static str,
        api_version: String,
        kind: String,
    },
}

fn position(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// API versions of KubeVirt's core group that share the v1 schema.
const API_VERSIONS: &[&str] = &[API_VERSION, "kubevirt.io/v1alpha3"];

/// Parses YAML or JSON (JSON when the text starts with `{`); `origin` (a file name, or `-`)
/// goes into errors with the line and column the parser reports.
fn parse_text<T: DeserializeOwned>(origin: &str, text: &str) -> Result<T, Error> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| Error::Json {
            origin: origin.to_string(),
            line: e.line(),
            column: e.column(),
            source: e,
        })
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            let loc = e.location();
            Error::Yaml {
                origin: origin.to_string(),
                line: loc.map(|l| l.line()),
                column: loc.map(|l| l.column()),
                source: Box::new(e),
            }
        })
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

fn check_kind(origin: &str, tm: &TypeMeta, expected: &'static str) -> Result<(), Error> {
    if tm.kind == expected && API_VERSIONS.contains(&tm.api_version.as_str()) {
        Ok(())
    } else {
        Err(Error::Kind {
            origin: origin.to_string(),
            expected,
            api_version: tm.api_version.clone(),
            kind: tm.kind.clone(),
        })
    }
}

/// Parses a `VirtualMachine` (YAML or JSON).
pub fn parse_vm(origin: &str, text: &str) -> Result<VirtualMachine, Error> {
    let tm: TypeMeta = parse_text(origin, text)?;
    check_kind(origin, &tm, KIND_VM)?;
    parse_text(origin, text)
}

/// Parses a `VirtualMachineInstance` (YAML or JSON).
pub fn parse_vmi(origin: &str, text: &str) -> Result<VirtualMachineInstance, Error> {
    let tm: TypeMeta = parse_text(origin, text)?;
    check_kind(origin, &tm, KIND_VMI)?;
    parse_text(origin, text)
}

/// Parses a VMI, or a VM whose template is turned into its VMI
/// ([`VirtualMachineInstance::from_vm`]): what a launcher given either file runs.
pub fn parse_instance(origin: &str, text: &str) -> Result<VirtualMachineInstance, Error> {
    let tm: TypeMeta = parse_text(origin, text)?;
    if tm.kind == KIND_VM {
        parse_vm(origin, text).map(|vm| VirtualMachineInstance::from_vm(&vm))
    } else {
        parse_vmi(origin, text)
    }
}

/// Reads and parses a file with [`parse_instance`].
pub fn read_instance(path: &Path) -> Result<VirtualMachineInstance, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_instance(&path.display().to_string(), &text)
}
