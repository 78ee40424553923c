//! `lifeboat::drill::spec`: drill files → typed drills, and every way they can be wrong,
//! through the public API, on real files in temp dirs.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;
use support::problems::{at, find};

use lifeboat::config::{self, Config, ConfigError, Position, Problem, SecretRef};
use lifeboat::drill::spec::{
    self, Check, CompareOp, DrillSpec, Expectation, ExpectedValue, RestorePoint, ScratchSpec, Sla, format_duration,
    parse_duration,
};
use tempfile::TempDir;

const CONFIG: &str = r#"repositories:
  offsite:
    url: file:///srv/lifeboat
sources:
  orders:
    kind: postgres
    dsn: postgres://lifeboat@db.internal:5432/orders
    environment: production
    repository: offsite
  rental:
    kind: postgres
    dsn: postgres://lifeboat@db.internal:5432/rental
    environment: production
    repository: offsite
alerts:
  sinks:
    pager:
      kind: pagerduty
      routing_key_env: PAGERDUTY_KEY
  routes:
    oncall:
      sinks: [pager]
      min_severity: critical
"#;

/// The drill of the issue, exactly as written there.
const ISSUE_EXAMPLE: &str = r#"name: orders-nightly
source: orders
schedule: "0 3 * * *"            # used by the daemon; ignored by `drill run`
restore_point: latest            # latest | random: 7d | at: 2026-11-20T03:00:00Z
scratch:
  kind: ephemeral                # a throwaway cluster on a Unix socket in a temp dir
  # kind: server                 # a throwaway database on a scratch server
  # dsn_env: SCRATCH_PG_DSN
sla:
  rto: 10m
  rpo: 26h
checks:
  - fingerprint: true            # per-table row counts equal those recorded at backup time
  - sql: "select count(*) from reservations where status = 'booked'"
    expect: ">= 1"
  - freshness:
      sql: "select max(created_at) from reservations"
      within: 26h
  - amcheck: true                # skipped, with the reason, where the extension is not available
  - command: ["./drills/smoke.sh"] # gets LIFEBOAT_SCRATCH_DSN in its environment
alerts: [oncall]
"#;

/// A minimal valid drill body after `name:`; tests append or replace lines.
const MINIMAL: &str = "source: orders\nchecks:\n  - fingerprint: true\n";

/// A temp dir holding `lifeboat.yaml` (loaded as the config) and a `drills/` directory.
struct Env {
    dir: TempDir,
    config: Config,
}

impl Env {
    fn new() -> Env {
        let dir = TempDir::new().unwrap();
        let config = config::load_str(CONFIG, &dir.path().join("lifeboat.yaml")).unwrap();
        std::fs::create_dir(dir.path().join("drills")).unwrap();
        Env { dir, config }
    }

    fn drills(&self) -> PathBuf {
        self.dir.path().join("drills")
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.drills().join(file);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load(&self, text: &str) -> Result<DrillSpec, ConfigError> {
        let path = self.write("drill.yaml", text);
        spec::load_file(&path, &self.config)
    }

    fn problems(&self, text: &str) -> Vec<Problem> {
        match self.load(text) {
            Ok(spec) => panic!("drill should be refused, got {spec:#?}"),
            Err(e) => e.into_problems(),
        }
    }
}

fn only(problems: &[Problem]) -> &Problem {
    let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems.len(),
        1,
        "expected exactly one problem, got:\n{}",
        all.join("\n")
    );
    &problems[0]
}

/// Asserts where a problem is, and that its rendering is `file:line:column: message` plus a
/// `fix:` line containing `fix`.
fn assert_at(p: &Problem, file: &Path, position: Option<Position>, fix: &str) {
    assert_eq!(p.file.as_deref(), Some(file), "{p}");
    assert_eq!(p.position, position, "{p}");
    assert!(p.fix.contains(fix), "fix should contain {fix:?}:\n{p}");
    let Position { line, column } = position.unwrap();
    let shown = p.to_string();
    let head = format!("{}:{line}:{column}: ", file.display());
    assert!(shown.starts_with(&head), "{shown}");
    assert!(shown.contains("\n  fix: "), "{shown}");
}

fn drill(name: &str, rest: &str) -> String {
    format!("name: {name}\n{rest}")
}

