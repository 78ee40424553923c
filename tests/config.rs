//! `lifeboat::config`: parsing, validation, error positions and secret handling, through the
//! public API, on real files in temp dirs.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use support::problems::{at, find};

use lifeboat::config::{self, ConfigError, Problem, SecretRef, SourceKind};
use tempfile::TempDir;

/// A valid config; tests replace pieces of it to break one thing at a time.
const GOOD: &str = r#"repositories:
  offsite:
    url: s3://backups/lifeboat
    endpoint: http://127.0.0.1:9000
    access_key_id_env: OFFSITE_KEY_ID
    secret_access_key_env: OFFSITE_SECRET
sources:
  orders:
    kind: postgres
    dsn: postgres://lifeboat@db.internal:5432/orders
    password_env: ORDERS_PG_PASSWORD
    environment: production
    repository: offsite
"#;

fn origin(dir: &TempDir) -> PathBuf {
    dir.path().join("lifeboat.yaml")
}

fn load_err(text: &str) -> (TempDir, ConfigError) {
    let dir = TempDir::new().unwrap();
    let err = config::load_str(text, &origin(&dir)).expect_err("config should be refused");
    (dir, err)
}

fn only(err: &ConfigError) -> &Problem {
    assert_eq!(err.all().len(), 1, "expected exactly one problem, got:\n{err}");
    &err.all()[0]
}

fn write_secret(path: &Path, value: &str, mode: u32) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, value).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn example_config_parses_and_documents_the_minimal_shape() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lifeboat.yaml");
    let cfg = config::load(&path).unwrap_or_else(|e| panic!("example must load:\n{e}"));

    let repo = &cfg.repositories["offsite"];
    assert_eq!(repo.name, "offsite");
    assert_eq!(repo.url.as_str(), "s3://backups/lifeboat");
    assert_eq!(repo.endpoint.as_ref().unwrap().as_str(), "http://127.0.0.1:9000/");
    assert_eq!(repo.access_key_id, Some(SecretRef::Env("OFFSITE_KEY_ID".into())));
    assert_eq!(repo.secret_access_key, Some(SecretRef::Env("OFFSITE_SECRET".into())));
    assert!(repo.encryption.is_none());

    let src = &cfg.sources["orders"];
    assert_eq!(src.kind, SourceKind::Postgres);
    assert_eq!(src.dsn.as_str(), "postgres://lifeboat@db.internal:5432/orders");
    assert_eq!(src.password, Some(SecretRef::Env("ORDERS_PG_PASSWORD".into())));
    assert_eq!(src.environment, "production");
    assert_eq!(src.repository, "offsite");
    assert_eq!(cfg.repository_of(src).name, "offsite");
    assert!(cfg.catalog.is_none());
    let config_dir = std::path::absolute(path.parent().unwrap()).unwrap();
    assert_eq!(cfg.state_dir, config_dir.join(".lifeboat-state"));
}

#[test]
fn minimal_shape_from_the_brief_parses_as_written() {
    let dir = TempDir::new().unwrap();
    let cfg = config::load_str(GOOD, &origin(&dir)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.sources.len(), 1);
    assert_eq!(cfg.repositories.len(), 1);
    assert_eq!(cfg.path, origin(&dir));
}

#[test]
fn unknown_key_reports_position_allowed_keys_and_near_miss() {
    let text = GOOD.replace("    dsn: postgres", "    dns: postgres");
    let (dir, err) = load_err(&text);
    let p = only(&err);
    assert_eq!(p.position, at(10, 5), "{p}");
    assert!(p.message.contains("unknown key `dns`"), "{p}");
    assert!(p.message.contains("in a source"), "{p}");
    for allowed in [
        "kind",
        "dsn",
        "password_env",
        "password_file",
        "environment",
        "repository",
    ] {
        assert!(
            p.message.contains(&format!("`{allowed}`")),
            "allowed key {allowed} missing: {p}"
        );
    }
    assert!(p.fix.contains("did you mean `dsn`"), "{p}");
    let shown = err.to_string();
    let prefix = format!("{}:10:5: unknown key `dns`", origin(&dir).display());
    assert!(shown.starts_with(&prefix), "{shown}");
    assert!(shown.contains("\n  fix: did you mean `dsn`"), "{shown}");
}

#[test]
fn unknown_top_level_key_is_reported_at_the_top_level() {
    let text = format!("{GOOD}sheduls: {{}}\n");
    let (_dir, err) = load_err(&text);
    let p = only(&err);
    assert_eq!(p.position, at(14, 1), "{p}");
    assert!(p.message.contains("unknown key `sheduls` at the top level"), "{p}");
    assert!(
        p.message.contains("`sources`") && p.message.contains("`state_dir`"),
        "{p}"
    );
}

