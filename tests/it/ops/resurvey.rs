//! `thumbnails resurvey`: old URL forms become current, in place, once.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use thumbnails::config::Config;
use thumbnails::ops::resurvey::{resurvey, ResurveyOptions};
use thumbnails::surveys::ThumbnailType;

use super::*;
use crate::helpers::*;

const LS: ThumbnailType = ThumbnailType::Ls;
const SDSS: ThumbnailType = ThumbnailType::Sdss;

fn opts(types: &[ThumbnailType], dry_run: bool) -> ResurveyOptions {
    ResurveyOptions {
        types: types.to_vec(),
        // Small pages, so that paging itself is exercised.
        batch_size: 3,
        dry_run,
        samples: 5,
        progress: false,
        stop: tokio_util::sync::CancellationToken::new(),
    }
}

fn legacy(ra: &str, dec: &str, layer: &str, pixscale: &str, bands: &str) -> String {
    format!("https://www.legacysurvey.org/viewer/jpeg-cutout?ra={ra}&dec={dec}&size=200&layer={layer}&pixscale={pixscale}&bands={bands}")
}

/// Rows in every form found in real databases; returns the ids of the rows
/// that must not change.
async fn seed_old_forms(db: &TestDb) -> HashMap<&'static str, i32> {
    let mut keep = HashMap::new();
    obj(db, "A", Some(234.22), Some(-22.33), false).await;
    thumb(
        db,
        "A",
        "ls",
        Some(&legacy("234.22", "-22.33", "dr9", "0.262", "grz")),
        None,
    )
    .await;
    thumb(db, "A", "sdss", Some("http://skyservice.pha.jhu.edu/DR9/ImgCutout/getjpeg.aspx?ra=234.22&dec=-22.33&scale=0.5"), None).await;
    let ps1 =
        "https://ps1images.stsci.edu/cgi-bin/fitscut.cgi?red=/rings.v3.skycell/1.fits&size=240";
    keep.insert(
        "A ps1",
        thumb(db, "A", "ps1", Some(ps1), Some("survey")).await,
    );

    obj(db, "B", Some(10.0), Some(1e-05), false).await;
    thumb(
        db,
        "B",
        "ls",
        Some(&legacy("10.0", "1e-05", "ls-dr9", "0.262", "grz")),
        Some("survey"),
    )
    .await;
    thumb(db, "B", "sdss", Some("https://skyserver.sdss.org/dr12/SkyserverWS/ImgCutout/getjpeg?ra=10.0&dec=1e-05&scale=0.3&width=200&height=200&opt=G"), None).await;

    obj(db, "C", Some(359.99999999999994), Some(-0.0), false).await;
    thumb(
        db,
        "C",
        "ls",
        Some(&legacy(
            "359.99999999999994",
            "-0.0",
            "ls-dr10",
            "0.262",
            "griz",
        )),
        None,
    )
    .await;
    thumb(db, "C", "sdss", Some("http://skyserver.sdss.org/dr16/SkyServerWS/ImgCutout/getjpeg?TaskName=Skyserver.Chart.Image&ra=359.99999999999994&dec=-0.0&scale=0.3&width=200&height=200&opt=G"), None).await;

    // A retired dr8 row alone becomes the ls row; next to an ls row it is
    // rewritten in place.
    obj(db, "D", Some(1.5), Some(2.5), false).await;
    keep.insert("D dr8", thumb(db, "D", "dr8", Some("http://legacysurvey.org/viewer/jpeg-cutout?ra=1.5&dec=2.5&size=200&layer=dr8&pixscale=0.262&bands=grz"), None).await);
    obj(db, "E", Some(3.0), Some(4.0), false).await;
    keep.insert("E dr8", thumb(db, "E", "dr8", Some("https://www.legacysurvey.org/viewer/jpeg-cutout?ra=3.0&dec=4.0&size=200&layer=dr8&pixscale=0.262&bands=grz"), None).await);
    keep.insert(
        "E ls",
        thumb(db, "E", "ls", Some(&ls_url("3.0", "4.0")), Some("survey")).await,
    );

    // Uploads are never survey rows; a current row is left as it is.
    obj(db, "F", Some(5.0), Some(6.0), false).await;
    keep.insert(
        "F ls upload",
        thumb(
            db,
            "F",
            "ls",
            Some("/static/thumbnails/ab/cd/F_ls.png"),
            Some("upload"),
        )
        .await,
    );
    keep.insert(
        "F sdss",
        thumb(
            db,
            "F",
            "sdss",
            Some(&sdss_url("5.0", "6.0")),
            Some("survey"),
        )
        .await,
    );

    // A legacy upload (a stored file, no origin) is not a survey row either.
    obj(db, "I", Some(8.0), Some(9.0), false).await;
    let legacy_upload = thumb(
        db,
        "I",
        "ls",
        Some("/static/thumbnails/ef/01/I_ls.png"),
        None,
    )
    .await;
    sqlx::query(
        "UPDATE thumbnails SET file_uri = 'persistentdata/thumbnails/ef/01/I_ls.png' WHERE id = $1",
    )
    .bind(legacy_upload)
    .execute(pool(db))
    .await
    .expect("file_uri");
    keep.insert("I ls legacy upload", legacy_upload);

    // No position: skipped. A NULL URL: rewritten.
    obj(db, "G", None, None, false).await;
    keep.insert(
        "G ls",
        thumb(
            db,
            "G",
            "ls",
            Some(&legacy("1.0", "1.0", "dr9", "0.262", "grz")),
            None,
        )
        .await,
    );
    obj(db, "H", Some(7.25), Some(-8.5), false).await;
    thumb(db, "H", "sdss", None, None).await;
    keep
}

