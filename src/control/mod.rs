//! The control plane: who may do what, and how destructive actions wait for a human.
//!
//! - `operation`, `principal`: the operations a token carries and the scope check.
//! - `token`: minting, hashing and authenticating API tokens.
//! - `approval`: requests that a different principal must approve before they run, once.
//! - `audit`: the hash-chained log of every call, and its copies in the repositories.
//! - `settings`: retention, disabled jobs and routes, removed repositories, set through requests.
//! - `plane`: the rules in one place, used by the CLI and the API alike.

pub mod approval;
pub mod audit;
pub mod operation;
pub mod plane;
pub mod principal;
pub mod settings;
pub mod token;

pub use approval::{Action, Approval, ApprovalState};
pub use audit::{AuditEntry, AuditEvent, Decision};
pub use operation::Operation;
pub use plane::{ControlError, ControlPlane, Outcome, RestoreSpec, RestoreTargetSpec};
pub use principal::{Principal, Resource, Scope};
pub use settings::Settings;
