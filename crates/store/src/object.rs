//! Stored objects and their record format: `resourceVersion (u64, big-endian) ‖ JSON`.
//! The version up front lets reads and preconditions skip parsing; the JSON is the
//! object exactly as the API serves it (with `metadata.resourceVersion` set), so a list
//! can copy bytes to the client without parsing them at all.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::{Error, Key, Result};

const RV_LEN: usize = 8;

/// One stored object at one resourceVersion. Cheap to clone (the JSON is shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: Key,
    pub resource_version: u64,
    json: Arc<[u8]>,
}

impl Object {
    /// The object's JSON as stored, `metadata.resourceVersion` included.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The shared JSON bytes, for handing on without a copy.
    pub fn json_shared(&self) -> Arc<[u8]> {
        Arc::clone(&self.json)
    }

    /// The object parsed; [`Error::Corrupt`] (naming the key) when the stored bytes are
    /// not JSON.
    pub fn value(&self) -> Result<Value> {
        serde_json::from_slice(&self.json).map_err(|e| Error::Corrupt {
            key: self.key.to_string(),
            reason: format!("stored JSON does not parse: {e}"),
        })
    }
}

/// Splits a stored record into its version and JSON.
pub(crate) fn decode(key: Key, record: &[u8]) -> Result<Object> {
    let Some((rv, json)) = record.split_first_chunk::<RV_LEN>() else {
        return Err(Error::Corrupt {
            key: key.to_string(),
            reason: format!("record of {} bytes, shorter than its header", record.len()),
        });
    };
    Ok(Object {
        key,
        resource_version: u64::from_be_bytes(*rv),
        json: Arc::from(json),
    })
}

/// The stored version of a record without copying its JSON.
pub(crate) fn record_version(key: &Key, record: &[u8]) -> Result<u64> {
    record
        .first_chunk::<RV_LEN>()
        .map(|rv| u64::from_be_bytes(*rv))
        .ok_or_else(|| Error::Corrupt {
            key: key.to_string(),
            reason: format!("record of {} bytes, shorter than its header", record.len()),
        })
}

/// Sets `metadata.resourceVersion` of `value` to `rv` (Kubernetes' decimal string) and
/// encodes the record; returns it with the object it holds.
pub(crate) fn encode(key: &Key, mut value: Value, rv: u64) -> Result<(Vec<u8>, Object)> {
    let invalid = |reason| Error::InvalidObject {
        key: key.clone(),
        reason,
    };
    let Value::Object(map) = &mut value else {
        return Err(invalid("not a JSON object"));
    };
    let Value::Object(meta) = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
    else {
        return Err(invalid("metadata is not an object"));
    };
    meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    let mut record = Vec::with_capacity(1024);
    record.extend_from_slice(&rv.to_be_bytes());
    serde_json::to_writer(&mut record, &value).map_err(|_| invalid("does not serialize"))?;
    let object = Object {
        key: key.clone(),
        resource_version: rv,
        json: Arc::from(&record[RV_LEN..]),
    };
    Ok((record, object))
}
