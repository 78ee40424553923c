//! End to end through the binary: real PostgreSQL clusters, a real file repository.

mod support;

use std::time::{Duration, Instant};

use lifeboat::scratch::EphemeralPostgres;
use support::cli::{Workspace, all_output, cluster, engine, load_rental};

fn json(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "lifeboat failed: {}", all_output(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", all_output(o)))
}

/// A source cluster with the rental data, a workspace configured for it, the repository initialised.
async fn setup(scale: u32) -> (EphemeralPostgres, Workspace) {
    let source = cluster().await;
    source.create_database("rental").await.unwrap();
    load_rental(&source, "rental", scale).await;
    let ws = Workspace::new();
    ws.write_simple_config(&source.dsn("rental"), "");
    let o = ws.run(&["init"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    (source, ws)
}

fn backup(ws: &Workspace) -> serde_json::Value {
    json(&ws.run(&["--json", "-q", "backup", "rental"], &[]))
}

async fn user_relations(c: &EphemeralPostgres, db: &str) -> u64 {
    c.psql(
        db,
        "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'",
    )
    .await
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

/// The comment on database `db`: where a failed or stopped restore leaves its INCOMPLETE mark.
async fn database_comment(c: &EphemeralPostgres, db: &str) -> String {
    c.psql(
        db,
        "select shobj_description(oid, 'pg_database') from pg_database where datname = current_database()",
    )
    .await
    .unwrap()
}

/// Rows in all user tables of `db`, counted.
async fn user_rows(c: &EphemeralPostgres, db: &str) -> u64 {
    c.psql(
        db,
        "select coalesce(sum((xpath('/row/n/text()', query_to_xml(format('select count(*) as n from %I.%I', \
         schemaname, relname), false, true, '')))[1]::text::bigint), 0) from pg_stat_user_tables",
    )
    .await
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rental_round_trip_into_a_fresh_cluster_is_equal_and_the_second_backup_dedups() {
    let (source, ws) = setup(1).await;
    let first = backup(&ws);
    let id = first["snapshot"].as_str().unwrap().to_string();
    assert_eq!(first["tables"], 4);
    assert!(
        first["bytes_stored"].as_u64().unwrap() < first["bytes_read"].as_u64().unwrap(),
        "zstd must shrink the dump"
    );

    let second = backup(&ws);
    let ratio = second["bytes_stored"].as_f64().unwrap() / second["bytes_read"].as_f64().unwrap();
    assert!(ratio < 0.05, "unchanged data stored {:.1}% new bytes", ratio * 100.0);

    let listed = json(&ws.run(&["--json", "snapshots", "--source", "rental"], &[]));
    assert_eq!(listed.as_array().unwrap().len(), 2);

    let target = cluster().await;
    target.create_database("restored").await.unwrap();
    let o = ws.run(&["-q", "restore", &id[..9], "--into-dsn", &target.dsn("restored")], &[]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a prefix of both snapshots is ambiguous: {}",
        all_output(&o)
    );
    assert!(all_output(&o).contains("ambiguous"), "{}", all_output(&o));
    let o = ws.run(
        &["-q", "--json", "restore", &id, "--into-dsn", &target.dsn("restored")],
        &[],
    );
    assert!(o.status.success(), "{}", all_output(&o));
    assert_eq!(
        json(&o)["report"]["staged_in"],
        "memory",
        "a small archive is staged in memory"
    );

    let want = engine(&source, "rental").content_checksums().await.unwrap();
    let got = engine(&target, "restored").content_checksums().await.unwrap();
    assert_eq!(want.len(), 4);
    assert_eq!(want, got, "every table's content must be equal");

    // Staged on disk instead: in the work directory given, which must exist...
    target.create_database("restored_from_disk").await.unwrap();
    let dsn = target.dsn("restored_from_disk");
    let restore_on_disk = |work_dir: &str| {
        ws.run(
            &[
                "-q",
                "--json",
                "restore",
                &id,
                "--into-dsn",
                &dsn,
                "--stage-on-disk",
                "--work-dir",
                work_dir,
            ],
            &[],
        )
    };
    let missing = "/nonexistent/lifeboat-work";
    let o = restore_on_disk(missing);
    assert!(!o.status.success(), "{}", all_output(&o));
    assert!(
        all_output(&o).contains(missing),
        "names the work directory: {}",
        all_output(&o)
    );
    // ...then the same data, and the work directory is left as it was found.
    let work = tempfile::tempdir().unwrap();
    let o = restore_on_disk(&work.path().to_string_lossy());
    assert!(o.status.success(), "{}", all_output(&o));
    assert_eq!(json(&o)["report"]["staged_in"], "disk");
    let got = engine(&target, "restored_from_disk").content_checksums().await.unwrap();
    assert_eq!(want, got, "every table's content must be equal when staged on disk");
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        0,
        "the staged archive is removed"
    );
    for (table, _) in &want {
        let q = format!("select count(*) from {table}");
        assert_eq!(
            source.psql("rental", &q).await.unwrap(),
            target.psql("restored", &q).await.unwrap(),
            "{table}"
        );
    }
}

/// A target whose sessions default to SERIALIZABLE: the loading connections open their
/// transactions under the server's default, and must still load and commit every table.
#[tokio::test(flavor = "multi_thread")]
async fn a_parallel_restore_works_where_transactions_default_to_serializable() {
    let (source, ws) = setup(1).await;
    let id = backup(&ws)["snapshot"].as_str().unwrap().to_string();
    let target = cluster().await;
    target.create_database("strict").await.unwrap();
    target
        .psql(
            "postgres",
            "alter database strict set default_transaction_isolation = 'serializable'",
        )
        .await
        .unwrap();
    let o = ws.run(
        &[
            "-q",
            "--json",
            "restore",
            &id,
            "--jobs",
            "2",
            "--into-dsn",
            &target.dsn("strict"),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", all_output(&o));
    let want = engine(&source, "rental").content_checksums().await.unwrap();
    let got = engine(&target, "strict").content_checksums().await.unwrap();
    assert_eq!(want, got, "every table's content must be equal");
}

/// Finds the chunk files of the repository, largest first. Also while a backup writes: a staging
/// file (`NAME#N`, hard-linked into place and then removed) is not a chunk, and a file that is gone
/// by the time its size is read is left out.
fn chunk_files(ws: &Workspace) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = ws
        .repo_listing()
        .into_iter()
        .filter(|p| p.starts_with("chunks/") && !p.contains('#'))
        .map(|p| ws.repo_dir().join(p))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.len(), p)))
        .collect();
    files.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
    files.into_iter().map(|(_, p)| p).collect()
}

/// Restoring a damaged snapshot fails with exit 4 and names the object, in every restore mode. A
/// single-transaction restore leaves the target empty. A parallel restore creates the schema while
/// the archive is still arriving, so a chunk found damaged late leaves it behind: with no row in any
/// table (the data is committed only once every chunk is proven) and the database marked incomplete.
async fn assert_restore_refuses_damage(ws: &Workspace, id: &str, object_hint: &str) {
    let target = cluster().await;
    let work = tempfile::tempdir().unwrap();
    let work_dir = work.path().to_string_lossy().to_string();
    let on_disk = ["--stage-on-disk", "--work-dir", work_dir.as_str()];
    for (db, jobs, staging) in [
        ("par", "2", &[][..]),
        ("par_disk", "2", &on_disk[..]),
        ("single", "1", &[][..]),
    ] {
        target.create_database(db).await.unwrap();
        let dsn = target.dsn(db);
        let mut args = vec!["-q", "restore", id, "--into-dsn", &dsn, "--jobs", jobs];
        args.extend_from_slice(staging);
        let o = ws.run(&args, &[]);
        assert_eq!(o.status.code(), Some(4), "jobs {jobs}: {}", all_output(&o));
        assert!(
            all_output(&o).contains(object_hint),
            "jobs {jobs} must name {object_hint}: {}",
            all_output(&o)
        );
        if jobs == "1" {
            assert_eq!(
                user_relations(&target, db).await,
                0,
                "jobs {jobs}: a damaged restore must leave nothing behind"
            );
        } else {
            assert_eq!(
                user_rows(&target, db).await,
                0,
                "{db}: no data of a damaged snapshot may be committed"
            );
            if user_relations(&target, db).await > 0 {
                let comment = target
                    .psql(db, "select shobj_description(oid, 'pg_database') from pg_database where datname = current_database()")
                    .await
                    .unwrap();
                assert!(
                    comment.contains("INCOMPLETE"),
                    "{db}: the schema left behind must be marked: {comment:?}"
                );
            }
        }
    }
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        0,
        "no staged archive is left behind"
    );
}

/// Quoted names, awkward text, an empty table, a partitioned table, a foreign key, a sequence, a
/// view and a comment: the parallel restore, which loads table data itself and builds each table's
/// own indexes as soon as its data is in, restores them all equal. A large
/// object, which it does not load itself, sends the restore the classic way, equal too.
#[tokio::test(flavor = "multi_thread")]
async fn unusual_schemas_and_large_objects_restore_equal_in_parallel() {
    let source = cluster().await;
    source.create_database("odd").await.unwrap();
    source
        .psql(
            "odd",
            r#"create schema "Odd Schema";
               create table "Odd Schema"."Mixed Case" (id serial primary key, t text, b bytea, j jsonb);
               insert into "Odd Schema"."Mixed Case" (t, b, j)
                 select E'tab\there\nnew line \\ backslash ' || g || ' é ü 漢', decode(md5(g::text), 'hex'),
                        jsonb_build_object('g', g, 'q', 'a "quote"')
                 from generate_series(1, 20000) g;
               create table empty_one (x int);
               create table child (id int primary key, odd_id int references "Odd Schema"."Mixed Case" (id));
               insert into child select g, g from generate_series(1, 3000) g;
               create table parted (id int, k int) partition by range (k);
               create table parted_low partition of parted for values from (0) to (100);
               create table parted_high partition of parted for values from (100) to (200);
               insert into parted select g, g % 200 from generate_series(1, 5000) g;
               create sequence counter; select setval('counter', 4242);
               create view odd_view as select count(*) from parted;
               comment on table empty_one is 'nothing here';"#,
        )
        .await
        .unwrap();
    let ws = Workspace::new();
    ws.write_simple_config(&source.dsn("odd"), "");
    assert!(ws.run(&["init"], &[]).status.success());
    let id = backup(&ws)["snapshot"].as_str().unwrap().to_string();

    let target = cluster().await;
    let restore = |db: &str, id: &str| {
        let o = ws.run(
            &[
                "-q",
                "--json",
                "restore",
                id,
                "--into-dsn",
                &target.dsn(db),
                "--jobs",
                "2",
            ],
            &[],
        );
        assert!(o.status.success(), "{}", all_output(&o));
        assert_eq!(json(&o)["report"]["fingerprint_match"], true);
    };
    target.create_database("odd_copy").await.unwrap();
    restore("odd_copy", &id);
    let want = engine(&source, "odd").content_checksums().await.unwrap();
    let got = engine(&target, "odd_copy").content_checksums().await.unwrap();
    assert_eq!(want.len(), 5, "{want:?}");
    assert_eq!(want, got, "every table's content must be equal");
    let extras = "select last_value::text || ' ' || (select * from odd_view) || ' ' || \
                  obj_description('empty_one'::regclass) || ' ' || \
                  (select count(*) from pg_constraint where contype = 'f') from counter";
    assert_eq!(
        target.psql("odd_copy", extras).await.unwrap().trim(),
        "4242 5000 nothing here 1"
    );

    source
        .psql("odd", "select lo_from_bytea(4242, 'a large object')")
        .await
        .unwrap();
    let id = backup(&ws)["snapshot"].as_str().unwrap().to_string();
    target.create_database("odd_lo").await.unwrap();
    restore("odd_lo", &id);
    assert_eq!(
        target
            .psql("odd_lo", "select convert_from(lo_get(4242), 'UTF8')")
            .await
            .unwrap()
            .trim(),
        "a large object"
    );
}

/// A parallel restore loads tables while later chunks are still arriving: damage in the stream's
/// last chunk is found after the schema exists and data is flowing. No row may be committed, the
/// target must say it is incomplete, and the error must name the chunk.
#[tokio::test(flavor = "multi_thread")]
async fn damage_in_the_last_chunk_rolls_back_all_data_of_a_parallel_restore() {
    let (_source, ws) = setup(1).await;
    let id = backup(&ws)["snapshot"].as_str().unwrap().to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.repo_dir().join(format!("snapshots/rental/{id}.json"))).unwrap())
            .unwrap();
    let chunks = manifest["manifest"]["stream"]["chunks"].as_array().unwrap();
    assert!(chunks.len() > 2, "the test needs a stream of several chunks");
    let last = chunks.last().unwrap()["id"].as_str().unwrap();
    let victim = ws.repo_dir().join(format!("chunks/{}/{last}", &last[..2]));
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();

    let target = cluster().await;
    target.create_database("late").await.unwrap();
    let dsn = target.dsn("late");
    let o = ws.run(&["-q", "restore", &id, "--into-dsn", &dsn, "--jobs", "2"], &[]);
    assert_eq!(o.status.code(), Some(4), "{}", all_output(&o));
    assert!(
        all_output(&o).contains(last),
        "the damaged chunk must be named: {}",
        all_output(&o)
    );
    assert_eq!(
        user_rows(&target, "late").await,
        0,
        "no data of a damaged snapshot may be committed"
    );
    // Chunks are fetched several at a time, so the last one's damage is usually found after the
    // schema was created, but on a loaded machine it can be found before the table of contents is
    // read: then the target is untouched, which is as good.
    if user_relations(&target, "late").await == 0 {
        return;
    }
    let comment = database_comment(&target, "late").await;
    assert!(comment.contains("INCOMPLETE"), "the target must be marked: {comment:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_stopped_by_ctrl_c_marks_its_target_and_leaves_nothing_running() {
    let (source, ws) = setup(4).await;
    let id = backup(&ws)["snapshot"].as_str().unwrap().to_string();
    source.create_database("stopped").await.unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("--config")
        .arg(ws.config_path())
        .args([
            "-q",
            "restore",
            &id,
            "--into-dsn",
            &source.dsn("stopped"),
            "--jobs",
            "2",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped once the schema is there: the target is touched, its data still loading.
    let deadline = Instant::now() + Duration::from_secs(60);
    while user_relations(&source, "stopped").await == 0 {
        assert!(Instant::now() < deadline, "the restore created no schema");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", all_output(&o));
    assert!(
        all_output(&o).contains("stopped by SIGINT") && all_output(&o).contains("marked INCOMPLETE"),
        "the error must say what stopped the restore and what it left: {}",
        all_output(&o)
    );
    let comment = database_comment(&source, "stopped").await;
    assert!(comment.contains("INCOMPLETE"), "the target must be marked: {comment:?}");
    // Neither `pg_restore` nor a loading connection outlives the restore (the check's own
    // connection is the one left).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let others = source
            .psql(
                "stopped",
                "select count(*) from pg_stat_activity where datname = 'stopped' and pid <> pg_backend_pid()",
            )
            .await
            .unwrap();
        if others.trim() == "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{others} sessions still at work on the stopped target"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_job_restore_that_pg_restore_refuses_says_why_and_leaves_the_target_empty() {
    let (source, ws) = setup(1).await;
    source
        .psql(
            "rental",
            "create role rental_owner; alter table customers owner to rental_owner;",
        )
        .await
        .unwrap();
    let id = backup(&ws)["snapshot"].as_str().unwrap().to_string();
    // Another cluster, without that role: pg_restore stops at the table's ALTER ... OWNER, early
    // in the stream, while lifeboat still has most of it to write.
    let target = cluster().await;
    target.create_database("roleless").await.unwrap();
    let dsn = target.dsn("roleless");
    let o = ws.run(&["-q", "restore", &id, "--into-dsn", &dsn, "--jobs", "1"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", all_output(&o));
    assert!(
        all_output(&o).contains("role \"rental_owner\" does not exist"),
        "the error must be pg_restore's own, not the broken pipe: {}",
        all_output(&o)
    );
    assert_eq!(
        user_relations(&target, "roleless").await,
        0,
        "one transaction, rolled back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_a_deleted_chunk_and_a_truncated_manifest_are_named() {
    let (_source, ws) = setup(1).await;
    let id = backup(&ws)["snapshot"].as_str().unwrap().to_string();
    let o = ws.run(&["verify", "--all", "--read-data"], &[]);
    assert!(o.status.success(), "fresh repository must verify: {}", all_output(&o));

    // One flipped byte in one chunk.
    let victim = chunk_files(&ws)[0].clone();
    let name = victim.file_name().unwrap().to_string_lossy().to_string();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();
    let o = ws.run(&["verify", &id, "--read-data"], &[]);
    assert_eq!(o.status.code(), Some(4), "{}", all_output(&o));
    assert!(
        all_output(&o).contains(&name),
        "verify must name the corrupt object: {}",
        all_output(&o)
    );
    assert_restore_refuses_damage(&ws, &id, &name).await;
    bytes[mid] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();

    // A deleted chunk.
    std::fs::remove_file(&victim).unwrap();
    let o = ws.run(&["verify", "--all"], &[]);
    assert_eq!(o.status.code(), Some(4), "{}", all_output(&o));
    assert!(all_output(&o).contains(&name), "{}", all_output(&o));
    assert_restore_refuses_damage(&ws, &id, &name).await;
    std::fs::write(&victim, &bytes).unwrap();

    // A truncated manifest.
    let manifest = ws.repo_dir().join(format!("snapshots/rental/{id}.json"));
    let text = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    let o = ws.run(&["verify", "--all"], &[]);
    assert_eq!(o.status.code(), Some(4), "{}", all_output(&o));
    assert!(all_output(&o).contains(&format!("{id}.json")), "{}", all_output(&o));
    assert_restore_refuses_damage(&ws, &id, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_killed_midway_leaves_no_snapshot_and_the_next_one_works() {
    let (_source, ws) = setup(4).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("--config")
        .arg(ws.config_path())
        .args(["-q", "backup", "rental", "--uploads", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as the first chunk is durable: mid-stream, before any manifest.
    let deadline = Instant::now() + Duration::from_secs(60);
    while chunk_files(&ws).is_empty() {
        assert!(Instant::now() < deadline, "no chunk appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the backup must have been killed, not finished");
    assert!(
        !ws.repo_listing().iter().any(|p| p.starts_with("snapshots/")),
        "a killed backup must not commit a manifest"
    );

    let listed = json(&ws.run(&["--json", "snapshots", "--from-repository"], &[]));
    assert_eq!(listed.as_array().unwrap().len(), 0);
    let o = ws.run(&["verify", "--all", "--read-data"], &[]);
    assert!(o.status.success(), "orphan chunks are not damage: {}", all_output(&o));
    let next = backup(&ws);
    assert!(next["snapshot"].is_string());
    let o = ws.run(&["verify", "--all", "--read-data"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
}

/// One file-system call of a traced backup, in the order the tracer saw it: `start` and `end` are
/// line numbers of the trace, equal unless another thread's calls came in between.
#[derive(Debug)]
struct Traced {
    call: String,
    args: String,
    start: usize,
    end: usize,
    ok: bool,
}

/// Reads `strace -f -y` output: joins each `<unfinished ...>` call with its `<... resumed>` end.
fn traced_calls(trace: &str) -> Vec<Traced> {
    let mut open: std::collections::HashMap<String, (String, String, usize)> = Default::default();
    let mut calls = Vec::new();
    for (line_no, line) in trace.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(resumed) = rest.strip_prefix("<... ") {
            if let Some((call, args, start)) = open.remove(pid) {
                let (more, ret) = resumed.rsplit_once(" = ").unwrap_or((resumed, "?"));
                let more = more.split_once("resumed>").map_or("", |(_, m)| m);
                calls.push(Traced {
                    call,
                    args: format!("{args}{more}"),
                    start,
                    end: line_no,
                    ok: ret.trim() == "0",
                });
            }
            continue;
        }
        let Some((call, args)) = rest.split_once('(') else {
            continue;
        };
        if let Some(args) = args.strip_suffix(" <unfinished ...>") {
            open.insert(pid.to_string(), (call.to_string(), args.to_string(), line_no));
        } else if let Some((args, ret)) = args.rsplit_once(" = ") {
            calls.push(Traced {
                call: call.to_string(),
                args: args.to_string(),
                start: line_no,
                end: line_no,
                ok: ret.trim() == "0",
            });
        }
    }
    calls
}

/// The quoted paths of a traced call's arguments, and the path of a descriptor shown by `-y`.
fn traced_paths(args: &str) -> Vec<String> {
    let mut paths: Vec<String> = args.split('"').skip(1).step_by(2).map(str::to_string).collect();
    if let Some((_, fd_path)) = args.split_once('<') {
        paths.push(fd_path.split('>').next().unwrap_or("").to_string());
    }
    paths
}

/// The commit rule of the repository format, on a file repository, checked on the system calls a
/// real backup makes: every chunk's bytes are flushed before the chunk gets its name, its directory
/// entry is flushed before the manifest is published, and the manifest itself is flushed too. A
/// power cut at any moment then leaves either no snapshot or a whole one; `kill -9` alone cannot
/// show this, because the page cache outlives the process.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_repository_publishes_the_manifest_only_after_every_chunk_is_on_disk() {
    let (_source, ws) = setup(1).await;
    let trace_file = ws.path().join("backup.strace");
    let o = std::process::Command::new("strace")
        .args(["-f", "-qq", "-y", "-o"])
        .arg(&trace_file)
        .args(["-e", "trace=fsync,fdatasync,link,linkat,rename,renameat,renameat2"])
        .arg(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("--config")
        .arg(ws.config_path())
        .args(["-q", "backup", "rental"])
        .env_remove("LIFEBOAT_CONFIG")
        .output()
        .expect("strace is needed for this test (scripts/test installs it)");
    assert!(o.status.success(), "traced backup: {}", all_output(&o));
    let calls = traced_calls(&std::fs::read_to_string(&trace_file).unwrap());
    let repo = ws.repo_dir().canonicalize().unwrap().display().to_string();

    // Publications: a staged file linked or renamed to its final name inside the repository.
    let published: Vec<(&Traced, String, String)> = calls
        .iter()
        .filter(|c| c.ok && (c.call.contains("link") || c.call.contains("rename")))
        .filter_map(|c| {
            let p = traced_paths(&c.args);
            (p.len() >= 2 && p[1].starts_with(&repo)).then(|| (c, p[0].clone(), p[1].clone()))
        })
        .collect();
    // Whether `path` was flushed by a call that started and ended within `lines` of the trace.
    let synced_within = |path: &str, lines: std::ops::Range<usize>| {
        calls.iter().any(|c| {
            c.ok && c.call.contains("sync")
                && lines.contains(&c.start)
                && lines.contains(&c.end)
                && traced_paths(&c.args).iter().any(|p| p == path)
        })
    };
    let parent = |p: &str| std::path::Path::new(p).parent().unwrap().display().to_string();

    let manifests: Vec<_> = published
        .iter()
        .filter(|(_, _, to)| to.contains("/snapshots/"))
        .collect();
    assert_eq!(manifests.len(), 1, "one manifest published: {published:#?}");
    let (manifest, manifest_staged, manifest_path) = manifests[0];
    let chunks: Vec<_> = published.iter().filter(|(_, _, to)| to.contains("/chunks/")).collect();
    let on_disk = ws.repo_listing().iter().filter(|p| p.starts_with("chunks/")).count();
    assert!(on_disk > 1, "the rental data makes several chunks");
    assert_eq!(
        chunks.len(),
        on_disk,
        "every chunk file was published through a traced call"
    );
    for (call, staged, to) in &chunks {
        assert!(
            synced_within(staged, 0..call.start),
            "{to}: its bytes were not flushed before it got its name"
        );
        assert!(
            synced_within(&parent(to), call.end + 1..manifest.start),
            "{to}: its directory entry was not flushed before the manifest was published"
        );
    }
    assert!(
        synced_within(manifest_staged, 0..manifest.start),
        "the manifest's bytes were not flushed"
    );
    assert!(
        synced_within(&parent(manifest_path), manifest.end + 1..usize::MAX),
        "the manifest's directory entry was never flushed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_catalog_is_rebuilt_from_the_repository_alone() {
    let (_source, ws) = setup(1).await;
    let a = backup(&ws)["snapshot"].as_str().unwrap().to_string();
    let b = backup(&ws)["snapshot"].as_str().unwrap().to_string();
    std::fs::remove_dir_all(ws.path().join("state")).unwrap();
    let empty = json(&ws.run(&["--json", "snapshots"], &[]));
    assert_eq!(empty.as_array().unwrap().len(), 0, "the catalog was deleted");
    let o = ws.run(&["catalog", "rebuild"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    let listed = json(&ws.run(&["--json", "snapshots"], &[]));
    let mut ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(listed[0]["tables"], 4);
    assert_eq!(listed[0]["rows"], 100_200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_repository_is_written_with_public_keys_and_read_with_the_identity() {
    let source = cluster().await;
    source.create_database("rental").await.unwrap();
    load_rental(&source, "rental", 1).await;
    let identity = age::x25519::Identity::generate();
    let ws = Workspace::new();
    let key_file = ws.path().join("offsite.agekey");
    {
        use secrecy::ExposeSecret;
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&key_file, format!("{}\n", identity.to_string().expose_secret())).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = |with_identity: bool| {
        let identity_line = if with_identity {
            format!("      identity_file: {}\n", key_file.display())
        } else {
            String::new()
        };
        format!(
            "state_dir: {state}\nrepositories:\n  local:\n    url: file://{repo}\n    encryption:\n      recipients: [\"{recipient}\"]\n{identity_line}sources:\n  rental:\n    kind: postgres\n    dsn: \"{dsn}\"\n    environment: staging\n    repository: local\n",
            state = ws.path().join("state").display(),
            repo = ws.repo_dir().display(),
            recipient = identity.to_public(),
            dsn = source.dsn("rental"),
        )
    };
    // The backup host knows only the public recipient (and the address key `init` saved).
    ws.write_config(&config(false));
    let o = ws.run(&["--json", "init"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    let id = backup(&ws)["snapshot"].as_str().unwrap().to_string();
    for chunk in chunk_files(&ws) {
        let bytes = std::fs::read(&chunk).unwrap();
        assert!(
            bytes[5..].starts_with(b"age-encryption.org/v1"),
            "{} is not an age file",
            chunk.display()
        );
    }

    // A host whose config lost the repository's `encryption:` has the address key `init` saved
    // (so it names chunks as the repository does) but no recipient to encrypt to: it must not
    // write them in the clear.
    let plain = config(false).replace(
        &format!("    encryption:\n      recipients: [\"{}\"]\n", identity.to_public()),
        "",
    );
    assert!(!plain.contains("encryption"), "{plain}");
    ws.write_config(&plain);
    // Every file under chunks/, staging files too.
    let chunks_listed = || {
        ws.repo_listing()
            .into_iter()
            .filter(|p| p.starts_with("chunks/"))
            .collect::<Vec<_>>()
    };
    let before = chunks_listed();
    let o = ws.run(&["-q", "backup", "rental"], &[]);
    assert!(!o.status.success(), "{}", all_output(&o));
    assert!(
        all_output(&o).contains("names no recipients") && all_output(&o).contains(&identity.to_public().to_string()),
        "the refusal must say what is missing and which recipients: {}",
        all_output(&o)
    );
    assert_eq!(chunks_listed(), before, "nothing written");
    ws.write_config(&config(false));

    let target = cluster().await;
    target.create_database("restored").await.unwrap();
    let o = ws.run(&["-q", "restore", &id, "--into-dsn", &target.dsn("restored")], &[]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "restore without the identity must say so: {}",
        all_output(&o)
    );
    assert!(all_output(&o).contains("identity"), "{}", all_output(&o));

    // The restore side has the identity.
    ws.write_config(&config(true));
    let o = ws.run(&["verify", "--all", "--read-data"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    let o = ws.run(&["-q", "restore", &id, "--into-dsn", &target.dsn("restored")], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    let want = engine(&source, "rental").content_checksums().await.unwrap();
    assert_eq!(want, engine(&target, "restored").content_checksums().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_and_restore_through_an_s3_repository() {
    let source = cluster().await;
    source.create_database("rental").await.unwrap();
    load_rental(&source, "rental", 1).await;
    let bucket = support::unique_name("lbe2e");
    support::create_bucket(&bucket).await;
    let ws = Workspace::new();
    ws.write_config(&format!(
        "state_dir: {state}\nrepositories:\n  offsite:\n    url: s3://{bucket}/lifeboat\n    endpoint: {endpoint}\n    access_key_id_env: LB_S3_KEY\n    secret_access_key_env: LB_S3_SECRET\nsources:\n  rental:\n    kind: postgres\n    dsn: \"{dsn}\"\n    environment: staging\n    repository: offsite\n",
        state = ws.path().join("state").display(),
        endpoint = support::s3_endpoint(),
        dsn = source.dsn("rental"),
    ));
    let env = [("LB_S3_KEY", "testing"), ("LB_S3_SECRET", "testing-secret-value")];
    let o = ws.run(&["init"], &env);
    assert!(o.status.success(), "{}", all_output(&o));
    let o = ws.run(&["--json", "-q", "backup", "rental"], &env);
    let id = json(&o)["snapshot"].as_str().unwrap().to_string();
    assert!(!all_output(&o).contains("testing-secret-value"));
    let o = ws.run(&["verify", "--all", "--read-data"], &env);
    assert!(o.status.success(), "{}", all_output(&o));

    let target = cluster().await;
    target.create_database("restored").await.unwrap();
    let o = ws.run(&["-q", "restore", &id, "--into-dsn", &target.dsn("restored")], &env);
    assert!(o.status.success(), "{}", all_output(&o));
    let want = engine(&source, "rental").content_checksums().await.unwrap();
    assert_eq!(want, engine(&target, "restored").content_checksums().await.unwrap());
}
