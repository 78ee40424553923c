//! Repository locks: what makes prune safe against concurrent backups.
//!
//! Deduplication is why they are needed. A backup does not upload a chunk the repository already
//! holds: it HEADs it, finds it, and names it in its manifest. That chunk may have been written months
//! ago and be referenced today by nothing else, so a prune running at the same moment would see it as
//! garbage and delete it, and the backup would then commit a manifest naming a chunk that is gone:
//! a snapshot that cannot be restored. Locks keep the two apart.
//!
//! A lock is an object `locks/<random>.json` saying who holds it (kind, operation, host, pid, created,
//! refreshed, and the snapshot it reads, if any). Backups take *shared* locks (any number may run at
//! once), and so do restores and drills for as long as they read a snapshot, so that prune never
//! deletes a snapshot that is being restored; prune takes an *exclusive* one. Both write their own
//! lock first and only then list the others, so of two that start at the same moment at least one
//! sees the other and backs off. A lock not refreshed for `stale_after`
//! (30 minutes by default) belongs to a process that died: it is ignored, and the exclusive locker
//! removes it. A holder that cannot refresh its lock for that long, or finds it removed, has lost it
//! and must stop before it commits anything ([`RepoLock::confirm`]).
//!
//! Where the everyday credential may not delete (least privilege), a backup cannot remove its lock:
//! it then overwrites it with a `released` mark, which everyone ignores and prune later removes. A
//! credential that may not write at all (a read-only restore credential) cannot lock: restores then
//! read without a lock, and say so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use jiff::Timestamp;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{RepoError, Repository, Result};

const PREFIX: &str = "locks";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    /// Backups, restores and drills: many at once.
    Shared,
    /// Prune: alone.
    Exclusive,
}

impl std::fmt::Display for LockKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LockKind::Shared => "shared",
            LockKind::Exclusive => "exclusive",
        })
    }
}

/// The content of a lock object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub kind: LockKind,
    /// What holds it, e.g. "backup orders", "restore reading snapshot <id> of source orders" or "prune".
    pub operation: String,
    /// The snapshot the holder reads (restores and drills). Older lifeboat versions do not write it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub host: String,
    pub pid: u32,
    pub created: Timestamp,
    pub refreshed: Timestamp,
    /// Set when the holder finished but could not delete the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<Timestamp>,
}

/// How long a lock lives without a refresh, and how often holders refresh theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOptions {
    /// A lock not refreshed for this long is stale: its holder is taken to be dead.
    pub stale_after: Duration,
    /// How often a holder rewrites its lock. A holder that has not refreshed for
    /// `stale_after - refresh_every` considers its lock lost.
    pub refresh_every: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            stale_after: Duration::from_secs(30 * 60),
            refresh_every: Duration::from_secs(5 * 60),
        }
    }
}

/// A lock found in the repository.
#[derive(Debug, Clone)]
pub struct FoundLock {
    pub object: String,
    /// `None` when the object cannot be read: then it counts as a live lock of an unknown holder
    /// until its storage timestamp is older than `stale_after`.
    pub info: Option<LockInfo>,
    pub last_modified: Timestamp,
}

impl FoundLock {
    fn last_sign_of_life(&self) -> Timestamp {
        match &self.info {
            Some(i) => i.refreshed,
            None => self.last_modified,
        }
    }

    /// Released, or not refreshed for `stale_after`.
    pub fn is_stale(&self, now: Timestamp, stale_after: Duration) -> bool {
        if self.info.as_ref().is_some_and(|i| i.released.is_some()) {
            return true;
        }
        now.duration_since(self.last_sign_of_life()).as_secs_f64() >= stale_after.as_secs_f64()
    }

    /// The snapshot a live restore or drill holding this lock reads.
    pub fn snapshot(&self) -> Option<&str> {
        self.info.as_ref().and_then(|i| i.snapshot.as_deref())
    }

    /// Exclusive, or unknown (an unreadable lock is treated as the strictest kind).
    fn is_exclusive(&self) -> bool {
        self.info.as_ref().is_none_or(|i| i.kind == LockKind::Exclusive)
    }