#[test]
fn the_issue_example_parses_as_written() {
    let env = Env::new();
    let file = env.write("orders-nightly.yaml", ISSUE_EXAMPLE);
    let spec = spec::load_file(&file, &env.config).unwrap_or_else(|e| panic!("{e}"));
    let drills = std::path::absolute(env.drills()).unwrap();
    assert_eq!(
        spec,
        DrillSpec {
            name: "orders-nightly".into(),
            file: file.clone(),
            source: "orders".into(),
            schedule: Some("0 3 * * *".into()),
            restore_point: RestorePoint::Latest,
            scratch: ScratchSpec::Ephemeral,
            sla: Sla {
                rto: Some(Duration::from_secs(600)),
                rpo: Some(Duration::from_secs(26 * 3600)),
            },
            checks: vec![
                Check::Fingerprint,
                Check::Sql {
                    sql: "select count(*) from reservations where status = 'booked'".into(),
                    expect: Expectation {
                        op: CompareOp::Ge,
                        value: ExpectedValue::Number(1.0),
                    },
                },
                Check::Freshness {
                    sql: "select max(created_at) from reservations".into(),
                    within: Duration::from_secs(26 * 3600),
                },
                Check::Amcheck,
                // Relative to the drill file's directory.
                Check::Command {
                    argv: vec![drills.join("drills/smoke.sh").to_string_lossy().into_owned()],
                },
            ],
            alerts: vec!["oncall".into()],
        }
    );
    // The same through the directory.
    assert_eq!(spec::load_dir(&env.drills(), &env.config).unwrap(), vec![spec]);
}

#[test]
fn the_shipped_rental_example_loads() {
    let env = Env::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("drills");
    let specs = spec::load_dir(&dir, &env.config).unwrap_or_else(|e| panic!("drills/ must load:\n{e}"));
    let rental = specs
        .iter()
        .find(|s| s.name == "rental-nightly")
        .expect("rental-nightly");
    assert_eq!(rental.source, "rental");
    assert_eq!(rental.file, dir.join("rental-nightly.yaml"));
    assert_eq!(rental.schedule.as_deref(), Some("30 4 * * *"));
    assert_eq!(
        rental.restore_point,
        RestorePoint::Random {
            within: Duration::from_secs(7 * 86_400)
        }
    );
    assert_eq!(rental.scratch, ScratchSpec::Ephemeral);
    assert_eq!(rental.sla.rto, Some(Duration::from_secs(15 * 60)));
    assert_eq!(rental.sla.rpo, Some(Duration::from_secs(26 * 3600)));
    let kinds: Vec<&str> = rental.checks.iter().map(Check::kind).collect();
    assert_eq!(
        kinds,
        ["fingerprint", "sql", "sql", "sql", "sql", "sql", "freshness", "amcheck"]
    );
    let sqls: Vec<&str> = rental
        .checks
        .iter()
        .filter_map(|c| match c {
            Check::Sql { sql, .. } | Check::Freshness { sql, .. } => Some(sql.as_str()),
            _ => None,
        })
        .collect();
    for table in ["customers", "vehicles", "reservations", "payments"] {
        assert!(sqls.iter().any(|s| s.contains(table)), "no check on {table}");
    }
    // The folded (`>-`) query is one line of SQL.
    assert!(sqls.contains(
        &"select count(*) from payments p left join reservations r on r.id = p.reservation_id where r.id is null"
    ));
    assert_eq!(rental.alerts, ["oncall"]);
}

#[test]
fn config_drills_dir_defaults_beside_the_config_and_resolves_relative_paths() {
    let dir = TempDir::new().unwrap();
    let origin = dir.path().join("etc/lifeboat.yaml");
    let base = std::path::absolute(dir.path().join("etc")).unwrap();

    let cfg = config::load_str(CONFIG, &origin).unwrap();
    assert_eq!(cfg.drills_dir, base.join("drills"));

    let cfg = config::load_str(&format!("drills_dir: ../drills\n{CONFIG}"), &origin).unwrap();
    assert_eq!(cfg.drills_dir, base.join("../drills"));

    let cfg = config::load_str(&format!("drills_dir: /srv/drills\n{CONFIG}"), &origin).unwrap();
    assert_eq!(cfg.drills_dir, PathBuf::from("/srv/drills"));

    let err = config::load_str(&format!("drills_dir: ~/drills\n{CONFIG}"), &origin).unwrap_err();
    assert_eq!(only(err.all()).position, at(1, 13));
}

