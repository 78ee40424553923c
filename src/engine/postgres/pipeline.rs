//! Restoring a `pg_dump -Fc` archive while it is still being fetched.
//!
//! A parallel restore used to fetch and prove the whole archive first and only then start
//! `pg_restore --jobs`: on two cores that put about 2 s of decompressing and hashing, and a walk of
//! the archive, in front of a 17 s restore (BENCHMARKS.md). Here the three parts of a restore overlap
//! with the fetch instead:
//!
//! 1. As soon as the table of contents is proven, `pg_restore` creates the schema: the entries of the
//!    pre-data section, from a use-list (`-L`).
//! 2. Lifeboat loads the table data itself, on `jobs` connections, with `COPY ... FROM STDIN`,
//!    reading the data blocks out of the staged archive right behind the proven mark. The blocks are
//!    cut into units of about 32 MiB of whole rows, taken by whichever connection is free, so all
//!    stay busy and finish together however the bytes are spread over the tables: in archive order
//!    while the archive arrives, then the table with the most index work first, each connection on
//!    a table of its own while there are enough (see [`super::units`]). `pg_dump -Z0` writes one
//!    length-prefixed piece per row; they go to the server in 256 KiB messages.
//! 3. Once the whole archive is proven, a connection commits whenever its transaction holds units
//!    of a table other than the one it loads next. A table whose every unit is committed gets its
//!    indexes and constraints (those that need no other table) from `pg_restore --use-list` at
//!    once, while the others still load, as `pg_restore --jobs` itself overlaps one table's index
//!    builds with another's data. Everything else (sequence values, foreign keys, triggers,
//!    privileges) follows all data, from one last `pg_restore --jobs`.
//!
//! The safety of "prove before restoring" holds for the data: no connection commits anything before
//! the *whole* archive is proven, until then each keeps what it loaded in one open transaction, so a
//! chunk found damaged late rolls all data back. (Nor can a connection finish early: it runs out of
//! units only once the scan has reached the archive's end.) The target then holds the empty schema, which the caller marks
//! incomplete. The row counts the server returns for the committed `COPY`s are the restore's
//! fingerprint: counting every table again afterwards cost about 0.7 s of a 2 GB restore.
//!
//! What this does not handle it declines before touching the target, and the caller restores the
//! classic way once the archive is whole: archives whose data blocks are compressed, large objects,
//! an encoding other than UTF-8, a table whose data is not a COPY.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::sync::watch;

use super::Postgres;
use super::archive::{self, BLOCK_DATA, LayoutError, Toc};
use super::units::{EndGuard, Unit, UnitQueue};
use crate::engine::{EngineError, GrowingArchive, Proven, RestoreHandle, RestoreOptions};
use crate::repo::TableRows;

const SECTION_NONE: i64 = 1;
const SECTION_PRE_DATA: i64 = 2;

/// Bytes read from an archive staged on disk at a time.
const READ_SIZE: usize = 1 << 20;
/// Bytes of an archive staged in memory mapped at a time (see [`Reader`]).
const MAP_SIZE: usize = 4 << 20;
/// Bytes of table data per unit of work (see [`scan`]).
const UNIT_SIZE: u64 = 32 << 20;
/// Bytes of table data per `CopyData` message.
const SEND_SIZE: usize = 256 << 10;

/// Entries `pg_restore` applies by itself on connecting, never from a list.
const SESSION_ENTRIES: [&str; 3] = ["ENCODING", "STDSTRINGS", "SEARCHPATH"];
/// Entries a full `pg_restore` applies after all data, whatever section they sit in.
const AFTER_DATA: [&str; 2] = ["ACL", "DEFAULT ACL"];

