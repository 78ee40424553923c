//! The `lifeboat` binary when things go wrong: every failure exits with its documented code, says
//! what is wrong and how to fix it (config problems with `file:line:column`), never prints a
//! secret, and leaves the repository exactly as it was.
//!
//! Databases are real throwaway clusters (`lifeboat::scratch::EphemeralPostgres`); nothing is
//! mocked.

mod support;

use std::path::Path;
use std::process::Output;

use lifeboat::scratch::{EphemeralOptions, EphemeralPostgres};
use support::cli::{Workspace, all_output, assert_exit, assert_stderr_has};

const RIGHT_PW: &str = "right-Pa55word";
const WRONG_PW: &str = "wrong-S3cret-zz91";
const PW_VAR: &str = "LB_TEST_PW";

/// Exit codes, as documented in `lifeboat --help`.
const FAILED: i32 = 1;
const USAGE: i32 = 2;
const REFUSED: i32 = 3;

// ---------------------------------------------------------------------------------------------
// helpers

async fn start_cluster() -> EphemeralPostgres {
    EphemeralPostgres::start(&EphemeralOptions::default())
        .await
        .expect("start scratch cluster")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A `fix:` hint follows the message.
#[track_caller]
fn assert_fix(o: &Output) {
    let err = stderr(o);
    let at = err
        .find("fix:")
        .unwrap_or_else(|| panic!("stderr has no `fix:` hint:\n{err}"));
    assert!(
        err[at + 4..].trim_start().len() > 10,
        "the `fix:` hint is empty:\n{err}"
    );
}

#[track_caller]
fn assert_repo_unchanged(ws: &Workspace, before: &[String], what: &str) {
    assert_eq!(ws.repo_listing(), before, "{what} must not write to the repository");
}

/// `secret` appears neither in the output nor in any file the run left in the workspace
/// (state directory, catalog, repository).
#[track_caller]
fn assert_secret_absent(ws: &Workspace, o: &Output, secret: &str) {
    let text = all_output(o);
    assert!(!text.contains(secret), "the password appears in the output:\n{text}");
    fn walk(dir: &Path, secret: &[u8], config: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, secret, config);
            } else if p != config {
                let bytes = std::fs::read(&p).unwrap_or_default();
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret),
                    "the password was written to {}",
                    p.display()
                );
            }
        }
    }
    walk(ws.path(), secret.as_bytes(), &ws.config_path());
}

/// Runs `lifeboat init` and returns the repository listing it left.
#[track_caller]
fn init(ws: &Workspace) -> Vec<String> {
    let o = ws.run(&["init"], &[]);
    assert_exit(&o, 0, "init");
    let listing = ws.repo_listing();
    assert!(
        listing.iter().any(|f| f == "lifeboat.repo.json"),
        "init wrote no lifeboat.repo.json: {listing:?}"
    );
    listing
}

/// The scratch DSN with another user name.
fn as_user(dsn: &str, user: &str) -> String {
    let rest = dsn
        .strip_prefix("postgresql://postgres@")
        .unwrap_or_else(|| panic!("unexpected scratch dsn {dsn}"));
    format!("postgresql://{user}@{rest}")
}

/// `    pg_bin_dir: <the cluster's binaries>\n`: pg_dump of the server's own version.
fn bin_dir_key(pg: &EphemeralPostgres) -> String {
    format!("    pg_bin_dir: {}\n", pg.bin_dir().display())
}

/// A small database `rental` with one table, readable by role `lifeboat` (password
/// `RIGHT_PW`); the server then demands scram-sha-256 passwords from everyone over its socket.
/// `extra_sql` runs first, as the superuser.
async fn password_cluster(extra_sql: &str) -> EphemeralPostgres {
    let pg = start_cluster().await;
    pg.create_database("rental").await.unwrap();
    pg.psql(
        "rental",
        &format!(
            "create table cars (id int primary key, plate text not null);
             insert into cars select g, 'PL-' || g from generate_series(1, 50) g;
             {extra_sql}
             create role lifeboat login password '{RIGHT_PW}';
             grant select on cars to lifeboat;"
        ),
    )
    .await
    .unwrap();
    require_scram(&pg).await;
    pg
}

