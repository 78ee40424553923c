use super::OpsError;
use crate::catalog::{Catalog, SnapshotRecord};
use crate::repo::{Manifest, RepoError, Repository};

/// The catalog's view of a manifest.
pub fn snapshot_record(repository: &str, m: &Manifest) -> SnapshotRecord {
    SnapshotRecord {
        id: m.id.clone(),
        source: m.source.clone(),
        repository: repository.to_string(),
        engine: m.engine.clone(),
        started_at: m.started_at,
        finished_at: m.finished_at,
        bytes_read: m.stream.size,
        bytes_stored: m.stream.new_bytes,
        chunks: m.stream.chunks.len() as u64,
        new_chunks: m.stream.new_chunks,
        stream_sha256: m.stream.sha256.clone(),
        consistent_point: m.facts.consistent_point.clone(),
        server_version: Some(m.facts.server_version.clone()),
        tool_version: Some(m.facts.tool_version.clone()),
        tables: m.facts.fingerprint.tables.len() as u64,
        rows: m.facts.fingerprint.total_rows(),
    }
}

/// Recreates the catalog's snapshots of one repository from the repository alone. Damaged manifests
/// are returned so the caller can name them; they are not catalogued.
pub async fn rebuild_catalog(
    repository_name: &str,
    repo: &Repository,
    catalog: &dyn Catalog,
) -> Result<(usize, Vec<RepoError>), OpsError> {
    let (manifests, damaged) = repo.manifests(None).await?;
    let records: Vec<SnapshotRecord> = manifests.iter().map(|m| snapshot_record(repository_name, m)).collect();
    catalog
        .replace_repository_snapshots(repository_name, &records)
        .await
        .map_err(|e| OpsError::Io {
            path: "catalog".into(),
            detail: e.to_string(),
        })?;
    Ok((records.len(), damaged))
}
