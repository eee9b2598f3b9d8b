//! The grayscale pass over stored survey rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use thumbnails::config::GrayscaleConfig;
use thumbnails::remote::grayscale::{Classifier, PassStats};
use thumbnails::surveys::OUTSIDE_SURVEY;
use tokio_util::sync::CancellationToken;

use super::standin::ImageServer;
use super::{add_row, row_state};
use crate::helpers::*;

fn config(concurrency: usize) -> GrayscaleConfig {
    GrayscaleConfig {
        enabled: true,
        concurrency,
        rate_per_s: 1000.0,
        timeout_s: 1.0,
        max_bytes: 1024 * 1024,
        interval_s: 0.2,
        retry_base_s: 60.0,
    }
}

/// `(attempts, last_error, seconds until the next attempt)` of a row.
async fn attempt(db: &TestDb, id: i32) -> Option<(i32, String, f64)> {
    use sea_orm::Statement;
    let row = db
        .db
        .query_one_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT attempts, last_error,
                    extract(epoch FROM next_attempt_at - now() AT TIME ZONE 'UTC')::float8
             FROM thumbnail_remote_attempts WHERE thumbnail_id = $1",
            [id.into()],
        ))
        .await
        .expect("select")?;
    Some((
        row.try_get_by_index(0).expect("attempts"),
        row.try_get_by_index(1).expect("error"),
        row.try_get_by_index(2).expect("wait"),
    ))
}

