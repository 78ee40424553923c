//! The audit log's copy in the repository: segments of consecutive entries under `audit/`, written
//! create-only, so that the record of who did what survives the loss of the host and its catalog.
//! The repository stores them as opaque JSON; `crate::control::audit` defines what they say.

use bytes::Bytes;

use super::copy::Put;
use super::{Repository, Result};

/// `audit/<first>-<last>.json`, zero-padded so that names sort in order.
pub fn segment_path(first: i64, last: i64) -> String {
    format!("audit/{first:012}-{last:012}.json")
}

/// The first and last sequence numbers a segment's name says it holds.
pub fn segment_range(path: &str) -> Option<(i64, i64)> {
    let name = path.strip_prefix("audit/")?.strip_suffix(".json")?;
    let (first, last) = name.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

impl Repository {
    /// Writes a segment, create-only; when one of that name exists, its bytes come back instead.
    pub async fn put_audit_segment(&self, first: i64, last: i64, bytes: Bytes) -> Result<Put> {
        self.put_create(&segment_path(first, last), bytes).await
    }

    /// Every segment's path, in order.
    pub async fn audit_segments(&self) -> Result<Vec<String>> {
        self.list_json("audit").await
    }

    /// One segment's bytes.
    pub async fn audit_segment(&self, path: &str) -> Result<Bytes> {
        self.get(path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse_back() {
        assert_eq!(segment_path(1, 42), "audit/000000000001-000000000042.json");
        assert_eq!(segment_range(&segment_path(7, 9)), Some((7, 9)));
        assert_eq!(segment_range("audit/x.json"), None);
        assert!(segment_path(9, 9) < segment_path(10, 10));
    }
}
