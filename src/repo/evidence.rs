//! Drill evidence: the result of each recovery drill, stored beside the snapshot it tested, create-only
//! and sealed, so that drill history survives the loss of the catalog. The repository stores the document
//! as opaque JSON; the drill module defines what it says.

use object_store::path::Path as StorePath;
use object_store::{PutMode, PutOptions, PutPayload};

use super::{RepoError, Repository, Result, sealed};

/// Checks an evidence object's seal and returns the document; any damage is `Corrupt`, naming `path`.
pub(crate) fn parse(path: &str, bytes: &[u8]) -> Result<serde_json::Value> {
    let raw = sealed::unseal(path, bytes, "evidence")?;
    serde_json::from_str(raw.get()).map_err(|e| RepoError::Corrupt {
        object: path.to_string(),
        detail: e.to_string(),
    })
}

pub fn object_path(source: &str, run_id: &str) -> String {
    format!("evidence/{source}/{run_id}.json")
}

impl Repository {
    /// Writes one drill's evidence, create-only. Returns the object's path.
    pub async fn put_evidence(&self, source: &str, run_id: &str, document: &serde_json::Value) -> Result<String> {
        let path = object_path(source, run_id);
        let bytes = sealed::seal("evidence", &document.to_string());
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&StorePath::from(path.as_str()), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(path),
            Err(object_store::Error::AlreadyExists { .. }) => Err(RepoError::Corrupt {
                object: path,
                detail: "evidence for this run id already exists".into(),
            }),
            Err(e) => Err(RepoError::storage(path, e)),
        }
    }

    /// Every evidence document (optionally of one source); damaged ones come back as errors.
    pub async fn evidence(&self, source: Option<&str>) -> Result<(Vec<serde_json::Value>, Vec<RepoError>)> {
        let prefix = match source {
            Some(s) => format!("evidence/{s}"),
            None => "evidence".to_string(),
        };
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for path in self.list_json(&prefix).await? {
            let bytes = self.get(&path).await?;
            match parse(&path, &bytes) {
                Ok(doc) => good.push(doc),
                Err(e) => bad.push(e),
            }
        }
        Ok((good, bad))
    }
}
