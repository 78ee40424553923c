//! Recovery drills: restore a snapshot into a throwaway scratch environment, check the
//! data, time every phase and compare the result with the SLA (`DESIGN.md`, "Drills").
//!
//! - `spec`: drill files (`drills/*.yaml`) → validated [`spec::DrillSpec`]s, with every
//!   problem reported as `file:line:column` and a fix, like the config file.
//! - `run`: one run, phase by phase, always ending in a [`result::DrillResult`].
//! - `result`: the result document (catalog row, repository evidence and `--json` alike).
//! - `record`: results into the catalog and the repository, and back.
//! - `sla`: compliance figures over recent runs.

pub mod record;
pub mod result;
pub mod run;
pub mod sla;
pub mod spec;