#[tokio::test]
async fn resurvey_rewrites_old_forms_in_place_and_a_second_run_changes_nothing() {
    let db = TestDb::new().await;
    let keep = seed_old_forms(&db).await;
    let before = snapshot(&db).await;

    let summary = resurvey(&db.db, &templates(), None, &opts(&[LS, SDSS], false))
        .await
        .expect("resurvey");
    let ls = summary.of(LS).expect("ls");
    let sdss = summary.of(SDSS).expect("sdss");
    assert_eq!(
        (ls.examined, ls.rewritten, ls.skipped, ls.failed),
        (7, 5, 1, 0),
        "{ls:?}"
    );
    assert_eq!(
        (sdss.examined, sdss.rewritten, sdss.skipped, sdss.failed),
        (5, 4, 0, 0),
        "{sdss:?}"
    );
    assert_eq!(
        ls.line(false),
        "resurvey ls: rewrote 5 of 7 rows (1 skipped, 0 failed)"
    );

    let after = snapshot(&db).await;
    let row = |id: i32| after.iter().find(|r| r.0 == id).expect("row kept").clone();
    let url = |obj: &str, t: &str| {
        after
            .iter()
            .find(|r| r.1 == obj && r.2 == t)
            .unwrap_or_else(|| panic!("{obj} {t}"))
            .3
            .clone()
    };
    assert_eq!(url("A", "ls"), Some(ls_url("234.22", "-22.33")));
    assert_eq!(url("A", "sdss"), Some(sdss_url("234.22", "-22.33")));
    assert_eq!(url("B", "ls"), Some(ls_url("10.0", "1e-05")));
    assert_eq!(url("B", "sdss"), Some(sdss_url("10.0", "1e-05")));
    assert_eq!(url("C", "ls"), Some(ls_url("359.99999999999994", "-0.0")));
    assert_eq!(
        url("C", "sdss"),
        Some(sdss_url("359.99999999999994", "-0.0"))
    );
    assert_eq!(url("H", "sdss"), Some(sdss_url("7.25", "-8.5")));
    // D's dr8 row became its ls row (same id); E keeps both, both current.
    let d = row(keep["D dr8"]);
    assert_eq!(
        (d.2.as_str(), d.3.clone()),
        ("ls", Some(ls_url("1.5", "2.5")))
    );
    assert_eq!(row(keep["E dr8"]).2, "dr8");
    assert_eq!(row(keep["E dr8"]).3, Some(ls_url("3.0", "4.0")));
    // Untouched: ps1, uploads, current rows, rows without a position.
    for name in [
        "A ps1",
        "E ls",
        "F ls upload",
        "F sdss",
        "G ls",
        "I ls legacy upload",
    ] {
        let was = before.iter().find(|r| r.0 == keep[name]).expect("seeded");
        assert_eq!(&row(keep[name]), was, "{name} must not change");
    }
    // Changed rows carry a fresh `modified`; nothing was added or removed.
    assert_eq!(after.len(), before.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.0, b.0);
        if a.3 != b.3 {
            assert!(a.5 > b.5, "modified must move forward for {}", a.0);
        }
    }

    let again = resurvey(&db.db, &templates(), None, &opts(&[LS, SDSS], false))
        .await
        .expect("second run");
    assert_eq!(again.rewritten(), 0, "{again:?}");
    assert_eq!(again.of(LS).map(|s| (s.examined, s.skipped)), Some((7, 1)));
    assert_eq!(snapshot(&db).await, after);
}

