//! Reading a snapshot's stream back, in order, proving every chunk as it goes.

use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::chunk;
use super::{Manifest, Progress, RepoError, Repository, Result};

/// Chunks fetched ahead of the one being written: overlaps network latency with decoding.
const READ_AHEAD: usize = 4;

impl Repository {
    /// Writes the snapshot's stream to `out`. Fails, naming the object, on the first missing or damaged
    /// chunk, and at the end if the stream's size differs from the manifest.
    ///
    /// Every chunk is proven by its name (its SHA-256, or HMAC-SHA-256 under the repository key), and
    /// the sealed manifest fixes which chunks, in which order, of which sizes: together they prove the
    /// stream, so the stream's own SHA-256 is not recomputed here. On a restore's critical path that
    /// second pass over every byte cost about a core-second per 2 GB on a machine whose two cores are
    /// already busy decompressing. (The restored data is then checked again, table by table, against
    /// the row counts taken at backup time.)
    pub async fn read_stream<W: AsyncWrite + Unpin>(
        &self,
        manifest: &Manifest,
        out: &mut W,
        progress: &dyn Progress,
    ) -> Result<()> {
        self.check_can_read()?;
        let mut size = 0u64;
        let mut chunks = futures::stream::iter(manifest.stream.chunks.iter().cloned())
            .map(|c| {
                let repo = self.clone();
                async move { repo.fetch_proven(c, Ok).await }
            })
            .buffered(READ_AHEAD);
        while let Some(data) = chunks.try_next().await? {
            size += data.len() as u64;
            out.write_all(&data)
                .await
                .map_err(|e| RepoError::Sink { detail: e.to_string() })?;
            progress.advance(data.len() as u64);
        }
        out.flush()
            .await
            .map_err(|e| RepoError::Sink { detail: e.to_string() })?;
        if size != manifest.stream.size {
            return Err(RepoError::Corrupt {
                object: format!("snapshot {}", manifest.id),
                detail: format!(
                    "restored stream is {size} bytes, manifest says {} bytes",
                    manifest.stream.size
                ),
            });
        }
        Ok(())
    }

    /// Writes the snapshot's stream into `file` (which must hold nothing yet, though it may be sized
    /// already), each chunk at its own offset
    /// as soon as it is decoded and proven, several at once: no serial writer and no copy through an
    /// async buffer, which on a restore's critical path is worth a core. Proves the stream as
    /// [`Repository::read_stream`] does. `file` is fully written and flushed to the OS on success.
    ///
    /// `proven` is called each time the stretch of the file from its start that holds only proven
    /// chunks grows, with its new length: a reader may use those bytes while later ones are still
    /// being fetched. (A chunk's bytes land in the file before its hash is checked, so bytes past
    /// that length may yet turn out damaged.)
    pub async fn read_stream_to_file(
        &self,
        manifest: &Manifest,
        file: std::fs::File,
        progress: &dyn Progress,
        proven: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        use std::os::unix::fs::FileExt;

        self.check_can_read()?;
        let sink = |e: std::io::Error| RepoError::Sink { detail: e.to_string() };
        let file = std::sync::Arc::new(file);
        let mut offset = 0u64;
        let placed: Vec<_> = manifest
            .stream
            .chunks
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let at = offset;
                offset += u64::from(c.size);
                (index, c.clone(), at)
            })
            .collect();
        let ends: Vec<u64> = placed.iter().map(|(_, c, at)| at + u64::from(c.size)).collect();
        if offset != manifest.stream.size {
            return Err(RepoError::Corrupt {
                object: format!("snapshot {}", manifest.id),
                detail: format!(
                    "its chunks add up to {offset} bytes, the manifest says the stream is {} bytes",
                    manifest.stream.size
                ),
            });
        }
        let mut writes = futures::stream::iter(placed)
            .map(|(index, c, at)| {
                let repo = self.clone();
                let file = file.clone();
                async move {
                    repo.fetch_then(c, move |fetched| {
                        let size = fetched.size;
                        fetched.decode_to(|off, piece| file.write_all_at(piece, at + off).map_err(sink))?;
                        Ok((index, size as u64))
                    })
                    .await
                }
            })
            .buffer_unordered(READ_AHEAD);
        // Chunks finish out of order; the proven stretch ends at the first chunk not yet done.
        let mut done = vec![false; ends.len()];
        let mut prefix = 0;
        while let Some((index, written)) = writes.try_next().await? {
            progress.advance(written);
            done[index] = true;
            if index == prefix {
                while prefix < done.len() && done[prefix] {
                    prefix += 1;
                }
                proven(ends[prefix - 1]);
            }
        }
        Ok(())
    }

    fn check_can_read(&self) -> Result<()> {
        if self.is_encrypted() && self.keys.identity.is_none() {
            return Err(RepoError::IdentityRequired {
                what: "restoring".into(),
            });
        }
        Ok(())
    }

    /// Fetches one chunk, proves it against its name and size, and hands the plaintext to `then`,
    /// all off the async threads (decompressing and hashing a 4 MiB chunk is real work).
    async fn fetch_proven<T: Send + 'static>(
        &self,
        c: super::manifest::ChunkRef,
        then: impl FnOnce(Vec<u8>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.fetch_then(c, |fetched| then(fetched.decode()?)).await
    }

    /// Fetches one chunk's stored object and runs `work` on it on a blocking thread; `work` proves
    /// it with [`FetchedChunk::decode`] or [`FetchedChunk::decode_to`].
    async fn fetch_then<T: Send + 'static>(
        &self,
        c: super::manifest::ChunkRef,
        work: impl FnOnce(FetchedChunk) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let id = c.chunk_id()?;
        let path = id.object_path();
        let stored = self.get(&path).await?;
        let fetched = FetchedChunk {
            stored,
            path,
            id,
            size: c.size as usize,
            addressing: self.addressing.clone(),
            identity: self.keys.identity.clone(),
        };
        super::cpu::on_a_core(move || work(fetched)).await
    }
}

/// A chunk's stored object, with what proving it takes.
struct FetchedChunk {
    stored: bytes::Bytes,
    path: String,
    id: chunk::ChunkId,
    size: usize,
    addressing: chunk::Addressing,
    identity: Option<age::x25519::Identity>,
}

impl FetchedChunk {
    /// See [`chunk::decode`].
    fn decode(self) -> Result<Vec<u8>> {
        chunk::decode(
            &self.path,
            &self.stored,
            &self.id,
            Some(self.size),
            &self.addressing,
            self.identity.as_ref(),
        )
    }

    /// See [`chunk::decode_to`].
    fn decode_to(self, sink: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        chunk::decode_to(
            &self.path,
            &self.stored,
            &self.id,
            Some(self.size),
            &self.addressing,
            self.identity.as_ref(),
            sink,
        )
    }
}
