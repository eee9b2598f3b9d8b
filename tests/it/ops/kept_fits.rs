//! `thumbnails files audit|repair` and the FITS kept beside alert stamps
//! (`cutouts.keep_fits`): they follow their PNG, and go once no row of
//! their stamp is left.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sea_orm::sqlx;
use thumbnails::files::{fits_beside, FileStore, RelPath};
use thumbnails::ops::files::{files, FilesOptions, FilesSummary};
use thumbnails::surveys::ThumbnailType::New;
use tokio_util::sync::CancellationToken;

use super::{obj, pool};
use crate::helpers::TestDb;

const OLD: Duration = Duration::from_secs(7200);

fn options(repair: bool, delete_orphans: bool) -> FilesOptions {
    FilesOptions {
        repair,
        dry_run: false,
        delete_orphans,
        grace: OLD / 2,
        batch_size: 2,
        progress: false,
        stop: CancellationToken::new(),
    }
}

fn write(path: &Path, bytes: &[u8], age: Duration) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    f.set_modified(SystemTime::now() - age).expect("mtime");
}

/// A stamp row of `obj_id` naming `file`.
async fn stamp_row(db: &TestDb, obj_id: &str, file: &Path) -> i32 {
    sqlx::query_scalar(
        "INSERT INTO thumbnails (created_at, modified, type, file_uri, public_url, origin, survey, obj_id)
         VALUES (now(), now(), 'new', $1, '/static/old', 'upload', 'ZTF', $2) RETURNING id",
    )
    .bind(file.to_string_lossy().as_ref())
    .bind(obj_id)
    .fetch_one(pool(db))
    .await
    .expect("insert row")
}

async fn file_uri(db: &TestDb, id: i32) -> String {
    sqlx::query_scalar("SELECT file_uri FROM thumbnails WHERE id = $1")
        .bind(id)
        .fetch_one(pool(db))
        .await
        .expect("row")
}

fn fits(png: &Path) -> PathBuf {
    fits_beside(png).expect("a stamp's PNG")
}

#[tokio::test]
async fn kept_fits_files_move_with_their_png_and_are_orphans_without_a_row() {
    let db = TestDb::new().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FileStore::new(tmp.path(), 2);
    let root = store.root().to_path_buf();
    let at = |id: &str, depth| RelPath::stamp(id, New, Some("ZTF"), depth).path_under(&root);
    for id in ["K", "H"] {
        obj(&db, id, Some(1.0), Some(2.0), false).await;
    }
    // K: PNG and FITS written at depth 1 (an older storage.depth).
    let k_old = at("K", 1);
    write(&k_old, b"png K", OLD);
    write(&fits(&k_old), b"fits K", OLD);
    let k = stamp_row(&db, "K", &k_old).await;
    // H: in place, then both moved by hand to another folder.
    let h = stamp_row(&db, "H", &at("H", 2)).await;
    let lost = store.uploads_dir().join("lost+found").join("H_new_ZTF.png");
    write(&lost, b"png H", OLD);
    write(&fits(&lost), b"fits H", OLD);
    // FITS without a row: old, and recent (a write in flight).
    let gone = fits(&at("GONE", 2));
    write(&gone, b"fits", OLD);
    let fresh = fits(&at("FRESH", 2));
    write(&fresh, b"fits", Duration::ZERO);

    let audit = files(&db.db, &store, &options(false, false))
        .await
        .expect("audit");
    assert_eq!(
        audit,
        FilesSummary {
            rows: 2,
            misplaced: 2, // K to move; H's file claimed back
            files_at_depth: 2,
            files_off_depth: 4,
            fits_files: 4,
            orphans: 2, // GONE, FRESH: K's and H's FITS have their row
            ..FilesSummary::default()
        }
    );
    let repair = files(&db.db, &store, &options(true, true))
        .await
        .expect("repair");
    assert_eq!(
        (repair.misplaced, repair.missing, repair.failed),
        (2, 0, 0),
        "{repair:?}"
    );
    assert_eq!(
        (
            repair.orphans,
            repair.orphans_removed,
            repair.orphans_recent
        ),
        (2, 1, 1)
    );
    for (id, name, new) in [(k, "K", at("K", 2)), (h, "H", at("H", 2))] {
        assert_eq!(file_uri(&db, id).await, new.to_string_lossy());
        assert_eq!(
            std::fs::read(fits(&new)).expect("the FITS moved along"),
            format!("fits {name}").as_bytes()
        );
    }
    assert!(!k_old.exists() && !fits(&k_old).exists());
    assert!(!lost.exists() && !fits(&lost).exists());
    assert!(!gone.exists() && fresh.exists());

    // Again: all in place; the recent orphan waits. Once K's object (and
    // so its row) is deleted, K's PNG and FITS are orphans too.
    let again = files(&db.db, &store, &options(true, true))
        .await
        .expect("again");
    assert_eq!(
        (
            again.in_place,
            again.misplaced,
            again.fits_files,
            again.orphans
        ),
        (2, 0, 3, 1)
    );
    sqlx::query("DELETE FROM objs WHERE id = 'K'")
        .execute(pool(&db))
        .await
        .expect("delete obj");
    let swept = files(
        &db.db,
        &store,
        &FilesOptions {
            grace: Duration::ZERO,
            ..options(true, true)
        },
    )
    .await
    .expect("sweep");
    assert_eq!((swept.orphans, swept.orphans_removed), (3, 3), "{swept:?}");
    assert!(!at("K", 2).exists() && !fits(&at("K", 2)).exists() && !fresh.exists());
    assert!(fits(&at("H", 2)).is_file());
}
