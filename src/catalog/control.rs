//! The control plane's tables (migration 0004): tokens, approvals, the audit log and settings.
//!
//! The catalog stores each as a JSON document plus the columns queries need; `crate::control` owns
//! what the documents say. The SQL is written once, in [`control_methods!`], and expanded for each
//! backend (SQLite takes `?N` where PostgreSQL takes `$N`; see each backend's `sql()`).

use serde::{Deserialize, Serialize};

/// A token as stored: its id, the SHA-256 of its secret, and its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    pub id: String,
    pub secret_hash: String,
    pub body: String,
}

/// An approval request as stored. `version` grows with every change; see
/// [`super::Catalog::update_approval`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredApproval {
    pub id: String,
    pub state: String,
    pub version: i64,
    pub created_at: jiff::Timestamp,
    pub body: String,
}

/// One audit log entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub seq: i64,
    pub at: jiff::Timestamp,
    pub prev_hash: String,
    pub hash: String,
    pub body: String,
}

/// Computes an audit entry's hash from the previous entry's hash, its sequence number and its body.
pub type ChainHash = dyn Fn(&str, i64, &str) -> String + Send + Sync;

/// The first entry's `prev_hash`.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn ts(target: &str, field: &str, ns: i64) -> Result<jiff::Timestamp, super::CatalogError> {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map_err(|e| super::CatalogError::corrupt(target, format!("{field} = {ns} ({e})")))
}

pub(crate) fn approval_from(
    target: &str,
    (id, state, version, created_ns, body): (String, String, i64, i64, String),
) -> Result<StoredApproval, super::CatalogError> {
    Ok(StoredApproval {
        id,
        state,
        version,
        created_at: ts(target, "created_ns", created_ns)?,
        body,
    })
}

pub(crate) fn audit_from(
    target: &str,
    (seq, at_ns, prev_hash, hash, body): (i64, i64, String, String, String),
) -> Result<AuditRow, super::CatalogError> {
    Ok(AuditRow {
        seq,
        at: ts(target, "at_ns", at_ns)?,
        prev_hash,
        hash,
        body,
    })
}

