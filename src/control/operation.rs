//! What a principal may do: the operations a token carries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One operation. `admin` includes every other one except `approve`, which is only ever given by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Operation {
    /// List and read: sources, snapshots, drills, SLA, fate, approvals, audit.
    Read,
    /// Start a backup.
    Backup,
    /// Run a drill.
    Drill,
    /// Restore into a throwaway scratch cluster.
    RestoreScratch,
    /// Restore into a target database; over existing data only once approved.
    RestoreTarget,
    /// Apply retention; deleting anything takes an approval.
    Prune,
    /// Ask for a snapshot to be deleted (an approval).
    Delete,
    /// Approve or deny another principal's request.
    Approve,
    /// Manage tokens and settings; includes every operation but `approve`.
    Admin,
}

impl Operation {
    pub const ALL: [Operation; 9] = [
        Operation::Read,
        Operation::Backup,
        Operation::Drill,
        Operation::RestoreScratch,
        Operation::RestoreTarget,
        Operation::Prune,
        Operation::Delete,
        Operation::Approve,
        Operation::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Backup => "backup",
            Operation::Drill => "drill",
            Operation::RestoreScratch => "restore:scratch",
            Operation::RestoreTarget => "restore:target",
            Operation::Prune => "prune",
            Operation::Delete => "delete",
            Operation::Approve => "approve",
            Operation::Admin => "admin",
        }
    }

    /// A comma-separated list such as "read,drill".
    pub fn parse_list(text: &str) -> Result<std::collections::BTreeSet<Operation>, String> {
        let ops = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Operation::from_str)
            .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
        if ops.is_empty() {
            return Err(format!(
                "no operation given; fix: name at least one of {}",
                Self::names()
            ));
        }
        Ok(ops)
    }

    fn names() -> String {
        Self::ALL.map(Operation::as_str).join(", ")
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Operation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| format!("unknown operation `{s}`; fix: use one of {}", Self::names()))
    }
}

impl TryFrom<String> for Operation {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Operation> for String {
    fn from(op: Operation) -> String {
        op.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_explained() {
        for op in Operation::ALL {
            assert_eq!(op.as_str().parse::<Operation>().unwrap(), op);
        }
        let ops = Operation::parse_list("read, drill,restore:scratch").unwrap();
        assert_eq!(ops.len(), 3);
        let err = Operation::parse_list("read,destroy").unwrap_err();
        assert!(err.contains("`destroy`") && err.contains("restore:target"), "{err}");
        assert!(Operation::parse_list(" , ").is_err());
    }
}
