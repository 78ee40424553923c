//! Drill results in the catalog and in the repository.

use crate::catalog::{Catalog, CatalogError, DrillRunRecord, DrillVerdict};
use crate::repo::{RepoError, Repository};

use super::result::{DrillResult, Verdict};

fn verdict(v: Verdict) -> DrillVerdict {
    match v {
        Verdict::Pass => DrillVerdict::Pass,
        Verdict::Fail => DrillVerdict::Fail,
        Verdict::SlaBreach => DrillVerdict::SlaBreach,
        Verdict::Error => DrillVerdict::Error,
    }
}

/// The catalog's row for a result; the whole result rides along as evidence.
pub fn catalog_record(r: &DrillResult) -> DrillRunRecord {
    DrillRunRecord {
        id: r.run_id.clone(),
        drill: r.drill.clone(),
        source: r.source.clone(),
        repository: r.repository.clone(),
        snapshot_id: r.snapshot.as_ref().map(|s| s.id.clone()),
        started_at: r.started_at,
        finished_at: r.finished_at,
        verdict: verdict(r.verdict),
        rto_seconds: r.rto_seconds,
        rpo_seconds: r.rpo_seconds,
        sla_rto_seconds: r.sla_rto_seconds,
        sla_rpo_seconds: r.sla_rpo_seconds,
        detail: r.reason.clone(),
        evidence: serde_json::to_value(r).expect("result serializes"),
    }
}

/// Reads a result back from a catalog row or an evidence document.
pub fn from_evidence(value: &serde_json::Value) -> Option<DrillResult> {
    serde_json::from_value(value.clone()).ok()
}

/// Stores a result as evidence in the repository (create-only) and returns its object path.
pub async fn store_evidence(repo: &Repository, r: &DrillResult) -> Result<String, RepoError> {
    repo.put_evidence(
        &r.source,
        &r.run_id,
        &serde_json::to_value(r).expect("result serializes"),
    )
    .await
}

/// Re-imports every drill result the repository holds into the catalog. Returns how many, and the
/// damaged evidence objects that were skipped.
pub async fn rebuild(repo: &Repository, catalog: &dyn Catalog) -> Result<(usize, Vec<String>), String> {
    let (docs, damaged) = repo.evidence(None).await.map_err(|e| e.to_string())?;
    let mut skipped: Vec<String> = damaged.iter().map(|e| e.to_string()).collect();
    let mut count = 0;
    for doc in &docs {
        match from_evidence(doc) {
            Some(r) => {
                catalog
                    .record_drill_run(&catalog_record(&r))
                    .await
                    .map_err(|e: CatalogError| e.to_string())?;
                count += 1;
            }
            None => skipped.push("an evidence document this version cannot read".into()),
        }
    }
    Ok((count, skipped))
}
