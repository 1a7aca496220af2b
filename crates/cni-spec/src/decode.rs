//! Decoding the JSON a plugin is handed (configs, results, policies) into typed values,
//! with errors a runtime can act on.

use crate::error::{CniError, ErrorCode};
use serde::de::DeserializeOwned;

/// Decodes JSON into `T`, reporting the failing field path, line and column.
///
/// Malformed JSON is a decoding failure (6); JSON of the wrong shape is an invalid
/// network config (7), as with the reference plugins.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, CniError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let code = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ErrorCode::DecodingFailure
            }
            _ => ErrorCode::InvalidNetworkConfig,
        };
        let at = if path == "." || path == "?" || path.is_empty() {
            String::new()
        } else {
            format!(" field `{path}`")
        };
        CniError::new(code, format!("{what}:{at} {inner}"))
    })
}
