//! Reading a snapshot's stream back, in order, proving every chunk and the whole stream as it goes.

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::chunk;
use super::{Manifest, Progress, RepoError, Repository, Result};

/// Chunks fetched ahead of the one being written: overlaps network latency with decoding.
const READ_AHEAD: usize = 4;

impl Repository {
    /// Writes the snapshot's stream to `out`. Fails, naming the object, on the first missing or damaged
    /// chunk, and at the end if the stream's size or SHA-256 differ from the manifest.
    pub async fn read_stream<W: AsyncWrite + Unpin>(
        &self,
        manifest: &Manifest,
        out: &mut W,
        progress: &dyn Progress,
    ) -> Result<()> {
        if self.is_encrypted() && self.keys.identity.is_none() {
            return Err(RepoError::IdentityRequired {
                what: "restoring".into(),
            });
        }
        // The whole-stream SHA-256 is computed on its own thread, in order, while later chunks are
        // fetched and decoded: on a restore's critical path it would otherwise cost a serial pass.
        let (to_hasher, mut hasher_rx) = tokio::sync::mpsc::channel::<std::sync::Arc<Vec<u8>>>(READ_AHEAD);
        let hasher = tokio::task::spawn_blocking(move || {
            let mut hash = Sha256::new();
            while let Some(data) = hasher_rx.blocking_recv() {
                hash.update(&data[..]);
            }
            hex::encode(hash.finalize())
        });
        let mut size = 0u64;
        let mut chunks = futures::stream::iter(manifest.stream.chunks.iter().cloned())
            .map(|c| {
                let repo = self.clone();
                async move {
                    let id = c.chunk_id()?;
                    let path = id.object_path();
                    let stored = repo.get(&path).await?;
                    let addressing = repo.addressing.clone();
                    let identity = repo.keys.identity.clone();
                    tokio::task::spawn_blocking(move || {
                        chunk::decode(
                            &path,
                            &stored,
                            &id,
                            Some(c.size as usize),
                            &addressing,
                            identity.as_ref(),
                        )
                    })
                    .await
                    .map_err(|e| RepoError::Task(e.to_string()))?
                }
            })
            .buffered(READ_AHEAD);
        while let Some(data) = chunks.try_next().await? {
            let data = std::sync::Arc::new(data);
            let _ = to_hasher.send(data.clone()).await;
            size += data.len() as u64;
            out.write_all(&data)
                .await
                .map_err(|e| RepoError::Sink { detail: e.to_string() })?;
            progress.advance(data.len() as u64);
        }
        out.flush()
            .await
            .map_err(|e| RepoError::Sink { detail: e.to_string() })?;
        drop(to_hasher);
        let sha = hasher.await.map_err(|e| RepoError::Task(e.to_string()))?;
        if size != manifest.stream.size || sha != manifest.stream.sha256 {
            return Err(RepoError::Corrupt {
                object: format!("snapshot {}", manifest.id),
                detail: format!(
                    "restored stream is {size} bytes with SHA-256 {sha}, manifest says {} bytes with {}",
                    manifest.stream.size, manifest.stream.sha256
                ),
            });
        }
        Ok(())
    }
}