#[tokio::test]
async fn resurvey_dry_run_counts_and_shows_samples_but_changes_nothing() {
    let db = TestDb::new().await;
    seed_old_forms(&db).await;
    let before = snapshot(&db).await;

    let summary = resurvey(&db.db, &templates(), None, &opts(&[LS], true))
        .await
        .expect("dry run");
    let ls = summary.of(LS).expect("ls");
    assert_eq!((ls.examined, ls.rewritten, ls.skipped), (7, 5, 1));
    assert_eq!(summary.of(SDSS), None, "only the requested type");
    assert_eq!(ls.samples.len(), 5);
    let first = &ls.samples[0];
    assert_eq!(first.obj_id, "A");
    assert!(first
        .before
        .as_deref()
        .is_some_and(|b| b.contains("layer=dr9")));
    assert_eq!(first.after, ls_url("234.22", "-22.33"));
    assert!(ls
        .samples
        .iter()
        .any(|s| s.ttype == "dr8" && s.new_type == "ls"));
    assert!(ls
        .line(true)
        .starts_with("resurvey ls: would rewrite 5 of 7 rows (1 skipped, 0 failed"));
    assert_eq!(snapshot(&db).await, before, "a dry run changes nothing");
}

#[tokio::test]
async fn resurvey_publish_announces_each_rewritten_row() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let listener = bus.listen_stored().await;
    obj(&db, "P", Some(12.5), Some(-3.0), false).await;
    let old = thumb(
        &db,
        "P",
        "ls",
        Some(&legacy("12.5", "-3.0", "ls-dr9", "0.262", "grz")),
        None,
    )
    .await;
    thumb(&db, "P", "sdss", Some(&sdss_url("12.5", "-3.0")), None).await;

    let summary = resurvey(
        &db.db,
        &templates(),
        Some(&bus.publisher),
        &opts(&[LS, SDSS], false),
    )
    .await
    .expect("resurvey");
    assert_eq!(summary.rewritten(), 1);
    let events = eventually("thumbnail.stored", Duration::from_secs(10), || async {
        let got = bus.drain(&listener).await;
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(events.len(), 1);
    let e: Value = serde_json::from_slice(&events[0].0).expect("json");
    assert_eq!(e["obj_id"], "P");
    assert_eq!(e["thumbnails"].as_array().map(Vec::len), Some(1));
    let e = &e["thumbnails"][0];
    assert_eq!(e["id"], Value::from(old));
    assert_eq!(e["type"], "ls");
    assert_eq!(e["public_url"], Value::from(ls_url("12.5", "-3.0")));
    assert_eq!(e["origin"], "survey");
    assert_eq!(e["file_uri"], Value::Null);

    // Publishes are confirmed before the run returns: nothing more comes.
    let again = resurvey(
        &db.db,
        &templates(),
        Some(&bus.publisher),
        &opts(&[LS, SDSS], false),
    )
    .await
    .expect("second run");
    assert_eq!(again.rewritten(), 0);
    assert!(bus.drain(&listener).await.is_empty());
    bus.delete().await;
}

#[tokio::test]
async fn resurvey_binary_follows_a_template_changed_by_env_override() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.database.url = db.url.clone();
    obj(&db, "N1", Some(150.0), Some(2.25), false).await;
    obj(&db, "N2", Some(0.5), Some(-45.0), false).await;
    thumb(&db, "N1", "ls", Some(&ls_url("150.0", "2.25")), None).await;
    thumb(&db, "N2", "ls", Some(&ls_url("0.5", "-45.0")), None).await;
    let dr11 = "https://www.legacysurvey.org/viewer/jpeg-cutout?ra={ra}&dec={dec}&size=200&layer=ls-dr11&pixscale=0.3&bands=griz";
    let env = [("THUMBNAILS_SURVEYS__LS__TEMPLATE", dr11)];

    let out = thumbnails_cli(
        dir.path(),
        &config,
        &["resurvey", "--type", "ls", "--dry-run"],
        &env,
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("layer=ls-dr11"), "{text}");
    assert!(
        text.contains("resurvey ls: would rewrite 2 of 2 rows (0 skipped, 0 failed"),
        "{text}"
    );
    assert!(snapshot(&db)
        .await
        .iter()
        .all(|r| r.3.as_deref().is_some_and(|u| u.contains("ls-dr10"))));

    let out = thumbnails_cli(dir.path(), &config, &["resurvey", "--type", "ls"], &env).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "resurvey ls: rewrote 2 of 2 rows (0 skipped, 0 failed)\n"
    );
    let rows = db.thumbnails().await;
    assert_eq!(
        rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
        vec![
            Some(dr11.replace("{ra}", "150.0").replace("{dec}", "2.25")),
            Some(dr11.replace("{ra}", "0.5").replace("{dec}", "-45.0"))
        ]
    );

    let out = thumbnails_cli(
        dir.path(),
        &config,
        &["resurvey", "--type", "ls", "--type", "sdss"],
        &env,
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "resurvey ls: rewrote 0 of 2 rows (0 skipped, 0 failed)\nresurvey sdss: rewrote 0 of 0 rows (0 skipped, 0 failed)\n"
    );

    // ps1 cannot be resurveyed: a one-line error and a non-zero status.
    let out = thumbnails_cli(dir.path(), &config, &["resurvey", "--type", "ps1"], &env).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replay"),
        "{out:?}"
    );
}