#[test]
fn inline_secret_is_an_unknown_key_whose_fix_names_env_and_file() {
    let text = GOOD.replace("    password_env: ORDERS_PG_PASSWORD", "    password: hunter2-inline");
    let (_dir, err) = load_err(&text);
    let p = only(&err);
    assert_eq!(p.position, at(11, 5), "{p}");
    assert!(p.message.contains("unknown key `password`"), "{p}");
    assert!(
        p.fix.contains("`password_env: VAR`") && p.fix.contains("`password_file: PATH`"),
        "{p}"
    );
    assert!(!format!("{err}{err:?}").contains("hunter2"), "secret echoed: {err}");

    let text = GOOD.replace(
        "    secret_access_key_env: OFFSITE_SECRET",
        "    secret_access_key: wJalrXUtnFEMI",
    );
    let (_dir, err) = load_err(&text);
    let p = only(&err);
    assert_eq!(p.position, at(6, 5), "{p}");
    assert!(p.fix.contains("`secret_access_key_env: VAR`"), "{p}");
    assert!(!format!("{err}{err:?}").contains("wJalrXUtnFEMI"));
}

#[test]
fn malformed_yaml_reports_line_and_column() {
    // `kind` is indented less than its siblings: `dsn:` on line 10 becomes a syntax error.
    let text = GOOD.replace("    kind: postgres", "   kind: postgres");
    let (dir, err) = load_err(&text);
    let p = only(&err);
    assert_eq!(p.position, at(10, 8), "{p}");
    assert!(p.message.starts_with("invalid YAML: "), "{p}");
    assert!(p.fix.contains("indentation"), "{p}");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("{}:10:8: invalid YAML", origin(&dir).display())),
        "{shown}"
    );
    assert!(shown.contains("\n  fix: "), "{shown}");

    // An unclosed quote runs to the end of the file; the error still has a position.
    let text = GOOD.replace("environment: production", "environment: \"production");
    let (_dir, err) = load_err(&text);
    let p = only(&err);
    assert!(p.position.is_some_and(|p| p.line >= 12), "{p}");
}

#[test]
fn wrong_type_is_reported_without_echoing_the_value() {
    let text = GOOD.replace(
        "    dsn: postgres://lifeboat@db.internal:5432/orders",
        "    dsn: [\"postgres://u:leakme@h/db\"]",
    );
    let (_dir, err) = load_err(&text);
    let p = only(&err);
    assert_eq!(p.position, at(10, 10), "{p}");
    assert!(p.message.contains("expected a single value"), "{p}");
    assert!(!format!("{err}{err:?}").contains("leakme"), "{err}");

    let (_dir, err) = load_err("sources: 5\n");
    let p = only(&err);
    assert_eq!(p.position, at(1, 10), "{p}");
    assert!(p.message.contains("expected a mapping"), "{p}");
}

#[test]
fn unknown_repository_reference_is_reported_with_a_suggestion() {
    let text = GOOD.replace("    repository: offsite", "    repository: ofsite");
    let (_dir, err) = load_err(&text);
    let p = only(&err);
    assert_eq!(p.position, at(13, 17), "{p}");
    assert!(p.message.contains("repository `ofsite`"), "{p}");
    assert!(p.message.contains("not defined"), "{p}");
    assert!(p.fix.contains("did you mean `repository: offsite`"), "{p}");
}

#[test]
fn password_inside_dsn_is_refused_without_echoing_it() {
    for dsn in [
        "postgres://lifeboat:Tr0ub4dor@db.internal:5432/orders",
        "postgres://lifeboat@db.internal:5432/orders?password=Tr0ub4dor",
        "host=db.internal user=lifeboat password=Tr0ub4dor dbname=orders",
    ] {
        let text = GOOD.replace("postgres://lifeboat@db.internal:5432/orders", dsn);
        let (_dir, err) = load_err(&text);
        let p = only(&err);
        assert_eq!(p.position, at(10, 10), "{dsn}: {p}");
        assert!(p.message.contains("dsn contains a password"), "{p}");
        assert!(p.fix.contains("password_env") && p.fix.contains("password_file"), "{p}");
        let everything = format!("{err}\n{err:?}");
        assert!(!everything.contains("Tr0ub4dor"), "password echoed: {everything}");
    }
}

