//! Lifeboat: backup integrity and recovery-drill orchestrator.
//!
//! Data flows downward: `cli` → `engine`/`repo` → `storage`; `catalog` records history.
//! `engine`, `repo`, `storage` and `catalog` know nothing of the CLI.

pub mod alert;
pub mod api;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod drill;
pub mod engine;
pub mod fate;
pub mod http;
pub mod ops;
pub mod repo;
pub mod schedule;
pub mod scratch;
pub mod storage;
pub mod telemetry;
