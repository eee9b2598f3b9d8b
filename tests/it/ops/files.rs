//! `thumbnails files audit|repair` against the real PostgreSQL and a
//! temporary storage root.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sea_orm::sqlx;
use thumbnails::files::{FileStore, RelPath};
use thumbnails::ops::files::{files, FilesOptions, FilesSummary};
use thumbnails::store::committer::{commit_all, Upload};
use thumbnails::surveys::ThumbnailType::{self, New, Ref, Sub};
use tokio_util::sync::CancellationToken;

use super::{obj, pool};
use crate::helpers::TestDb;

fn options(repair: bool, dry_run: bool, delete_orphans: bool, grace: Duration) -> FilesOptions {
    FilesOptions {
        repair,
        dry_run,
        delete_orphans,
        grace,
        batch_size: 2, // several pages
        progress: false,
        stop: CancellationToken::new(),
    }
}

fn write(path: &Path, age: Duration) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, b"png").expect("write");
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    f.set_modified(SystemTime::now() - age).expect("mtime");
}

async fn row(
    db: &TestDb,
    obj_id: &str,
    ttype: ThumbnailType,
    survey: Option<&str>,
    file: &Path,
) -> i32 {
    sqlx::query_scalar(
        "INSERT INTO thumbnails (created_at, modified, type, file_uri, public_url, origin, survey, obj_id)
         VALUES (now(), now(), $1::thumbnail_types, $2, '/static/old', 'upload', $3, $4) RETURNING id",
    )
    .bind(ttype.as_str())
    .bind(file.to_string_lossy().as_ref())
    .bind(survey)
    .bind(obj_id)
    .fetch_one(pool(db))
    .await
    .expect("insert row")
}

async fn uri_and_url(db: &TestDb, id: i32) -> (String, String) {
    sqlx::query_as("SELECT file_uri, public_url FROM thumbnails WHERE id = $1")
        .bind(id)
        .fetch_one(pool(db))
        .await
        .expect("row")
}

const OLD: Duration = Duration::from_secs(7200);

#[tokio::test]
async fn audit_counts_and_repair_moves_to_the_current_depth() {
    let db = TestDb::new().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FileStore::new(tmp.path(), 2);
    let root = store.root().to_path_buf();
    let at =
        |id: &str, t, s: Option<&str>, depth| RelPath::stamp(id, t, s, depth).path_under(&root);
    for id in ["A", "B", "C", "D", "X"] {
        obj(&db, id, Some(1.0), Some(2.0), false).await;
    }
    // A: written at depth 1 (an older storage.depth); B: in place; C: lost;
    // D: moved by a repair that stopped before its row was updated.
    let a_old = at("A", New, None, 1);
    write(&a_old, OLD);
    let a = row(&db, "A", New, None, &a_old).await;
    let b_path = at("B", Ref, Some("ZTF"), 2);
    write(&b_path, OLD);
    let b = row(&db, "B", Ref, Some("ZTF"), &b_path).await;
    let c = row(&db, "C", Sub, None, &at("C", Sub, None, 1)).await;
    write(&at("D", New, None, 2), OLD);
    let d = row(&db, "D", New, None, &at("D", New, None, 1)).await;
    let x = row(&db, "X", New, None, Path::new("/etc/hostname")).await;
    // Files without a row: old, recent; and files that are not ours.
    let orphan_old = at("GONE", New, Some("LSST"), 2);
    write(&orphan_old, OLD);
    let orphan_new = at("FRESH", New, None, 2);
    write(&orphan_new, Duration::ZERO);
    let foreign = root.join("thumbnails/notes.txt");
    write(&foreign, OLD);
    let in_flight = at("A", New, None, 2).with_file_name(".upload-1.tmp");
    write(&in_flight, OLD);

    let before_files = files_under(tmp.path());
    let before_rows = super::snapshot(&db).await;
    let expected_audit = FilesSummary {
        rows: 5,
        in_place: 1,
        misplaced: 1,
        repointed: 1,
        missing: 1,
        foreign_rows: 1,
        files_at_depth: 4,  // B, D, GONE, FRESH
        files_off_depth: 1, // A
        in_flight: 1,
        foreign_files: 1,
        orphans: 3, // D's file (its row names depth 1), GONE, FRESH
        ..FilesSummary::default()
    };
    let audit = files(&db.db, &store, &options(false, true, false, OLD / 2))
        .await
        .expect("audit");
    assert_eq!(audit, expected_audit);
    let dry = files(&db.db, &store, &options(true, true, true, OLD / 2))
        .await
        .expect("dry run");
    assert_eq!(
        dry,
        FilesSummary {
            orphans_removed: 2,
            orphans_recent: 1,
            ..expected_audit.clone()
        }
    );
    assert_eq!(
        files_under(tmp.path()),
        before_files,
        "audit and dry run change no file"
    );
    assert_eq!(super::snapshot(&db).await, before_rows, "nor any row");

    let repair = files(&db.db, &store, &options(true, false, true, OLD / 2))
        .await
        .expect("repair");
    assert_eq!(repair.misplaced, 1);
    assert_eq!(repair.repointed, 1);
    assert_eq!(repair.missing, 1, "a missing file does not stop the run");
    // D's file is named by its row again once repointed: not an orphan.
    assert_eq!(
        (
            repair.orphans,
            repair.orphans_removed,
            repair.orphans_recent
        ),
        (2, 1, 1)
    );
    assert_eq!(repair.failed, 0);
    let a_new = at("A", New, None, 2);
    assert!(a_new.is_file() && !a_old.exists());
    assert_eq!(
        uri_and_url(&db, a).await,
        (
            a_new.to_string_lossy().into_owned(),
            RelPath::new("A", New, 2).public_url()
        )
    );
    assert_eq!(
        uri_and_url(&db, d).await.0,
        at("D", New, None, 2).to_string_lossy()
    );
    assert_eq!(uri_and_url(&db, b).await.0, b_path.to_string_lossy());
    assert_eq!(
        uri_and_url(&db, c).await.0,
        at("C", Sub, None, 1).to_string_lossy()
    );
    assert_eq!(uri_and_url(&db, x).await.0, "/etc/hostname");
    assert!(!orphan_old.exists());
    for kept in [&orphan_new, &foreign, &in_flight, &b_path] {
        assert!(kept.exists(), "{}", kept.display());
    }
    // Run again: nothing left to do.
    let again = files(&db.db, &store, &options(true, false, true, OLD / 2))
        .await
        .expect("second repair");
    assert_eq!(
        (again.misplaced, again.repointed, again.orphans_removed),
        (0, 0, 0)
    );
    assert_eq!(again.in_place, 3);
}