#[test]
fn group_or_world_readable_password_file_is_refused_with_chmod_fix() {
    let dir = TempDir::new().unwrap();
    let secret_path = dir.path().join("secrets/orders-pw");
    write_secret(&secret_path, "Correct-Horse-7\n", 0o644);
    let text = GOOD.replace(
        "    password_env: ORDERS_PG_PASSWORD",
        "    password_file: secrets/orders-pw",
    );
    let cfg = config::load_str(&text, &origin(&dir)).unwrap_or_else(|e| panic!("{e}"));
    let password = cfg.sources["orders"].password.clone().unwrap();
    // Relative to the config file's directory.
    assert_eq!(password, SecretRef::File(secret_path.clone()));
    assert_eq!(password.describe(), format!("file {}", secret_path.display()));

    let err = password.resolve().expect_err("mode 644 must be refused");
    let p = only(&err);
    assert!(p.message.contains("group or others"), "{p}");
    assert!(p.message.contains("0644"), "{p}");
    assert_eq!(p.fix, format!("run `chmod 600 {}`", secret_path.display()));

    let problems = cfg.check();
    let p = find(&problems, "group or others");
    assert_eq!(p.file.as_deref(), Some(origin(&dir).as_path()));
    assert_eq!(p.position, at(11, 20), "{p}");

    // Group-readable only is refused too.
    std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(password.resolve().is_err());

    // Owner-only is accepted; the trailing newline is not part of the secret.
    std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(password.resolve().unwrap().expose(), "Correct-Horse-7");
    assert!(!format!("{problems:?}").contains("Correct-Horse"));
}

#[test]
fn missing_env_var_is_named_at_the_key_that_names_it() {
    let var = "LIFEBOAT_TEST_SURELY_UNSET_9F2C";
    assert!(std::env::var_os(var).is_none());
    let text = GOOD.replace("ORDERS_PG_PASSWORD", var);
    let dir = TempDir::new().unwrap();
    let cfg = config::load_str(&text, &origin(&dir)).unwrap();

    let err = cfg.sources["orders"].password.as_ref().unwrap().resolve().unwrap_err();
    assert!(only(&err).message.contains(&format!("`{var}` is not set")), "{err}");

    let problems = cfg.check();
    let p = find(&problems, var);
    assert_eq!(p.position, at(11, 19), "{p}");
    assert!(p.fix.contains(var), "{p}");
    let shown = p.to_string();
    assert!(
        shown.starts_with(&format!(
            "{}:11:19: environment variable `{var}`",
            origin(&dir).display()
        )),
        "{shown}"
    );
}

#[test]
fn check_reports_every_missing_secret_of_the_example() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lifeboat.yaml");
    let cfg = config::load(&path).unwrap();
    let problems = cfg.check();
    for var in ["OFFSITE_KEY_ID", "OFFSITE_SECRET", "ORDERS_PG_PASSWORD"] {
        if std::env::var_os(var).is_none() {
            let p = find(&problems, var);
            assert!(p.position.is_some(), "{p}");
        }
    }
}

#[test]
fn several_semantic_problems_are_reported_at_once_in_file_order() {
    // `environment` before `dsn` on purpose: the validator visits keys in a fixed order,
    // the report must still follow the file.
    let text = r#"repositories:
  local:
    url: file://srv/lifeboat
  web:
    url: ftp://example.net/backups
  bad:
    url: s3://bucket/x
    access_key_id_env: KEY_ID
sources:
  orders:
    kind: postgres
    environment: Production
    dsn: postgres://lifeboat:hunter2@db:5432/orders
    repository: nowhere
  billing:
    kind: mysql
    dsn: mysql://lifeboat@db/billing
    password_env: BILLING_PW
    password_file: /etc/lifeboat/billing-pw
    environment: staging
    repository: local
  users:
    kind: postgres
    dsn: postgres://lifeboat@db/users
    repository: local
"#;
    let (_dir, err) = load_err(text);
    let problems = err.all();
    let expected = [
        (3, 10, "reads `srv` as a host name"),
        (5, 10, "unsupported repository scheme `ftp`"),
        (8, 24, "no secret access key"),
        (12, 18, "environment `Production`"),
        (13, 10, "dsn contains a password"),
        (14, 17, "repository `nowhere`"),
        (16, 11, "`mysql` is not supported yet"),
        (19, 20, "both `password_env` and `password_file`"),
        (22, 3, "source `users` has no `environment`"),
    ];
    for (line, column, needle) in expected {
        let p = find(problems, needle);
        assert_eq!(p.position, at(line, column), "{needle}: {p}");
        assert!(!p.fix.is_empty(), "{p}");
    }
    assert_eq!(problems.len(), expected.len(), "{err}");
    let lines: Vec<u64> = problems.iter().map(|p| p.position.unwrap().line).collect();
    assert!(lines.is_sorted(), "not in file order: {lines:?}");
    assert!(find(problems, "Production").fix.contains("`environment: production`"));
    assert!(find(problems, "host name").fix.contains("file:///"));
    assert!(!err.to_string().contains("hunter2"));
}

