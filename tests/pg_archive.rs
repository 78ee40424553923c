//! Filling in data positions of a piped `pg_dump -Fc` archive (engine::postgres::archive), checked
//! against the positions `pg_dump` itself records when it writes to a file, and against
//! `pg_restore`, which seeks to each position and refuses a block that is not the entry's.

mod support;

use std::path::Path;
use std::process::Stdio;

use lifeboat::engine::postgres::archive::{LayoutError, data_offsets, fill_data_offsets};
use support::cli::{cluster, load_rental};

async fn pg_dump(c: &lifeboat::scratch::EphemeralPostgres, db: &str, out: &Path, through_pipe: bool) {
    let mut cmd = std::process::Command::new(c.bin_dir().join("pg_dump"));
    cmd.args(["-Fc", "-Z0", "-d", &c.dsn(db)]);
    if through_pipe {
        // Into a pipe, as lifeboat runs it: pg_dump cannot go back to record positions.
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("run pg_dump");
        let mut stdout = child.stdout.take().unwrap();
        let mut file = std::fs::File::create(out).unwrap();
        std::io::copy(&mut stdout, &mut file).unwrap();
        assert!(child.wait().unwrap().success());
    } else {
        assert!(cmd.arg("-f").arg(out).status().expect("run pg_dump").success());
    }
}

fn pg_restore_script(c: &lifeboat::scratch::EphemeralPostgres, archive: &Path) -> String {
    let out = std::process::Command::new(c.bin_dir().join("pg_restore"))
        .args(["-f", "-"])
        .arg(archive)
        .output()
        .expect("run pg_restore");
    assert!(
        out.status.success(),
        "pg_restore {}: {}",
        archive.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the `\restrict` lines: their key is new on every run.
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Equal scripts, or the first line where they differ (they are megabytes long).
fn assert_same_script(got: &str, want: &str, what: &str) {
    if let Some((i, (g, w))) = got.lines().zip(want.lines()).enumerate().find(|(_, (g, w))| g != w) {
        panic!("{what}: line {} differs:\n  got  {:.200}\n  want {:.200}", i + 1, g, w);
    }
    assert_eq!(got.len(), want.len(), "{what}: one script is longer");
}

#[tokio::test]
async fn positions_filled_in_match_pg_dumps_own_and_pg_restore_reads_them() {
    let c = cluster().await;
    c.create_database("arch").await.unwrap();
    load_rental(&c, "arch", 1).await;
    // Pieces larger than the walker's read buffer, an empty table, and a large object (its own
    // block type).
    c.psql(
        "arch",
        "create table wide (id int, body text); \
         alter table wide alter column body set storage external; \
         insert into wide select g, repeat(md5(g::text), 70000) from generate_series(1, 3) g; \
         create table nothing (id int); \
         select lo_from_bytea(0, convert_to(repeat('large object ', 50000), 'UTF8'));",
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let piped = dir.path().join("piped.dump");
    let direct = dir.path().join("direct.dump");
    pg_dump(&c, "arch", &piped, true).await;
    pg_dump(&c, "arch", &direct, false).await;

    // The walk finds exactly where pg_dump said each block is when it could say so.
    let own = data_offsets(&direct).unwrap();
    assert!(own.len() >= 7, "tables, sequences' data and the large objects: {own:?}");
    for e in &own {
        assert!(
            e.recorded.is_some(),
            "{e:?}: pg_dump writing to a file records its position"
        );
        assert_eq!(e.recorded, e.found, "{e:?}");
    }

    // A piped archive records none; filling them in writes every one.
    let before = data_offsets(&piped).unwrap();
    assert_eq!(before.len(), own.len());
    assert!(
        before.iter().all(|e| e.recorded.is_none() && e.found.is_some()),
        "{before:?}"
    );
    let script_before = pg_restore_script(&c, &piped);
    let filled = fill_data_offsets(&piped).unwrap();
    assert_eq!(filled.entries, own.len());
    let after = data_offsets(&piped).unwrap();
    assert!(
        after.iter().all(|e| e.recorded.is_some() && e.recorded == e.found),
        "{after:?}"
    );

    // pg_restore seeks to each position and checks the block's id there: the same script comes out.
    assert_same_script(
        &pg_restore_script(&c, &piped),
        &script_before,
        "piped archive, filled in",
    );
    assert_same_script(
        &pg_restore_script(&c, &direct),
        &script_before,
        "archive pg_dump wrote to a file",
    );
}

#[tokio::test]
async fn a_truncated_archive_is_left_untouched() {
    let c = cluster().await;
    c.create_database("cut").await.unwrap();
    load_rental(&c, "cut", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let piped = dir.path().join("piped.dump");
    pg_dump(&c, "cut", &piped, true).await;
    let bytes = std::fs::read(&piped).unwrap();
    let cut = &bytes[..bytes.len() - 1000];
    std::fs::write(&piped, cut).unwrap();

    let err = fill_data_offsets(&piped).unwrap_err();
    assert!(matches!(err, LayoutError::Truncated(_)), "{err}");
    assert_eq!(std::fs::read(&piped).unwrap(), cut, "nothing written");

    std::fs::write(&piped, b"not an archive at all").unwrap();
    assert!(matches!(
        fill_data_offsets(&piped).unwrap_err(),
        LayoutError::Truncated(_) | LayoutError::Unrecognised(_)
    ));
}
