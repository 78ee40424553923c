//! Filling in where each entry's data starts in a staged `pg_dump -Fc` archive.
//!
//! `pg_dump` writing into a pipe cannot go back and record in its table of contents where each
//! table's data block starts, so every archive lifeboat stores says "position not set" for all of
//! them. `pg_restore --jobs` then makes each worker search the archive from the start for the block
//! it wants, skipping every row's length-prefixed piece in 4 KiB reads: about a second of a 2 GB
//! restore on two cores (BENCHMARKS.md). A staged archive is a local file lifeboat has just proven,
//! so [`fill_data_offsets`] walks its blocks once, in large reads, and writes each position into its
//! fixed-width field (a flag byte and `offSize` bytes), as `pg_dump` itself does when it writes to a
//! file. Nothing else in the file changes.
//!
//! A wrong position cannot restore wrong data: `pg_restore` reads the block header at the position
//! and refuses a block whose id is not the entry's. Anything this parser does not recognise (an
//! archive version it does not know, an unexpected block) leaves the file untouched, and the restore
//! proceeds as it would have without it.
//!
//! The layout follows `ReadHead`, `ReadToc` and `pg_backup_custom.c` of PostgreSQL's `pg_dump`,
//! archive versions 1.12 (PostgreSQL 9.0) to 1.16 (PostgreSQL 17).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: &[u8; 5] = b"PGDMP";
const FORMAT_CUSTOM: u8 = 1;
const OLDEST: u32 = version(1, 12);
const NEWEST: u32 = version(1, 16);

/// `dataState` values of a custom-format TOC entry.
const OFFSET_POS_NOT_SET: u8 = 1;
const OFFSET_POS_SET: u8 = 2;

/// Block types in the data part of a custom-format archive.
pub(crate) const BLOCK_DATA: u8 = 1;
const BLOCK_LARGE_OBJECTS: u8 = 3;

const fn version(major: u8, minor: u8) -> u32 {
    ((major as u32) << 16) | ((minor as u32) << 8)
}

/// Why an archive's positions were not filled in. Never fatal to a restore: it only costs speed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("not a pg_dump custom-format archive ({0})")]
    Unrecognised(String),
    #[error("pg_dump archive version {0}.{1} is not one this parser knows")]
    Version(u8, u8),
    #[error("the archive ends inside its {0}")]
    Truncated(&'static str),
    #[error("reading the archive: {0}")]
    Io(#[from] std::io::Error),
}

/// What [`fill_data_offsets`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct Filled {
    /// Entries whose position was written in.
    pub entries: usize,
    /// Data blocks found in the archive.
    pub blocks: usize,
}

/// Walks the archive at `path` and writes each data block's position into its table of contents
/// entry, where the entry says the position is not set. See the module documentation.
pub fn fill_data_offsets(path: &Path) -> Result<Filled, LayoutError> {
    let file = File::options().read(true).write(true).open(path)?;
    let (toc, found) = read_layout(&file)?;
    let mut entries = 0;
    for entry in &toc.entries {
        if entry.state != OFFSET_POS_NOT_SET {
            continue;
        }
        let Some(&at) = found.get(&entry.dump_id) else {
            continue;
        };
        let mut field = Vec::with_capacity(1 + toc.off_size);
        field.push(OFFSET_POS_SET);
        field.extend((0..toc.off_size).map(|i| if i < 8 { (at >> (8 * i)) as u8 } else { 0 }));
        file.write_all_at(&field, entry.offset_field)?;
        entries += 1;
    }
    Ok(Filled {
        entries,
        blocks: found.len(),
    })
}

/// One data entry of an archive, as [`data_offsets`] reports it.
#[derive(Debug, PartialEq, Eq)]
pub struct DataEntry {
    pub dump_id: i64,
    /// The position the table of contents records; `None`: not set.
    pub recorded: Option<u64>,
    /// Where its data block really starts; `None`: the archive has no block for it.
    pub found: Option<u64>,
}

/// Each data entry's position both ways. For tests: an archive `pg_dump` wrote into a file must
/// show the same positions both ways, and so must one [`fill_data_offsets`] has filled in.
pub fn data_offsets(path: &Path) -> Result<Vec<DataEntry>, LayoutError> {
    let (toc, found) = read_layout(&File::open(path)?)?;
    Ok(toc
        .entries
        .iter()
        .filter(|e| e.has_data())
        .map(|e| DataEntry {
            dump_id: e.dump_id,
            recorded: (e.state == OFFSET_POS_SET).then_some(e.recorded),
            found: found.get(&e.dump_id).copied(),
        })
        .collect())
}

/// The table of contents, and where each data block really starts, by dump id.
fn read_layout(file: &File) -> Result<(Toc, HashMap<i64, u64>), LayoutError> {
    let toc = read_toc(file)?;
    let found = walk_blocks(file, toc.int_size, toc.data_start)?;
    Ok((toc, found))
}

