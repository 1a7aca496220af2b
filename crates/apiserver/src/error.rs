//! The API's failures, and the one place they become HTTP statuses and `Status` objects.

use serde_json::{json, Value};

use crate::resources::Resource;

/// One cause of an `Invalid` refusal: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{} {name:?} not found", resource.qualified())]
    NotFound {
        resource: &'static Resource,
        name: String,
    },
    #[error("{} {name:?} already exists", resource.qualified())]
    AlreadyExists {
        resource: &'static Resource,
        name: String,
    },
    #[error("Operation cannot be fulfilled on {} {name:?}: {why}", resource.qualified())]
    Conflict {
        resource: &'static Resource,
        name: String,
        why: String,
    },
    /// Refused by validation as the API server's own (422, `Invalid`).
    #[error("{} {name:?} is invalid: {}", resource.qualified_kind(), join(causes))]
    Invalid {
        resource: &'static Resource,
        name: String,
        causes: Vec<Cause>,
    },
    /// Refused by KubeVirt's admission, worded as its webhook's denial reaches kubectl.
    #[error("admission webhook {webhook:?} denied the request: {}", join(causes))]
    Denied {
        resource: &'static Resource,
        name: String,
        webhook: &'static str,
        causes: Vec<Cause>,
    },
    #[error("too old resource version: {asked} ({oldest})")]
    Gone { asked: u64, oldest: u64 },
    #[error("{0}")]
    BadRequest(String),
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {0}"
    )]
    UnsupportedMediaType(String),
    #[error("Unauthorized")]
    Unauthorized,
    /// Refused whoever asks (403, `Forbidden`): the message says what and why.
    #[error("{0}")]
    Forbidden(String),
    #[error("namespaces {0:?} not found")]
    NamespaceNotFound(String),
    #[error("object is being deleted: {} {name:?} already exists", resource.qualified())]
    Terminating {
        resource: &'static Resource,
        name: String,
    },
    #[error("the request body is too large: at most {limit} bytes")]
    TooLarge { limit: usize },
    #[error("internal error")]
    Store(#[from] oxivirt_store::Error),
}

fn join(causes: &[Cause]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| {
            if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            }
        })
        .collect();
    if parts.len() == 1 {
        parts.join("")
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    /// The HTTP status and the `reason` of the Status.
    pub fn code_reason(&self) -> (u16, &'static str) {
        match self {
            ApiError::NotFound { .. } | ApiError::NamespaceNotFound(_) => (404, "NotFound"),
            ApiError::NoRoute => (404, "NotFound"),
            ApiError::AlreadyExists { .. } | ApiError::Terminating { .. } => (409, "AlreadyExists"),
            ApiError::Conflict { .. } => (409, "Conflict"),
            ApiError::Invalid { .. } => (422, "Invalid"),
            ApiError::Denied { .. } => (422, "Invalid"),
            ApiError::Gone { .. } => (410, "Expired"),
            ApiError::BadRequest(_) => (400, "BadRequest"),
            ApiError::MethodNotAllowed => (405, "MethodNotAllowed"),
            ApiError::UnsupportedMediaType(_) => (415, "UnsupportedMediaType"),
            ApiError::Unauthorized => (401, "Unauthorized"),
            ApiError::Forbidden(_) => (403, "Forbidden"),
            ApiError::TooLarge { .. } => (413, "RequestEntityTooLarge"),
            ApiError::Store(e) => match e {
                oxivirt_store::Error::Gone { .. } => (410, "Expired"),
                _ => (500, "InternalError"),
            },
        }
    }

    /// The `Status` object a client gets.
    pub fn status(&self) -> Value {
        let (code, reason) = self.code_reason();
        let message = match self {
            // The chain, so the operator sees the store's cause.
            ApiError::Store(e) => format!("Internal error occurred: {}", chain(e)),
            other => other.to_string(),
        };
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        });
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. }
            | ApiError::Terminating { resource, name } => Some(json!({
                "name": name, "group": resource.group, "kind": resource.plural,
            })),
            ApiError::Invalid {
                resource,
                name,
                causes,
            }
            | ApiError::Denied {
                resource,
                name,
                causes,
                ..
            } => Some(json!({
                "name": name, "group": resource.group, "kind": resource.kind,
                "causes": causes.iter().map(|c| json!({
                    "reason": "FieldValueInvalid", "message": c.message, "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            _ => None,
        };
        if let Some(d) = details {
            s["details"] = d;
        }
        if matches!(self, ApiError::Denied { .. }) {
            // A webhook's denial carries no reason of the API server's own.
            s["reason"] = json!("");
        }
        s
    }
}

pub use oxivirt_api::report::chain;