/// See the module documentation. Returns the rows loaded into each table, as the server counted
/// them in its replies to the committed `COPY`s; `Ok(None)`: declined, nothing touched.
pub(super) async fn restore(
    pg: &Postgres,
    archive: GrowingArchive,
    opts: &RestoreOptions,
) -> Result<Option<Vec<TableRows>>, EngineError> {
    let GrowingArchive { path, file, proven } = archive;
    let file = Arc::new(file);
    let mut proof = Proof(proven);
    let toc = match read_toc(&file, &mut proof).await? {
        Ok(toc) => toc,
        Err(why) => {
            tracing::debug!("restoring the classic way: {why}");
            return Ok(None);
        }
    };
    let plan = match Plan::new(&toc) {
        Ok(plan) => plan,
        Err(why) => {
            tracing::debug!("restoring the classic way: {why}");
            return Ok(None);
        }
    };
    tracing::debug!(
        "restoring while fetching: {} entries before the data, {} tables loaded by COPY, {} entries after",
        plan.before.len(),
        plan.loads.len(),
        plan.after.len()
    );

    let units = Arc::new(UnitQueue::new(
        plan.early.iter().map(|(&data, builds)| (data, builds.len())).collect(),
    ));
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
    let tracker = Arc::new(Tracker {
        tables: Mutex::new(HashMap::new()),
        ready: ready_tx,
    });
    let scanner = AbortOnDrop(tokio::spawn(scan(
        Reader::new(file.clone(), proof.clone(), toc.data_start),
        toc.int_size,
        units.clone(),
        tracker.clone(),
    )));

    let clock = std::time::Instant::now();
    run_pg_restore(pg, opts, &path, &plan.before, None).await?;
    tracing::debug!("schema created in {:.2}s", clock.elapsed().as_secs_f64());

    let clock = std::time::Instant::now();
    let tables = Arc::new(plan.loads);
    let workers: Vec<_> = (0..opts.jobs.max(1))
        .map(|_| {
            load(
                pg,
                units.clone(),
                tables.clone(),
                tracker.clone(),
                Reader::new(file.clone(), proof.clone(), toc.data_start),
                toc.int_size,
            )
        })
        .collect();
    // The channel of finished tables closes once the scan and every worker are done with it.
    drop(tracker);
    let early = async {
        let mut running = futures::stream::FuturesUnordered::new();
        let mut open = true;
        loop {
            tokio::select! {
                table = ready.recv(), if open => match table {
                    Some(table) => {
                        if let Some(ids) = plan.early.get(&table) {
                            running.push(run_pg_restore(pg, opts, &path, ids, Some(opts.jobs)));
                        }
                    }
                    None => open = false,
                },
                Some(done) = futures::StreamExt::next(&mut running), if !running.is_empty() => done?,
                else => return Ok::<(), EngineError>(()),
            }
        }
    };
    let (loaded, ()) = futures::future::try_join(futures::future::try_join_all(workers), early).await?;
    let mut rows: HashMap<i64, u64> = HashMap::new();
    for loaded in loaded {
        for (dump_id, n) in loaded {
            *rows.entry(dump_id).or_default() += n;
        }
    }
    drop(scanner);
    tracing::debug!(
        "{} rows loaded and committed, and {} early indexes and constraints built, in {:.2}s",
        rows.values().sum::<u64>(),
        plan.early.values().map(Vec::len).sum::<usize>(),
        clock.elapsed().as_secs_f64()
    );
    // A table whose block holds no rows got no unit, and so no COPY: it has none.
    let counts = tables
        .iter()
        .map(|(dump_id, t)| TableRows {
            schema: t.schema.clone(),
            table: t.table.clone(),
            rows: rows.get(dump_id).copied().unwrap_or(0),
        })
        .collect();

    let clock = std::time::Instant::now();
    run_pg_restore(pg, opts, &path, &plan.after, Some(opts.jobs)).await?;
    tracing::debug!("post-data restored in {:.2}s", clock.elapsed().as_secs_f64());
    Ok(Some(counts))
}

/// What a restore does with each entry of the table of contents.
struct Plan {
    /// Dump ids `pg_restore` restores before the data: the schema.
    before: Vec<i64>,
    /// Tables lifeboat loads, by dump id.
    loads: HashMap<i64, Load>,
    /// Indexes and constraints on one loaded table and nothing else loaded, by the dump id of the
    /// table's data: restored as soon as that table's data is committed, while others still load.
    early: HashMap<i64, Vec<i64>>,
    /// Dump ids `pg_restore` restores after all data.
    after: Vec<i64>,
}

struct Load {
    /// `COPY ... FROM stdin;` as `pg_dump` wrote it.
    copy: String,
    /// "schema.table", for messages.
    name: String,
    schema: String,
    table: String,
}

