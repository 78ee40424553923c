-- Lifeboat catalog schema 2, PostgreSQL: drill-run history. Keep it column-for-column equal to
-- migrations/sqlite/0002_drill_runs.sql.
--
-- Never edit this file once committed: sqlx stores its checksum and refuses a changed migration.
-- Add a new numbered file instead.
--
-- Conventions as in 0001_init.sql (see src/catalog/rows.rs), and:
-- * durations are DOUBLE PRECISION seconds, columns named *_seconds, NULL when not measured or
--   not set;
-- * the evidence is the drill's whole result document as JSONB (JSON text on SQLite): validated
--   and queryable (evidence -> 'checks'), but JSONB keeps the document's meaning, not its
--   spelling (key order, number notation), and cannot hold U+0000, which lifeboat therefore
--   refuses on both backends.

-- One run of a recovery drill: a snapshot restored into scratch, checked, and its RTO and RPO
-- measured against the SLA. Keyed by the run id the drill gives itself, so that re-importing a
-- run's evidence (`lifeboat catalog rebuild`) replaces its row instead of adding another.
-- No foreign key to snapshots, as for runs: a drill whose snapshot selection failed has no
-- snapshot, and drill runs outlive a rebuild of the snapshots table. verdict has no CHECK, as
-- runs.status: a later version may add values; readers refuse values they do not know.
CREATE TABLE drill_runs (
    -- COLLATE "C": byte order, as SQLite's, so that both backends break started_at ties the same
    -- way whatever the database's collation.
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    drill           TEXT             NOT NULL,
    source          TEXT             NOT NULL,
    repository      TEXT             NOT NULL,
    snapshot_id     TEXT,
    started_at_ns   BIGINT           NOT NULL,
    finished_at_ns  BIGINT           NOT NULL,
    verdict         TEXT             NOT NULL,
    rto_seconds     DOUBLE PRECISION CHECK (rto_seconds >= 0),
    rpo_seconds     DOUBLE PRECISION CHECK (rpo_seconds >= 0),
    sla_rto_seconds DOUBLE PRECISION CHECK (sla_rto_seconds >= 0),
    sla_rpo_seconds DOUBLE PRECISION CHECK (sla_rpo_seconds >= 0),
    detail          TEXT,
    evidence        JSONB            NOT NULL
);

-- Listing everything newest first with a limit.
CREATE INDEX drill_runs_started ON drill_runs (started_at_ns);
-- Listing one drill's history, newest first.
CREATE INDEX drill_runs_drill_started ON drill_runs (drill, started_at_ns);
-- Listing one source's drills, newest first.
CREATE INDEX drill_runs_source_started ON drill_runs (source, started_at_ns);