#[test]
fn load_dir_reads_yaml_files_only_and_sorts_by_name() {
    let env = Env::new();
    assert_eq!(spec::load_dir(&env.drills(), &env.config).unwrap(), vec![]);

    env.write("1-first.yaml", &drill("zulu", MINIMAL));
    env.write("2-second.yml", &drill("alpha", MINIMAL));
    env.write("notes.txt", "not a drill");
    env.write(".hidden.yaml", "not: [a drill");
    std::fs::create_dir(env.drills().join("sub.yaml")).unwrap();
    let specs = spec::load_dir(&env.drills(), &env.config).unwrap();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["alpha", "zulu"]);
    assert_eq!(specs[0].file, env.drills().join("2-second.yml"));
    // Defaults for everything optional.
    assert_eq!(specs[0].restore_point, RestorePoint::Latest);
    assert_eq!(specs[0].scratch, ScratchSpec::Ephemeral);
    assert_eq!(specs[0].sla, Sla::default());
    assert_eq!(specs[0].schedule, None);
    assert!(specs[0].alerts.is_empty());
}

#[test]
fn a_missing_drills_directory_says_how_to_fix_it() {
    let env = Env::new();
    let missing = env.dir.path().join("nowhere");
    let err = spec::load_dir(&missing, &env.config).unwrap_err();
    let p = only(err.all());
    assert_eq!(p.file.as_deref(), Some(missing.as_path()));
    assert!(p.message.contains("cannot read the drills directory"), "{p}");
    assert!(p.fix.contains("drills_dir"), "{p}");
}

#[test]
fn unknown_check_kind_names_the_kinds_and_suggests_one() {
    let env = Env::new();
    let problems = env.problems(&drill(
        "a",
        "source: orders\nchecks:\n  - fingerprint: true\n  - fingerprnt: true\n  - tablecount: true\n",
    ));
    let p = find(&problems, "`fingerprnt`");
    assert_at(
        p,
        &env.drills().join("drill.yaml"),
        at(5, 5),
        "did you mean `fingerprint`?",
    );
    assert!(
        p.message.contains(
            "unknown check kind `fingerprnt` (allowed kinds: `fingerprint`, `sql`, `freshness`, `amcheck`, `command`)"
        ),
        "{p}"
    );
    let p = find(&problems, "`tablecount`");
    assert_at(
        p,
        &env.drills().join("drill.yaml"),
        at(6, 5),
        "use one of `fingerprint`",
    );
    assert_eq!(problems.len(), 2);

    // A misspelt key in a `sql` check names the keys of a `sql` check.
    let problems = env.problems(&drill(
        "a",
        "source: orders\nchecks:\n  - sql: select 1\n    expct: 1\n",
    ));
    let p = find(&problems, "unknown key `expct` in a `sql` check");
    assert_at(p, &env.drills().join("drill.yaml"), at(5, 5), "did you mean `expect`?");

    // A bare word where `kind: value` belongs.
    let p = only(&env.problems(&drill("a", "source: orders\nchecks:\n  - amcheck\n"))).clone();
    assert_at(
        &p,
        &env.drills().join("drill.yaml"),
        at(4, 5),
        "write `- amcheck: true`",
    );
}

#[test]
fn bad_durations_say_which_forms_are_accepted() {
    let env = Env::new();
    let file = env.drills().join("drill.yaml");
    let text = drill(
        "a",
        "source: orders\nrestore_point:\n  random: 1 week\nsla:\n  rto: 10 minutes\n  rpo: 0h\nchecks:\n  \
         - freshness:\n      sql: select max(t) from x\n      within: 1.5h\n",
    );
    let problems = env.problems(&text);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    for (needle, line, column) in [
        ("`random: 1 week`", 4, 11),
        ("`rto: 10 minutes`", 6, 8),
        ("`rpo: 0h`", 7, 8),
        ("`within: 1.5h`", 11, 15),
    ] {
        let p = find(&problems, needle);
        assert!(p.message.ends_with("is not a duration"), "{p}");
        assert_at(p, &file, at(line, column), "`90s`, `10m`, `26h`, `7d`");
        assert!(p.fix.contains("`1h30m`"), "{p}");
    }
    // In file order.
    let lines: Vec<u64> = problems.iter().map(|p| p.position.unwrap().line).collect();
    assert_eq!(lines, [4, 6, 7, 11]);
}

#[test]
fn an_unknown_source_is_refused_with_a_suggestion() {
    let env = Env::new();
    let file = env.drills().join("drill.yaml");
    let p = only(&env.problems(&drill("a", "source: ordres\nchecks:\n  - fingerprint: true\n"))).clone();
    assert_at(&p, &file, at(2, 9), "did you mean `source: orders`?");
    assert!(
        p.message.contains("source `ordres` is not defined in the config"),
        "{p}"
    );
    assert!(p.message.contains("lifeboat.yaml"), "{p}");

    let p = only(&env.problems(&drill("a", "source: billing\nchecks:\n  - fingerprint: true\n"))).clone();
    assert_at(&p, &file, at(2, 9), "use one of `orders`, `rental`");
    assert!(p.fix.contains("define `billing` under `sources:`"), "{p}");

    // No source at all.
    let p = only(&env.problems(&drill("a", "checks:\n  - fingerprint: true\n"))).clone();
    assert!(p.message.contains("no `source`"), "{p}");
    assert!(p.fix.contains("`orders`, `rental`"), "{p}");
}