#[test]
fn empty_sources_and_empty_file_are_refused() {
    let text = "repositories:\n  r:\n    url: file:///srv/lifeboat\nsources: {}\n";
    let (_dir, err) = load_err(text);
    let p = only(&err);
    assert!(p.message.contains("no sources"), "{p}");
    assert_eq!(p.position, at(4, 10), "{p}");

    let (_dir, err) = load_err("# nothing here yet\n");
    assert!(err.to_string().contains("no repositories and no sources"), "{err}");
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let dir = TempDir::new().unwrap();
    let text = format!(
        "state_dir: var/state\n{}",
        GOOD.replace(
            "    password_env: ORDERS_PG_PASSWORD",
            "    password_file: pw\n    pg_bin_dir: bin"
        )
    );
    // Loaded from a nested directory, through `load` (a real file).
    let nested = dir.path().join("etc");
    std::fs::create_dir_all(&nested).unwrap();
    let path = nested.join("lifeboat.yaml");
    std::fs::write(&path, text).unwrap();
    let cfg = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.state_dir, nested.join("var/state"));
    let src = &cfg.sources["orders"];
    assert_eq!(src.password, Some(SecretRef::File(nested.join("pw"))));
    assert_eq!(src.pg_bin_dir, Some(nested.join("bin")));

    // check(): the missing password file and the pg_bin_dir without pg_dump, both located.
    let problems = cfg.check();
    assert_eq!(find(&problems, "does not exist").position.map(|p| p.line), Some(12));
    assert_eq!(find(&problems, "pg_dump").position.map(|p| p.line), Some(13));

    // `~` is not a shell here.
    let (_dir, err) = load_err(&format!("state_dir: ~/lifeboat\n{GOOD}"));
    assert_eq!(only(&err).position, at(1, 12), "{err}");
    assert!(only(&err).message.contains("`~`"), "{err}");
}

#[test]
fn repository_urls_are_checked() {
    let cases = [
        ("/srv/lifeboat", "is a path, not a URL", "`file:///srv/lifeboat`"),
        ("backups", "relative path", "file:///"),
        ("file:backups", "relative file paths are refused", "file:///"),
        (
            "s3://AKIA:supersecret@bucket/x",
            "contains credentials",
            "access_key_id_env",
        ),
        (
            "http://minio:9000/bucket",
            "unsupported repository scheme `http`",
            "endpoint",
        ),
        ("s3:///prefix", "names no bucket", "s3://BUCKET/prefix"),
    ];
    for (url, message, fix) in cases {
        let text = GOOD.replace("s3://backups/lifeboat", url);
        let (_dir, err) = load_err(&text);
        let p = find(err.all(), message);
        assert_eq!(p.position, at(3, 10), "{url}: {p}");
        assert!(p.fix.contains(fix), "{url}: {p}");
        assert!(!err.to_string().contains("supersecret"));
    }
    let text = GOOD.replace("s3://backups/lifeboat", "file:///srv/lifeboat");
    let (_dir, err) = load_err(&text);
    find(err.all(), "`endpoint` applies only to `s3://`");
    find(err.all(), "take no access keys");
}

#[test]
fn unknown_kind_and_bad_names_get_suggestions() {
    let text = GOOD
        .replace("kind: postgres", "kind: postgress")
        .replace("  orders:", "  Orders:");
    let (_dir, err) = load_err(&text);
    let kind = find(err.all(), "unknown source kind `postgress`");
    assert_eq!(kind.position, at(9, 11));
    assert!(kind.fix.contains("did you mean `kind: postgres`"), "{kind}");
    let name = find(err.all(), "source name `Orders`");
    assert_eq!(name.position, at(8, 3));
    assert!(name.fix.contains("`orders`"), "{name}");
}