impl Plan {
    /// The plan, or why this archive is left to `pg_restore` alone.
    fn new(toc: &Toc) -> Result<Plan, String> {
        if toc.compressed {
            return Err("the archive's data blocks are compressed".into());
        }
        let encoding = toc.entries.iter().find(|e| e.desc == "ENCODING");
        if !encoding.is_some_and(|e| e.defn.contains("'UTF8'")) {
            return Err("the archive's encoding is not UTF8".into());
        }
        let mut plan = Plan {
            before: Vec::new(),
            loads: HashMap::new(),
            early: HashMap::new(),
            after: Vec::new(),
        };
        let known: HashSet<i64> = toc.entries.iter().map(|e| e.dump_id).collect();
        let mut before = HashSet::new();
        // A table's entry, by the dump id of its data's entry (which depends on it).
        let tables: HashMap<i64, i64> = toc
            .entries
            .iter()
            .filter(|e| e.desc == "TABLE DATA" && e.has_data())
            .filter_map(|e| match e.deps.as_slice() {
                [table] => Some((*table, e.dump_id)),
                _ => None,
            })
            .collect();
        // An entry outside any section belongs to the section of the entry before it, as in
        // `pg_restore --section`.
        let mut section = SECTION_PRE_DATA;
        for e in &toc.entries {
            if e.section != SECTION_NONE {
                section = e.section;
            }
            if SESSION_ENTRIES.contains(&e.desc.as_str()) {
                continue;
            }
            if e.has_data() {
                if e.desc != "TABLE DATA" || e.copy_stmt.trim().is_empty() {
                    return Err(format!(
                        "entry {} ({} {}) has data that is not a COPY",
                        e.dump_id, e.desc, e.tag
                    ));
                }
                plan.loads.insert(
                    e.dump_id,
                    Load {
                        copy: e.copy_stmt.clone(),
                        name: format!("{}.{}", e.namespace, e.tag),
                        schema: e.namespace.clone(),
                        table: e.tag.clone(),
                    },
                );
            } else if section == SECTION_PRE_DATA && !AFTER_DATA.contains(&e.desc.as_str()) {
                plan.before.push(e.dump_id);
                before.insert(e.dump_id);
            } else if let Some(data) = Self::early_for(e, &known, &tables, &before) {
                plan.early.entry(data).or_default().push(e.dump_id);
            } else {
                plan.after.push(e.dump_id);
            }
        }
        Ok(plan)
    }

    /// For an index or constraint whose only dependency in the archive, beside the schema, is one
    /// loaded table: the dump id of that table's data.
    fn early_for(
        e: &archive::TocEntry,
        known: &HashSet<i64>,
        tables: &HashMap<i64, i64>,
        before: &HashSet<i64>,
    ) -> Option<i64> {
        if e.desc != "INDEX" && e.desc != "CONSTRAINT" {
            return None;
        }
        let mut data = None;
        for dep in e.deps.iter().filter(|d| known.contains(d)) {
            match tables.get(dep) {
                Some(&d) if data.is_none() => data = Some(d),
                None if before.contains(dep) => {}
                _ => return None,
            }
        }
        data
    }
}

/// Runs `pg_restore` on the entries `ids` of the archive at `path`, in `jobs` processes (`None`:
/// one, without `--jobs`). Nothing to do for an empty list.
async fn run_pg_restore(
    pg: &Postgres,
    opts: &RestoreOptions,
    path: &std::path::Path,
    ids: &[i64],
    jobs: Option<u32>,
) -> Result<(), EngineError> {
    if ids.is_empty() {
        return Ok(());
    }
    let list = use_list(ids).map_err(|e| EngineError::ToolFailed {
        tool: "pg_restore".into(),
        status: "not started".into(),
        stderr: format!("cannot write its use-list in the temp dir: {e}"),
    })?;
    let mut args: Vec<OsString> = vec!["--use-list".into(), list.path().into()];
    if let Some(jobs) = jobs {
        args.push(format!("--jobs={}", jobs.max(1)).into());
    }
    args.push(path.into());
    let (_, handle) = pg.spawn_pg_restore(opts, &args, false)?;
    Box::new(handle).finish().await
}

