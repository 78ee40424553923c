-- Lifeboat catalog schema 1, SQLite. Keep it column-for-column equal to migrations/postgres.
--
-- Never edit this file once committed: sqlx stores its checksum and refuses a changed migration.
-- Add a new numbered file instead.
--
-- The catalog is history and cache; the repository is the truth. `lifeboat catalog rebuild`
-- recreates the snapshots table from the repository.
--
-- Conventions (see src/catalog/rows.rs):
-- * times are INTEGER nanoseconds since 1970-01-01T00:00:00Z, columns named *_ns;
--   read them with datetime(x / 1000000000, 'unixepoch');
-- * counters are unsigned in Lifeboat, stored as INTEGER (64-bit) and checked both ways;
-- * STRICT tables, so that a wrongly typed value is refused instead of silently stored.

-- One snapshot in one repository. The same snapshot copied to another repository keeps its id
-- and gets its own row (bytes_stored and new_chunks differ per repository).
CREATE TABLE snapshots (
    repository       TEXT    NOT NULL,
    id               TEXT    NOT NULL,
    source           TEXT    NOT NULL,
    engine           TEXT    NOT NULL,
    started_at_ns    INTEGER NOT NULL,
    finished_at_ns   INTEGER NOT NULL,
    bytes_read       INTEGER NOT NULL CHECK (bytes_read >= 0),
    bytes_stored     INTEGER NOT NULL CHECK (bytes_stored >= 0),
    chunks           INTEGER NOT NULL CHECK (chunks >= 0),
    new_chunks       INTEGER NOT NULL CHECK (new_chunks >= 0),
    stream_sha256    TEXT    NOT NULL,
    consistent_point TEXT,
    server_version   TEXT,
    tool_version     TEXT,
    -- "tables" and "rows" are SQL keywords in places; these names avoid quoting.
    table_count      INTEGER NOT NULL CHECK (table_count >= 0),
    row_count        INTEGER NOT NULL CHECK (row_count >= 0),
    PRIMARY KEY (repository, id)
) STRICT;

-- Listing a source's history, newest first.
CREATE INDEX snapshots_source_finished ON snapshots (source, finished_at_ns);
-- Listing everything newest first with a limit.
CREATE INDEX snapshots_finished ON snapshots (finished_at_ns);
-- Lookup by id or id prefix across repositories (the primary key leads with repository).
CREATE INDEX snapshots_id ON snapshots (id);

-- Runs of backups, restores and verifies, successful or not. Deliberately no foreign key to
-- snapshots: a failed backup has no snapshot, and runs outlive a rebuild of the snapshots table.
-- kind and status have no CHECK so that a later version can add values without a table rebuild;
-- readers refuse values they do not know.
CREATE TABLE runs (
    -- AUTOINCREMENT: ids are never reused, even after the newest run is deleted.
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT    NOT NULL,
    source         TEXT,
    repository     TEXT,
    snapshot_id    TEXT,
    started_at_ns  INTEGER NOT NULL,
    finished_at_ns INTEGER NOT NULL,
    status         TEXT    NOT NULL,
    detail         TEXT
) STRICT;

CREATE INDEX runs_finished ON runs (finished_at_ns);
CREATE INDEX runs_kind_finished ON runs (kind, finished_at_ns);
CREATE INDEX runs_source_finished ON runs (source, finished_at_ns);