#[tokio::test]
async fn resurvey_stopped_early_resumes_on_the_next_run() {
    let db = TestDb::new().await;
    seed_old_forms(&db).await;
    let before = snapshot(&db).await;
    let stopped = ResurveyOptions {
        stop: tokio_util::sync::CancellationToken::new(),
        ..opts(&[LS], false)
    };
    stopped.stop.cancel();
    let summary = resurvey(&db.db, &templates(), None, &stopped)
        .await
        .expect("stopped run");
    assert!(summary.interrupted);
    assert_eq!(summary.rewritten(), 0);
    assert_eq!(snapshot(&db).await, before);

    let summary = resurvey(&db.db, &templates(), None, &opts(&[LS], false))
        .await
        .expect("full run");
    assert!(!summary.interrupted);
    assert_eq!(summary.of(LS).map(|s| s.rewritten), Some(5));
}

#[tokio::test]
async fn resurvey_runs_while_the_worker_writes_the_same_objects() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    const N: i64 = 1000;
    // Every object has only a retired dr8 row; the worker is about to give
    // each an ls row while resurvey turns the dr8 rows into ls rows.
    sqlx::query(
        "INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified)
         SELECT 'c' || g, g * 0.1, -g * 0.01, false, md5(g::text), now(), now()
         FROM generate_series(1, $1) g",
    )
    .bind(N)
    .execute(pool(&db))
    .await
    .expect("objs");
    sqlx::query(
        "INSERT INTO thumbnails (created_at, modified, type, public_url, obj_id)
         SELECT now(), now(), 'dr8', 'http://legacysurvey.org/viewer/jpeg-cutout?layer=dr8', 'c' || g
         FROM generate_series(1, $1) g",
    )
    .bind(N)
    .execute(pool(&db))
    .await
    .expect("dr8 rows");
    let (ids, positions): (Vec<String>, Vec<(f64, f64)>) =
        sqlx::query_as::<_, (String, f64, f64)>("SELECT id, ra, dec FROM objs ORDER BY id")
            .fetch_all(pool(&db))
            .await
            .expect("positions")
            .into_iter()
            .map(|(id, ra, dec)| (id, (ra, dec)))
            .unzip();
    let worker = RunningWorker::start(&bus.config(&db, "")).await;
    let bodies: Vec<Vec<u8>> = ids
        .iter()
        .zip(&positions)
        .map(|(id, (ra, dec))| event(id, *ra, *dec))
        .collect();

    let small_pages = ResurveyOptions {
        batch_size: 100,
        ..opts(&[LS], false)
    };
    let current = templates();
    let (summary, ()) = tokio::join!(
        resurvey(&db.db, &current, None, &small_pages),
        bus.publish_many(&bodies)
    );
    let summary = summary.expect("resurvey alongside the worker");
    assert_eq!(summary.of(LS).map(|s| s.failed), Some(0), "{summary:?}");

    eventually(
        "the worker has drained the queue",
        Duration::from_secs(120),
        || async {
            let ls = db
                .scalar_i64("SELECT count(*) FROM thumbnails WHERE type = 'ls'")
                .await;
            let ps1 = db
                .scalar_i64("SELECT count(*) FROM thumbnails WHERE type = 'ps1'")
                .await;
            (ls == N && ps1 == N).then_some(())
        },
    )
    .await;
    worker.stop().await;
    // Whichever came first, each object has one current ls row, and what
    // is left of dr8 points at the current URL after one more pass.
    resurvey(&db.db, &templates(), None, &opts(&[LS], false))
        .await
        .expect("catch-up");
    let again = resurvey(&db.db, &templates(), None, &opts(&[LS], false))
        .await
        .expect("idempotent");
    assert_eq!(again.rewritten(), 0);
    let stale = db
        .scalar_i64(
            "SELECT count(*) FROM thumbnails t JOIN objs o ON o.id = t.obj_id
             WHERE t.type IN ('ls', 'dr8') AND t.public_url NOT LIKE '%layer=ls-dr10&pixscale=0.3&bands=griz'",
        )
        .await;
    assert_eq!(stale, 0);
    bus.delete().await;
}

