//! Throwaway environments for drills and tests.
//!
//! An [`EphemeralPostgres`] is a fresh PostgreSQL cluster in a temp directory that listens only
//! on a Unix socket in that directory: a drill restored into it has no route to production. It is
//! always torn down — by [`EphemeralPostgres::stop`], or on drop (also while panicking) — and a
//! marker file lets [`reap_orphans`] remove clusters whose creator was killed before it could.
//!
//! When the process is root, the server runs as the `postgres` OS user (initdb refuses root).

mod bin_dir;
mod error;
mod marker;
mod os_user;
mod postgres;
mod quote;
mod reap;
mod run;
mod teardown;

pub use bin_dir::BIN_DIR_ENV;
pub use error::ScratchError;
pub use marker::MARKER_FILE;
pub use postgres::{EphemeralOptions, EphemeralPostgres};
pub use reap::reap_orphans;