pub(crate) struct Toc {
    pub int_size: usize,
    off_size: usize,
    /// The archive's own compression of its data blocks: `false` for lifeboat's (`--compress=0`).
    pub compressed: bool,
    pub entries: Vec<TocEntry>,
    /// Where the first data block starts: right after the table of contents.
    pub data_start: u64,
}

pub(crate) struct TocEntry {
    pub dump_id: i64,
    /// What the entry is: "TABLE", "TABLE DATA", "INDEX", "ACL", "ENCODING"...
    pub desc: String,
    pub namespace: String,
    /// The object's name.
    pub tag: String,
    /// `SECTION_NONE` (1), `SECTION_PRE_DATA` (2), `SECTION_DATA` (3) or `SECTION_POST_DATA` (4).
    pub section: i64,
    /// The SQL that creates the object (for "ENCODING": the `SET client_encoding` statement).
    pub defn: String,
    /// For "TABLE DATA": the `COPY ... FROM stdin;` its data block feeds.
    pub copy_stmt: String,
    /// The dump ids of the entries it depends on.
    pub deps: Vec<i64>,
    /// Where this entry's offset field (flag byte, then `off_size` bytes) is in the file.
    offset_field: u64,
    state: u8,
    /// The position the field holds, where `state` says it is set.
    recorded: u64,
}

impl TocEntry {
    /// Whether the archive holds a data block for this entry.
    pub fn has_data(&self) -> bool {
        self.state == OFFSET_POS_SET || self.state == OFFSET_POS_NOT_SET
    }
}

/// Reads the header and table of contents, reading more of the file until they fit (a schema with
/// many objects has a table of contents of several MiB).
fn read_toc(file: &File) -> Result<Toc, LayoutError> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = read_at_most(file, &mut buf)?;
        match parse_toc(&buf[..n]) {
            Err(LayoutError::Truncated(_)) if n == buf.len() => buf.resize(buf.len() * 4, 0),
            other => return other,
        }
    }
}

fn read_at_most(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A cursor over the header and table of contents held in memory.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    int_size: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], LayoutError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(LayoutError::Truncated(what))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, LayoutError> {
        Ok(self.take(1, what)?[0])
    }

    fn int(&mut self, what: &'static str) -> Result<i64, LayoutError> {
        let int_size = self.int_size;
        Ok(read_int(self.take(1 + int_size, what)?))
    }

    /// `ReadStr`: a length (-1 for a null string), then that many bytes. Only skipped here.
    fn skip_str(&mut self, what: &'static str) -> Result<bool, LayoutError> {
        let len = self.int(what)?;
        if len < 0 {
            return Ok(false);
        }
        self.take(len as usize, what)?;
        Ok(true)
    }

    /// `ReadStr`, kept; a null string reads as empty.
    fn str(&mut self, what: &'static str) -> Result<String, LayoutError> {
        let len = self.int(what)?;
        if len < 0 {
            return Ok(String::new());
        }
        Ok(String::from_utf8_lossy(self.take(len as usize, what)?).into_owned())
    }
}

/// `ReadInt`: a sign byte, then the magnitude in `int_size` bytes, least significant first.
pub(crate) fn read_int(bytes: &[u8]) -> i64 {
    let magnitude = decode_int(&bytes[1..]);
    if bytes[0] == 0 { magnitude } else { -magnitude }
}

/// An unsigned little-endian number of up to 8 bytes (more are ignored).
fn decode_int(bytes: &[u8]) -> i64 {
    bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 8)
        .fold(0i64, |acc, (i, &b)| acc | (i64::from(b) << (8 * i)))
}