#[test]
fn unknown_keys_are_errors_everywhere() {
    let env = Env::new();
    let file = env.drills().join("drill.yaml");
    let cases: [(&str, u64, u64, &str, &str); 5] = [
        (
            "chekcs: []\n",
            5,
            1,
            "unknown key `chekcs` (allowed keys: `name`, `source`",
            "did you mean `checks`?",
        ),
        (
            "sla:\n  rot: 1h\n",
            6,
            3,
            "unknown key `rot` (allowed keys: `rto`, `rpo`)",
            "did you mean `rto`?",
        ),
        (
            "scratch:\n  kind: ephemeral\n  enviroment: x\n",
            7,
            3,
            "unknown key `enviroment`",
            "did you mean `environment`?",
        ),
        // An inline DSN is taken for what it is: a secret in a plain file.
        (
            "scratch:\n  kind: server\n  dsn: x\n",
            7,
            3,
            "unknown key `dsn`",
            "`dsn_env: VAR`",
        ),
        (
            "  - freshness:\n      sql: select 1\n      whitin: 1h\n",
            7,
            7,
            "unknown key `whitin` (allowed keys: `sql`, `within`)",
            "did you mean `within`?",
        ),
    ];
    for (extra, line, column, message, fix) in cases {
        let text = format!("{}{extra}", drill("a", MINIMAL));
        let problems = env.problems(&text);
        let p = only(&problems);
        assert!(p.message.contains(message), "{p}");
        assert_at(p, &file, at(line, column), fix);
    }
}

#[test]
fn malformed_yaml_is_one_problem_with_a_position() {
    let env = Env::new();
    let file = env.drills().join("drill.yaml");
    let p = only(&env.problems("name: a\nsource: orders\nchecks:\n  - sql: \"select 1\n")).clone();
    assert!(p.position.is_some(), "{p}");
    assert_eq!(p.position.unwrap().line, 4, "{p}");
    assert_at(&p, &file, p.position, "unclosed quote");

    let p = only(&env.problems("name: a\n  source: orders\n")).clone();
    assert_at(&p, &file, p.position, "indentation");
    assert_eq!(p.position.unwrap().line, 2, "{p}");

    // A wrong type: a mapping where a list belongs.
    let p = only(&env.problems("name: a\nsource: orders\nchecks:\n  fingerprint: true\n")).clone();
    assert_at(&p, &file, p.position, "list");
    assert!(p.message.contains("expected a list"), "{p}");

    let p = only(&env.problems("# nothing yet\n")).clone();
    assert!(p.message.contains("empty"), "{p}");
}

#[test]
fn duplicate_names_across_files_name_both_places() {
    let env = Env::new();
    env.write("a.yaml", &drill("nightly", MINIMAL));
    env.write(
        "b.yaml",
        &format!("# the same drill again\n{}", drill("nightly", MINIMAL)),
    );
    let err = spec::load_dir(&env.drills(), &env.config).unwrap_err();
    let p = only(err.all());
    let first = env.drills().join("a.yaml");
    assert_at(p, &env.drills().join("b.yaml"), at(2, 7), "rename one");
    assert_eq!(
        p.message,
        format!("drill name `nightly` is already used by {}:1:7", first.display())
    );
}

#[test]
fn every_problem_of_every_file_is_reported_at_once() {
    let env = Env::new();
    // A duplicate of a drill whose file has other problems is still caught.
    env.write("a.yaml", &drill("one", "source: nope\nchecks:\n  - amcheck: maybe\n"));
    env.write(
        "b.yaml",
        &drill("two", "source: orders\nsla: {rto: soon}\nchecks:\n  - sql: select 1\n"),
    );
    env.write("c.yaml", &drill("two", "source: orders\nchecks:\n  - expect: 1\n"));
    env.write("d.yaml", &drill("ok", MINIMAL));
    let err = spec::load_dir(&env.drills(), &env.config).unwrap_err();
    let shown: Vec<String> = err
        .all()
        .iter()
        .map(|p| {
            let name = p
                .file
                .as_ref()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let Position { line, column } = p.position.unwrap();
            format!("{name}:{line}:{column}")
        })
        .collect();
    // In file order, within each file in line order.
    assert_eq!(
        shown,
        [
            "a.yaml:2:9",
            "a.yaml:4:14",
            "b.yaml:3:12",
            "b.yaml:5:5",
            "c.yaml:1:7",
            "c.yaml:4:5"
        ],
        "{err}"
    );
    find(err.all(), "source `nope` is not defined");
    find(err.all(), "`amcheck` takes `true` or `false`, not `maybe`");
    find(err.all(), "`rto: soon` is not a duration");
    find(err.all(), "`sql` check without `expect`");
    find(err.all(), "drill name `two` is already used by");
    find(err.all(), "`expect` without `sql`");
}