#[test]
fn catalog_and_encryption() {
    let dir = TempDir::new().unwrap();
    // The identity from age's own test vectors and its public key.
    let identity = "AGE-SECRET-KEY-1GQ9778VQXMMJVE8SK7J6VT8UJ4HDQAJUVSFCWCM02D8GEWQ72PVQ2Y5J33";
    let public = "age1t7rxyev2z3rw82stdlrrepyc39nvn86l5078zqkf5uasdy86jp6svpy7pa";
    write_secret(
        &dir.path().join("keys/offsite.key"),
        &format!("# created: now\n{identity}\n"),
        0o600,
    );
    write_secret(
        &dir.path().join("catalog-url"),
        "postgres://lb:CatalogPw9@db/lifeboat\n",
        0o600,
    );
    std::fs::write(dir.path().join("keys/offsite.pub"), format!("# team key\n{public}\n")).unwrap();
    let text = format!(
        "catalog:\n  url_file: catalog-url\n{}",
        GOOD.replace(
            "    secret_access_key_env: OFFSITE_SECRET\n",
            "    secret_access_key_env: OFFSITE_SECRET\n    encryption:\n      recipients_file: keys/offsite.pub\n      identity_file: keys/offsite.key\n",
        )
    );
    let cfg = config::load_str(&text, &origin(&dir)).unwrap_or_else(|e| panic!("{e}"));
    let enc = cfg.repositories["offsite"].encryption.as_ref().unwrap();
    assert_eq!(enc.recipients, vec![public.to_owned()]);
    let url = cfg.catalog.as_ref().unwrap().resolve_url().unwrap();
    assert_eq!(url.expose(), "postgres://lb:CatalogPw9@db/lifeboat");
    assert_eq!(format!("{url:?}"), "[redacted]");
    // Only the env-var secrets are missing: the identity matches its recipient.
    let problems = cfg.check();
    assert!(
        problems.iter().all(|p| p.message.contains("environment variable")),
        "{problems:#?}"
    );

    // An identity that matches no recipient is caught by check().
    let other = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    std::fs::write(dir.path().join("keys/offsite.pub"), format!("{other}\n")).unwrap();
    let cfg = config::load_str(&text, &origin(&dir)).unwrap();
    let p = find(&cfg.check(), "matches none of the repository's recipients").clone();
    assert_eq!(p.position, at(11, 22), "{p}");

    // A secret key pasted into `recipients` is refused and not echoed.
    let text = GOOD.replace(
        "    secret_access_key_env: OFFSITE_SECRET\n",
        &format!("    secret_access_key_env: OFFSITE_SECRET\n    encryption:\n      recipients: [{identity}]\n"),
    );
    let (_dir, err) = load_err(&text);
    let p = only(&err);
    assert!(p.message.contains("SECRET key"), "{p}");
    assert_eq!(p.position, at(8, 20), "{p}");
    assert!(!format!("{err}{err:?}").contains("GQ9778"), "{err}");

    // Catalog with neither key; catalog with a non-postgres URL.
    let (_dir, err) = load_err(&format!("catalog: {{}}\n{GOOD}"));
    find(err.all(), "`catalog` needs `url_env` or `url_file`");
    write_secret(&dir.path().join("catalog-url"), "mysql://lb:CatalogPw9@db/x", 0o600);
    let text = format!("catalog:\n  url_file: catalog-url\n{GOOD}");
    let cfg = config::load_str(&text, &origin(&dir)).unwrap();
    let p = find(&cfg.check(), "not a `postgres://` URL").clone();
    assert_eq!(p.position, at(2, 13));
    assert!(!p.to_string().contains("CatalogPw9"));
}

#[test]
fn secret_values_never_appear_in_debug_or_display() {
    let dir = TempDir::new().unwrap();
    let value = "Sup3r-S3cret-Value";
    write_secret(&dir.path().join("pw"), value, 0o600);
    write_secret(&dir.path().join("key-id"), value, 0o644);
    let text = GOOD
        .replace("    password_env: ORDERS_PG_PASSWORD", "    password_file: pw")
        .replace("access_key_id_env: OFFSITE_KEY_ID", "access_key_id_file: key-id");
    let cfg = config::load_str(&text, &origin(&dir)).unwrap();

    let secret = cfg.sources["orders"].password.as_ref().unwrap().resolve().unwrap();
    assert_eq!(secret.expose(), value);
    assert_eq!(format!("{secret:?}"), "[redacted]");
    assert_eq!(format!("{:?}", secret.clone()), "[redacted]");

    let problems = cfg.check();
    find(&problems, "group or others");
    let everything = format!(
        "{cfg:?}\n{cfg:#?}\n{problems:?}\n{}",
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    );
    assert!(!everything.contains(value), "secret leaked:\n{everything}");
    assert!(!everything.contains("S3cret"), "secret leaked:\n{everything}");
}

#[test]
fn env_names_are_validated_without_echoing_the_value() {
    let text = GOOD.replace("password_env: ORDERS_PG_PASSWORD", "password_env: p@ss w0rd!");
    let (_dir, err) = load_err(&text);
    let p = only(&err);
    assert_eq!(p.position, at(11, 19));
    assert!(!err.to_string().contains("p@ss"), "{err}");

    let text = GOOD.replace("password_env: ORDERS_PG_PASSWORD", "password_env: $ORDERS_PG_PASSWORD");
    let (_dir, err) = load_err(&text);
    assert!(only(&err).fix.contains("`password_env: ORDERS_PG_PASSWORD`"), "{err}");
}

