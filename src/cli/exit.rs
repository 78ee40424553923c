//! Stable exit codes, and how each error maps onto them.

use std::process::ExitCode;

use crate::config::ConfigError;
use crate::engine::EngineError;
use crate::ops::OpsError;
use crate::repo::RepoError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failed = 1,
    Usage = 2,
    Refused = 3,
    Damage = 4,
    /// `drill run`: measured, checked, but outside the SLA.
    SlaBreach = 5,
    /// No valid token, or outside the token's operations, environments or sources.
    Denied = 6,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// An error on its way to the user: the message (which says what to do) and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(Exit::Usage, message)
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::new(Exit::Usage, e.to_string())
    }
}

impl From<RepoError> for CliError {
    fn from(e: RepoError) -> Self {
        let exit = match &e {
            RepoError::Corrupt { .. } | RepoError::Missing { .. } => Exit::Damage,
            RepoError::AlreadyExists { .. } | RepoError::Locked { .. } => Exit::Refused,
            RepoError::UnsupportedVersion { .. }
            | RepoError::Ambiguous { .. }
            | RepoError::NotFound { .. }
            | RepoError::IdentityRequired { .. }
            | RepoError::AddressKeyRequired { .. } => Exit::Usage,
            _ => Exit::Failed,
        };
        CliError::new(exit, e.to_string())
    }
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        CliError::new(Exit::Failed, e.to_string())
    }
}

impl From<OpsError> for CliError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::Repo(r) => r.into(),
            OpsError::Engine(r) => r.into(),
            e @ OpsError::Refused { .. } => CliError::new(Exit::Refused, e.to_string()),
            e @ OpsError::Mismatch { .. } => CliError::new(Exit::Damage, e.to_string()),
            e @ OpsError::Io { .. } => CliError::new(Exit::Failed, e.to_string()),
            e @ OpsError::Interrupted { .. } => CliError::new(Exit::Failed, e.to_string()),
        }
    }
}

impl From<crate::storage::StorageError> for CliError {
    fn from(e: crate::storage::StorageError) -> Self {
        CliError::new(Exit::Usage, e.to_string())
    }
}

impl From<crate::catalog::CatalogError> for CliError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        CliError::new(Exit::Failed, e.to_string())
    }
}

impl From<crate::scratch::ScratchError> for CliError {
    fn from(e: crate::scratch::ScratchError) -> Self {
        CliError::new(Exit::Failed, e.to_string())
    }
}