#[tokio::test]
async fn classifies_survey_images_and_bad_answers_wait_for_a_retry() {
    let db = TestDb::new().await;
    let s = ImageServer::start().await;
    for i in 1..=14 {
        db.add_obj(&format!("o{i}")).await;
    }
    let grey = add_row(&db, "o1", "sdss", &s.url("/grey.jpg"), None, None).await;
    let colour = add_row(&db, "o2", "ls", &s.url("/colour.jpg"), None, None).await;
    let html = add_row(&db, "o3", "ps1", &s.url("/html"), None, None).await;
    let big = add_row(&db, "o4", "ls", &s.url("/big"), None, None).await;
    let streamed = add_row(&db, "o5", "ls", &s.url("/big-stream"), None, None).await;
    let slow = add_row(&db, "o6", "sdss", &s.url("/slow"), None, None).await;
    let placeholder = add_row(
        &db,
        "o7",
        "ps1",
        thumbnails::surveys::CURRENTLY_UNAVAILABLE,
        None,
        None,
    )
    .await;
    // Not survey types, an upload, or classified already: never fetched.
    let alert = add_row(&db, "o8", "new", &s.url("/grey.png"), None, None).await;
    let sdss_out = add_row(&db, "o9", "sdss", &s.url("/sdss-outside"), None, None).await;
    let ls_out = add_row(&db, "o10", "ls", &s.url("/blank.jpg"), None, None).await;
    let flaky = add_row(&db, "o11", "sdss", &s.url("/flaky.jpg"), None, None).await;
    let done = add_row(&db, "o12", "ls", &s.url("/colour.png"), Some(true), None).await;
    let error = add_row(&db, "o13", "ps1", &s.url("/500"), None, None).await;
    let upload = add_row(&db, "o14", "ls", &s.url("/grey.png"), None, Some("upload")).await;

    let classifier = Arc::new(Classifier::new(&config(4), db.db.clone()).expect("classifier"));
    let stop = CancellationToken::new();
    let started = Instant::now();
    let stats = classifier.pass(&stop).await.expect("pass");
    // The slow image held one slot for the timeout, not the pass.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        stats,
        PassStats {
            classified: 2,
            outside: 2,
            failed: 6,
            deferred: 0,
            skipped: 0
        }
    );
    assert_eq!(
        row_state(&db, grey).await,
        (Some(s.url("/grey.jpg")), Some(true))
    );
    assert_eq!(
        row_state(&db, colour).await,
        (Some(s.url("/colour.jpg")), Some(false))
    );
    assert_eq!(
        row_state(&db, sdss_out).await,
        (Some(OUTSIDE_SURVEY.into()), None)
    );
    assert_eq!(
        row_state(&db, ls_out).await,
        (Some(OUTSIDE_SURVEY.into()), None)
    );
    for id in [placeholder, alert, upload] {
        assert_eq!(row_state(&db, id).await.1, None);
    }
    assert_eq!(row_state(&db, done).await.1, Some(true));
    assert_eq!(
        s.hits("/grey.png") + s.hits("/colour.png"),
        0,
        "never fetched"
    );
    // The placeholders are announced through the outbox.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM thumbnail_outbox").await,
        2
    );
    for (id, says) in [
        (html, "not an image"),
        (big, "larger than"),
        (streamed, "larger than"),
        (slow, "request failed"),
        (flaky, "HTTP 503"),
        (error, "HTTP 500"),
    ] {
        let (n, last_error, wait) = attempt(&db, id).await.expect("a retry row");
        assert_eq!(n, 1, "{says}");
        assert!(last_error.contains(says), "{last_error} should say {says}");
        assert!(
            (50.0..=61.0).contains(&wait),
            "first wait is retry_base_s: {wait}"
        );
    }

    // Nothing is due: the next pass fetches nothing.
    let hits = s.total_hits();
    assert_eq!(
        classifier.pass(&stop).await.expect("pass"),
        PassStats::default()
    );
    assert_eq!(s.total_hits(), hits);

    // Once due, the failed rows are tried again: the flaky server answers
    // now; the others wait twice as long.
    db.db
        .execute_unprepared(
            "UPDATE thumbnail_remote_attempts SET next_attempt_at = now() AT TIME ZONE 'UTC' - interval '1 second'",
        )
        .await
        .expect("make due");
    let stats = classifier.pass(&stop).await.expect("pass");
    assert_eq!((stats.classified, stats.failed), (1, 5));
    assert_eq!(row_state(&db, flaky).await.1, Some(true));
    assert_eq!(
        attempt(&db, flaky).await,
        None,
        "a success forgets the failures"
    );
    let (n, _, wait) = attempt(&db, html).await.expect("retry row");
    assert_eq!(n, 2);
    assert!((110.0..=121.0).contains(&wait), "doubled: {wait}");

    // A retry wait belongs to the URL: a rewritten row is due at once.
    db.db
        .execute_unprepared(&format!(
            "UPDATE thumbnails SET public_url = '{}' WHERE id = {html}",
            s.url("/grey.jpg")
        ))
        .await
        .expect("rewrite");
    let stats = classifier.pass(&stop).await.expect("pass");
    assert_eq!(stats.classified, 1);
    assert_eq!(row_state(&db, html).await.1, Some(true));

    // A deleted row's retry row goes at the end of a pass.
    db.db
        .execute_unprepared(&format!("DELETE FROM thumbnails WHERE id = {big}"))
        .await
        .expect("delete");
    classifier.pass(&stop).await.expect("pass");
    assert_eq!(attempt(&db, big).await, None);
}

#[tokio::test]
async fn a_429_pauses_its_server_and_defers_its_rows_while_others_go_on() {
    let db = TestDb::new().await;
    let busy = ImageServer::start().await;
    let fine = ImageServer::start().await;
    for i in 1..=5 {
        db.add_obj(&format!("o{i}")).await;
    }
    let mut deferred = Vec::new();
    for (obj, ttype) in [("o1", "sdss"), ("o1", "ls"), ("o2", "ps1")] {
        deferred.push(add_row(&db, obj, ttype, &busy.url("/429"), None, None).await);
    }
    let a = add_row(&db, "o3", "sdss", &fine.url("/grey.jpg"), None, None).await;
    let b = add_row(&db, "o4", "ls", &fine.url("/colour.jpg"), None, None).await;

    let classifier = Arc::new(Classifier::new(&config(1), db.db.clone()).expect("classifier"));
    let stats = classifier
        .pass(&CancellationToken::new())
        .await
        .expect("pass");
    assert_eq!(
        stats,
        PassStats {
            classified: 2,
            outside: 0,
            failed: 0,
            deferred: 3,
            skipped: 0
        }
    );
    // One request: the other rows of that server waited without asking.
    assert_eq!(busy.hits("/429"), 1);
    for id in deferred {
        let (n, last_error, wait) = attempt(&db, id).await.expect("deferred row");
        assert_eq!(n, 0, "a 429 is not the row's failure");
        assert!(last_error.contains("429"), "{last_error}");
        assert!(
            (100.0..=121.0).contains(&wait),
            "Retry-After: 120 honoured: {wait}"
        );
        assert_eq!(row_state(&db, id).await.1, None);
    }
    assert_eq!(row_state(&db, a).await.1, Some(true));
    assert_eq!(row_state(&db, b).await.1, Some(false));
}