#[test]
fn missing_config_file_is_reported() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nope.yaml");
    let err = config::load(&path).unwrap_err();
    let p = only(&err);
    assert_eq!(p.file.as_deref(), Some(path.as_path()));
    assert!(p.message.contains("cannot read the config file"), "{p}");
    assert_eq!(config::default_path(), PathBuf::from("config/lifeboat.yaml"));
}

#[test]
fn duplicate_keys_are_refused() {
    let text = GOOD.replace(
        "    environment: production\n",
        "    environment: production\n    environment: staging\n",
    );
    let (_dir, err) = load_err(&text);
    let p = only(&err);
    assert!(p.message.contains("`environment` appears twice"), "{p}");
    assert_eq!(p.position.map(|p| p.line), Some(13), "{p}");
}

#[test]
fn check_file_reports_validation_and_machine_problems_together() {
    let dir = TempDir::new().unwrap();
    let path = origin(&dir);
    let var = "LIFEBOAT_TEST_SURELY_UNSET_7B1E";
    assert!(std::env::var_os(var).is_none());
    let value = "Key-Id-Not-For-Eyes";
    write_secret(&dir.path().join("key-id"), value, 0o644);
    write_secret(&dir.path().join("secret-key"), "Secret-Key-Not-For-Eyes", 0o600);
    let text = GOOD
        .replace("access_key_id_env: OFFSITE_KEY_ID", "access_key_id_file: key-id")
        .replace(
            "secret_access_key_env: OFFSITE_SECRET",
            "secret_access_key_file: secret-key",
        )
        .replace("ORDERS_PG_PASSWORD", var)
        + "    pg_bin_dir: bin\n";
    // One validation problem (an undefined repository) among three machine problems.
    std::fs::write(&path, text.replace("repository: offsite", "repository: offsit")).unwrap();

    // `load` stops after validation: only the repository.
    let err = config::load(&path).unwrap_err();
    assert!(only(&err).message.contains("`offsit`"), "{err}");

    // `check_file` reports all of them, located, in file order.
    let problems = config::check_file(&path);
    let expected = [
        (5, 25, "can be read by group or others"),
        (11, 19, "is not set"),
        (13, 17, "repository `offsit`, which is not defined"),
        (14, 17, "has no `pg_dump`"),
    ];
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), expected.len(), "{}", shown.join("\n"));
    for (p, (line, column, needle)) in problems.iter().zip(expected) {
        assert!(p.message.contains(needle), "expected {needle:?}, got {p}");
        assert_eq!(p.position, at(line, column), "{p}");
        assert_eq!(p.file.as_deref(), Some(path.as_path()), "{p}");
        assert!(!p.fix.is_empty(), "{p}");
    }
    assert!(
        find(&problems, "offsit")
            .fix
            .contains("did you mean `repository: offsite`")
    );
    assert!(!format!("{problems:?}{}", shown.join("\n")).contains("Not-For-Eyes"));
    assert!(config::load_checked(&path).is_err());

    // On a valid file it agrees with `Config::check`.
    std::fs::write(&path, &text).unwrap();
    let cfg = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config::check_file(&path), cfg.check());
    assert_eq!(config::check_file(&path).len(), 3);

    // Nothing left to report: `load_checked` gives the config.
    std::fs::set_permissions(dir.path().join("key-id"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::write(dir.path().join("bin/pg_dump"), "").unwrap();
    write_secret(&dir.path().join("pw"), "Pw-Not-For-Eyes", 0o600);
    std::fs::write(
        &path,
        text.replace(&format!("password_env: {var}"), "password_file: pw"),
    )
    .unwrap();
    assert_eq!(config::check_file(&path), Vec::<Problem>::new());
    let cfg = config::load_checked(&path).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(cfg.sources.len(), 1);

    // A file that does not parse still stops at its one syntax problem.
    std::fs::write(&path, "sources: [\n").unwrap();
    assert_eq!(config::check_file(&path).len(), 1);
}

#[test]
fn check_file_does_not_pile_noise_on_refused_values() {
    let dir = TempDir::new().unwrap();
    let path = origin(&dir);
    // Keys on a `file://` repository are refused; whether their variables are set is moot.
    let text = GOOD
        .replace("s3://backups/lifeboat", "file:///srv/lifeboat")
        .replace("    endpoint: http://127.0.0.1:9000\n", "")
        .replace("ORDERS_PG_PASSWORD", "LIFEBOAT_TEST_SURELY_UNSET_4C2A")
        .replace("OFFSITE_KEY_ID", "LIFEBOAT_TEST_SURELY_UNSET_4C2B")
        .replace("OFFSITE_SECRET", "LIFEBOAT_TEST_SURELY_UNSET_4C2C");
    std::fs::write(&path, text).unwrap();
    let problems = config::check_file(&path);
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 2, "{}", shown.join("\n"));
    find(&problems, "take no access keys");
    find(&problems, "LIFEBOAT_TEST_SURELY_UNSET_4C2A");
}