    /// "exclusive lock of `prune` held by host db1 (pid 4242), created 2024-..., refreshed 3m ago
    /// (locks/ab12.json)".
    pub fn describe(&self, now: Timestamp) -> String {
        let age = human_age(now, self.last_sign_of_life());
        match &self.info {
            Some(i) => format!(
                "{} lock of `{}` held by host {} (pid {}), created {}, last refreshed {age} ago ({})",
                i.kind,
                i.operation,
                i.host,
                i.pid,
                i.created.strftime("%Y-%m-%d %H:%M:%SZ"),
                self.object
            ),
            None => format!("unreadable lock object {} written {age} ago", self.object),
        }
    }
}

fn human_age(now: Timestamp, then: Timestamp) -> String {
    let s = now.duration_since(then).as_secs().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

/// What the holder knows about its own lock.
struct Held {
    store: Arc<dyn ObjectStore>,
    object: String,
    info: LockInfo,
    options: LockOptions,
    last_refresh: Instant,
    /// Why the lock is lost, once it is.
    lost: Option<String>,
}

impl Held {
    fn lost_error(&self, detail: &str) -> RepoError {
        RepoError::LockLost {
            object: self.object.clone(),
            detail: detail.to_string(),
        }
    }

    /// Rewrites the lock with a new `refreshed` time, unless it is already lost: gone from the
    /// repository (someone took it for stale and removed it) or not refreshed for so long that others
    /// may take it for stale.
    async fn refresh(&mut self) -> Result<()> {
        if let Some(why) = &self.lost {
            return Err(self.lost_error(why));
        }
        let margin = self.options.refresh_every.min(self.options.stale_after / 2);
        let since = self.last_refresh.elapsed();
        if since + margin >= self.options.stale_after {
            let why = format!(
                "it was not refreshed for {}s, so other processes may already treat it as stale (after {}s)",
                since.as_secs(),
                self.options.stale_after.as_secs()
            );
            self.lost = Some(why.clone());
            return Err(self.lost_error(&why));
        }
        let path = StorePath::from(self.object.as_str());
        match self.store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                let why = "it was removed from the repository (another process took it for stale)".to_string();
                self.lost = Some(why.clone());
                return Err(self.lost_error(&why));
            }
            Err(e) => return Err(RepoError::storage(self.object.clone(), e)),
        }
        self.info.refreshed = Timestamp::now();
        let bytes = serde_json::to_vec_pretty(&self.info).expect("lock serializes");
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| RepoError::storage(self.object.clone(), e))?;
        self.last_refresh = Instant::now();
        Ok(())
    }
}

/// A lock this process holds. It refreshes itself in the background until released. Release it
/// explicitly ([`RepoLock::release`]); dropping it releases it in the background as a fallback.
pub struct RepoLock {
    held: Arc<Mutex<Held>>,
    object: String,
    refresher: Option<tokio::task::JoinHandle<()>>,
    /// Stale locks this acquisition removed (exclusive locks only).
    pub removed_stale: Vec<String>,
}

impl RepoLock {
    /// The lock's object path.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// Proves the lock is still held, refreshing it now. Call it right before an irreversible step
    /// (a backup's commit, prune's deletes): a lost lock means another process may have acted as if
    /// this one were dead.
    pub async fn confirm(&self) -> Result<()> {
        self.held.lock().await.refresh().await
    }

    /// Stops refreshing and removes the lock. Where the credential may not delete, overwrites it with
    /// a `released` mark instead, which every process ignores.
    pub async fn release(mut self) -> Result<()> {
        if let Some(task) = self.refresher.take() {
            task.abort();
            let _ = task.await;
        }
        release(&self.held).await
    }
}

async fn release(held: &Mutex<Held>) -> Result<()> {
    let mut h = held.lock().await;
    let path = StorePath::from(h.object.as_str());
    match h.store.delete(&path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) if super::prune::is_permission_error(&e) => {
            h.info.released = Some(Timestamp::now());
            let bytes = serde_json::to_vec_pretty(&h.info).expect("lock serializes");
            h.store
                .put(&path, PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|e| RepoError::storage(h.object.clone(), e))
        }
        Err(e) => Err(RepoError::storage(h.object.clone(), e)),
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        let Some(task) = self.refresher.take() else {
            return;
        };
        // Not released explicitly (an error path or a cancelled task): release in the background.
        task.abort();
        let held = self.held.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = release(&held).await {
                    tracing::warn!("could not release repository lock: {e}; it becomes stale and is ignored later");
                }
            });
        }
    }
}