#[test]
fn expect_and_sql_go_together() {
    let env = Env::new();
    let file = env.drills().join("drill.yaml");
    let p = only(&env.problems(&drill("a", "source: orders\nchecks:\n  - expect: \">= 1\"\n"))).clone();
    assert_eq!(p.message, "`expect` without `sql`");
    assert_at(&p, &file, at(4, 5), "add `sql:");

    // `expect` written as its own list entry: both halves are reported.
    let problems = env.problems(&drill(
        "a",
        "source: orders\nchecks:\n  - sql: select 1\n  - expect: 1\n",
    ));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_at(
        find(&problems, "`sql` check without `expect`"),
        &file,
        at(4, 5),
        "add `expect:`",
    );
    assert_at(find(&problems, "`expect` without `sql`"), &file, at(5, 5), "add `sql:");

    let p = only(&env.problems(&drill("a", "source: orders\nchecks:\n  - sql: select 1\n"))).clone();
    assert_eq!(p.message, "`sql` check without `expect`");
    assert_at(&p, &file, at(4, 5), "expect: \">= 1\"");

    let p = only(&env.problems(&drill(
        "a",
        "source: orders\nchecks:\n  - amcheck: true\n    expect: 1\n",
    )))
    .clone();
    assert_at(
        &p,
        &file,
        at(5, 5),
        "`expect` belongs to a `sql` check, not to `amcheck`",
    );

    let p = only(&env.problems(&drill(
        "a",
        "source: orders\nchecks:\n  - sql: select 1\n    expect: \">= 'x'\"\n",
    )))
    .clone();
    assert!(p.message.contains("text can only be compared with `=` or `!=`"), "{p}");
    assert_at(&p, &file, at(5, 13), "`expect: \">= 1\"`");
}

#[test]
fn one_check_per_entry_and_switched_off_checks() {
    let env = Env::new();
    let file = env.drills().join("drill.yaml");
    let p = only(&env.problems(&drill(
        "a",
        "source: orders\nchecks:\n  - fingerprint: true\n    amcheck: true\n",
    )))
    .clone();
    assert!(p.message.contains("several kinds: `fingerprint`, `amcheck`"), "{p}");
    assert_at(&p, &file, at(5, 5), "own list entry");

    let spec = env
        .load(&drill(
            "a",
            "source: orders\nchecks:\n  - fingerprint: false\n  - amcheck: false\n  - amcheck: true\n",
        ))
        .unwrap();
    assert_eq!(spec.checks, [Check::Amcheck]);

    let p = only(&env.problems(&drill("a", "source: orders\nchecks:\n  - fingerprint: false\n"))).clone();
    assert!(p.message.contains("no checks"), "{p}");
    assert_at(&p, &file, at(4, 3), "fingerprint: true");

    let p = only(&env.problems(&drill("a", "source: orders\n"))).clone();
    assert!(p.message.contains("no `checks`"), "{p}");
}

#[test]
fn commands_are_lists_and_relative_programs_start_at_the_drill_file() {
    let env = Env::new();
    let base = std::path::absolute(env.drills()).unwrap();
    let spec = env
        .load(&drill(
            "a",
            "source: orders\nchecks:\n  - command: [\"./smoke.sh\", \"--quick\", \"./arg\"]\n  \
             - command: [psql, -c, select 1]\n  - command: [/bin/true]\n  - command: [../bin/x]\n",
        ))
        .unwrap();
    assert_eq!(
        spec.checks,
        [
            Check::Command {
                argv: vec![
                    base.join("smoke.sh").to_string_lossy().into(),
                    "--quick".into(),
                    "./arg".into()
                ]
            },
            Check::Command {
                argv: vec!["psql".into(), "-c".into(), "select 1".into()]
            },
            Check::Command {
                argv: vec!["/bin/true".into()]
            },
            Check::Command {
                argv: vec![base.join("../bin/x").to_string_lossy().into()]
            },
        ]
    );

    let file = env.drills().join("drill.yaml");
    let p = only(&env.problems(&drill(
        "a",
        "source: orders\nchecks:\n  - command: ./smoke.sh --quick\n",
    )))
    .clone();
    assert_at(&p, &file, at(4, 14), "command: [\"./smoke.sh\", \"--quick\"]");
    let p = only(&env.problems(&drill("a", "source: orders\nchecks:\n  - command: []\n"))).clone();
    assert!(p.message.contains("`command` is empty"), "{p}");
}