#[test]
fn daemon_schedules_retention_and_alerts_of_the_example() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lifeboat.yaml");
    let cfg = config::load(&path).unwrap();
    assert_eq!(cfg.daemon.listen.to_string(), "127.0.0.1:9187");
    assert_eq!(cfg.daemon.timezone.name(), "Europe/Berlin");
    assert_eq!(cfg.daemon.catch_up, std::time::Duration::from_secs(6 * 3600));
    let orders = &cfg.sources["orders"];
    let backup = orders.schedules.backup.as_ref().unwrap();
    assert_eq!(backup.expr(), "0 */6 * * *");
    assert_eq!(backup.zone().name(), "Europe/Berlin", "the daemon's zone");
    assert_eq!(orders.schedules.prune.as_ref().unwrap().expr(), "0 5 * * 0");
    let retention = orders.retention.as_ref().unwrap();
    assert_eq!(
        (
            retention.keep_last,
            retention.keep_daily,
            retention.keep_weekly,
            retention.keep_monthly
        ),
        (Some(7), Some(14), Some(8), Some(12))
    );
    assert_eq!(cfg.alerts.routes["oncall"].sinks, ["pagerduty"]);
    assert_eq!(cfg.alerts.reminder, std::time::Duration::from_secs(4 * 3600));
    // The docker-compose config validates too.
    let docker = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/docker.yaml");
    let cfg = config::load(&docker).unwrap_or_else(|e| panic!("config/docker.yaml must load:\n{e}"));
    assert!(cfg.sources["orders"].schedules.backup.is_some());
}

#[test]
fn daemon_section_problems_are_located() {
    let text = format!(
        "{GOOD}    schedule:\n      backup: \"0 25 * * *\"\n      prune: \"0 5 * * 0\"\n      timezone: Europe/Berln\n\
         daemon:\n  listen: localhost:9187\n  jitter: 5 minutes\nalerts:\n  sinks:\n    hook:\n      kind: webhok\n  \
         routes:\n    oncall:\n      sinks: [pager]\n      min_severity: urgent\n"
    );
    let (_dir, err) = load_err(&text);
    let problems = err.all();
    let zone = find(problems, "unknown time zone `Europe/Berln`");
    assert_eq!(zone.position, at(17, 17));
    assert!(zone.fix.contains("Europe/Berlin"), "{zone}");
    let prune = find(problems, "schedules `prune` but has no `retention:`");
    assert_eq!(prune.position, at(16, 14));
    let listen = find(problems, "`daemon.listen: localhost:9187`");
    assert_eq!(listen.position, at(19, 11));
    let jitter = find(problems, "`daemon.jitter: 5 minutes` is not a duration");
    assert_eq!(jitter.position, at(20, 11));
    let kind = find(problems, "unknown alert sink kind `webhok`");
    assert!(kind.fix.contains("`kind: webhook`"), "{kind}");
    let route = find(problems, "sends to sink `pager`, which is not defined");
    assert_eq!(route.position, at(27, 15));
    find(problems, "unknown severity `urgent`");
}

#[test]
fn a_bad_crontab_line_is_located_with_the_fix() {
    let text = format!("{GOOD}    schedule:\n      backup: \"0 25 * * *\"\n");
    let (_dir, err) = load_err(&text);
    let p = only(&err);
    assert!(p.message.contains("`sources.orders.schedule.backup`"), "{p}");
    assert!(p.message.contains("not a valid crontab expression"), "{p}");
    assert_eq!(p.position, at(15, 15));
    assert!(p.fix.contains("5 crontab fields"), "{p}");
}

