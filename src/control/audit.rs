//! The audit log: every API call and CLI action — when, who, what, the policy's decision, the
//! outcome — appended to a hash chain in the catalog and mirrored into each repository.
//!
//! Each entry's hash is SHA-256 over the previous entry's hash, its sequence number and its body
//! (which includes its time), so editing an entry changes its hash, and removing or moving one
//! breaks the link of the next. [`verify`] walks the chain and names the first entry that does not
//! fit. Removing entries from the end leaves a shorter, valid chain: the copies in the repositories
//! catch that, since they hold entries the catalog no longer has.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::operation::Operation;
use crate::catalog::{AuditRow, Catalog, CatalogError, GENESIS};
use crate::repo::{Put, RepoError, Repository};

/// What the policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Within the principal's scope; done.
    Allowed,
    /// Outside the principal's scope (403).
    Denied,
    /// No valid token (401).
    Unauthenticated,
    /// Destructive: an approval request was created instead.
    Pending,
    /// An approval was given (and, when it was the last needed, the request ran).
    Approved,
    /// An approval request was denied.
    DeniedRequest,
}

/// One entry's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: jiff::Timestamp,
    pub principal: String,
    /// E.g. `DELETE /api/v1/snapshots/20261124T101500Z-1a2b` or `cli: prune rental`.
    pub action: String,
    pub operation: Option<Operation>,
    pub environment: Option<String>,
    pub source: Option<String>,
    pub decision: Decision,
    /// `ok`, an HTTP status, an error, or what an executed request did.
    pub outcome: String,
    /// The approval request this entry is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
}

/// An entry as listed: its place in the chain and its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// The chain: SHA-256(prev_hash "\n" seq "\n" body), hex.
pub fn chain_hash(prev_hash: &str, seq: i64, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    hex::encode(h.finalize())
}

/// Appends `event` to the log.
pub async fn append(catalog: &dyn Catalog, event: &AuditEvent) -> Result<AuditRow, CatalogError> {
    let body = serde_json::to_string(event).expect("an audit event serialises");
    catalog.append_audit(event.at, &body, &chain_hash).await
}

/// Entries after `after`, at most `limit`, parsed; an entry whose body does not parse is an error
/// (`lifeboat audit verify` names it).
pub async fn entries(catalog: &dyn Catalog, after: i64, limit: u32) -> Result<Vec<AuditEntry>, CatalogError> {
    catalog.audit(after, limit).await?.iter().map(parse).collect()
}

fn parse(row: &AuditRow) -> Result<AuditEntry, CatalogError> {
    let event = serde_json::from_str(&row.body)
        .map_err(|e| CatalogError::corrupt("audit_log", format!("entry {}: {e}", row.seq)))?;
    Ok(AuditEntry {
        seq: row.seq,
        event,
        prev_hash: row.prev_hash.clone(),
        hash: row.hash.clone(),
    })
}

/// Where the chain breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub seq: i64,
    pub problem: String,
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Entries checked in the catalog.
    pub entries: u64,
    /// The newest entry's hash: note it somewhere else to detect later removal from the end.
    pub head: Option<String>,
    /// Entries compared with the repositories' copies.
    pub mirrored: u64,
    /// Every break found, in order; empty when the log is intact.
    pub breaks: Vec<Break>,
}

const PAGE: u32 = 1000;