#[test]
fn scratch_servers_take_their_dsn_from_env_or_file_and_are_never_production() {
    let env = Env::new();
    let file = env.drills().join("drill.yaml");
    let base = std::path::absolute(env.drills()).unwrap();
    let spec = env
        .load(&format!(
            "{}scratch:\n  kind: server\n  dsn_env: SCRATCH_PG_DSN\n  environment: scratch\n",
            drill("a", MINIMAL)
        ))
        .unwrap();
    assert_eq!(
        spec.scratch,
        ScratchSpec::Server {
            dsn: SecretRef::Env("SCRATCH_PG_DSN".into()),
            environment: Some("scratch".into()),
        }
    );
    let spec = env
        .load(&format!(
            "{}scratch:\n  kind: server\n  dsn_file: secrets/scratch\n",
            drill("a", MINIMAL)
        ))
        .unwrap();
    assert_eq!(
        spec.scratch,
        ScratchSpec::Server {
            dsn: SecretRef::File(base.join("secrets/scratch")),
            environment: None,
        }
    );

    let cases: [(&str, u64, u64, &str, &str); 6] = [
        (
            "scratch:\n  kind: server\n",
            6,
            9,
            "needs `dsn_env` or `dsn_file`",
            "dsn_env: SCRATCH_PG_DSN",
        ),
        (
            "scratch:\n  kind: server\n  dsn_env: X\n  environment: production\n",
            8,
            16,
            "must not be tagged `production`",
            "kind: ephemeral",
        ),
        (
            "scratch:\n  kind: ephemeral\n  dsn_env: X\n",
            7,
            12,
            "`dsn_env` is for `kind: server`",
            "remove `dsn_env`",
        ),
        (
            "scratch:\n  kind: sever\n",
            6,
            9,
            "unknown scratch kind `sever`",
            "did you mean `kind: server`?",
        ),
        (
            "scratch:\n  kind: server\n  dsn_env: $SCRATCH\n",
            7,
            12,
            "takes the name of a variable",
            "dsn_env: SCRATCH",
        ),
        (
            "scratch:\n  kind: server\n  dsn_env: X\n  dsn_file: y\n",
            8,
            13,
            "both `dsn_env` and `dsn_file`",
            "keep one",
        ),
    ];
    for (extra, line, column, message, fix) in cases {
        let problems = env.problems(&format!("{}{extra}", drill("a", MINIMAL)));
        let p = only(&problems);
        assert!(p.message.contains(message), "{p}");
        assert_at(p, &file, at(line, column), fix);
    }
}

#[test]
fn restore_points() {
    let env = Env::new();
    let file = env.drills().join("drill.yaml");
    let load = |rp: &str| env.load(&format!("{}restore_point: {rp}\n", drill("a", MINIMAL)));
    assert_eq!(load("latest").unwrap().restore_point, RestorePoint::Latest);
    assert_eq!(
        load("{random: 36h}").unwrap().restore_point,
        RestorePoint::Random {
            within: Duration::from_secs(36 * 3600)
        }
    );
    assert_eq!(
        load("\n  at: 2026-11-20T04:00:00+01:00").unwrap().restore_point,
        RestorePoint::At("2026-11-20T03:00:00Z".parse().unwrap())
    );

    let cases: [(&str, u64, u64, &str, &str); 5] = [
        (
            "lastest",
            5,
            16,
            "unknown restore point `lastest`",
            "did you mean `latest`?",
        ),
        (
            "{at: 2026-11-20}",
            5,
            21,
            "`at: 2026-11-20` is not a timestamp",
            "2026-11-20T03:00:00Z",
        ),
        (
            "{random: 7d, at: 2026-11-20T03:00:00Z}",
            5,
            16,
            "exactly one of",
            "restore_point: latest",
        ),
        (
            "{newest: 1d}",
            5,
            17,
            "unknown restore point `newest`",
            "restore_point: latest",
        ),
        ("random", 5, 16, "`random` needs a value", "random: 7d"),
    ];
    for (rp, line, column, message, fix) in cases {
        let problems = load(rp).unwrap_err().into_problems();
        let p = only(&problems);
        assert!(p.message.contains(message), "{p}");
        assert_at(p, &file, at(line, column), fix);
    }
}