#[test]
fn fate_section_data_dir_and_cloud_identity() {
    let dir = TempDir::new().unwrap();
    let day = std::time::Duration::from_secs(86_400);
    let cfg = config::load_str(GOOD, &origin(&dir)).unwrap();
    assert_eq!((cfg.fate.untested_after, cfg.fate.detect_within), (8 * day, 7 * day));
    assert!(cfg.fate.schedule.is_none() && !cfg.fate.probe);
    assert!(cfg.sources["orders"].data_dir.is_none() && cfg.sources["orders"].cloud_identity.is_none());

    let text = format!(
        "{GOOD}    data_dir: pgdata\n    cloud_identity:\n      access_key_id_env: ORDERS_CLOUD_KEY_ID\n      \
         secret_access_key_file: secrets/cloud\n      endpoint: http://127.0.0.1:9310\n      region: eu-west-1\n\
         fate:\n  untested_after: 3d\n  detect_within: 14d\n  schedule: \"0 * * * *\"\n  probe: true\n"
    );
    let cfg = config::load_str(&text, &origin(&dir)).unwrap_or_else(|e| panic!("{e}"));
    let orders = &cfg.sources["orders"];
    let base = std::path::absolute(dir.path()).unwrap();
    assert_eq!(orders.data_dir.as_deref(), Some(base.join("pgdata").as_path()));
    let cloud = orders.cloud_identity.as_ref().unwrap();
    assert_eq!(cloud.access_key_id, SecretRef::Env("ORDERS_CLOUD_KEY_ID".into()));
    assert_eq!(cloud.secret_access_key, SecretRef::File(base.join("secrets/cloud")));
    assert_eq!(cloud.endpoint.as_ref().unwrap().as_str(), "http://127.0.0.1:9310/");
    assert_eq!(cloud.region.as_deref(), Some("eu-west-1"));
    assert_eq!((cfg.fate.untested_after, cfg.fate.detect_within), (3 * day, 14 * day));
    assert_eq!(cfg.fate.schedule.as_ref().unwrap().expr(), "0 * * * *");
    assert!(cfg.fate.probe);
    // The cloud identity's secrets are checked like every other, at the key that names them.
    let problems = cfg.check();
    let p = find(&problems, "ORDERS_CLOUD_KEY_ID");
    assert_eq!(p.position, at(16, 26), "{p}");
    let p = find(&problems, "secrets/cloud");
    assert_eq!(p.position, at(17, 31), "{p}");
}

#[test]
fn fate_problems_are_located_with_the_fix() {
    // A typo in `cloud_identity`: named as such, with the near miss.
    let text = format!("{GOOD}    cloud_identity:\n      access_key_id_env: K\n      secret_acces_key_env: S\n");
    let (_dir, err) = load_err(&text);
    let p = only(&err);
    assert!(
        p.message
            .contains("unknown key `secret_acces_key_env` in `cloud_identity`"),
        "{p}"
    );
    assert!(p.fix.contains("did you mean `secret_access_key_env`?"), "{p}");
    assert_eq!(p.position, at(16, 7), "{p}");

    // An inline secret gets the env/file fix.
    let text = format!("{GOOD}    cloud_identity:\n      secret_access_key: hunter2\n");
    let (_dir, err) = load_err(&text);
    let p = only(&err);
    assert!(p.fix.contains("`secret_access_key_env: VAR`"), "{p}");
    assert!(!p.to_string().contains("hunter2"), "{p}");

    // Semantic problems, all at once.
    let text = format!(
        "{GOOD}    data_dir: \"~postgres/main\"\n    cloud_identity:\n      access_key_id_env: K\n\
         fate:\n  detect_within: a week\n  untested_after: 0s\n  schedule: \"0 25 * * *\"\n"
    );
    let (_dir, err) = load_err(&text);
    let problems = err.all();
    assert_eq!(problems.len(), 5, "{err}");
    assert_eq!(find(problems, "`data_dir` starts with `~`").position, at(14, 15));
    let missing = find(problems, "`sources.orders.cloud_identity` has no secret access key");
    assert!(missing.fix.contains("secret_access_key_env"), "{missing}");
    let d = find(problems, "`fate.detect_within: a week` is not a duration");
    assert_eq!(d.position, at(18, 18), "{d}");
    assert!(d.fix.contains("7d"), "{d}");
    find(problems, "`fate.untested_after: 0s` is not a duration");
    let s = find(problems, "`fate.schedule`");
    assert_eq!(s.position, at(20, 13), "{s}");
}

#[test]
fn control_section_approvals_must_name_a_sources_environment() {
    let text = format!("{GOOD}control:\n  approval_ttl: 12h\n  approvals:\n    prodution: 2\n");
    let (_dir, err) = load_err(&text);
    let p = only(&err);
    assert_eq!(p.position, at(17, 5), "{p}");
    assert!(p.message.contains("no source has environment `prodution`"), "{p}");
    assert!(p.fix.contains("did you mean `production`?"), "{p}");
    let dir = TempDir::new().unwrap();
    let good = format!("{GOOD}control:\n  approval_ttl: 12h\n  approvals:\n    production: 2\n");
    let cfg = config::load_str(&good, &origin(&dir)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.control.approvals_needed(["production", "staging"]), 2);
    assert_eq!(cfg.control.approvals_needed(["staging"]), 1);
    assert_eq!(cfg.control.approval_ttl, std::time::Duration::from_secs(12 * 3600));
    let (_dir, err) = load_err(&good.replace("production: 2", "production: 9"));
    assert!(only(&err).message.contains("out of range"), "{err}");
}