/// Rewrites pg_hba.conf to `local all all scram-sha-256` (keeping its owner, the server's OS
/// user) and reloads. After this the superuser needs a password too, so do all setup first.
async fn require_scram(pg: &EphemeralPostgres) {
    use std::os::unix::fs::MetadataExt;
    let hba = pg.data_dir().join("pg_hba.conf");
    let meta = std::fs::metadata(&hba).expect("stat pg_hba.conf");
    std::fs::write(&hba, "local all all scram-sha-256\n").expect("write pg_hba.conf");
    std::os::unix::fs::chown(&hba, Some(meta.uid()), Some(meta.gid())).expect("chown pg_hba.conf");
    let reloaded = pg.psql("postgres", "select pg_reload_conf()").await.unwrap();
    assert_eq!(reloaded, "t");
    // The reload is asynchronous: wait until a trust login is refused.
    for _ in 0..100 {
        if pg.psql("postgres", "select 1").await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server still accepts password-less logins after reloading pg_hba.conf");
}

/// A config whose source `rental` has the given keys (each line indented by four spaces).
/// Lines 1–6 are the fixed head, so the source's keys start on line 7.
fn write_config_with_source(ws: &Workspace, source_keys: &str) {
    ws.write_config(&format!(
        "state_dir: {state}\nrepositories:\n  local:\n    url: file://{repo}\nsources:\n  rental:\n{source_keys}",
        state = ws.path().join("state").display(),
        repo = ws.repo_dir().display(),
    ));
}

fn config_file(ws: &Workspace) -> String {
    ws.config_path().display().to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. wrong password

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_fails_with_the_reason_and_never_shows_the_password() {
    let pg = password_cluster("").await;
    let ws = Workspace::new();
    let dsn = as_user(&pg.dsn("rental"), "lifeboat");
    ws.write_simple_config(&dsn, &format!("    password_env: {PW_VAR}\n{}", bin_dir_key(&pg)));
    let before = init(&ws);

    for log in ["warn", "trace"] {
        let o = ws.run(&["backup", "rental"], &[(PW_VAR, WRONG_PW), ("LIFEBOAT_LOG", log)]);
        assert_exit(
            &o,
            FAILED,
            &format!("backup with a wrong password (LIFEBOAT_LOG={log})"),
        );
        assert_stderr_has(&o, &["cannot connect", "password authentication failed", "lifeboat"]);
        assert_fix(&o);
        if log == "warn" {
            assert!(
                !stderr(&o).contains(" at line "),
                "the server's source line is not the user's: {}",
                stderr(&o)
            );
        }
        assert_stderr_has(&o, &["password_env"]);
        assert_secret_absent(&ws, &o, WRONG_PW);
        assert_secret_absent(&ws, &o, RIGHT_PW);
        assert_repo_unchanged(&ws, &before, "a backup that cannot log in");
    }

    // The same setup with the right password works: the failure above was the password.
    let o = ws.run(&["backup", "rental"], &[(PW_VAR, RIGHT_PW)]);
    assert_exit(&o, 0, "backup with the right password");
    pg.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 2. secrets stay out of output and state, on failure and on success

/// A config for a password cluster whose repository was never initialised; `lifeboat backup`
/// must fail before it needs the database, and print no password even at trace level.
async fn backup_without_init(make_repo_dir: bool) -> (EphemeralPostgres, Workspace, Output) {
    let pg = password_cluster("").await;
    let ws = Workspace::new();
    let dsn = as_user(&pg.dsn("rental"), "lifeboat");
    ws.write_simple_config(&dsn, &format!("    password_env: {PW_VAR}\n{}", bin_dir_key(&pg)));
    if make_repo_dir {
        std::fs::create_dir(ws.repo_dir()).unwrap();
    }
    // No `lifeboat init`.
    let o = ws.run(&["backup", "rental"], &[(PW_VAR, RIGHT_PW), ("LIFEBOAT_LOG", "trace")]);
    assert_secret_absent(&ws, &o, RIGHT_PW);
    assert_eq!(
        ws.repo_listing(),
        Vec::<String>::new(),
        "a failed backup must not create a repository"
    );
    (pg, ws, o)
}

#[tokio::test(flavor = "multi_thread")]
async fn right_password_is_never_printed_when_the_repository_directory_is_missing() {
    let (pg, ws, o) = backup_without_init(false).await;
    assert_exit(&o, USAGE, "backup into a repository directory that does not exist");
    assert!(
        !ws.repo_dir().exists(),
        "backup must not create the repository directory"
    );
    assert_stderr_has(
        &o,
        &[
            &ws.repo_dir().display().to_string(),
            "no such directory",
            "lifeboat init",
        ],
    );
    assert_fix(&o);
    pg.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn right_password_is_never_printed_when_the_repository_was_never_initialised() {
    let (pg, _ws, o) = backup_without_init(true).await;
    // A repository that was never initialised is a setup mistake, like a missing directory: exit 2.
    assert_exit(
        &o,
        USAGE,
        "backup into an empty, never initialised repository directory",
    );
    assert_stderr_has(&o, &["no repository at", "lifeboat init local"]);
    assert_fix(&o);
    pg.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn right_password_is_never_printed_when_pg_dump_fails_midway() {
    // `vault` is not readable by the lifeboat role: login works, the dump fails.
    let pg = password_cluster("create table vault (id int primary key, note text); insert into vault values (1, 'x');")
        .await;
    let ws = Workspace::new();
    let dsn = as_user(&pg.dsn("rental"), "lifeboat");
    ws.write_simple_config(&dsn, &format!("    password_env: {PW_VAR}\n{}", bin_dir_key(&pg)));
    let before = init(&ws);
    let o = ws.run(&["backup", "rental"], &[(PW_VAR, RIGHT_PW), ("LIFEBOAT_LOG", "trace")]);
    assert_exit(&o, FAILED, "backup whose pg_dump is denied a table");
    assert_secret_absent(&ws, &o, RIGHT_PW);
    assert!(
        !ws.repo_listing().iter().any(|f| f.starts_with("snapshots/")),
        "a failed backup must not commit a snapshot: {:?}",
        ws.repo_listing()
    );
    assert_repo_unchanged(&ws, &before, "a backup whose pg_dump failed before any output");
    // The message names the real cause, the table the role may not read, and the grant that fixes it.
    let err = stderr(&o);
    let last = err
        .lines()
        .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        last.contains("cannot read") && last.contains("vault") && last.contains("GRANT SELECT"),
        "the error should say that the role cannot read table `vault` and how to grant it; it says:\n{last}"
    );
    pg.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn successful_backup_never_prints_the_password() {
    let pg = password_cluster("").await;
    let ws = Workspace::new();
    let dsn = as_user(&pg.dsn("rental"), "lifeboat");
    ws.write_simple_config(&dsn, &format!("    password_env: {PW_VAR}\n{}", bin_dir_key(&pg)));
    let before = init(&ws);
    for args in [&["backup", "rental"][..], &["--json", "backup", "rental"][..]] {
        let o = ws.run(args, &[(PW_VAR, RIGHT_PW), ("LIFEBOAT_LOG", "trace")]);
        assert_exit(&o, 0, "backup with the right password");
        assert!(
            stdout(&o).contains("rental"),
            "the backup should report its snapshot:\n{}",
            all_output(&o)
        );
        assert_secret_absent(&ws, &o, RIGHT_PW);
    }
    let after = ws.repo_listing();
    assert!(
        after.len() > before.len() && after.iter().any(|f| f.starts_with("snapshots/rental/")),
        "the backups should have been committed: {after:?}"
    );
    pg.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 3. unreachable database

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_database_says_cannot_connect() {
    let ws = Workspace::new();
    let dsn = "postgres://lifeboat@127.0.0.1:1/nowhere";
    ws.write_simple_config(dsn, "");
    let before = init(&ws);
    let o = ws.run(&["backup", "rental"], &[]);
    assert_exit(&o, FAILED, "backup of an unreachable database");
    assert_stderr_has(&o, &["cannot connect", "127.0.0.1:1/nowhere"]);
    assert_fix(&o);
    assert_stderr_has(&o, &["running and reachable"]);
    assert_repo_unchanged(&ws, &before, "a backup that cannot connect");
}

// ---------------------------------------------------------------------------------------------
// 4. unknown source

#[tokio::test(flavor = "multi_thread")]
async fn unknown_source_names_the_known_ones() {
    let ws = Workspace::new();
    ws.write_simple_config("postgres://lifeboat@127.0.0.1:1/nowhere", "");
    let before = init(&ws);
    let o = ws.run(&["backup", "nosuch"], &[]);
    assert_exit(&o, USAGE, "backup of an unknown source");
    assert_stderr_has(&o, &["unknown source `nosuch`", "rental", &config_file(&ws)]);
    assert_fix(&o);
    assert_repo_unchanged(&ws, &before, "a backup of an unknown source");
}

// ---------------------------------------------------------------------------------------------
// 5–7. config errors: position, message, fix; `check-config` agrees with the commands

/// Runs `backup rental` and `check-config` on the workspace's config; both must exit 2 with
/// `lifeboat.yaml:LINE:COL` and every needle on stderr, and a fix. Nothing is written.
#[track_caller]
fn assert_config_error(ws: &Workspace, line: u64, column: u64, needles: &[&str]) {
    let before = ws.repo_listing();
    let location = format!("{}:{line}:{column}:", config_file(ws));
    for args in [&["backup", "rental"][..], &["check-config"][..]] {
        let o = ws.run(args, &[]);
        let what = format!("`lifeboat {}` on a broken config", args.join(" "));
        assert_exit(&o, USAGE, &what);
        assert_stderr_has(&o, &[&location]);
        assert_stderr_has(&o, needles);
        assert_fix(&o);
        assert_repo_unchanged(ws, &before, &what);
    }
}

#[test]
fn malformed_yaml_bad_indentation_is_located() {
    let ws = Workspace::new();
    write_config_with_source(
        &ws,
        "    kind: postgres\n   dsn: \"postgres://lifeboat@127.0.0.1:1/x\"\n    environment: staging\n    repository: local\n",
    );
    assert_config_error(&ws, 8, 4, &["invalid YAML", "did not find expected key"]);
}

#[test]
fn malformed_yaml_unclosed_quote_is_located() {
    let ws = Workspace::new();
    write_config_with_source(
        &ws,
        "    kind: postgres\n    dsn: \"postgres://lifeboat@127.0.0.1:1/x\n    environment: staging\n    repository: local\n",
    );
    assert_config_error(&ws, 8, 10, &["invalid YAML", "unclosed quote"]);
}

#[test]
fn unknown_key_is_named_located_and_corrected() {
    let ws = Workspace::new();
    write_config_with_source(
        &ws,
        "    kind: postgres\n    dsnn: \"postgres://lifeboat@127.0.0.1:1/x\"\n    environment: staging\n    repository: local\n",
    );
    assert_config_error(
        &ws,
        8,
        5,
        &["unknown key `dsnn`", "allowed keys", "`dsn`", "did you mean `dsn`?"],
    );
}

#[test]
fn a_value_of_the_wrong_type_is_named_by_its_kind() {
    let ws = Workspace::new();
    write_config_with_source(
        &ws,
        "    kind: postgres\n    dsn: \"postgres://lifeboat@127.0.0.1:1/x\"\n    environment: staging\n    repository: local\n    retention: { keep_last: seven }\n",
    );
    assert_config_error(&ws, 11, 29, &["expected a whole number (0 or more) here"]);
}

#[test]
fn dsn_that_is_not_a_url_is_located() {
    let ws = Workspace::new();
    write_config_with_source(
        &ws,
        "    kind: postgres\n    dsn: \"not a url\"\n    environment: staging\n    repository: local\n",
    );
    assert_config_error(
        &ws,
        8,
        10,
        &["dsn is not a valid URL", "postgres://USER@HOST:PORT/DBNAME"],
    );
}

#[test]
fn dsn_of_another_database_kind_is_located() {
    let ws = Workspace::new();
    write_config_with_source(
        &ws,
        "    kind: postgres\n    dsn: \"mysql://x\"\n    environment: staging\n    repository: local\n",
    );
    assert_config_error(&ws, 8, 10, &["must start with `postgres://`", "`mysql:`"]);
}

// ---------------------------------------------------------------------------------------------
// 8. repository of an unknown format version

#[tokio::test(flavor = "multi_thread")]
async fn repository_of_a_future_format_version_is_refused_untouched() {
    let ws = Workspace::new();
    ws.write_simple_config("postgres://lifeboat@127.0.0.1:1/nowhere", "");
    init(&ws);
    let config_object = ws.repo_dir().join("lifeboat.repo.json");
    let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_object).unwrap()).unwrap();
    assert_eq!(value["version"], 1, "this build writes format version 1");
    value["version"] = serde_json::json!(99);
    let future = serde_json::to_vec_pretty(&value).unwrap();
    std::fs::write(&config_object, &future).unwrap();
    let before = ws.repo_listing();

    for args in [&["backup", "rental"][..], &["snapshots", "--from-repository"][..]] {
        let o = ws.run(args, &[]);
        let what = format!("`lifeboat {}` on a version-99 repository", args.join(" "));
        assert_exit(&o, USAGE, &what);
        assert_stderr_has(&o, &["format version 99", "reads only version 1"]);
        assert_fix(&o);
        assert_repo_unchanged(&ws, &before, &what);
        assert_eq!(
            std::fs::read(&config_object).unwrap(),
            future,
            "{what} must leave lifeboat.repo.json as it was"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 9. init twice

#[tokio::test(flavor = "multi_thread")]
async fn second_init_is_refused_and_changes_nothing() {
    let ws = Workspace::new();
    ws.write_simple_config("postgres://lifeboat@127.0.0.1:1/nowhere", "");
    let before = init(&ws);
    let config_object = ws.repo_dir().join("lifeboat.repo.json");
    let original = std::fs::read(&config_object).unwrap();
    let id = serde_json::from_slice::<serde_json::Value>(&original).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    for args in [&["init"][..], &["init", "local"][..]] {
        let o = ws.run(args, &[]);
        assert_exit(&o, REFUSED, "a second init");
        assert_stderr_has(&o, &["already exists", &id]);
        assert_fix(&o);
        assert_repo_unchanged(&ws, &before, "a second init");
        assert_eq!(
            std::fs::read(&config_object).unwrap(),
            original,
            "a second init must not rewrite lifeboat.repo.json"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 10. restore refusals

/// A cluster with a small `rental` database, a workspace configured for it, and one snapshot.
async fn backed_up() -> (EphemeralPostgres, Workspace, String) {
    let pg = start_cluster().await;
    pg.create_database("rental").await.unwrap();
    pg.psql(
        "rental",
        "create table cars (id int primary key, plate text not null);
         insert into cars select g, 'PL-' || g from generate_series(1, 50) g;",
    )
    .await
    .unwrap();
    let ws = Workspace::new();
    ws.write_simple_config(&pg.dsn("rental"), &bin_dir_key(&pg));
    init(&ws);
    let o = ws.run(&["backup", "rental"], &[]);
    assert_exit(&o, 0, "backup");
    let o = ws.run(&["--json", "snapshots"], &[]);
    assert_exit(&o, 0, "snapshots");
    let list: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("snapshots --json is not JSON ({e}):\n{}", all_output(&o)));
    let list = list.as_array().expect("a JSON array");
    assert_eq!(list.len(), 1, "one snapshot: {list:?}");
    let id = list[0]["id"].as_str().expect("snapshot id").to_owned();
    (pg, ws, id)
}

async fn cars_checksum(pg: &EphemeralPostgres, db: &str) -> String {
    pg.psql(
        db,
        "select count(*) || ':' || md5(string_agg(id || plate, ',' order by id)) from cars",
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_refuses_a_non_empty_target() {
    let (pg, ws, id) = backed_up().await;
    pg.create_database("occupied").await.unwrap();
    pg.psql(
        "occupied",
        "create table leftover (x int); insert into leftover values (7);",
    )
    .await
    .unwrap();
    let before = ws.repo_listing();
    let o = ws.run(&["restore", &id, "--into-dsn", &pg.dsn("occupied"), "--jobs", "1"], &[]);
    assert_exit(&o, REFUSED, "restore into a non-empty database");
    assert_stderr_has(&o, &["needs approval", "occupied", "not empty", "public.leftover"]);
    assert_fix(&o);
    assert_repo_unchanged(&ws, &before, "a refused restore");
    // The target is untouched: still just `leftover`, with its row.
    let tables = pg
        .psql(
            "occupied",
            "select string_agg(relname, ',' order by relname) from pg_class c \
             join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'",
        )
        .await
        .unwrap();
    assert_eq!(tables, "leftover");
    assert_eq!(pg.psql("occupied", "select x from leftover").await.unwrap(), "7");
    pg.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_refuses_the_source_itself() {
    let (pg, ws, id) = backed_up().await;
    let sum = cars_checksum(&pg, "rental").await;
    let before = ws.repo_listing();

    // The source's DSN exactly as configured, and the same database spelled differently (socket
    // directory in the host part instead of `?host=`), which only the server identity reveals.
    let socket = pg.socket_dir().to_string_lossy().replace('/', "%2F");
    let disguised = format!("postgresql://postgres@{socket}:{}/rental", pg.port());
    for (dsn, what, reason) in [
        (
            pg.dsn("rental"),
            "restore over the source's own DSN",
            "it is the source `rental` itself",
        ),
        (
            disguised,
            "restore over the source via another spelling of its DSN",
            "the target is the source database itself (system identifier",
        ),
    ] {
        let o = ws.run(&["restore", &id, "--into-dsn", &dsn, "--jobs", "1"], &[]);
        assert_exit(&o, REFUSED, what);
        assert_stderr_has(&o, &["needs approval", reason, "rental"]);
        assert_fix(&o);
        assert_repo_unchanged(&ws, &before, what);
        assert_eq!(cars_checksum(&pg, "rental").await, sum, "{what}: source data changed");
    }
    pg.stop().await.unwrap();
}

#[test]
fn a_target_dsn_that_is_not_a_url_is_refused_without_repeating_it() {
    let ws = Workspace::new();
    ws.write_simple_config("postgres://lifeboat@127.0.0.1:5432/rental", "");
    let secret = "Sekret-pw9x";
    let o = ws.run(
        &[
            "restore",
            "20261124T000000Z-00000001",
            "--into-dsn",
            &format!("postgres://u:{secret}@db.internal:54x2/orders"),
        ],
        &[],
    );
    assert_exit(&o, USAGE, "restore into a DSN with a bad port");
    assert_stderr_has(&o, &["--into-dsn is not a valid URL", "invalid port"]);
    assert_fix(&o);
    assert_secret_absent(&ws, &o, secret);
    // A client key's passphrase in the query is a password too.
    let o = ws.run(
        &[
            "restore",
            "20261124T000000Z-00000001",
            "--into-dsn",
            &format!("postgres://u@127.0.0.1:1/orders?sslpassword={secret}"),
        ],
        &[],
    );
    assert_exit(&o, USAGE, "restore into a DSN with an sslpassword");
    assert_stderr_has(&o, &["contains a password"]);
    assert_fix(&o);
    assert_secret_absent(&ws, &o, secret);
}

// ---------------------------------------------------------------------------------------------
// 11. check-config

#[test]
fn check_config_accepts_a_good_config() {
    let ws = Workspace::new();
    ws.write_simple_config(
        "postgres://lifeboat@127.0.0.1:5432/rental",
        &format!("    password_env: {PW_VAR}\n"),
    );
    let o = ws.run(&["check-config"], &[(PW_VAR, RIGHT_PW)]);
    assert_exit(&o, 0, "check-config on a good config");
    assert!(
        stdout(&o).contains("OK (sources: 1, repositories: 1)"),
        "{}",
        all_output(&o)
    );
    assert_secret_absent(&ws, &o, RIGHT_PW);
    assert_eq!(ws.repo_listing(), Vec::<String>::new(), "check-config writes nothing");
}

#[test]
fn check_config_reports_a_missing_password_variable_where_it_is_named() {
    let ws = Workspace::new();
    write_config_with_source(
        &ws,
        "    kind: postgres\n    dsn: postgres://lifeboat@127.0.0.1:5432/rental\n    password_env: LB_TEST_UNSET_PW\n    environment: staging\n    repository: local\n",
    );
    let o = ws.run(&["check-config"], &[]);
    assert_exit(&o, USAGE, "check-config with an unset password variable");
    assert_stderr_has(
        &o,
        &[
            &format!("{}:9:", config_file(&ws)),
            "`LB_TEST_UNSET_PW` is not set",
            "1 problem in",
        ],
    );
    assert_fix(&o);
}

#[test]
fn check_config_lists_every_problem_at_once() {
    let ws = Workspace::new();
    // Two independent problems: a repository that is not defined (line 11) and a password
    // variable that is not set (line 9).
    write_config_with_source(
        &ws,
        "    kind: postgres\n    dsn: postgres://lifeboat@127.0.0.1:5432/rental\n    password_env: LB_TEST_UNSET_PW\n    environment: staging\n    repository: offsite\n",
    );
    let o = ws.run(&["check-config"], &[]);
    assert_exit(&o, USAGE, "check-config with two problems");
    let file = config_file(&ws);
    assert_stderr_has(
        &o,
        &[
            &format!("{file}:11:17:"),
            "repository `offsite`, which is not defined",
            "use one of `local`",
            &format!("{file}:9:"),
            "`LB_TEST_UNSET_PW` is not set",
            "2 problems in",
        ],
    );
    assert_fix(&o);
}

#[test]
fn check_config_lists_every_validation_problem_at_once() {
    let ws = Workspace::new();
    // Two problems found by validation: a bad environment name (line 9) and an undefined
    // repository (line 10).
    write_config_with_source(
        &ws,
        "    kind: postgres\n    dsn: postgres://lifeboat@127.0.0.1:5432/rental\n    environment: Staging EU\n    repository: offsite\n",
    );
    let before = ws.repo_listing();
    let o = ws.run(&["check-config"], &[]);
    assert_exit(&o, USAGE, "check-config with two problems");
    let file = config_file(&ws);
    assert_stderr_has(
        &o,
        &[
            &format!("{file}:9:18:"),
            "environment `Staging EU` must be lowercase",
            "write `environment: staging-eu`",
            &format!("{file}:10:17:"),
            "repository `offsite`, which is not defined",
            "2 problems in",
        ],
    );
    assert_eq!(stderr(&o).matches("fix:").count(), 2, "{}", stderr(&o));
    let o = ws.run(&["backup", "rental"], &[]);
    assert_exit(&o, USAGE, "backup on a config with two problems");
    assert_stderr_has(&o, &["Staging EU", "offsite"]);
    assert_repo_unchanged(&ws, &before, "backup on a broken config");
}