#[tokio::test]
async fn files_of_a_deleted_objects_rows_are_swept() {
    let db = TestDb::new().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FileStore::new(tmp.path(), 2);
    obj(&db, "KEEP", Some(1.0), Some(2.0), false).await;
    obj(&db, "DROPPED", Some(1.0), Some(2.0), false).await;
    let mut uploads = Vec::new();
    for (id, survey) in [("KEEP", None), ("DROPPED", Some("ZTF")), ("DROPPED", None)] {
        let rel = RelPath::stamp(id, New, survey, store.depth());
        uploads.push(Upload {
            obj_id: id.into(),
            ttype: New,
            public_url: rel.public_url(),
            survey: survey.map(str::to_string),
            is_grayscale: false,
            staged: store.stage(&rel, b"png".to_vec()).await.expect("stage"),
            fits: None,
        });
    }
    for r in commit_all(&db.db, uploads).await {
        r.expect("committed");
    }
    assert_eq!(files_under(tmp.path()).len(), 3);
    // The object goes; its rows cascade; their files stay behind.
    sqlx::query("DELETE FROM objs WHERE id = 'DROPPED'")
        .execute(pool(&db))
        .await
        .expect("delete obj");
    // Within the grace period nothing is removed (an upload may be in flight).
    let early = files(&db.db, &store, &options(true, false, true, OLD))
        .await
        .expect("early sweep");
    assert_eq!(
        (early.orphans, early.orphans_removed, early.orphans_recent),
        (2, 0, 2)
    );
    assert_eq!(files_under(tmp.path()).len(), 3);
    let swept = files(&db.db, &store, &options(true, false, true, Duration::ZERO))
        .await
        .expect("sweep");
    assert_eq!((swept.orphans, swept.orphans_removed), (2, 2));
    let left: Vec<PathBuf> = files_under(tmp.path());
    assert_eq!(
        left,
        vec![RelPath::new("KEEP", New, 2).path_under(store.root())]
    );
}

