//! Sealed JSON objects: `{"sha256": H, "<key>": B}` where H is the SHA-256 of B's exact bytes, so that a
//! truncated or altered object is detected even when it still parses as JSON. Manifests and drill
//! evidence are stored this way.

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::{RepoError, Result};

/// The SHA-256 (hex) of a body's exact bytes: the seal, and how evidence names the manifest it tested.
pub fn digest(body: &str) -> String {
    hex::encode(Sha256::digest(body.as_bytes()))
}

/// Wraps `body` (compact JSON) under `key` with its digest.
pub fn seal(key: &str, body: &str) -> Vec<u8> {
    format!("{{\n  \"sha256\": \"{}\",\n  \"{key}\": {body}\n}}\n", digest(body)).into_bytes()
}

/// Checks the seal and returns the body under `key`; any mismatch is `Corrupt`, naming `object`.
pub fn unseal<'a>(object: &str, bytes: &'a [u8], key: &str) -> Result<&'a RawValue> {
    let corrupt = |detail: String| RepoError::Corrupt {
        object: object.to_string(),
        detail,
    };
    let fields: std::collections::HashMap<&str, &RawValue> =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("unreadable: {e}")))?;
    let (Some(sha), Some(body)) = (fields.get("sha256"), fields.get(key)) else {
        return Err(corrupt(format!("missing `sha256` or `{key}`")));
    };
    let sha: &str = serde_json::from_str(sha.get()).map_err(|e| corrupt(format!("sha256: {e}")))?;
    if digest(body.get()) != sha {
        return Err(corrupt("checksum mismatch (altered or damaged)".into()));
    }
    Ok(body)
}
