//! `lifeboat check-config` checks what `lifeboat daemon` checks before it starts: the alert
//! sinks once their secrets are resolved, and the drill files. Each problem is located, has a
//! fix, is counted, and makes it exit 2; secret values are never shown; nothing is written and
//! nothing is contacted (the hosts below do not exist).

mod support;

use std::process::Output;

use support::cli::{Workspace, all_output, assert_exit, assert_stderr_has};

const USAGE: i32 = 2;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Lines 1–10: state, one file repository, one source `rental`; then `rest` (from line 11),
/// with `drills_dir: drills` beside the config.
fn write_config(ws: &Workspace, rest: &str) {
    ws.write_config(&format!(
        "state_dir: {state}\nrepositories:\n  local:\n    url: file://{repo}\nsources:\n  rental:\n    \
         kind: postgres\n    dsn: \"postgres://lifeboat@db.invalid:5432/rental\"\n    environment: staging\n    \
         repository: local\ndrills_dir: drills\n{rest}",
        state = ws.path().join("state").display(),
        repo = ws.repo_dir().display(),
    ));
}

fn write_drill(ws: &Workspace, file: &str, text: &str) {
    std::fs::create_dir_all(ws.path().join("drills")).unwrap();
    std::fs::write(ws.path().join("drills").join(file), text).unwrap();
}

const GOOD_DRILL: &str = "name: rental-nightly\nsource: rental\nschedule: \"30 4 * * *\"\nrestore_point: latest\n\
                          sla: { rto: 15m, rpo: 26h }\nchecks:\n  - fingerprint: true\nalerts: [oncall]\n";

/// Alerts from line 12: a webhook (line 14), an email sink (15–20) and a route (22).
const ALERTS: &str = "alerts:\n  sinks:\n    hook: { kind: webhook, url_env: LB_TEST_HOOK_URL }\n    mail:\n      \
                      kind: email\n      server: \"smtp://mail.example.invalid:25\"\n      tls: starttls\n      \
                      from: lifeboat@example.com\n      to: [oncall@example.com]\n  routes:\n    \
                      oncall: { sinks: [hook, mail] }\n";

const GOOD_HOOK: &str = "https://hooks.example.invalid/services/T0/B0/Hook-Token-Not-For-Eyes";

/// `secret` appears nowhere in the output; nothing was written (no state, no repository).
#[track_caller]
fn assert_no_secret_and_no_write(ws: &Workspace, o: &Output, secret: &str) {
    let text = all_output(o);
    assert!(!text.contains(secret), "a secret appears in the output:\n{text}");
    assert!(
        !ws.path().join("state").exists(),
        "check-config created the state directory"
    );
    assert_eq!(ws.repo_listing(), Vec::<String>::new(), "check-config writes nothing");
}

#[test]
fn a_good_config_with_alerts_and_a_valid_drill_passes() {
    let ws = Workspace::new();
    write_config(&ws, ALERTS);
    write_drill(&ws, "rental-nightly.yaml", GOOD_DRILL);
    let o = ws.run(&["check-config"], &[("LB_TEST_HOOK_URL", GOOD_HOOK)]);
    assert_exit(&o, 0, "check-config on a good config with a drill");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("OK (sources: 1, repositories: 1); drills: 1"),
        "{}",
        all_output(&o)
    );
    assert_no_secret_and_no_write(&ws, &o, "Not-For-Eyes");

    let o = ws.run(&["--json", "check-config"], &[("LB_TEST_HOOK_URL", GOOD_HOOK)]);
    assert_exit(&o, 0, "check-config --json on a good config with a drill");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["drills"], 1, "{v}");
}