#[tokio::test]
async fn a_hand_moved_file_is_put_back_not_deleted_as_an_orphan() {
    let db = TestDb::new().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FileStore::new(tmp.path(), 2);
    obj(&db, "ZTF-moved", Some(1.0), Some(2.0), false).await;
    // A stamp and an archival-type upload, stored where the layout puts them.
    let mut ids = Vec::new();
    for (ttype, survey) in [(New, Some("ZTF")), (ThumbnailType::Sdss, None)] {
        let at = RelPath::stamp("ZTF-moved", ttype, survey, 2).path_under(store.root());
        write(&at, OLD);
        ids.push(row(&db, "ZTF-moved", ttype, survey, &at).await);
    }
    // An operator moves both by hand: one to another folder, one to the
    // depth of an older layout (a restore from a backup).
    let uploads = store.uploads_dir();
    let moved_by_hand = [
        uploads.join("lost+found").join("ZTF-moved_new_ZTF.png"),
        RelPath::stamp("ZTF-moved", ThumbnailType::Sdss, None, 1).path_under(store.root()),
    ];
    for (id, to) in ids.iter().zip(&moved_by_hand) {
        let (from, _) = uri_and_url(&db, *id).await;
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::rename(&from, to).expect("move by hand");
    }
    let audit = files(&db.db, &store, &options(false, false, false, OLD))
        .await
        .expect("audit");
    assert_eq!((audit.misplaced, audit.missing, audit.orphans), (2, 0, 0));

    let repaired = files(&db.db, &store, &options(true, false, true, Duration::ZERO))
        .await
        .expect("repair --delete-orphans");
    assert_eq!(
        (
            repaired.misplaced,
            repaired.missing,
            repaired.orphans,
            repaired.orphans_removed
        ),
        (2, 0, 0, 0),
        "{repaired:?}"
    );
    for (id, (ttype, survey)) in ids
        .iter()
        .zip([(New, Some("ZTF")), (ThumbnailType::Sdss, None)])
    {
        let rel = RelPath::stamp("ZTF-moved", ttype, survey, 2);
        let (uri, url) = uri_and_url(&db, *id).await;
        assert_eq!(uri, rel.path_under(store.root()).to_string_lossy());
        assert_eq!(url, rel.public_url());
        assert_eq!(std::fs::read(&uri).expect("the file is back"), b"png");
    }
    // A file no row can claim is still an orphan, and goes.
    let stray = uploads.join("aa").join("ZTF-nobody_new_ZTF.png");
    write(&stray, OLD);
    let swept = files(&db.db, &store, &options(true, false, true, Duration::ZERO))
        .await
        .expect("sweep");
    assert_eq!(
        (swept.orphans, swept.orphans_removed, swept.in_place),
        (1, 1, 2)
    );
    assert!(!stray.exists());
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn the_binary_audits_repairs_and_refuses_bad_arguments() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("data");
    let store = FileStore::new(&storage, 2);
    obj(&db, "A", Some(1.0), Some(2.0), false).await;
    let old = RelPath::new("A", New, 1).path_under(store.root());
    write(&old, OLD);
    let id = row(&db, "A", New, None, &old).await;
    let mut config = thumbnails::config::Config::default();
    config.database.url = db.url.clone();
    let root = storage.to_string_lossy().into_owned();
    let env = [("THUMBNAILS_STORAGE__ROOT", root.as_str())];

    let out = super::thumbnails_cli(dir.path(), &config, &["files", "audit"], &env).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        super::stdout(&out),
        "files audit: 1 rows with a file: 0 in place, 1 to move, 0 repointed, 0 missing, 0 outside storage; \
         0 files at depth, 1 elsewhere, 0 in flight, 0 foreign; 0 without a row, 0 failed\n"
    );
    let out = super::thumbnails_cli(dir.path(), &config, &["files", "repair"], &env).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        super::stdout(&out).starts_with("files repair: 1 rows with a file: 0 in place, 1 moved"),
        "{out:?}"
    );
    let new = RelPath::new("A", New, 2).path_under(store.root());
    assert!(new.is_file() && !old.exists());
    assert_eq!(uri_and_url(&db, id).await.0, new.to_string_lossy());

    // Bad arguments: a clear error, a non-zero status, nothing touched.
    for args in [
        &["files", "audit", "--delete-orphans"][..],
        &["files", "repair", "--batch-size", "0"],
        &["files", "repair", "--grace-secs", "-5"],
        &["files"],
    ] {
        let out = super::thumbnails_cli(dir.path(), &config, args, &env).await;
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    assert!(new.is_file());
    // An unreachable database: one line naming it.
    let mut down = config.clone();
    down.database.url = "postgres://postgres@127.0.0.1:1/nowhere".into();
    let out = super::thumbnails_cli(dir.path(), &down, &["files", "audit"], &env).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:1"), "{err}");
}