#[tokio::test]
async fn resurvey_counts_a_refused_row_as_failed_and_rewrites_the_others() {
    let db = TestDb::new().await;
    for (id, ra) in [("Q1", "1.0"), ("Q2", "2.0"), ("Q3", "3.0")] {
        obj(&db, id, Some(ra.parse().expect("ra")), Some(0.5), false).await;
        thumb(
            &db,
            id,
            "ls",
            Some(&legacy(ra, "0.5", "dr9", "0.262", "grz")),
            None,
        )
        .await;
    }
    // The database refuses to change Q2's row (as a constraint would).
    for sql in [
        "CREATE FUNCTION refuse_q2() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation'; END $$",
        "CREATE TRIGGER refuse_q2 BEFORE UPDATE ON thumbnails FOR EACH ROW
         WHEN (OLD.obj_id = 'Q2') EXECUTE FUNCTION refuse_q2()",
    ] {
        sqlx::query(sql).execute(pool(&db)).await.expect(sql);
    }
    let before = snapshot(&db).await;

    let summary = resurvey(&db.db, &templates(), None, &opts(&[LS], false))
        .await
        .expect("resurvey");
    let ls = summary.of(LS).expect("ls");
    assert_eq!((ls.examined, ls.rewritten, ls.failed), (3, 2, 1), "{ls:?}");
    assert_eq!(
        ls.line(false),
        "resurvey ls: rewrote 2 of 3 rows (0 skipped, 1 failed)"
    );
    let rows = db.thumbnails().await;
    assert_eq!(rows[0].2, Some(ls_url("1.0", "0.5")));
    assert_eq!(rows[1].2, before[1].3, "the refused row is unchanged");
    assert_eq!(rows[2].2, Some(ls_url("3.0", "0.5")));
}