/// A `pg_restore --use-list` file naming `ids`, in archive order.
fn use_list(ids: &[i64]) -> std::io::Result<tempfile::NamedTempFile> {
    let mut list = tempfile::Builder::new().prefix("lifeboat-use-list-").tempfile()?;
    let text: String = ids.iter().map(|id| format!("{id};\n")).collect();
    list.write_all(text.as_bytes())?;
    list.flush()?;
    Ok(list)
}

/// Reads the table of contents once enough of the archive is proven: `Ok(Err(why))` when this is
/// not an archive the pipeline reads.
async fn read_toc(file: &Arc<File>, proof: &mut Proof) -> Result<Result<Toc, String>, EngineError> {
    let mut want = 256 * 1024u64;
    loop {
        let (end, whole) = proof.readable_past(want.saturating_sub(1)).await?;
        let have = end.min(want);
        let file = file.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; have as usize];
            file.read_exact_at(&mut buf, 0).map(|_| buf)
        })
        .await
        .map_err(|e| layout(e.to_string()))?
        .map_err(|e| layout(e.to_string()))?;
        match archive::parse_toc(&bytes) {
            Ok(toc) => return Ok(Ok(toc)),
            Err(LayoutError::Truncated(_)) if !(whole && end <= have) => want *= 4,
            Err(e) => return Ok(Err(e.to_string())),
        }
    }
}

fn layout(detail: impl Into<String>) -> EngineError {
    EngineError::ArchiveLayout { detail: detail.into() }
}

/// How far the archive is proven, as the fetch reports it.
#[derive(Clone)]
struct Proof(watch::Receiver<Proven>);

impl Proof {
    /// Waits until bytes past `at` are proven, or the archive is whole. Returns where the proven
    /// bytes end and whether that is the archive's end. Fails once the fetch has failed.
    async fn readable_past(&mut self, at: u64) -> Result<(u64, bool), EngineError> {
        loop {
            match *self.0.borrow_and_update() {
                Proven::Upto(n) if n > at => return Ok((n, false)),
                Proven::Whole(n) => return Ok((n, true)),
                Proven::Failed => return Err(EngineError::ArchiveFailed),
                Proven::Upto(_) => {}
            }
            self.0.changed().await.map_err(|_| EngineError::ArchiveFailed)?;
        }
    }

    /// Whether the whole archive is proven, now.
    fn is_whole(&self) -> bool {
        matches!(*self.0.borrow(), Proven::Whole(_))
    }

    /// Waits until the whole archive is proven.
    async fn whole(&mut self) -> Result<(), EngineError> {
        loop {
            match *self.0.borrow_and_update() {
                Proven::Whole(_) => return Ok(()),
                Proven::Failed => return Err(EngineError::ArchiveFailed),
                Proven::Upto(_) => {}
            }
            self.0.changed().await.map_err(|_| EngineError::ArchiveFailed)?;
        }
    }
}

/// Reads the staged archive from a position onwards, never past the proven mark.
///
/// An archive staged in memory is read through a small mapping that moves along with the reader:
/// copying every byte out with `pread`, once for the scan and once for the loaders, was about 9 %
/// of lifeboat's CPU in a restore (BENCHMARKS.md, ninth run). The mapping is small so that the
/// pages it shows count against this process's resident memory only briefly. An archive staged on
/// disk is read with `pread`: a mapping of it would fault with `SIGBUS` if the file were truncated
/// under it.
struct Reader {
    file: Arc<File>,
    /// Whether `file` may be mapped (see [`may_map`]).
    mappable: bool,
    proof: Proof,
    held: Held,
    /// The archive offset of the first byte held.
    start: u64,
    /// Next unread byte held, and the end of what is held.
    pos: usize,
    len: usize,
}

