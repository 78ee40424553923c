//! Writing a backup stream: chunk → name → skip what the repository has → compress/encrypt → upload.
//!
//! The source is read on a blocking thread (it is usually a child process's stdout). Chunks travel
//! through a small bounded channel and at most `uploads_in_flight` are being encoded or sent at once,
//! so memory stays bounded by a few chunk sizes whatever the database size. Nothing touches local disk.
//! Compressing is CPU work and sending is waiting, so compressing has its own limit (see [`cpu`]).

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;

use fastcdc::v2020::StreamCDC;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, path::Path as StorePath};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::chunk::{self, ChunkId};
use super::cpu;
use super::{ChunkRef, Progress, RepoError, Repository, Result};

/// The first bytes of a stream become a chunk of their own. Dump formats put what changes on every run
/// (pg_dump's header carries the dump's start time) at the very start; cutting it off keeps that change
/// out of the first content-defined chunk, which would otherwise be re-stored (1–4 MiB) by every backup.
/// Content-defined cutting restarts after it, so the following boundaries match run to run.
const HEAD_CHUNK: usize = 64 << 10;

#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Chunks being compressed or uploaded at once.
    pub uploads_in_flight: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { uploads_in_flight: 4 }
    }
}

/// What a written stream consists of; becomes the manifest's `stream` section.
#[derive(Debug, Clone)]
pub struct StreamSummary {
    pub size: u64,
    pub sha256: String,
    pub chunks: Vec<ChunkRef>,
    pub new_chunks: u64,
    pub new_bytes: u64,
}

impl Repository {
    /// Stores everything `source` yields until end of stream and returns the chunk list. It commits
    /// nothing: the caller writes the manifest only after it has checked that the producer succeeded.
    pub async fn write_stream<R: Read + Send + 'static>(
        &self,
        source: R,
        opts: &WriteOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<StreamSummary> {
        self.require_keys_to_write()?;
        let params = self.config.chunker;
        let addressing = self.addressing.clone();
        let (tx, mut rx) = mpsc::channel::<(ChunkId, Vec<u8>)>(2);

        let reader = tokio::task::spawn_blocking(move || -> Result<(u64, String)> {
            let mut source = source;
            let mut stream_hash = Sha256::new();
            let mut size = 0u64;
            let mut emit = |data: Vec<u8>| -> bool {
                stream_hash.update(&data);
                size += data.len() as u64;
                let id = addressing.id_of(&data);
                // A closed channel means an upload failed; its error is the one to report.
                tx.blocking_send((id, data)).is_ok()
            };
            let source_err = |e: &dyn std::fmt::Display| RepoError::Source {
                bytes: 0,
                detail: e.to_string(),
            };
            let mut head = Vec::with_capacity(HEAD_CHUNK);
            (&mut source)
                .take(HEAD_CHUNK as u64)
                .read_to_end(&mut head)
                .map_err(|e| source_err(&e))?;
            let more = head.len() == HEAD_CHUNK;
            if !head.is_empty() && emit(head) && more {
                let (min, avg, max) = (
                    params.min_size as usize,
                    params.avg_size as usize,
                    params.max_size as usize,
                );
                for item in StreamCDC::new(source, min, avg, max) {
                    let chunk = item.map_err(|e| source_err(&e))?;
                    if !emit(chunk.data) {
                        break;
                    }
                }
            }
            Ok((size, hex::encode(stream_hash.finalize())))
        });

        let permits = Arc::new(Semaphore::new(opts.uploads_in_flight.max(1)));
        let mut uploads: JoinSet<Result<Option<u64>>> = JoinSet::new();
        let mut seen = HashSet::new();
        let mut chunks = Vec::new();
        let (mut new_chunks, mut new_bytes) = (0u64, 0u64);
        let mut account = |r: Option<u64>| {
            if let Some(n) = r {
                new_chunks += 1;
                new_bytes += n;
            }
        };

        while let Some((id, data)) = rx.recv().await {
            progress.advance(data.len() as u64);
            chunks.push(ChunkRef {
                id: id.to_hex(),
                size: data.len() as u32,
            });
            if !seen.insert(id) {
                continue;
            }
            let permit = permits.clone().acquire_owned().await.expect("semaphore open");
            let store = self.store.clone();
            let recipients = self.keys.recipients.clone();
            let level = self.config.compression.level;
            uploads.spawn(async move {
                let r = upload_chunk(store, id, data, level, recipients).await;
                drop(permit);
                r
            });
            // Surface a failed upload now rather than after the whole stream was read.
            while let Some(done) = uploads.try_join_next() {
                account(done.map_err(|e| RepoError::Task(e.to_string()))??);
            }
        }
        drop(rx);
        let (size, sha256) = reader.await.map_err(|e| RepoError::Task(e.to_string()))??;
        while let Some(done) = uploads.join_next().await {
            account(done.map_err(|e| RepoError::Task(e.to_string()))??);
        }
        Ok(StreamSummary {
            size,
            sha256,
            chunks,
            new_chunks,
            new_bytes,
        })
    }
}

/// Uploads one chunk unless the repository already holds it. Returns the stored size when it wrote.
async fn upload_chunk(
    store: Arc<dyn ObjectStore>,
    id: ChunkId,
    data: Vec<u8>,
    level: i32,
    recipients: Vec<age::x25519::Recipient>,
) -> Result<Option<u64>> {
    let path = id.object_path();
    let location = StorePath::from(path.as_str());
    match store.head(&location).await {
        Ok(_) => return Ok(None),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(RepoError::storage(path, e)),
    }
    let encoded = cpu::on_a_core(move || chunk::encode(&data, level, &recipients)).await?;
    let len = encoded.len() as u64;
    // Create-only: a chunk is never overwritten, even by identical bytes (WORM buckets refuse it).
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store.put_opts(&location, PutPayload::from(encoded), opts).await {
        Ok(_) => Ok(Some(len)),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(None),
        Err(e) => Err(RepoError::storage(path, e)),
    }
}
