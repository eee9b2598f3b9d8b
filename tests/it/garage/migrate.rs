//! `thumbnails files migrate --to s3://...`: a folder deployment's files
//! copied to the bucket and its rows repointed page by page; a dry run
//! changes nothing; a second run moves nothing more; the sidecar then
//! serves the same URLs from the bucket.

use reqwest::{Method, StatusCode};
use thumbnails::ops::files::{migrate, MigrateOptions};
use tokio_util::sync::CancellationToken;

use super::paths::row;
use super::{object, objects, store_of, Garage, BUCKET, S3, WEB};
use crate::cutouts::cutouts_json;
use crate::kept_fits::fits_of;
use crate::sidecar::app::{png, TestApp, UPLOADER};

#[tokio::test]
#[ignore = "needs Garage (scripts/garage up): cargo test --test it garage -- --ignored --test-threads=1"]
async fn a_folder_deployment_moves_to_the_bucket_resumably() {
    let garage = Garage::get();
    let app = TestApp::spawn_with(|c| c.cutouts.keep_fits = true).await;
    let mut ids = Vec::new();
    for (i, obj) in ["A", "B", "C"].iter().enumerate() {
        app.add_obj(obj).await;
        let (status, body) = app
            .upload_png(obj, "new", &png(20 + i as u32, 20, true))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        ids.push(body["data"]["id"].as_i64().expect("id"));
    }
    let (status, body) = app
        .json(
            Method::POST,
            "/api/objs/A/cutouts",
            Some(UPLOADER),
            Some(&cutouts_json("A")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // One row whose file is gone: counted, left as it is.
    let (lost_uri, _) = row(&app, ids[2]).await;
    std::fs::remove_file(&lost_uri).expect("remove C's file");
    let rows_before = app.db.thumbnails().await;

    let from = store_of(&app.config);
    let mut target = app.config.clone();
    let prefix = garage.configure(&mut target);
    target.storage.public_base_url = Some(format!("{WEB}/{prefix}"));
    let to = store_of(&target);
    let pool = app.db.db.get_postgres_connection_pool().clone();
    let opts = |dry_run| MigrateOptions {
        dry_run,
        batch_size: 2,
        progress: false,
        stop: CancellationToken::new(),
    };

    let dry = migrate(&pool, &from, &to, &opts(true))
        .await
        .expect("dry run");
    assert_eq!((dry.rows, dry.moved, dry.missing), (6, 5, 1), "{dry:?}");
    assert_eq!(
        app.db.thumbnails().await,
        rows_before,
        "a dry run changes no row"
    );
    assert!(objects(&to).await.is_empty(), "a dry run writes nothing");

    let done = migrate(&pool, &from, &to, &opts(false))
        .await
        .expect("migrate");
    assert_eq!(
        (done.moved, done.missing, done.fits, done.failed),
        (5, 1, 3, 0),
        "{done:?}"
    );
    assert_eq!(objects(&to).await.len(), 5 + 3);
    for id in [ids[0], ids[1]] {
        let (uri, url) = row(&app, id).await;
        assert!(
            uri.starts_with(&format!("s3://{BUCKET}/{prefix}/thumbnails/")),
            "{uri}"
        );
        assert!(
            url.starts_with(&format!("{WEB}/{prefix}/thumbnails/")),
            "{url}"
        );
        assert!(object(&to, &uri).await.is_some(), "{uri}");
    }
    let stamp_uris = app
        .db
        .scalar_i64(&format!(
            "SELECT count(*) FROM thumbnails WHERE survey = 'ZTF' AND file_uri LIKE 's3://{BUCKET}/{prefix}/%'"
        ))
        .await;
    assert_eq!(stamp_uris, 3);
    let (stamp_uri, _) = {
        let id = app
            .db
            .scalar_i64("SELECT id::int8 FROM thumbnails WHERE survey = 'ZTF' AND type = 'new'")
            .await;
        row(&app, id).await
    };
    assert!(
        object(&to, &fits_of(&stamp_uri)).await.is_some(),
        "the FITS went along"
    );
    assert_eq!(
        row(&app, ids[2]).await.0,
        lost_uri,
        "the missing file's row is left"
    );

    // Resumable: a second run (here the CLI's, with the keys in AWS_*)
    // finds nothing more to move.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_thumbnails"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "files",
            "migrate",
            "--to",
            &format!("s3://{BUCKET}/{prefix}"),
        ])
        .env("THUMBNAILS_DATABASE__URL", &app.db.url)
        .env("THUMBNAILS_STORAGE__ROOT", app.storage.path())
        // The usual AWS variables, not the storage.s3 keys.
        .env("AWS_ENDPOINT_URL", S3)
        .env("AWS_REGION", "garage")
        .env("AWS_ACCESS_KEY_ID", &garage.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &garage.secret)
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 rows with a source file, 0 moved"),
        "{stdout}"
    );
    let (moved_uri, _) = row(&app, ids[0]).await;
    app.stop().await;

    // A sidecar on the bucket serves the migrated files at the same paths.
    let on_bucket = TestApp::spawn_with(|c| {
        c.storage = target.storage.clone();
        c.storage.public_base_url = None;
    })
    .await;
    let path = to.layout_path_of(&moved_uri).expect("a bucket uri");
    let (status, _, bytes) = on_bucket
        .send(
            Method::GET,
            &format!("/static/thumbnails/{path}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, png(20, 20, true));
    on_bucket.stop().await;
}