/// Parses the header and table of contents at the start of `bytes`; `Truncated` when they do not
/// fit in it.
pub(crate) fn parse_toc(bytes: &[u8]) -> Result<Toc, LayoutError> {
    let mut c = Cursor {
        bytes,
        at: 0,
        int_size: 4,
    };
    if c.take(5, "header")? != MAGIC {
        return Err(LayoutError::Unrecognised("no PGDMP magic".into()));
    }
    let (major, minor, _revision) = (c.byte("header")?, c.byte("header")?, c.byte("header")?);
    let v = version(major, minor);
    if !(OLDEST..=NEWEST).contains(&v) {
        return Err(LayoutError::Version(major, minor));
    }
    let int_size = c.byte("header")? as usize;
    let off_size = c.byte("header")? as usize;
    if !(1..=8).contains(&int_size) || !(1..=16).contains(&off_size) {
        return Err(LayoutError::Unrecognised(format!(
            "integer size {int_size}, offset size {off_size}"
        )));
    }
    c.int_size = int_size;
    let format = c.byte("header")?;
    if format != FORMAT_CUSTOM {
        return Err(LayoutError::Unrecognised(format!(
            "archive format {format}, not custom"
        )));
    }
    let compressed = if v >= version(1, 15) {
        c.byte("header")? != 0 // compression algorithm: 0 is none
    } else {
        c.int("header")? != 0 // compression level: 0 is none, -1 the default
    };
    for _ in 0..7 {
        c.int("header")?; // creation time: sec, min, hour, mday, mon, year, isdst
    }
    c.skip_str("header")?; // database name
    c.skip_str("header")?; // server version
    c.skip_str("header")?; // pg_dump version

    let count = c.int("table of contents")?;
    if count < 0 {
        return Err(LayoutError::Unrecognised(format!("{count} table of contents entries")));
    }
    let what = "table of contents";
    let mut entries = Vec::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        let dump_id = c.int(what)?;
        c.int(what)?; // hadDumper
        c.skip_str(what)?; // table oid
        c.skip_str(what)?; // oid
        let tag = c.str(what)?;
        let desc = c.str(what)?;
        let section = c.int(what)?;
        let defn = c.str(what)?;
        c.skip_str(what)?; // dropStmt
        let copy_stmt = c.str(what)?;
        let namespace = c.str(what)?;
        c.skip_str(what)?; // tablespace
        if v >= version(1, 14) {
            c.skip_str(what)?; // table access method
        }
        if v >= version(1, 16) {
            c.int(what)?; // relkind
        }
        c.skip_str(what)?; // owner
        c.skip_str(what)?; // "false": tables WITH OIDS
        let mut deps = Vec::new();
        loop {
            // Dependencies: dump ids as decimal strings, ended by a null string.
            let len = c.int(what)?;
            if len < 0 {
                break;
            }
            let dep = c.take(len as usize, what)?;
            if let Some(id) = std::str::from_utf8(dep).ok().and_then(|d| d.parse().ok()) {
                deps.push(id);
            }
        }
        let offset_field = c.at as u64;
        let state = c.byte(what)?;
        let recorded = decode_int(c.take(off_size, what)?) as u64;
        entries.push(TocEntry {
            dump_id,
            desc,
            namespace,
            tag,
            section,
            defn,
            copy_stmt,
            deps,
            offset_field,
            state,
            recorded,
        });
    }
    Ok(Toc {
        int_size,
        off_size,
        compressed,
        entries,
        data_start: c.at as u64,
    })
}

/// Reads the data blocks from `start` to the end of the file and returns where each one starts,
/// by dump id. Each block is a type byte, the entry's dump id, then length-prefixed pieces ended by
/// a zero length (large objects: per object, its oid then such pieces, ended by a zero oid).
fn walk_blocks(file: &File, int_size: usize, start: u64) -> Result<HashMap<i64, u64>, LayoutError> {
    let len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(start))?;
    let mut blocks = Blocks {
        r: &mut r,
        int_size,
        at: start,
    };
    let mut found = HashMap::new();
    loop {
        let block_start = blocks.at;
        let Some(kind) = blocks.byte_or_eof()? else {
            // A skip can run past the end without an error: only the position tells.
            if block_start != len {
                return Err(LayoutError::Truncated("data"));
            }
            return Ok(found);
        };
        let dump_id = blocks.int()?;
        match kind {
            BLOCK_DATA => blocks.skip_pieces()?,
            BLOCK_LARGE_OBJECTS => {
                while blocks.int()? != 0 {
                    blocks.skip_pieces()?;
                }
            }
            other => {
                return Err(LayoutError::Unrecognised(format!(
                    "block type {other} at byte {block_start}"
                )));
            }
        }
        if found.insert(dump_id, block_start).is_some() {
            return Err(LayoutError::Unrecognised(format!(
                "two data blocks for entry {dump_id}"
            )));
        }
    }
}

struct Blocks<'a, 'f> {
    r: &'a mut BufReader<&'f File>,
    int_size: usize,
    at: u64,
}

impl Blocks<'_, '_> {
    fn byte_or_eof(&mut self) -> Result<Option<u8>, LayoutError> {
        let mut b = [0u8; 1];
        match self.r.read(&mut b)? {
            0 => Ok(None),
            _ => {
                self.at += 1;
                Ok(Some(b[0]))
            }
        }
    }

    fn int(&mut self) -> Result<i64, LayoutError> {
        let mut b = [0u8; 1 + 8];
        let b = &mut b[..1 + self.int_size.min(8)];
        self.r.read_exact(b).map_err(|e| truncated(e, "data"))?;
        self.at += b.len() as u64;
        Ok(read_int(b))
    }

    /// Length-prefixed pieces up to and including the zero length that ends them.
    fn skip_pieces(&mut self) -> Result<(), LayoutError> {
        loop {
            let len = self.int()?;
            if len == 0 {
                return Ok(());
            }
            if len < 0 {
                return Err(LayoutError::Unrecognised(format!(
                    "a piece of length {len} at byte {}",
                    self.at
                )));
            }
            self.r.seek_relative(len)?;
            self.at += len as u64;
        }
    }
}

fn truncated(e: std::io::Error, what: &'static str) -> LayoutError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        LayoutError::Truncated(what)
    } else {
        LayoutError::Io(e)
    }
}
