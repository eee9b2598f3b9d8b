//! `GET`/`PUT`/`DELETE /api/thumbnail/{id}` and `GET /api/objs/{id}/thumbnails`.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::app::*;

#[tokio::test]
async fn get_put_list_and_delete() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF5").await;
    app.add_obj("ZTF6").await;
    let (_, a) = app.upload_png("ZTF5", "new", &png(32, 32, true)).await;
    let (_, b) = app.upload_png("ZTF5", "ref", &png(32, 32, false)).await;
    let (id_a, id_b) = (
        a["data"]["id"].as_i64().expect("id"),
        b["data"]["id"].as_i64().expect("id"),
    );
    let file_b = app
        .files()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("_ref.png"))
        .expect("ref file");

    // List.
    let (status, list) = app
        .json(
            Method::GET,
            "/api/objs/ZTF5/thumbnails",
            Some(UPLOADER),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<i64> = list["data"]
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, vec![id_a, id_b]);
    let (status, list) = app
        .json(Method::GET, "/api/objs/ZTF6/thumbnails", Some(READER), None)
        .await;
    assert_eq!((status, list["data"].clone()), (StatusCode::OK, json!([])));
    let (status, answer) = app
        .json(Method::GET, "/api/objs/NOPE/thumbnails", Some(READER), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&answer), "Invalid obj_id: NOPE");

    // Put every editable field.
    let (_, before) = app.thumbnail(Method::GET, id_a, Some(READER), None).await;
    let edit = json!({
        "obj_id": "ZTF6", "type": "sub", "file_uri": "/elsewhere/x.png",
        "public_url": "https://example.org/x.png", "origin": "manual", "is_grayscale": true,
    });
    let (status, answer) = app
        .thumbnail(Method::PUT, id_a, Some(MANAGER), Some(&edit))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"status": "success", "data": {}}));
    let (_, after) = app.thumbnail(Method::GET, id_a, Some(READER), None).await;
    let row = &after["data"];
    for (k, v) in edit.as_object().expect("object") {
        assert_eq!(&row[k], v, "{k}");
    }
    assert_eq!(row["created_at"], before["data"]["created_at"]);
    assert_ne!(row["modified"], before["data"]["modified"]);
    // The edit is announced like any committed row.
    let events = app.events(3).await;
    assert!(
        events.iter().any(|e| e["obj_id"] == "ZTF6"
            && e["thumbnails"][0]["id"] == id_a
            && e["thumbnails"][0]["type"] == "sub"),
        "{events:?}"
    );

    // Bad edits.
    for (body, expected) in [
        (
            json!({"type": "bogus"}),
            "is not among the defined enum values",
        ),
        (json!({"obj_id": "NOPE"}), "Invalid obj_id: NOPE"),
        (json!({"colour": "red"}), "unknown field `colour`"),
        (json!({"obj_id": "ZTF5", "type": "ref"}), "already exists"),
    ] {
        let (status, answer) = app
            .thumbnail(Method::PUT, id_a, Some(MANAGER), Some(&body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(message(&answer).contains(expected), "{body}: {answer}");
    }

    // Unknown ids, as SkyPortal words it.
    for id in ["999999", "abc", "-1"] {
        let expected = format!("Cannot find Thumbnail with ID: {id}");
        let (s1, a1) = app.thumbnail(Method::GET, id, Some(READER), None).await;
        let (s2, a2) = app
            .thumbnail(
                Method::PUT,
                id,
                Some(MANAGER),
                Some(&json!({"origin": "x"})),
            )
            .await;
        let (s3, a3) = app.thumbnail(Method::DELETE, id, Some(MANAGER), None).await;
        for (s, a) in [(s1, a1), (s2, a2), (s3, a3)] {
            assert_eq!(s, StatusCode::BAD_REQUEST, "{a}");
            assert_eq!(message(&a), expected);
        }
    }

    // Delete removes the row and the file.
    let (status, answer) = app
        .thumbnail(Method::DELETE, id_b, Some(MANAGER), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(!file_b.exists());
    assert_eq!(app.files().len(), 1, "only the other upload's file is left");
    let (status, answer) = app.thumbnail(Method::GET, id_b, Some(READER), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&answer),
        format!("Cannot find Thumbnail with ID: {id_b}")
    );
    app.stop().await;
}

#[tokio::test]
async fn delete_never_removes_a_file_outside_the_storage_root() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF7").await;
    let outside = tempfile::NamedTempFile::new().expect("outside file");
    let (_, a) = app.upload_png("ZTF7", "new", &png(32, 32, true)).await;
    let id = a["data"]["id"].as_i64().expect("id");
    let uploaded = app.files();
    let edit = json!({"file_uri": outside.path().to_string_lossy()});
    let (status, _) = app
        .thumbnail(Method::PUT, id, Some(MANAGER), Some(&edit))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.thumbnail(Method::DELETE, id, Some(MANAGER), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        outside.path().exists(),
        "a file outside the root must survive"
    );
    assert_eq!(app.count("thumbnails").await, 0);
    // The upload's own file is left (the row no longer pointed at it).
    assert_eq!(app.files(), uploaded);
    app.stop().await;
}
