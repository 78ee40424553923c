//! API tokens: minted with 256 random bits, shown once, stored only as a SHA-256, compared in
//! constant time.
//!
//! A token reads `lbt_<id>_<secret>`. The id is public (it names the token in listings and in
//! `token revoke`) and finds the stored hash in one lookup; the secret is 64 hex digits. The secret
//! has full entropy, so a plain SHA-256 is enough: there is nothing to guess, and a slow hash would
//! only slow every API call.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::principal::{Principal, Scope};
use crate::catalog::{Catalog, CatalogError, StoredToken};

const PREFIX: &str = "lbt_";

/// What the catalog keeps about a token (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub scope: Scope,
    pub created_at: jiff::Timestamp,
    pub created_by: String,
    pub expires_at: Option<jiff::Timestamp>,
    pub revoked_at: Option<jiff::Timestamp>,
    pub revoked_by: Option<String>,
}

impl TokenInfo {
    /// Not revoked and not expired at `now`.
    pub fn is_active(&self, now: jiff::Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }

    pub fn principal(&self) -> Principal {
        Principal {
            name: format!("token:{}", self.name),
            token_id: Some(self.id.clone()),
            scope: self.scope.clone(),
            created_by: Some(self.created_by.clone()),
        }
    }
}

/// Why a presented token was not accepted. Deliberately says nothing that would help guess one.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no token; fix: send `Authorization: Bearer lbt_...` (CLI: set LIFEBOAT_TOKEN); an admin creates one with `lifeboat token create`"
    )]
    Missing,
    #[error("the token is not valid; fix: check that it was copied whole, or ask an admin for a new one")]
    Invalid,
    #[error("token {id} has expired; fix: ask an admin for a new one (`lifeboat token create`)")]
    Expired { id: String },
    #[error("token {id} was revoked; fix: ask an admin for a new one (`lifeboat token create`)")]
    Revoked { id: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// The SHA-256 of a whole token, hex.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new token: its id and the whole secret string (to show once).
pub fn mint() -> (String, String) {
    let id = hex::encode(rand::random::<[u8; 5]>());
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let token = format!("{PREFIX}{id}_{secret}");
    (id, token)
}

/// Stores a new token for `info` (whose `id` must come from [`mint`]) and its hash.
pub async fn store(catalog: &dyn Catalog, info: &TokenInfo, token: &str) -> Result<(), CatalogError> {
    let body = serde_json::to_string(info).expect("a token document serialises");
    catalog
        .insert_token(&StoredToken {
            id: info.id.clone(),
            secret_hash: hash(token),
            body,
        })
        .await
}

/// Every token, by id.
pub async fn list(catalog: &dyn Catalog) -> Result<Vec<TokenInfo>, CatalogError> {
    catalog.tokens().await?.iter().map(parse).collect()
}

fn parse(t: &StoredToken) -> Result<TokenInfo, CatalogError> {
    serde_json::from_str(&t.body).map_err(|e| CatalogError::corrupt("tokens", format!("token {}: {e}", t.id)))
}

/// The principal a presented token stands for.
pub async fn authenticate(
    catalog: &dyn Catalog,
    presented: &str,
    now: jiff::Timestamp,
) -> Result<Principal, AuthError> {
    let presented = presented.trim();
    let id = presented
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .map(|(id, _)| id)
        .filter(|id| !id.is_empty() && id.len() <= 32)
        .ok_or(AuthError::Invalid)?;
    let Some(stored) = catalog.token(id).await? else {
        return Err(AuthError::Invalid);
    };
    let matches: bool = hash(presented).as_bytes().ct_eq(stored.secret_hash.as_bytes()).into();
    if !matches {
        return Err(AuthError::Invalid);
    }
    let info = parse(&stored)?;
    if info.revoked_at.is_some() {
        return Err(AuthError::Revoked { id: info.id });
    }
    if info.expires_at.is_some_and(|e| now >= e) {
        return Err(AuthError::Expired { id: info.id });
    }
    Ok(info.principal())
}

/// Revokes token `id` (by `by`); false when there is no such token.
pub async fn revoke(
    catalog: &dyn Catalog,
    id: &str,
    by: &str,
    now: jiff::Timestamp,
) -> Result<Option<TokenInfo>, CatalogError> {
    let Some(stored) = catalog.token(id).await? else {
        return Ok(None);
    };
    let mut info = parse(&stored)?;
    if info.revoked_at.is_none() {
        info.revoked_at = Some(now);
        info.revoked_by = Some(by.to_string());
        let body = serde_json::to_string(&info).expect("a token document serialises");
        catalog.update_token(id, &body).await?;
    }
    Ok(Some(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_are_unique_and_carry_their_id() {
        let (id, token) = mint();
        let (id2, token2) = mint();
        assert_ne!(token, token2);
        assert_ne!(id, id2);
        assert!(token.starts_with(&format!("lbt_{id}_")));
        assert_eq!(token.len(), 4 + 10 + 1 + 64);
        assert_eq!(hash(&token).len(), 64);
        assert_ne!(hash(&token), hash(&token2));
    }
}