#[test]
fn a_webhook_url_without_a_scheme_is_located_at_its_variable_and_not_shown() {
    let ws = Workspace::new();
    write_config(&ws, ALERTS);
    write_drill(&ws, "rental-nightly.yaml", GOOD_DRILL);
    let token_url = "hooks.example.invalid/T0/Hook-Token-Not-For-Eyes";
    let o = ws.run(&["check-config"], &[("LB_TEST_HOOK_URL", token_url)]);
    assert_exit(&o, USAGE, "check-config with a webhook URL without a scheme");
    let file = ws.config_path().display().to_string();
    assert_stderr_has(
        &o,
        &[
            &format!("{file}:14:37: "),
            "sink `hook`: the webhook URL is not a valid URL",
            "env LB_TEST_HOOK_URL",
            "fix: give a full http(s):// URL",
            "1 problem in",
        ],
    );
    assert_no_secret_and_no_write(&ws, &o, "Not-For-Eyes");

    // JSON says the same, located.
    let o = ws.run(&["--json", "check-config"], &[("LB_TEST_HOOK_URL", token_url)]);
    assert_exit(&o, USAGE, "check-config --json with a webhook URL without a scheme");
    assert!(!all_output(&o).contains("Not-For-Eyes"), "{}", all_output(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(
        (problems[0]["line"].as_u64(), problems[0]["column"].as_u64()),
        (Some(14), Some(37)),
        "{v}"
    );
    assert!(!problems[0]["fix"].as_str().unwrap().is_empty(), "{v}");
}

#[test]
fn plain_smtp_to_a_remote_host_and_a_password_without_username_are_each_located() {
    let ws = Workspace::new();
    let alerts = ALERTS
        .replace("tls: starttls", "tls: none")
        .replace("      from:", "      password_env: LB_TEST_SMTP_PW\n      from:");
    write_config(&ws, &alerts);
    write_drill(&ws, "rental-nightly.yaml", GOOD_DRILL);
    let pw = "Smtp-Pw-Not-For-Eyes";
    let o = ws.run(
        &["check-config"],
        &[("LB_TEST_HOOK_URL", GOOD_HOOK), ("LB_TEST_SMTP_PW", pw)],
    );
    assert_exit(&o, USAGE, "check-config with an insecure email sink");
    let file = ws.config_path().display().to_string();
    assert_stderr_has(
        &o,
        &[
            &format!("{file}:18:12: "),
            "plain (unencrypted) SMTP to `mail.example.invalid`",
            "fix: use STARTTLS or TLS",
            &format!("{file}:19:21: "),
            "a password is set but no username",
            "fix: set the username, or remove the password",
            "2 problems in",
        ],
    );
    assert_no_secret_and_no_write(&ws, &o, pw);
}

#[test]
fn a_drill_naming_an_unknown_source_is_reported_with_its_file_and_line() {
    let ws = Workspace::new();
    write_config(&ws, ALERTS);
    write_drill(&ws, "rental-nightly.yaml", GOOD_DRILL);
    write_drill(
        &ws,
        "bad.yaml",
        "name: bad\nsource: nosuchsource\nrestore_point: sometimes\nchecks:\n  - fingerprint: true\nalerts: [nosuchroute]\n",
    );
    let o = ws.run(&["check-config"], &[("LB_TEST_HOOK_URL", GOOD_HOOK)]);
    assert_exit(&o, USAGE, "check-config with a broken drill");
    let drill = ws.path().join("drills/bad.yaml").display().to_string();
    assert_stderr_has(
        &o,
        &[
            &format!("{drill}:2:9: "),
            "source `nosuchsource` is not defined",
            &format!("{drill}:3:16: "),
            "unknown restore point `sometimes`",
            &format!("{drill}:6:10: "),
            "alert route `nosuchroute` is not defined",
            "3 problems in",
            "drill files in",
        ],
    );
    assert_eq!(stderr(&o).matches("fix:").count(), 3, "{}", stderr(&o));
    assert_no_secret_and_no_write(&ws, &o, "Not-For-Eyes");
}

#[test]
fn drills_are_checked_even_when_a_secret_is_missing() {
    let ws = Workspace::new();
    write_config(&ws, ALERTS);
    write_drill(&ws, "bad.yaml", &GOOD_DRILL.replace("source: rental", "source: rentl"));
    let o = ws.run(&["check-config"], &[]);
    assert_exit(&o, USAGE, "check-config with an unset variable and a broken drill");
    let file = ws.config_path().display().to_string();
    let drill = ws.path().join("drills/bad.yaml").display().to_string();
    assert_stderr_has(
        &o,
        &[
            &format!("{file}:14:37: "),
            "`LB_TEST_HOOK_URL` is not set",
            &format!("{drill}:2:9: "),
            "source `rentl` is not defined",
            "2 problems in",
        ],
    );
}

#[test]
fn a_missing_drills_directory_is_said_but_not_counted() {
    let ws = Workspace::new();
    write_config(&ws, "");
    let o = ws.run(&["check-config"], &[]);
    assert_exit(&o, 0, "check-config without a drills directory");
    assert_stderr_has(&o, &["note: the drills directory", "does not exist", "fix: create it"]);
}

#[test]
fn check_file_locates_what_the_daemon_would_refuse_in_alerts() {
    // The library call behind check-config: a Slack URL with a scheme other than http(s).
    let ws = Workspace::new();
    write_config(
        &ws,
        &ALERTS.replace(
            "kind: webhook, url_env: LB_TEST_HOOK_URL",
            "kind: slack, url_file: slack-url",
        ),
    );
    let secret = ws.path().join("slack-url");
    std::fs::write(&secret, "ftp://Slack-Token-Not-For-Eyes@x\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let problems = lifeboat::config::check_file(&ws.config_path());
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 1, "{}", shown.join("\n"));
    let p = &problems[0];
    assert!(p.message.contains("Slack webhook URL does not start with http"), "{p}");
    assert_eq!(p.position.map(|x| (x.line, x.column)), Some((14, 36)), "{p}");
    assert!(!shown.join("\n").contains("Not-For-Eyes"));
}
