//! Group commit of uploads: one batch holding good uploads, uploads for
//! missing objects and repeats of the same file, and a batch whose shared
//! statement fails for one upload (retried one at a time).

use sea_orm::ConnectionTrait;
use serde_json::Value;
use thumbnails::files::{FileStore, RelPath};
use thumbnails::store::committer::{commit_all, CommitError, Upload};
use thumbnails::surveys::ThumbnailType;

use super::app::files_under;
use crate::helpers::TestDb;

async fn add_objs(db: &TestDb, ids: &[&str]) {
    for id in ids {
        db.add_obj(id).await;
    }
}

async fn upload(files: &FileStore, obj_id: &str, ttype: ThumbnailType, bytes: &[u8]) -> Upload {
    let survey = bytes.len().is_multiple_of(2).then(|| "ZTF".to_string());
    let rel = RelPath::stamp(obj_id, ttype, survey.as_deref(), files.depth());
    Upload {
        obj_id: obj_id.into(),
        ttype,
        public_url: rel.public_url(),
        survey,
        is_grayscale: bytes.len().is_multiple_of(3),
        staged: files.stage(&rel, bytes.to_vec()).await.expect("stage"),
        fits: None,
    }
}

#[tokio::test]
async fn one_batch_answers_each_upload_on_its_own() {
    let db = TestDb::new().await;
    add_objs(&db, &["A", "B", "C"]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = FileStore::new(tmp.path(), 2);
    use ThumbnailType::{New, Sub};
    let batch = vec![
        upload(&files, "A", New, b"a-new-1").await,
        upload(&files, "MISSING", New, b"missing").await,
        upload(&files, "B", Sub, b"b-sub").await,
        upload(&files, "A", New, b"a-new-2").await,
        upload(&files, "C", New, b"c-new").await,
        upload(&files, "A", New, b"a-new-3").await,
        upload(&files, "A", Sub, b"a-sub").await,
    ];
    let results = commit_all(&db.db, batch).await;
    assert_eq!(results.len(), 7);
    assert!(
        matches!(results[1], Err(CommitError::NoSuchObj)),
        "{:?}",
        results[1]
    );
    let ok: Vec<_> = results
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(i, r)| {
            (
                i,
                r.as_ref().unwrap_or_else(|e| panic!("upload {i}: {e:?}")),
            )
        })
        .collect();
    // The three uploads of A/new are one row, replaced in arrival order.
    let a_new: Vec<i32> = [0, 3, 5]
        .iter()
        .map(|&i| ok.iter().find(|(j, _)| *j == i).expect("ok").1 .0)
        .collect();
    assert!(a_new.iter().all(|&id| id == a_new[0]), "{a_new:?}");
    assert_eq!(db.scalar_i64("SELECT count(*) FROM thumbnails").await, 4);
    let a_file = RelPath::new("A", New, 2).path_under(files.root());
    assert_eq!(std::fs::read(&a_file).expect("A/new"), b"a-new-3");
    // No staged or replaced file is left: four files, the stored ones.
    let mut left = files_under(tmp.path());
    left.sort();
    assert_eq!(left.len(), 4, "{left:?}");
    // Each event is its row's, and each outbox row is the event's bytes.
    for (i, (id, event)) in &ok {
        let v: Value = serde_json::from_str(&event.body).expect("event json");
        assert_eq!(v["thumbnails"][0]["id"], *id, "upload {i}");
        let stored = db
            .scalar_i64(&format!(
                "SELECT count(*) FROM thumbnail_outbox WHERE id = {} AND body = '{}'",
                event.id,
                event.body.replace('\'', "''")
            ))
            .await;
        assert_eq!(stored, 1, "outbox row of upload {i}");
    }
    let survey = db
        .scalar_i64("SELECT count(*) FROM thumbnails WHERE obj_id = 'B' AND survey IS NULL AND NOT is_grayscale AND origin = 'upload'")
        .await;
    assert_eq!(survey, 1, "B/sub: no survey (odd length), colour");
}

#[tokio::test]
async fn a_failing_statement_is_retried_one_upload_at_a_time() {
    let db = TestDb::new().await;
    add_objs(&db, &["A", "BOOM", "C"]).await;
    db.db
        .execute_unprepared(
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.obj_id = 'BOOM' THEN RAISE EXCEPTION 'refused by test trigger'; END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER boom BEFORE INSERT ON thumbnails FOR EACH ROW EXECUTE FUNCTION boom();",
        )
        .await
        .expect("trigger");
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = FileStore::new(tmp.path(), 2);
    let batch = vec![
        upload(&files, "A", ThumbnailType::New, b"a").await,
        upload(&files, "BOOM", ThumbnailType::New, b"boom").await,
        upload(&files, "C", ThumbnailType::New, b"c").await,
    ];
    let results = commit_all(&db.db, batch).await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(
        matches!(results[1], Err(CommitError::Db(_))),
        "{:?}",
        results[1]
    );
    assert!(results[2].is_ok(), "{:?}", results[2]);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM thumbnails").await, 2);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM thumbnail_outbox").await,
        2
    );
    // The refused upload's staged file is gone; the others are in place.
    assert_eq!(files_under(tmp.path()).len(), 2);
    assert!(!RelPath::new("BOOM", ThumbnailType::New, 2)
        .path_under(files.root())
        .exists());
}

#[tokio::test]
async fn a_database_outage_fails_the_whole_batch_and_leaves_no_file() {
    let db = TestDb::new().await;
    add_objs(&db, &["A", "B", "C"]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = FileStore::new(tmp.path(), 2);
    let mut batch = Vec::new();
    for id in ["A", "B", "C"] {
        batch.push(upload(&files, id, ThumbnailType::New, id.as_bytes()).await);
    }
    db.refuse_connections().await;
    let results = commit_all(&db.db, batch).await;
    assert_eq!(results.len(), 3);
    for r in &results {
        assert!(matches!(r, Err(CommitError::Db(_))), "{r:?}");
    }
    assert!(files_under(tmp.path()).is_empty(), "staged files removed");
    db.allow_connections().await;
    assert_eq!(db.scalar_i64("SELECT count(*) FROM thumbnails").await, 0);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM thumbnail_outbox").await,
        0
    );
}