/// Legacy Survey DR11 (issue 11): the documented template, applied to rows
/// of every ls-dr10 form (and older), leaves alert stamps and uploads alone.
#[tokio::test]
async fn resurvey_to_the_documented_dr11_template_rewrites_every_dr10_form() {
    use thumbnails::config::{DEFAULT_SDSS_TEMPLATE, LS_DR11_TEMPLATE};
    use thumbnails::surveys::Templates;
    let db = TestDb::new().await;
    let dr11 = |ra: &str, dec: &str| LS_DR11_TEMPLATE.replace("{ra}", ra).replace("{dec}", dec);
    let forms = [
        ("P", legacy("150.0", "2.25", "ls-dr10", "0.3", "griz")), // DR10 default
        ("Q", legacy("0.5", "-45.0", "ls-dr10", "0.262", "griz")),
        ("R", legacy("1e-05", "89.5", "ls-dr9", "0.262", "grz")),
    ];
    for (id, url) in &forms {
        let (ra, dec) = match *id {
            "P" => (150.0, 2.25),
            "Q" => (0.5, -45.0),
            _ => (1e-05, 89.5),
        };
        obj(&db, id, Some(ra), Some(dec), false).await;
        thumb(&db, id, "ls", Some(url), None).await;
    }
    // An alert stamp of type ls with a survey label is not an archival cutout.
    let (stamp,): (i32,) = sea_orm::sqlx::query_as(
        "INSERT INTO thumbnails (created_at, modified, type, public_url, survey, obj_id)
         VALUES (now(), now(), 'ls', $1, 'ZTF', 'P') RETURNING id",
    )
    .bind(&forms[0].1)
    .fetch_one(pool(&db))
    .await
    .expect("stamp row");
    let templates = Templates::new(DEFAULT_SDSS_TEMPLATE, LS_DR11_TEMPLATE).expect("dr11 template");
    let summary = resurvey(&db.db, &templates, None, &opts(&[LS], false))
        .await
        .expect("resurvey");
    assert_eq!(
        summary.of(LS).map(|s| (s.examined, s.rewritten)),
        Some((3, 3))
    );
    let after = snapshot(&db).await;
    let url = |obj: &str| {
        after
            .iter()
            .find(|r| r.1 == obj && r.0 != stamp)
            .and_then(|r| r.3.clone())
    };
    assert_eq!(url("P"), Some(dr11("150.0", "2.25")));
    assert_eq!(url("Q"), Some(dr11("0.5", "-45.0")));
    assert_eq!(url("R"), Some(dr11("1e-05", "89.5")));
    assert_eq!(
        after
            .iter()
            .find(|r| r.0 == stamp)
            .and_then(|r| r.3.clone()),
        Some(forms[0].1.clone()),
        "the ZTF stamp keeps its URL"
    );
    let again = resurvey(&db.db, &templates, None, &opts(&[LS], false))
        .await
        .expect("second run");
    assert_eq!(again.rewritten(), 0);
}