#[test]
fn schedules_are_checked_as_crontab_expressions() {
    let env = Env::new();
    let file = env.drills().join("drill.yaml");
    let load = |s: &str| env.load(&format!("{}schedule: \"{s}\"\n", drill("a", MINIMAL)));
    assert_eq!(load("0 3 * * *").unwrap().schedule.as_deref(), Some("0 3 * * *"));
    assert_eq!(
        load("  30  0 3 * * MON-FRI ").unwrap().schedule.as_deref(),
        Some("30 0 3 * * MON-FRI")
    );
    assert_eq!(
        load("*/15 0-6 1,15 JAN ?").unwrap().schedule.as_deref(),
        Some("*/15 0-6 1,15 JAN ?")
    );
    for (s, message, fix) in [
        ("0 3 * *", "has 4 fields", "5 crontab fields"),
        ("0 0 3 * * * 2026", "has 7 fields", "5 crontab fields"),
        ("0 3 * * mon;tue", "illegal character ';'", "5 crontab fields"),
        // Ranges are checked too: there is no hour 25.
        ("0 25 * * *", "not a valid crontab expression", "5 crontab fields"),
        ("@daily", "`@` shortcuts", "schedule: \"0 0 * * *\""),
    ] {
        let problems = load(s).unwrap_err().into_problems();
        let p = only(&problems);
        assert!(p.message.contains(message), "{p}");
        assert_at(p, &file, at(5, 11), fix);
    }
}

#[test]
fn a_bad_drill_name_is_refused() {
    let env = Env::new();
    let p = only(&env.problems(&drill("Orders Nightly", MINIMAL))).clone();
    assert_at(&p, &env.drills().join("drill.yaml"), at(1, 7), "`orders-nightly`");
    let p = only(&env.problems(MINIMAL)).clone();
    assert!(p.message.contains("no `name`"), "{p}");
    assert!(p.fix.contains("name: drill"), "{p}");
}