/// The bytes a [`Reader`] holds: read into its buffer, or mapped.
enum Held {
    Read(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl Held {
    fn bytes(&self) -> &[u8] {
        match self {
            Held::Read(buf) => buf,
            Held::Mapped(map) => map,
        }
    }
}

/// Whether `file` cannot shrink, so that every page of a mapping of it stays backed: a memory file
/// sealed against shrinking (see `ops::staging`).
fn may_map(file: &File) -> bool {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    fcntl(file, FcntlArg::F_GET_SEALS)
        .is_ok_and(|seals| SealFlag::from_bits_truncate(seals).contains(SealFlag::F_SEAL_SHRINK))
}

impl Reader {
    fn new(file: Arc<File>, proof: Proof, at: u64) -> Reader {
        Reader {
            mappable: may_map(&file),
            file,
            proof,
            held: Held::Read(Vec::new()),
            start: at,
            pos: 0,
            len: 0,
        }
    }

    fn at(&self) -> u64 {
        self.start + self.pos as u64
    }

    /// Moves to `at`, dropping what is buffered.
    fn seek(&mut self, at: u64) {
        self.start = at;
        self.pos = 0;
        self.len = 0;
    }

    /// Whether the archive ends here (it is whole and nothing is left).
    async fn at_end(&mut self) -> Result<bool, EngineError> {
        if self.pos < self.len {
            return Ok(false);
        }
        let at = self.at();
        let (end, _) = self.proof.readable_past(at).await?;
        Ok(end <= at)
    }

    /// Makes at least one unread byte available.
    async fn fill(&mut self) -> Result<(), EngineError> {
        if self.pos < self.len {
            return Ok(());
        }
        let at = self.at();
        let (end, _) = self.proof.readable_past(at).await?;
        if end <= at {
            return Err(layout(format!("the archive ends inside a data block, at byte {at}")));
        }
        let want = ((end - at) as usize).min(if self.mappable { MAP_SIZE } else { READ_SIZE });
        let failed = |e: std::io::Error| layout(format!("reading the staged archive at byte {at}: {e}"));
        if self.mappable {
            // Unmapped before the next is mapped.
            self.held = Held::Read(Vec::new());
            // SAFETY: the file is sealed against shrinking (`may_map`), so every mapped page stays
            // backed; and these bytes are below the proven mark, which the fetch never writes again
            // (it writes each chunk once, at its own offset, before proving it), nor does anything
            // else while this restore runs: the memory file is this process's own, `pg_restore`
            // only reads it, and filling in data positions (`archive::fill_data_offsets`) is for
            // an archive restored the classic way, which this restore declined untouched.
            let map = unsafe { memmap2::MmapOptions::new().offset(at).len(want).map(&*self.file) };
            self.held = Held::Mapped(map.map_err(failed)?);
        } else {
            let file = self.file.clone();
            let mut buf = match std::mem::replace(&mut self.held, Held::Read(Vec::new())) {
                Held::Read(buf) if buf.len() == READ_SIZE => buf,
                _ => vec![0; READ_SIZE],
            };
            let (buf, read) = tokio::task::spawn_blocking(move || {
                let read = file.read_exact_at(&mut buf[..want], at);
                (buf, read)
            })
            .await
            .map_err(|e| layout(e.to_string()))?;
            self.held = Held::Read(buf);
            read.map_err(failed)?;
        }
        self.start = at;
        self.pos = 0;
        self.len = want;
        Ok(())
    }

    async fn byte(&mut self) -> Result<u8, EngineError> {
        self.fill().await?;
        self.pos += 1;
        Ok(self.held.bytes()[self.pos - 1])
    }

    /// `ReadInt`: a sign byte and `int_size` bytes.
    async fn int(&mut self, int_size: usize) -> Result<i64, EngineError> {
        let n = 1 + int_size;
        if self.len - self.pos >= n {
            self.pos += n;
            return Ok(archive::read_int(&self.held.bytes()[self.pos - n..self.pos]));
        }
        let mut bytes = [0u8; 1 + 16];
        for b in bytes.iter_mut().take(n) {
            *b = self.byte().await?;
        }
        Ok(archive::read_int(&bytes[..n]))
    }

    /// Up to `max` unread bytes, at least one.
    async fn take(&mut self, max: usize) -> Result<&[u8], EngineError> {
        self.fill().await?;
        let n = max.min(self.len - self.pos);
        self.pos += n;
        Ok(&self.held.bytes()[self.pos - n..self.pos])
    }

    /// Skips `n` bytes, reading none of them it does not hold already.
    fn skip(&mut self, n: u64) {
        let held = (self.len - self.pos) as u64;
        if n <= held {
            self.pos += n as usize;
        } else {
            let at = self.at() + n;
            self.seek(at);
        }
    }

    /// Hands each whole piece held from here on to `each`, without waiting for anything, until a
    /// piece that is not held whole, a piece of length 0 (left unread: it ends the block), the
    /// position `until`, or `each` saying to stop. Rows are short: taking every one through the
    /// async calls above cost about 6 % of lifeboat's CPU in a restore (BENCHMARKS.md, ninth run).
    fn pieces_held(
        &mut self,
        int_size: usize,
        until: u64,
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), EngineError> {
        let held = &self.held.bytes()[..self.len];
        let head = 1 + int_size;
        let mut pos = self.pos;
        while self.start + (pos as u64) < until && held.len() - pos >= head {
            let len = piece_size(archive::read_int(&held[pos..pos + head]), self.start + pos as u64)?;
            if len == 0 || held.len() - pos - head < len {
                break;
            }
            let piece = &held[pos + head..pos + head + len];
            pos += head + len;
            if !each(piece) {
                break;
            }
        }
        self.pos = pos;
        Ok(())
    }

    /// The length of the next piece of a data block; 0 ends the block.
    async fn piece_len(&mut self, int_size: usize) -> Result<usize, EngineError> {
        let at = self.at();
        piece_size(self.int(int_size).await?, at)
    }
}

/// A piece's length as the archive gives it (at byte `at`), checked.
fn piece_size(len: i64, at: u64) -> Result<usize, EngineError> {
    usize::try_from(len).map_err(|_| layout(format!("a piece of length {len} at byte {at}")))
}

/// Walks the data blocks behind the proven mark and cuts them into [`Unit`]s of about
/// [`UNIT_SIZE`] bytes, in archive order. Workers take them as they come (see [`UnitQueue`] for
/// the order): all of them stay busy right behind the fetch and finish together, however the
/// archive's bytes are spread over its tables (a worker per table would wait for the biggest
/// table's block to arrive, then load it alone). Ends with the archive, or with the error that
/// stopped it.
async fn scan(mut r: Reader, int_size: usize, out: Arc<UnitQueue>, tracker: Arc<Tracker>) {
    let _ended = EndGuard(out.clone());
    let walked = async {
        loop {
            if r.at_end().await? {
                return Ok::<(), EngineError>(());
            }
            let block = r.at();
            let kind = r.byte().await?;
            let dump_id = r.int(int_size).await?;
            if kind != BLOCK_DATA {
                return Err(layout(format!("block type {kind} at byte {block}")));
            }
            let mut start = r.at();
            let mut cut = 0;
            loop {
                r.pieces_held(int_size, start + UNIT_SIZE, |_| true)?;
                let at = r.at();
                let len = if at - start >= UNIT_SIZE {
                    None
                } else {
                    Some(r.piece_len(int_size).await?)
                };
                match len {
                    Some(len) if len > 0 => r.skip(len as u64),
                    _ => {
                        if at > start {
                            out.push(Unit {
                                dump_id,
                                start,
                                end: at,
                            });
                            cut += 1;
                            start = at;
                        }
                        if len == Some(0) {
                            break;
                        }
                    }
                }
            }
            tracker.cut(dump_id, cut);
        }
    };
    out.end(walked.await);
}

/// Which loaded tables are complete: all the units the scan cut from their block are committed.
struct Tracker {
    /// By the dump id of the table's data: units cut (once the scan has passed the block's end),
    /// units committed.
    tables: Mutex<HashMap<i64, (Option<usize>, usize)>>,
    /// Hears each table once it is complete.
    ready: tokio::sync::mpsc::UnboundedSender<i64>,
}

impl Tracker {
    fn cut(&self, data: i64, units: usize) {
        self.update(data, |t| t.0 = Some(units));
    }

    fn committed(&self, data: i64, units: usize) {
        self.update(data, |t| t.1 += units);
    }

    fn update(&self, data: i64, change: impl FnOnce(&mut (Option<usize>, usize))) {
        let mut tables = self.tables.lock().expect("tracker lock");
        let t = tables.entry(data).or_default();
        change(t);
        if t.0 == Some(t.1) {
            let _ = self.ready.send(data);
        }
    }
}

/// One worker: loads units as the scan hands them out, in one transaction until the whole archive
/// is proven; after that it commits before it loads a unit of one table while its transaction holds
/// units of another (one it moved on from, then or before the archive was whole), so that a table
/// whose every unit is committed can have its indexes built while others still load. Returns the
/// rows it loaded, by dump id.
async fn load(
    pg: &Postgres,
    units: Arc<UnitQueue>,
    tables: Arc<HashMap<i64, Load>>,
    tracker: Arc<Tracker>,
    mut r: Reader,
    int_size: usize,
) -> Result<HashMap<i64, u64>, EngineError> {
    let mut conn = pg.connect().await?;
    // What `pg_restore` sets for itself, and no timeout may end a transaction held open while
    // the rest of the archive arrives: `transaction_timeout` too, where the server has it (17 on).
    sqlx::raw_sql(
        "set client_encoding = 'UTF8'; select pg_catalog.set_config('search_path', '', false); \
         set statement_timeout = 0; set lock_timeout = 0; set idle_in_transaction_session_timeout = 0; \
         select pg_catalog.set_config('transaction_timeout', '0', false) \
           where pg_catalog.current_setting('transaction_timeout', true) is not null; \
         set row_security = off; begin",
    )
    .execute(&mut conn)
    .await
    .map_err(pg.query_err())?;
    let mut units = units.taker();
    let mut rows = HashMap::new();
    // Units loaded in the open transaction, by table.
    let mut open: HashMap<i64, usize> = HashMap::new();
    loop {
        let next = units.next().await;
        let Some(unit) = next else { break };
        let unit = unit?;
        let table = tables
            .get(&unit.dump_id)
            .ok_or_else(|| layout(format!("a data block for entry {} that has no COPY", unit.dump_id)))?;
        // Also when this connection left a table before the archive was whole: that table's indexes
        // wait for this commit.
        if open.keys().any(|&t| t != unit.dump_id) && r.proof.is_whole() {
            commit(pg, &mut conn, "commit; begin", &mut open, &tracker).await?;
        }
        *rows.entry(unit.dump_id).or_default() += copy_unit(pg, &mut conn, &mut r, &unit, table, int_size).await?;
        *open.entry(unit.dump_id).or_default() += 1;
    }
    r.proof.whole().await?;
    commit(pg, &mut conn, "commit", &mut open, &tracker).await?;
    let _ = conn.close().await;
    Ok(rows)
}

/// Commits the open transaction with `sql` and tells the tracker which units are now in.
async fn commit(
    pg: &Postgres,
    conn: &mut PgConnection,
    sql: &'static str,
    open: &mut HashMap<i64, usize>,
    tracker: &Tracker,
) -> Result<(), EngineError> {
    sqlx::raw_sql(sql).execute(conn).await.map_err(pg.query_err())?;
    for (data, n) in open.drain() {
        tracker.committed(data, n);
    }
    Ok(())
}

/// Streams one unit's pieces into `COPY` and returns the rows the server stored.
async fn copy_unit(
    pg: &Postgres,
    conn: &mut PgConnection,
    r: &mut Reader,
    unit: &Unit,
    table: &Load,
    int_size: usize,
) -> Result<u64, EngineError> {
    r.seek(unit.start);
    let mut copy = conn.copy_in_raw(&table.copy).await.map_err(pg.query_err())?;
    let mut out = Vec::with_capacity(SEND_SIZE + 64 * 1024);
    // Bytes of a piece that runs past what is held, still to be read the slow way.
    let mut left = 0;
    while left > 0 || r.at() < unit.end {
        if left == 0 {
            r.pieces_held(int_size, unit.end, |piece| {
                out.extend_from_slice(piece);
                out.len() < SEND_SIZE
            })?;
            if r.at() < unit.end && out.len() < SEND_SIZE {
                left = r.piece_len(int_size).await?;
            }
        }
        while left > 0 && out.len() < SEND_SIZE {
            let piece = r.take(left).await?;
            left -= piece.len();
            out.extend_from_slice(piece);
        }
        if out.len() >= SEND_SIZE {
            copy.send(out.as_slice()).await.map_err(pg.query_err())?;
            out.clear();
        }
    }
    if !out.is_empty() {
        copy.send(out.as_slice()).await.map_err(pg.query_err())?;
    }
    copy.finish().await.map_err(|e| EngineError::Query {
        dsn: pg.dsn_for_messages(),
        detail: format!("loading {}: {}", table.name, super::describe(&e)),
    })
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