#[tokio::test]
async fn shutdown_ends_a_pass_at_once() {
    let db = TestDb::new().await;
    let s = ImageServer::start().await;
    db.add_obj("o1").await;
    let id = add_row(&db, "o1", "sdss", &s.url("/slow"), None, None).await;
    let mut c = config(1);
    c.timeout_s = 60.0;
    let classifier = Arc::new(Classifier::new(&c, db.db.clone()).expect("classifier"));
    let stop = CancellationToken::new();
    let pass = tokio::spawn({
        let (classifier, stop) = (classifier.clone(), stop.clone());
        async move { classifier.pass(&stop).await }
    });
    eventually(
        "the slow fetch started",
        Duration::from_secs(10),
        || async { (s.hits("/slow") == 1).then_some(()) },
    )
    .await;
    stop.cancel();
    let stats = tokio::time::timeout(Duration::from_secs(5), pass)
        .await
        .expect("the pass ends at once")
        .expect("joins")
        .expect("no error");
    assert_eq!(stats.skipped, 1);
    // Nothing recorded: the next start tries it at once.
    assert_eq!(attempt(&db, id).await, None);
    assert_eq!(row_state(&db, id).await.1, None);
}

/// `thumbnails run` classifies in the background (on by default), and an
/// out-of-footprint row's placeholder is announced with `thumbnail.stored`.
#[tokio::test]
async fn run_classifies_in_the_background_and_announces_placeholders() {
    let bus = TestBus::new().await;
    let stored = bus.listen_stored().await;
    let s = ImageServer::start().await;
    let name = format!("thumbnails_it_grey_{}", uuid::Uuid::new_v4().simple());
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let port = free_port();
    let storage = tempfile::tempdir().expect("tempdir");
    let mut child = crate::cli::service("run", &url, &bus, port)
        .env("THUMBNAILS_STORAGE__ROOT", storage.path())
        .env("THUMBNAILS_GRAYSCALE__INTERVAL_S", "0.2")
        // The test writes the rows itself: no feed, no sweep making them.
        .env("THUMBNAILS_FEED__ENABLED", "false")
        .env("THUMBNAILS_RECONCILE__INTERVAL_S", "0")
        .spawn()
        .expect("spawn");
    wait_healthy(port).await;
    let db = TestDb::attach(&name, &url).await;
    db.add_obj("o1").await;
    let colour = add_row(&db, "o1", "ls", &s.url("/colour.jpg"), None, None).await;
    let outside = add_row(&db, "o1", "sdss", &s.url("/sdss-outside"), None, None).await;
    eventually("the ls row classified", Duration::from_secs(30), || async {
        (row_state(&db, colour).await.1 == Some(false)).then_some(())
    })
    .await;
    let events = eventually(
        "the placeholder announced",
        Duration::from_secs(30),
        || async {
            let got = bus.drain(&stored).await;
            (!got.is_empty()).then_some(got)
        },
    )
    .await;
    let event: serde_json::Value = serde_json::from_slice(&events[0].0).expect("json");
    assert_eq!(event["obj_id"], "o1");
    assert_eq!(event["thumbnails"][0]["id"], outside);
    assert_eq!(event["thumbnails"][0]["public_url"], OUTSIDE_SURVEY);
    let status = sigterm(&mut child).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    bus.delete().await;
}