/// Walks the whole chain in the catalog, then compares it with each repository's copy.
pub async fn verify(catalog: &dyn Catalog, mirrors: &[(String, Repository)]) -> Result<Verification, CatalogError> {
    let mut breaks = Vec::new();
    let mut expected_seq = 1i64;
    let mut prev = GENESIS.to_string();
    let mut count = 0u64;
    let mut after = 0i64;
    let mut hashes: std::collections::BTreeMap<i64, String> = std::collections::BTreeMap::new();
    loop {
        let rows = catalog.audit(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for row in &rows {
            count += 1;
            if row.seq != expected_seq {
                breaks.push(Break {
                    seq: row.seq,
                    problem: format!(
                        "entries {expected_seq}..{} are missing (removed from the log)",
                        row.seq - 1
                    ),
                });
            } else if row.prev_hash != prev {
                breaks.push(Break {
                    seq: row.seq,
                    problem: "its link to the entry before does not match (an entry was removed or moved)".into(),
                });
            }
            if chain_hash(&row.prev_hash, row.seq, &row.body) != row.hash {
                breaks.push(Break {
                    seq: row.seq,
                    problem: "its content does not match its hash (the entry was edited)".into(),
                });
            } else if serde_json::from_str::<AuditEvent>(&row.body).is_err() {
                breaks.push(Break {
                    seq: row.seq,
                    problem: "its content is not an audit entry".into(),
                });
            }
            expected_seq = row.seq + 1;
            prev = row.hash.clone();
            hashes.insert(row.seq, row.hash.clone());
        }
    }
    let mut mirrored = 0u64;
    for (name, repo) in mirrors {
        let copy = match read_mirror(repo).await {
            Ok(copy) => copy,
            Err(e) => {
                breaks.push(Break {
                    seq: 0,
                    problem: format!("the copy in repository {name} cannot be read: {e}"),
                });
                continue;
            }
        };
        for (seq, hash) in copy {
            mirrored += 1;
            match hashes.get(&seq) {
                Some(h) if *h == hash => {}
                Some(_) => breaks.push(Break {
                    seq,
                    problem: format!("it differs from the copy in repository {name}"),
                }),
                None => breaks.push(Break {
                    seq,
                    problem: format!(
                        "it is in the copy in repository {name} but not in the catalog (the log was cut short)"
                    ),
                }),
            }
        }
    }
    breaks.sort_by_key(|b| b.seq);
    breaks.dedup();
    Ok(Verification {
        entries: count,
        head: hashes.values().next_back().cloned(),
        mirrored,
        breaks,
    })
}

/// One line of a segment.
#[derive(Serialize, Deserialize)]
struct MirroredEntry {
    seq: i64,
    prev_hash: String,
    hash: String,
    body: String,
}

/// (seq, hash) of every entry in the repository's copy. Overlapping segments (two processes that
/// mirrored at once) must agree.
async fn read_mirror(repo: &Repository) -> Result<std::collections::BTreeMap<i64, String>, RepoError> {
    let mut out = std::collections::BTreeMap::new();
    for path in repo.audit_segments().await? {
        let bytes = repo.audit_segment(&path).await?;
        let entries: Vec<MirroredEntry> = serde_json::from_slice(&bytes).map_err(|e| RepoError::Corrupt {
            object: path.clone(),
            detail: e.to_string(),
        })?;
        for e in entries {
            if let Some(other) = out.insert(e.seq, e.hash.clone())
                && other != e.hash
            {
                return Err(RepoError::Corrupt {
                    object: path,
                    detail: format!("entry {} differs from another segment's copy of it", e.seq),
                });
            }
        }
    }
    Ok(out)
}

/// Copies the entries the repository lacks into new segments; returns how many were copied.
pub async fn mirror(catalog: &dyn Catalog, repo: &Repository) -> Result<u64, String> {
    let segments = repo.audit_segments().await.map_err(|e| e.to_string())?;
    let mut after = segments
        .iter()
        .filter_map(|p| crate::repo::audit::segment_range(p))
        .map(|(_, last)| last)
        .max()
        .unwrap_or(0);
    let mut copied = 0u64;
    loop {
        let rows = catalog.audit(after, PAGE).await.map_err(|e| e.to_string())?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(copied);
        };
        let (first, last) = (first.seq, last.seq);
        let lines: Vec<MirroredEntry> = rows
            .into_iter()
            .map(|r| MirroredEntry {
                seq: r.seq,
                prev_hash: r.prev_hash,
                hash: r.hash,
                body: r.body,
            })
            .collect();
        let bytes = Bytes::from(serde_json::to_vec(&lines).expect("audit entries serialise"));
        match repo.put_audit_segment(first, last, bytes.clone()).await {
            Ok(Put::Written) => {}
            Ok(Put::Exists(existing)) if existing == bytes => {}
            Ok(Put::Exists(_)) => {
                return Err(format!(
                    "{} already exists with other content; run `lifeboat audit verify`",
                    crate::repo::audit::segment_path(first, last)
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
        copied += (last - first + 1) as u64;
        after = last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_the_link_the_position_and_the_content() {
        let h = chain_hash(GENESIS, 1, "{}");
        assert_ne!(h, chain_hash(GENESIS, 2, "{}"));
        assert_ne!(h, chain_hash(&h, 1, "{}"));
        assert_ne!(h, chain_hash(GENESIS, 1, "{ }"));
        assert_eq!(h, chain_hash(GENESIS, 1, "{}"));
    }
}
