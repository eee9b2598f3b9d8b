//! Alert stamps per survey (issue 11): one row and one file per
//! `(obj_id, type, survey)`, the survey upper-cased, NULL = the archival row.

use reqwest::{Method, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::json;

use super::app::*;

#[tokio::test]
async fn each_survey_keeps_its_own_stamp_and_the_list_shows_the_newest_of_each() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF21stamp").await;
    let up = |survey: Option<&str>, colour: bool| {
        let mut body =
            json!({"obj_id": "ZTF21stamp", "data": b64(&png(32, 32, colour)), "ttype": "new"});
        if let Some(s) = survey {
            body["survey"] = json!(s);
        }
        body
    };
    let mut ids = Vec::new();
    for (survey, colour) in [
        (Some("ZTF"), true),
        (Some("Ztf"), false), // same survey: replaces the ZTF stamp
        (Some("lsst"), true),
        (None, true),
        (Some(""), false), // blank: the archival row again
    ] {
        let (status, body) = app.upload(Some(UPLOADER), &up(survey, colour)).await;
        assert_eq!(status, StatusCode::OK, "{survey:?}: {body}");
        ids.push(body["data"]["id"].as_i64().expect("id"));
    }
    assert_eq!(ids[0], ids[1], "Ztf is ZTF: same row");
    assert_eq!(ids[3], ids[4], "a blank survey is the archival row");
    assert_eq!(app.count("thumbnails").await, 3);
    assert_eq!(
        app.db
            .scalar_i64("SELECT count(*) FROM thumbnails WHERE survey IN ('ZTF', 'LSST')")
            .await,
        2
    );
    // One file each, named after the survey.
    let names: Vec<String> = app
        .files()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            "ZTF21stamp_new.png",
            "ZTF21stamp_new_LSST.png",
            "ZTF21stamp_new_ZTF.png"
        ]
    );
    // The ZTF stamp is the second upload (grayscale).
    let (status, row) = app.thumbnail(Method::GET, ids[0], Some(READER), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(row["data"]["survey"], "ZTF");
    assert_eq!(row["data"]["is_grayscale"], true);
    assert!(row["data"]["public_url"]
        .as_str()
        .is_some_and(|u| u.ends_with("/ZTF21stamp_new_ZTF.png")));

    // A row written beside us without the survey index's help (SkyPortal
    // predates it) does not show: only the newest per (survey, type).
    app.db
        .db
        .execute_unprepared(
            "DROP INDEX thumbnails_obj_id_type_survey_key;
             INSERT INTO thumbnails (created_at, modified, type, public_url, origin, survey, obj_id)
             VALUES ('2000-01-01', '2000-01-01', 'new', '/old.png', 'upload', 'ZTF', 'ZTF21stamp')",
        )
        .await
        .expect("old duplicate");
    let (status, list) = app
        .json(
            Method::GET,
            "/api/objs/ZTF21stamp/thumbnails",
            Some(READER),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let listed = list["data"].as_array().expect("list");
    assert_eq!(listed.len(), 3, "{list}");
    assert!(
        listed.iter().all(|r| r["public_url"] != "/old.png"),
        "{list}"
    );
}

#[tokio::test]
async fn a_bad_survey_is_refused_and_leaves_nothing() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF21bad").await;
    for survey in ["../../etc", "ZTF_2", "ZTF.png", &"A".repeat(33)] {
        let (status, body) = app
            .upload(
                Some(UPLOADER),
                &json!({"obj_id": "ZTF21bad", "data": b64(&png(32, 32, true)), "ttype": "new", "survey": survey}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{survey}: {body}");
        assert_eq!(
            message(&body),
            format!("Thumbnail failed to post: Invalid/missing parameters: survey must be 1 to 32 letters, digits or '-' (got {survey:?})")
        );
        app.assert_nothing_stored(survey).await;
    }
}
