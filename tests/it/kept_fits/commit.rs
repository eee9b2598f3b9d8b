//! `cutouts.keep_fits` in `store::cutouts::write_stamps` when the commit
//! fails after the files are placed.

use std::path::PathBuf;

use thumbnails::store::cutouts::write_stamps;

use super::{fits_of, gunzip};
use crate::helpers::TestDb;
use crate::sidecar::app::files_under;

/// A commit that fails after the files are placed (a deferred constraint
/// trigger refusing `obj_id`): every file is put back as it was.
#[tokio::test]
async fn a_failed_commit_puts_the_kept_fits_back() {
    let db = TestDb::new().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = thumbnails::files::FileStore::new(tmp.path(), 2);
    let job = crate::kept_fits::lsst_job;
    // X keeps a FITS, Y none.
    let written = write_stamps(
        &db.db,
        &store,
        &[
            job("X", b"png X1", Some(b"SIMPLE X1")),
            job("Y", b"png Y1", None),
        ],
    )
    .await
    .expect("first write");
    let png_x = PathBuf::from(written[0].stored[0].file_uri.clone().expect("file"));
    let png_y = PathBuf::from(written[1].stored[0].file_uri.clone().expect("file"));
    assert_eq!(
        written[0].stored[0].fits_url.as_deref(),
        Some(fits_of(written[0].stored[0].public_url.as_deref().expect("url")).as_str())
    );
    assert_eq!(written[1].stored[0].fits_url, None);
    let before = files_under(tmp.path());
    assert_eq!(before.len(), 3);

    db.refuse_commits().await;
    // X: replaced, then cleared; Y: given a FITS. Each commit fails.
    for jobs in [
        vec![
            job("X", b"png X2", Some(b"SIMPLE X2")),
            job("Y", b"png Y2", Some(b"SIMPLE Y2")),
        ],
        vec![job("X", b"png X3", None)],
    ] {
        let e = write_stamps(&db.db, &store, &jobs)
            .await
            .expect_err("the commit is refused");
        assert!(
            e.to_string().contains("refused") || format!("{e:?}").contains("refused"),
            "{e:?}"
        );
        assert_eq!(
            files_under(tmp.path()),
            before,
            "nothing added or left behind"
        );
        assert_eq!(std::fs::read(&png_x).expect("X"), b"png X1");
        assert_eq!(
            gunzip(&std::fs::read(fits_of(&png_x.to_string_lossy())).expect("X's FITS")),
            b"SIMPLE X1"
        );
        assert_eq!(std::fs::read(&png_y).expect("Y"), b"png Y1");
    }
}
