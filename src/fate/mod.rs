//! Shared-fate analysis: every way a backup would die together with its data.

pub mod evidence;
pub mod s3;
