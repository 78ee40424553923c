-- Lifeboat catalog schema 4, PostgreSQL: the control plane (API tokens, approvals, the audit log and the
-- settings changed through the API). Keep it column-for-column equal to
-- migrations/sqlite/0004_control.sql.
--
-- Never edit this file once committed: sqlx stores its checksum and refuses a changed migration.
-- Add a new numbered file instead.
--
-- Each row keeps its document as JSON in `body`; the columns beside it are what queries select or
-- compare on. Timestamps are nanoseconds since the Unix epoch, as in 0001_init.sql.

-- Tokens are stored as the SHA-256 of their secret, never the secret: the secret is 256 random bits,
-- so a fast hash is enough, and a stolen catalog holds no usable credential.
CREATE TABLE tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    secret_hash  TEXT    NOT NULL,
    body         TEXT    NOT NULL
);

-- `version` grows with every change: a decision or an execution applies only to the version it read
-- (compare-and-set), so two approvers at once cannot both execute a request.
CREATE TABLE approvals (
    id          TEXT    NOT NULL PRIMARY KEY,
    state       TEXT    NOT NULL,
    version     BIGINT NOT NULL,
    created_ns  BIGINT NOT NULL,
    body        TEXT    NOT NULL
);
CREATE INDEX approvals_by_state ON approvals (state, created_ns);

-- Append-only and hash-chained: hash = SHA-256(prev_hash, seq, body). Nothing in Lifeboat updates or
-- deletes a row; `lifeboat audit verify` finds a row that was edited, removed or moved.
CREATE TABLE audit_log (
    seq        BIGINT NOT NULL PRIMARY KEY,
    at_ns      BIGINT NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    body       TEXT    NOT NULL
);

-- Settings changed through the API (e.g. `retention:orders`, `disabled:drill:orders-nightly`); they
-- take precedence over the config file.
CREATE TABLE settings (
    key         TEXT    NOT NULL PRIMARY KEY,
    body        TEXT    NOT NULL,
    changed_ns  BIGINT NOT NULL
);