/// The control-plane methods, as inherent `*_impl` methods of a backend that has `pool`, `target`,
/// `err(op)`, `sql(text)` and `begin_audit()` (a transaction that holds the audit log alone until it
/// ends). The `Catalog` impls delegate to them.
macro_rules! control_methods {
    () => {
        async fn insert_token_impl(&self, t: &$crate::catalog::StoredToken) -> Result<(), CatalogError> {
            sqlx::query(self.sql("INSERT INTO tokens (id, secret_hash, body) VALUES ($1, $2, $3)"))
                .bind(&t.id)
                .bind(&t.secret_hash)
                .bind(&t.body)
                .execute(&self.pool)
                .await
                .map_err(self.err("insert_token"))?;
            Ok(())
        }

        async fn token_impl(&self, id: &str) -> Result<Option<$crate::catalog::StoredToken>, CatalogError> {
            let row: Option<(String, String, String)> =
                sqlx::query_as(self.sql("SELECT id, secret_hash, body FROM tokens WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(self.err("token"))?;
            Ok(row.map(|(id, secret_hash, body)| $crate::catalog::StoredToken { id, secret_hash, body }))
        }

        async fn tokens_impl(&self) -> Result<Vec<$crate::catalog::StoredToken>, CatalogError> {
            let rows: Vec<(String, String, String)> =
                sqlx::query_as(self.sql("SELECT id, secret_hash, body FROM tokens ORDER BY id"))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(self.err("tokens"))?;
            Ok(rows
                .into_iter()
                .map(|(id, secret_hash, body)| $crate::catalog::StoredToken { id, secret_hash, body })
                .collect())
        }

        async fn update_token_impl(&self, id: &str, body: &str) -> Result<bool, CatalogError> {
            let done = sqlx::query(self.sql("UPDATE tokens SET body = $2 WHERE id = $1"))
                .bind(id)
                .bind(body)
                .execute(&self.pool)
                .await
                .map_err(self.err("update_token"))?;
            Ok(done.rows_affected() == 1)
        }

        async fn insert_approval_impl(&self, a: &$crate::catalog::StoredApproval) -> Result<(), CatalogError> {
            sqlx::query(self.sql(
                "INSERT INTO approvals (id, state, version, created_ns, body) VALUES ($1, $2, $3, $4, $5)",
            ))
            .bind(&a.id)
            .bind(&a.state)
            .bind(a.version)
            .bind($crate::catalog::rows::ts_to_db("created_at", a.created_at)?)
            .bind(&a.body)
            .execute(&self.pool)
            .await
            .map_err(self.err("insert_approval"))?;
            Ok(())
        }

        async fn approval_impl(&self, id: &str) -> Result<Option<$crate::catalog::StoredApproval>, CatalogError> {
            let row: Option<(String, String, i64, i64, String)> = sqlx::query_as(
                self.sql("SELECT id, state, version, created_ns, body FROM approvals WHERE id = $1"),
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("approval"))?;
            row.map(|r| $crate::catalog::control::approval_from(&self.target, r))
                .transpose()
        }

        async fn approvals_impl(
            &self,
            state: Option<&str>,
        ) -> Result<Vec<$crate::catalog::StoredApproval>, CatalogError> {
            let rows: Vec<(String, String, i64, i64, String)> = sqlx::query_as(self.sql(
                "SELECT id, state, version, created_ns, body FROM approvals \
                 WHERE $1 IS NULL OR state = $1 ORDER BY created_ns DESC, id",
            ))
            .bind(state)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("approvals"))?;
            rows.into_iter()
                .map(|r| $crate::catalog::control::approval_from(&self.target, r))
                .collect()
        }

        async fn update_approval_impl(
            &self,
            a: &$crate::catalog::StoredApproval,
            expected_version: i64,
        ) -> Result<bool, CatalogError> {
            let done = sqlx::query(self.sql(
                "UPDATE approvals SET state = $2, version = $3, body = $4 WHERE id = $1 AND version = $5",
            ))
            .bind(&a.id)
            .bind(&a.state)
            .bind(a.version)
            .bind(&a.body)
            .bind(expected_version)
            .execute(&self.pool)
            .await
            .map_err(self.err("update_approval"))?;
            Ok(done.rows_affected() == 1)
        }

        async fn append_audit_impl(
            &self,
            at: jiff::Timestamp,
            body: &str,
            chain: &$crate::catalog::ChainHash,
        ) -> Result<$crate::catalog::AuditRow, CatalogError> {
            let at_ns = $crate::catalog::rows::ts_to_db("at", at)?;
            let mut tx = self.begin_audit().await?;
            let last: Option<(i64, String)> =
                sqlx::query_as(self.sql("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(self.err("append_audit"))?;
            let (seq, prev_hash) = match last {
                Some((seq, hash)) => (seq + 1, hash),
                None => (1, $crate::catalog::GENESIS.to_string()),
            };
            let hash = chain(&prev_hash, seq, body);
            sqlx::query(self.sql(
                "INSERT INTO audit_log (seq, at_ns, prev_hash, hash, body) VALUES ($1, $2, $3, $4, $5)",
            ))
            .bind(seq)
            .bind(at_ns)
            .bind(&prev_hash)
            .bind(&hash)
            .bind(body)
            .execute(&mut *tx)
            .await
            .map_err(self.err("append_audit"))?;
            tx.commit().await.map_err(self.err("append_audit"))?;
            Ok($crate::catalog::AuditRow {
                seq,
                at,
                prev_hash,
                hash,
                body: body.to_string(),
            })
        }

        async fn audit_impl(&self, after: i64, limit: u32) -> Result<Vec<$crate::catalog::AuditRow>, CatalogError> {
            let rows: Vec<(i64, i64, String, String, String)> = sqlx::query_as(self.sql(
                "SELECT seq, at_ns, prev_hash, hash, body FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            ))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("audit"))?;
            rows.into_iter()
                .map(|r| $crate::catalog::control::audit_from(&self.target, r))
                .collect()
        }

        async fn set_setting_impl(&self, key: &str, body: Option<&str>) -> Result<(), CatalogError> {
            match body {
                Some(body) => {
                    sqlx::query(self.sql(
                        "INSERT INTO settings (key, body, changed_ns) VALUES ($1, $2, $3) \
                         ON CONFLICT (key) DO UPDATE SET body = excluded.body, changed_ns = excluded.changed_ns",
                    ))
                    .bind(key)
                    .bind(body)
                    .bind($crate::catalog::rows::ts_to_db("changed", jiff::Timestamp::now())?)
                    .execute(&self.pool)
                    .await
                    .map_err(self.err("set_setting"))?;
                }
                None => {
                    sqlx::query(self.sql("DELETE FROM settings WHERE key = $1"))
                        .bind(key)
                        .execute(&self.pool)
                        .await
                        .map_err(self.err("set_setting"))?;
                }
            }
            Ok(())
        }

        async fn settings_impl(&self) -> Result<Vec<(String, String)>, CatalogError> {
            sqlx::query_as(self.sql("SELECT key, body FROM settings ORDER BY key"))
                .fetch_all(&self.pool)
                .await
                .map_err(self.err("settings"))
        }
    };
}
pub(crate) use control_methods;
