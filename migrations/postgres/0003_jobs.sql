-- Lifeboat catalog schema 3, PostgreSQL: the daemon's scheduled jobs. Keep it column-for-column equal to
-- migrations/sqlite/0003_jobs.sql.
--
-- Never edit this file once committed: sqlx stores its checksum and refuses a changed migration.
-- Add a new numbered file instead.
--
-- One row per scheduled job (e.g. "backup:orders", "drill:orders-nightly"). It is how daemons that
-- share a catalog agree on who runs what, and how a restarted daemon knows what it missed:
-- * last_due_ns is the newest scheduled time that a daemon has taken care of (ran it, or reported
--   it missed). A daemon claims an occurrence by moving it forward, so each occurrence runs once.
-- * owner and lease_expires_ns are set while a run is in progress: the run never overlaps itself,
--   and when its daemon dies the lease expires and another daemon can take the next occurrence.
-- Timestamps are nanoseconds since the Unix epoch, as in 0001_init.sql.
CREATE TABLE jobs (
    job               TEXT    NOT NULL PRIMARY KEY,
    last_due_ns       BIGINT,
    owner             TEXT,
    lease_expires_ns  BIGINT,
    last_started_ns   BIGINT,
    last_finished_ns  BIGINT,
    last_outcome      TEXT,
    last_detail       TEXT,
    CHECK ((owner IS NULL) = (lease_expires_ns IS NULL))
);
