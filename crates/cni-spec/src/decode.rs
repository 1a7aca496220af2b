//! Decoding the JSON a plugin is handed (configs, results, policies) into typed values,
//! with errors that name the field, line and column.

use crate::error::Error;
use serde::de::DeserializeOwned;

/// Decodes JSON into `T`, reporting the failing field path, line and column.
///
/// Malformed JSON and JSON of the wrong shape are told apart by
/// [`Error::is_malformed_json`] (the reference plugins report them as codes 6 and 7).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| Error::Json {
        what: what.to_string(),
        path: e.path().to_string(),
        source: e.into_inner(),
    })
}