impl Repository {
    /// Every lock object in the repository.
    pub async fn locks(&self) -> Result<Vec<FoundLock>> {
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&StorePath::from(PREFIX)))
            .try_collect()
            .await
            .map_err(|e| RepoError::storage(format!("{PREFIX}/"), e))?;
        let mut found = Vec::new();
        for meta in metas {
            let object = meta.location.to_string();
            let last_modified = Timestamp::from_second(meta.last_modified.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH);
            let info = match self.get(&object).await {
                Ok(bytes) => serde_json::from_slice::<LockInfo>(&bytes).ok(),
                // Released between the listing and now.
                Err(RepoError::Missing { .. }) => continue,
                Err(e) => return Err(e),
            };
            found.push(FoundLock {
                object,
                info,
                last_modified,
            });
        }
        Ok(found)
    }

    /// Takes a lock. Writes it first, then lists the others: a shared lock gives way to any live
    /// exclusive one, an exclusive lock to any live lock at all. Giving way removes the lock just
    /// written and fails with [`RepoError::Locked`], naming the holders. An exclusive lock removes the
    /// stale locks it finds.
    pub async fn lock(&self, kind: LockKind, operation: &str, options: &LockOptions) -> Result<RepoLock> {
        self.acquire(kind, operation, None, options).await
    }

    /// Takes a shared lock for reading one snapshot (a restore, a drill): prune, which needs the
    /// repository to itself, refuses to run while it is held, naming `operation`.
    pub async fn lock_snapshot(&self, operation: &str, snapshot: &str, options: &LockOptions) -> Result<RepoLock> {
        self.acquire(LockKind::Shared, operation, Some(snapshot), options).await
    }

    async fn acquire(
        &self,
        kind: LockKind,
        operation: &str,
        snapshot: Option<&str>,
        options: &LockOptions,
    ) -> Result<RepoLock> {
        let now = Timestamp::now();
        let info = LockInfo {
            kind,
            operation: operation.to_string(),
            snapshot: snapshot.map(str::to_string),
            host: hostname(),
            pid: std::process::id(),
            created: now,
            refreshed: now,
            released: None,
        };
        let object = format!("{PREFIX}/{}.json", hex::encode(rand::random::<[u8; 16]>()));
        let path = StorePath::from(object.as_str());
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let bytes = serde_json::to_vec_pretty(&info).expect("lock serializes");
        self.store
            .put_opts(&path, PutPayload::from(bytes), opts)
            .await
            .map_err(|e| RepoError::storage(object.clone(), e))?;
        let held = Arc::new(Mutex::new(Held {
            store: self.store.clone(),
            object: object.clone(),
            info,
            options: *options,
            last_refresh: Instant::now(),
            lost: None,
        }));
        let others = match self.locks().await {
            Ok(all) => all.into_iter().filter(|l| l.object != object).collect::<Vec<_>>(),
            Err(e) => {
                let _ = release(&held).await;
                return Err(e);
            }
        };
        let now = Timestamp::now();
        let (stale, live): (Vec<FoundLock>, Vec<FoundLock>) =
            others.into_iter().partition(|l| l.is_stale(now, options.stale_after));
        let blocking: Vec<&FoundLock> = live
            .iter()
            .filter(|l| kind == LockKind::Exclusive || l.is_exclusive())
            .collect();
        if !blocking.is_empty() {
            let holders: Vec<String> = blocking.iter().map(|l| l.describe(now)).collect();
            let fix = match kind {
                LockKind::Exclusive => format!(
                    "wait until it finishes, then run the {operation} again (it never runs while a backup writes or a restore or drill reads a snapshot); a lock whose process died is ignored {} after its last refresh; if you are certain no process holds it, delete the lock object",
                    describe_duration(options.stale_after)
                ),
                LockKind::Shared => format!(
                    "wait until it finishes, then retry (prune holds the repository alone so that it never deletes a chunk a backup is reusing); a lock whose process died is ignored {} after its last refresh",
                    describe_duration(options.stale_after)
                ),
            };
            let _ = release(&held).await;
            return Err(RepoError::Locked {
                holders: holders.join("; "),
                fix,
            });
        }
        let mut removed_stale = Vec::new();
        if kind == LockKind::Exclusive {
            for l in stale {
                match self.store.delete(&StorePath::from(l.object.as_str())).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => removed_stale.push(l.object),
                    Err(e) => tracing::warn!("could not remove stale lock {}: {e}", l.object),
                }
            }
        }
        let refresher = {
            let held = held.clone();
            let every = options.refresh_every;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let mut h = held.lock().await;
                    if let Err(e) = h.refresh().await {
                        tracing::warn!("repository lock refresh failed: {e}");
                        if h.lost.is_some() {
                            return;
                        }
                    }
                }
            })
        };
        Ok(RepoLock {
            held,
            object,
            refresher: Some(refresher),
            removed_stale,
        })
    }
}