fn expect(text: &str) -> Expectation {
    text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[test]
fn expectations_parse() {
    let n = |op, v| Expectation {
        op,
        value: ExpectedValue::Number(v),
    };
    let t = |op, v: &str| Expectation {
        op,
        value: ExpectedValue::Text(v.into()),
    };
    assert_eq!(expect(">= 1"), n(CompareOp::Ge, 1.0));
    assert_eq!(expect(">=1"), n(CompareOp::Ge, 1.0));
    assert_eq!(expect("<= -2.5"), n(CompareOp::Le, -2.5));
    assert_eq!(expect("== 3"), n(CompareOp::Eq, 3.0));
    assert_eq!(expect("= 3"), n(CompareOp::Eq, 3.0));
    assert_eq!(expect("!= 0"), n(CompareOp::Ne, 0.0));
    assert_eq!(expect("< 1e3"), n(CompareOp::Lt, 1000.0));
    assert_eq!(expect("> 0"), n(CompareOp::Gt, 0.0));
    assert_eq!(expect("42"), n(CompareOp::Eq, 42.0));
    assert_eq!(expect("= 'booked'"), t(CompareOp::Eq, "booked"));
    assert_eq!(expect("!= \"a b\""), t(CompareOp::Ne, "a b"));
    assert_eq!(expect("'1'"), t(CompareOp::Eq, "1"));
    assert_eq!(expect("''"), t(CompareOp::Eq, ""));
    for bad in [
        "", ">=", "booked", "= booked", "> 'x'", "<= 'x'", ">= inf", "= NaN", "=> 1", "1 2",
    ] {
        assert!(bad.parse::<Expectation>().is_err(), "{bad:?} should be refused");
    }
    assert_eq!(expect(">= 1").to_string(), ">= 1");
    assert_eq!(expect("== 0.5").to_string(), "= 0.5");
    assert_eq!(expect("!= 'x'").to_string(), "!= 'x'");
}

#[test]
fn expectation_truth_table() {
    // (expectation, actual, matches)
    let table: &[(&str, &str, bool)] = &[
        // Numbers, every operator, below / equal / above.
        ("= 5", "4", false),
        ("= 5", "5", true),
        ("= 5", "6", false),
        ("!= 5", "4", true),
        ("!= 5", "5", false),
        ("!= 5", "6", true),
        ("< 5", "4", true),
        ("< 5", "5", false),
        ("< 5", "6", false),
        ("<= 5", "4", true),
        ("<= 5", "5", true),
        ("<= 5", "6", false),
        ("> 5", "4", false),
        ("> 5", "5", false),
        ("> 5", "6", true),
        (">= 5", "4", false),
        (">= 5", "5", true),
        (">= 5", "6", true),
        // Numeric, not textual, comparison.
        ("= 5", "5.0", true),
        ("= 5", " 5\n", true),
        (">= 1", "10", true),
        ("< 9", "10", false),
        ("> -1", "0", true),
        ("= 1000", "1e3", true),
        ("= 0.1", "0.1", true),
        // A quoted number still compares as a number when the value is one.
        ("= '5'", "5.00", true),
        // Text: exact, = and != only.
        ("= 'booked'", "booked", true),
        ("= 'booked'", "Booked", false),
        ("= 'booked'", "booked ", false),
        ("!= 'booked'", "booked", false),
        ("!= 'booked'", "cancelled", true),
        ("= ''", "", true),
        // A number against text that is not a number.
        ("= 5", "five", false),
        ("!= 5", "five", true),
        (">= 1", "", false),
        (">= 1", "NaN", false),
        ("< 1", "inf", false),
    ];
    for (e, actual, want) in table {
        assert_eq!(expect(e).matches(actual), *want, "{e:?} against {actual:?}");
    }
    // Ordering operators never hold for text (only constructible by hand).
    let text_gt = Expectation {
        op: CompareOp::Gt,
        value: ExpectedValue::Text("a".into()),
    };
    assert!(!text_gt.matches("b"));
}

#[test]
fn durations_parse() {
    let s = Duration::from_secs;
    for (text, want) in [
        ("90s", s(90)),
        ("10m", s(600)),
        ("26h", s(26 * 3600)),
        ("7d", s(7 * 86_400)),
        ("1h30m", s(5400)),
        ("1d12h", s(36 * 3600)),
        ("1d2h3m4s", s(86_400 + 7200 + 180 + 4)),
        ("0h30m", s(1800)),
        (" 15m ", s(900)),
        ("100000s", s(100_000)),
    ] {
        assert_eq!(parse_duration(text), Some(want), "{text:?}");
    }
    for bad in [
        "",
        "0",
        "0s",
        "0h0m",
        "90",
        "s",
        "1.5h",
        "-1h",
        "+1h",
        "1 h",
        "1h 30m",
        "30m1h",
        "1h1h",
        "1H",
        "1w",
        "10 minutes",
        "1y",
        "99999999999999999999s",
        "999999999999999999d",
        "1h30",
        "soon",
    ] {
        assert_eq!(parse_duration(bad), None, "{bad:?} should be refused");
    }
}

#[test]
fn checks_describe_themselves_briefly() {
    let env = Env::new();
    let spec = env
        .load(&ISSUE_EXAMPLE.replace("./drills/smoke.sh", "/opt/smoke.sh"))
        .unwrap();
    let labels: Vec<String> = spec.checks.iter().map(Check::describe).collect();
    assert_eq!(
        labels,
        [
            "fingerprint",
            "sql: select count(*) from reservations where ... expect >= 1",
            "freshness: select max(created_at) from reservations within 26h",
            "amcheck",
            "command: /opt/smoke.sh",
        ]
    );
}

#[test]
fn durations_format_as_written() {
    for text in ["45s", "10m", "26h", "7d", "1h30m", "26h3m4s", "36h"] {
        assert_eq!(format_duration(parse_duration(text).unwrap()), text);
    }
    assert_eq!(format_duration(parse_duration("1d2h").unwrap()), "26h");
    assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(format_duration(Duration::from_millis(1500)), "1s");
    assert_eq!(format_duration(Duration::ZERO), "0s");
}

#[test]
fn long_labels_are_cut_at_a_word() {
    let long = Check::Command {
        argv: vec![format!("/{}", "x".repeat(60)), "arg".into()],
    };
    assert_eq!(long.describe(), format!("command: /{} ...", "x".repeat(39)));
    let sql = Check::Sql {
        sql: "select\n  count(*)\n  from   payments".into(),
        expect: expect("= 0"),
    };
    assert_eq!(sql.describe(), "sql: select count(*) from payments expect = 0");
}

#[test]
fn alert_routes_must_be_defined_in_the_config() {
    let env = Env::new();
    let file = env.drills().join("drill.yaml");
    let problems = env
        .load(&format!("{}alerts: [oncal]\n", drill("a", MINIMAL)))
        .unwrap_err()
        .into_problems();
    let p = only(&problems);
    assert!(p.message.contains("`oncal`"), "{p}");
    assert_at(p, &file, at(5, 10), "did you mean `oncall`?");
}
