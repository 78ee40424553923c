//! Ephemeral PostgreSQL clusters against the machine's real server binaries.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lifeboat::scratch::{EphemeralOptions, EphemeralPostgres, MARKER_FILE, ScratchError, reap_orphans};
use sqlx::Connection;

async fn start_default() -> EphemeralPostgres {
    EphemeralPostgres::start(&EphemeralOptions::default())
        .await
        .expect("start scratch cluster")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A private parent directory that the `postgres` OS user can search whatever the umask.
fn private_parent() -> tempfile::TempDir {
    let parent = tempfile::Builder::new()
        .prefix("lifeboat-scratch-test-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    parent
}

fn postmaster_pid(data_dir: &Path) -> i32 {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// Alive and not a zombie (the daemonised postmaster is reaped by init, not by us).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn creates_database_and_round_trips_rows() {
    let pg = start_default().await;
    pg.create_database("drill db").await.unwrap();
    let out = pg
        .psql(
            "drill db",
            "CREATE TABLE bookings (id int PRIMARY KEY, who text);\n\
             INSERT INTO bookings VALUES (1, 'ada'), (2, 'grace');\n\
             SELECT id, who FROM bookings ORDER BY id;",
        )
        .await
        .unwrap();
    assert_eq!(out, "1|ada\n2|grace");

    // The same DSN must work for sqlx, not only for libpq tools.
    let mut conn = sqlx::PgConnection::connect(&pg.dsn("drill db"))
        .await
        .unwrap_or_else(|e| panic!("sqlx rejected {}: {e}", pg.dsn("drill db")));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 2);
    conn.close().await.unwrap();

    // And for the libpq tools that back up and restore.
    let dump = std::process::Command::new(pg.bin_dir().join("pg_dump"))
        .args(["--schema-only", "-d", &pg.dsn("drill db")])
        .output()
        .unwrap();
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    assert!(String::from_utf8_lossy(&dump.stdout).contains("CREATE TABLE public.bookings"));

    pg.stop().await.unwrap();
}

#[tokio::test]
async fn listens_only_on_its_unix_socket() {
    let pg = start_default().await;
    assert_eq!(pg.psql("postgres", "SHOW listen_addresses").await.unwrap(), "");
    let socket_dirs = pg.psql("postgres", "SHOW unix_socket_directories").await.unwrap();
    assert_eq!(Path::new(&socket_dirs), pg.socket_dir());
    // Trust authentication: only the owner (and root) may reach the socket.
    assert_eq!(mode(pg.socket_dir()), 0o700);
    assert!(pg.socket_dir().join(format!(".s.PGSQL.{}", pg.port())).exists());
    // Connected through a socket, the server has no inet address.
    let addr = pg.psql("postgres", "SELECT inet_server_addr() IS NULL").await.unwrap();
    assert_eq!(addr, "t");
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn two_clusters_run_side_by_side() {
    let (a, b) = tokio::join!(start_default(), start_default());
    assert_ne!(a.socket_dir(), b.socket_dir());
    assert_ne!(a.port(), b.port());
    a.psql("postgres", "CREATE TABLE only_in_a (x int)").await.unwrap();
    let probe = "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'";
    assert_eq!(a.psql("postgres", probe).await.unwrap(), "1");
    assert_eq!(b.psql("postgres", probe).await.unwrap(), "0");
    let (ra, rb) = tokio::join!(a.stop(), b.stop());
    ra.unwrap();
    rb.unwrap();
}

#[tokio::test]
async fn stop_removes_the_directory_and_the_server() {
    let pg = start_default().await;
    let dir = pg.socket_dir().to_path_buf();
    let pid = postmaster_pid(pg.data_dir());
    assert!(dir.join(MARKER_FILE).is_file());
    assert!(running(pid));
    pg.stop().await.unwrap();
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(!running(pid), "postmaster {pid} still runs");
}

#[tokio::test]
async fn drop_while_panicking_cleans_up() {
    let (tx, rx) = std::sync::mpsc::channel::<(PathBuf, i32)>();
    let task = tokio::spawn(async move {
        let pg = start_default().await;
        tx.send((pg.socket_dir().to_path_buf(), postmaster_pid(pg.data_dir())))
            .unwrap();
        panic!("test panics while holding a scratch cluster");
    });
    let err = task.await.unwrap_err();
    assert!(err.is_panic());
    let (dir, pid) = rx.recv().unwrap();
    assert!(!dir.exists(), "{} survived the panic", dir.display());
    assert!(!running(pid), "postmaster {pid} survived the panic");
}

#[tokio::test]
async fn reaps_clusters_whose_creator_is_dead() {
    let parent = private_parent();
    let opts = EphemeralOptions {
        parent_dir: Some(parent.path().to_path_buf()),
        ..Default::default()
    };
    let orphan = EphemeralPostgres::start(&opts).await.unwrap();
    let live = EphemeralPostgres::start(&opts).await.unwrap();
    let orphan_dir = orphan.socket_dir().to_path_buf();
    let orphan_pid = postmaster_pid(orphan.data_dir());

    // Pretend the orphan's creator died: point its marker at a process that has exited.
    let dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();
    let marker_path = orphan_dir.join(MARKER_FILE);
    let mut marker: serde_json::Value = serde_json::from_slice(&std::fs::read(&marker_path).unwrap()).unwrap();
    marker["pid"] = dead_pid.into();
    std::fs::write(&marker_path, serde_json::to_vec(&marker).unwrap()).unwrap();

    let reaped = reap_orphans(parent.path()).unwrap();
    assert_eq!(reaped, vec![orphan_dir.clone()]);
    assert!(!orphan_dir.exists());
    assert!(!running(orphan_pid), "orphan postmaster {orphan_pid} still runs");

    // The live cluster is untouched and still answers.
    assert_eq!(live.psql("postgres", "SELECT 1").await.unwrap(), "1");
    assert!(reap_orphans(parent.path()).unwrap().is_empty());
    drop(orphan); // its directory is already gone: dropping must not fail
    live.stop().await.unwrap();
}

#[tokio::test]
async fn sql_errors_say_what_failed() {
    let pg = start_default().await;
    let err = pg.psql("postgres", "SELECT * FROM no_such_table").await.unwrap_err();
    assert!(matches!(err, ScratchError::Psql { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("no_such_table"), "{text}");
    assert!(text.contains("fix:"), "{text}");
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn missing_binaries_are_reported_with_a_fix() {
    let empty = tempfile::tempdir().unwrap();
    let opts = EphemeralOptions {
        bin_dir: Some(empty.path().to_path_buf()),
        ..Default::default()
    };
    let err = EphemeralPostgres::start(&opts).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("initdb not found"), "{text}");
    assert!(text.contains("fix:"), "{text}");
}

#[tokio::test]
async fn unreachable_parent_is_refused_up_front_when_root() {
    if !nix::unistd::Uid::effective().is_root() {
        return; // without root there is no user switch, so nothing to check
    }
    // 0700 and root's: the postgres user cannot enter.
    let parent = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap();
    let opts = EphemeralOptions {
        parent_dir: Some(parent.path().to_path_buf()),
        ..Default::default()
    };
    let err = EphemeralPostgres::start(&opts).await.unwrap_err();
    assert!(matches!(err, ScratchError::NotSearchable { .. }), "{err}");
    // The half-made directory is removed again.
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
}
