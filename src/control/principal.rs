//! Who is asking, and what they may do: a principal and its scope.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::operation::Operation;

/// What a principal may do, on which environments and sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub operations: BTreeSet<Operation>,
    /// Environment names (a source's `environment:`); `*` is every one.
    pub environments: Vec<String>,
    /// Source name patterns (`*` any run of characters, `?` one); `*` is every source.
    pub sources: Vec<String>,
}

/// A source as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    pub source: &'a str,
    pub environment: &'a str,
}

/// Someone acting: a token's holder (`token:NAME`) or the operator at this host's shell
/// (`local:USER`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// `token:NAME` or `local:USER`: what the audit log and approvals record. Two principals are the
    /// same person exactly when their names are equal.
    pub name: String,
    /// The token's id, for a token.
    pub token_id: Option<String>,
    pub scope: Scope,
    /// For a token: the principal who created it (who may not approve what it asks, nor ask what
    /// it approves).
    #[serde(default)]
    pub created_by: Option<String>,
}

impl Principal {
    /// The person behind a principal: `local:alice` and `token:alice` are both alice.
    pub fn person(name: &str) -> &str {
        name.split_once(':').map_or(name, |(_, who)| who)
    }
}

/// Why a principal may not do something; the message says what it lacks and how to get it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{principal} may not {what}: {why}; fix: {fix}")]
pub struct Denied {
    pub principal: String,
    pub what: String,
    pub why: String,
    pub fix: String,
}

impl Scope {
    /// Every operation on everything.
    pub fn everything() -> Scope {
        Scope {
            operations: Operation::ALL.into_iter().collect(),
            environments: vec!["*".into()],
            sources: vec!["*".into()],
        }
    }

    /// The operations as written on the command line, e.g. "read,drill"; "none" when empty.
    pub fn operations_text(&self) -> String {
        if self.operations.is_empty() {
            return "none".into();
        }
        self.operations.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(",")
    }

    /// `admin` includes every operation but `approve`: approving is a person's deliberate act, given
    /// on its own, so that whoever manages tokens and settings does not also approve by default.
    pub fn has(&self, op: Operation) -> bool {
        self.operations.contains(&op) || (op != Operation::Approve && self.operations.contains(&Operation::Admin))
    }

    pub fn covers_environment(&self, environment: &str) -> bool {
        self.environments.iter().any(|e| e == "*" || e == environment)
    }

    pub fn covers_source(&self, source: &str) -> bool {
        self.sources.iter().any(|p| glob(p, source))
    }

    pub fn covers(&self, r: Resource<'_>) -> bool {
        self.covers_environment(r.environment) && self.covers_source(r.source)
    }

    /// True when it reaches every environment and every source (needed for what is not about one
    /// source, such as tokens and settings of repositories).
    pub fn is_global(&self) -> bool {
        self.environments.iter().any(|e| e == "*") && self.sources.iter().any(|s| s == "*")
    }
}

impl Principal {
    /// May this principal do `op` on every one of `resources`? With no resources (tokens, audit,
    /// repository settings) it needs `op` and a global scope, except for `read`, whose results the
    /// caller filters to the scope instead.
    pub fn check(&self, op: Operation, what: &str, resources: &[Resource<'_>]) -> Result<(), Denied> {
        let denied = |why: String, fix: String| Denied {
            principal: self.name.clone(),
            what: what.to_string(),
            why,
            fix,
        };
        if !self.scope.has(op) {
            return Err(denied(
                format!(
                    "it lacks the `{op}` operation (it has: {})",
                    self.scope.operations_text()
                ),
                format!("ask an admin for a token with `{op}`, or have someone who holds one do it"),
            ));
        }
        if resources.is_empty() && op != Operation::Read && !self.scope.is_global() {
            return Err(denied(
                "this is not about one source, and its scope is limited to some environments or sources".into(),
                "use a token whose --env and --sources are `*`".into(),
            ));
        }
        for r in resources {
            if !self.scope.covers_environment(r.environment) {
                return Err(denied(
                    format!(
                        "source `{}` is in environment `{}`, outside its environments ({})",
                        r.source,
                        r.environment,
                        self.scope.environments.join(", ")
                    ),
                    format!("use a token for environment `{}`", r.environment),
                ));
            }
            if !self.scope.covers_source(r.source) {
                return Err(denied(
                    format!(
                        "source `{}` matches none of its source patterns ({})",
                        r.source,
                        self.scope.sources.join(", ")
                    ),
                    format!("use a token whose --sources matches `{}`", r.source),
                ));
            }
        }
        Ok(())
    }
}

/// `*` matches any run of characters, `?` one; everything else itself.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    crate::alert::glob_match(pattern, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(ops: &str, envs: &[&str], sources: &[&str]) -> Principal {
        Principal {
            name: "token:t".into(),
            token_id: Some("x".into()),
            created_by: None,
            scope: Scope {
                operations: Operation::parse_list(ops).unwrap(),
                environments: envs.iter().map(|s| s.to_string()).collect(),
                sources: sources.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    const ORDERS_PROD: Resource<'static> = Resource {
        source: "orders",
        environment: "production",
    };
    const ORDERS_STAGING: Resource<'static> = Resource {
        source: "orders-staging",
        environment: "staging",
    };

    #[test]
    fn operations_environments_and_sources_all_have_to_match() {
        let agent = principal("read,drill", &["staging"], &["orders*"]);
        assert!(agent.check(Operation::Drill, "run a drill", &[ORDERS_STAGING]).is_ok());
        let e = agent.check(Operation::Delete, "delete", &[ORDERS_STAGING]).unwrap_err();
        assert!(
            e.to_string()
                .contains("lacks the `delete` operation (it has: read,drill)"),
            "{e}"
        );
        let e = agent
            .check(Operation::Drill, "run a drill", &[ORDERS_PROD])
            .unwrap_err();
        assert!(e.to_string().contains("environment `production`"), "{e}");
        let other = Resource {
            source: "billing",
            environment: "staging",
        };
        assert!(agent.check(Operation::Drill, "run a drill", &[other]).is_err());
        // Not about one source: a scoped token may read (filtered) but not act.
        assert!(agent.check(Operation::Read, "read the audit log", &[]).is_ok());
        let admin = principal("admin", &["staging"], &["*"]);
        assert!(admin.check(Operation::Admin, "create a token", &[]).is_err());
        let admin = principal("admin", &["*"], &["*"]);
        assert!(admin.check(Operation::Admin, "create a token", &[]).is_ok());
        assert!(admin.check(Operation::Delete, "delete", &[ORDERS_PROD]).is_ok());
        assert!(
            admin.check(Operation::Approve, "approve", &[ORDERS_PROD]).is_err(),
            "approving is never implied"
        );
    }
}