fn describe_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 120 && s.is_multiple_of(60) {
        format!("{} minutes", s / 60)
    } else {
        format!("{s} seconds")
    }
}

pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;

    async fn repo(dir: &std::path::Path) -> Repository {
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap());
        Repository::init(store, "test", &[]).await.unwrap().repository
    }

    fn write_lock(dir: &std::path::Path, name: &str, info: &LockInfo) {
        std::fs::create_dir_all(dir.join("locks")).unwrap();
        std::fs::write(dir.join("locks").join(name), serde_json::to_vec(info).unwrap()).unwrap();
    }

    fn foreign(kind: LockKind, refreshed_ago: Duration) -> LockInfo {
        let refreshed = Timestamp::now() - refreshed_ago;
        LockInfo {
            kind,
            operation: "backup other".into(),
            snapshot: None,
            host: "elsewhere".into(),
            pid: 4242,
            created: refreshed,
            refreshed,
            released: None,
        }
    }

    fn lock_files(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("locks"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test]
    async fn shared_locks_coexist_and_exclusive_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path()).await;
        let opts = LockOptions::default();
        let a = r.lock(LockKind::Shared, "backup a", &opts).await.unwrap();
        let b = r.lock(LockKind::Shared, "backup b", &opts).await.unwrap();
        let err = r.lock(LockKind::Exclusive, "prune", &opts).await.err().unwrap();
        let text = err.to_string();
        assert!(matches!(err, RepoError::Locked { .. }), "{text}");
        assert!(text.contains("backup a") && text.contains("backup b"), "{text}");
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        assert_eq!(lock_files(dir.path()).len(), 2, "the refused lock must be removed");
        a.release().await.unwrap();
        b.release().await.unwrap();
        assert!(lock_files(dir.path()).is_empty());
        let x = r.lock(LockKind::Exclusive, "prune", &opts).await.unwrap();
        let err = r.lock(LockKind::Shared, "backup c", &opts).await.err().unwrap();
        assert!(err.to_string().contains("exclusive lock of `prune`"), "{err}");
        let err = r.lock(LockKind::Exclusive, "prune", &opts).await.err().unwrap();
        assert!(matches!(err, RepoError::Locked { .. }));
        x.release().await.unwrap();
        assert!(lock_files(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_snapshot_reader_names_its_snapshot_and_keeps_prune_out() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path()).await;
        let opts = LockOptions::default();
        let reading = r
            .lock_snapshot("restore reading snapshot s1 of source orders", "s1", &opts)
            .await
            .unwrap();
        let other = r.lock(LockKind::Shared, "backup orders", &opts).await.unwrap();
        let found = r.locks().await.unwrap();
        let snapshots: Vec<Option<&str>> = found
            .iter()
            .filter(|l| l.object == reading.object())
            .map(|l| l.snapshot())
            .collect();
        assert_eq!(snapshots, [Some("s1")]);
        let err = r.lock(LockKind::Exclusive, "prune", &opts).await.err().unwrap();
        let text = err.to_string();
        assert!(
            text.contains("shared lock of `restore reading snapshot s1 of source orders`"),
            "{text}"
        );
        assert!(text.contains("restore or drill reads a snapshot"), "{text}");
        reading.release().await.unwrap();
        other.release().await.unwrap();
        // A lock written by an older version, without `snapshot`, still reads.
        let mut old = serde_json::to_value(foreign(LockKind::Shared, Duration::ZERO)).unwrap();
        old.as_object_mut().unwrap().remove("snapshot");
        std::fs::create_dir_all(dir.path().join("locks")).unwrap();
        std::fs::write(dir.path().join("locks/old.json"), old.to_string()).unwrap();
        let found = r.locks().await.unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].info.is_some() && found[0].snapshot().is_none());
    }

    #[tokio::test]
    async fn stale_and_released_locks_are_ignored_and_removed_by_an_exclusive_lock() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path()).await;
        let opts = LockOptions::default();
        write_lock(
            dir.path(),
            "old.json",
            &foreign(LockKind::Exclusive, Duration::from_secs(31 * 60)),
        );
        let mut released = foreign(LockKind::Shared, Duration::from_secs(10));
        released.released = Some(Timestamp::now());
        write_lock(dir.path(), "released.json", &released);
        // A backup is not stopped by a dead prune's lock, and leaves it alone.
        let s = r.lock(LockKind::Shared, "backup", &opts).await.unwrap();
        assert!(s.removed_stale.is_empty());
        s.release().await.unwrap();
        assert_eq!(lock_files(dir.path()), vec!["old.json", "released.json"]);
        let x = r.lock(LockKind::Exclusive, "prune", &opts).await.unwrap();
        let mut removed = x.removed_stale.clone();
        removed.sort();
        assert_eq!(removed, vec!["locks/old.json", "locks/released.json"]);
        x.release().await.unwrap();
        assert!(lock_files(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_live_foreign_lock_and_an_unreadable_one_block_an_exclusive_lock() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path()).await;
        let opts = LockOptions::default();
        write_lock(
            dir.path(),
            "live.json",
            &foreign(LockKind::Shared, Duration::from_secs(29 * 60)),
        );
        let err = r.lock(LockKind::Exclusive, "prune", &opts).await.err().unwrap();
        let text = err.to_string();
        assert!(
            text.contains("host elsewhere (pid 4242)") && text.contains("29m ago"),
            "{text}"
        );
        assert_eq!(lock_files(dir.path()), vec!["live.json"]);
        std::fs::remove_file(dir.path().join("locks/live.json")).unwrap();
        std::fs::write(dir.path().join("locks/garbage.json"), b"not json").unwrap();
        let err = r.lock(LockKind::Shared, "backup", &opts).await.err().unwrap();
        assert!(
            err.to_string().contains("unreadable lock object locks/garbage.json"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_removed_lock_is_lost_and_confirm_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path()).await;
        let lock = r
            .lock(LockKind::Shared, "backup", &LockOptions::default())
            .await
            .unwrap();
        lock.confirm().await.unwrap();
        let before = std::fs::read_to_string(dir.path().join(lock.object())).unwrap();
        let info: LockInfo = serde_json::from_str(&before).unwrap();
        assert_eq!((info.kind, info.pid), (LockKind::Shared, std::process::id()));
        std::fs::remove_file(dir.path().join(lock.object())).unwrap();
        let err = lock.confirm().await.unwrap_err();
        assert!(matches!(err, RepoError::LockLost { .. }), "{err}");
        assert!(err.to_string().contains("removed"), "{err}");
        assert!(
            lock_files(dir.path()).is_empty(),
            "a lost lock must not be written again"
        );
        lock.release().await.unwrap();
    }

    #[tokio::test]
    async fn the_refresher_rewrites_the_lock_and_a_late_refresh_is_a_lost_lock() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path()).await;
        let opts = LockOptions {
            stale_after: Duration::from_millis(1500),
            refresh_every: Duration::from_millis(100),
        };
        let lock = r.lock(LockKind::Exclusive, "prune", &opts).await.unwrap();
        let read =
            || -> LockInfo { serde_json::from_slice(&std::fs::read(dir.path().join(lock.object())).unwrap()).unwrap() };
        let first = read().refreshed;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(read().refreshed > first, "the background task must refresh the lock");
        lock.confirm().await.unwrap();
        // Hold the refresher off longer than the lock may go unrefreshed.
        {
            let guard = lock.held.lock().await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            drop(guard);
        }
        let err = lock.confirm().await.unwrap_err();
        assert!(err.to_string().contains("not refreshed"), "{err}");
        lock.release().await.unwrap();
    }
}
