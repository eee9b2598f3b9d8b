//! The pages over plain HTTP: tokens, error pages, escaping, paging by
//! key, and that each page's statements can be served by indexes.

use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use thumbnails::config::{Scope, TokenConfig};
use thumbnails::sidecar::preview::view::encode_segment;
use thumbnails::store::preview::{latest_sql, OBJ_SQL};

use super::scene::{SCRIPT_ID, VIEWER};
use crate::sidecar::app::{TestApp, UPLOADER};

async fn spawn(open: bool) -> TestApp {
    TestApp::spawn_with(|c| {
        c.http.tokens.push(TokenConfig {
            token: VIEWER.into(),
            scopes: vec![Scope::View],
        });
        c.http.preview_open = open;
    })
    .await
}

async fn page(app: &TestApp, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let (status, headers, body) = app.send(Method::GET, path, token, None).await;
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(ct.starts_with("text/html"), "{path}: {ct}");
    assert!(headers.contains_key(CONTENT_SECURITY_POLICY), "{path}");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn pages_need_a_view_token_unless_open() {
    let app = spawn(false).await;
    app.add_obj("ZTF-auth").await;
    for path in ["/preview", "/preview/objs/ZTF-auth"] {
        let (status, body) = page(&app, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains("scope &#39;view&#39;"), "{body}");
        assert_eq!(
            page(&app, path, Some(UPLOADER)).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(page(&app, path, Some(VIEWER)).await.0, StatusCode::OK);
    }
    // ?token= once: a 303 to the same URL without it, and a cookie.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = browser
        .get(app.url(&format!("/preview?survey=ZTF&token={VIEWER}")))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/preview?survey=ZTF");
    let cookie = r.headers()[SET_COOKIE].to_str().expect("ascii").to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("name=value").to_string();
    let r = browser
        .get(app.url("/preview?survey=ZTF"))
        .header(COOKIE, pair)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    app.stop().await;

    let open = spawn(true).await;
    assert_eq!(page(&open, "/preview", None).await.0, StatusCode::OK);
    let (_, doc) = open.json(Method::GET, "/openapi.json", None, None).await;
    for path in ["/preview", "/preview/objs/{obj_id}"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} undocumented");
    }
    open.stop().await;
}

#[tokio::test]
async fn unknown_objects_bad_queries_and_markup_get_escaped_pages() {
    let app = spawn(true).await;
    let (status, body) = page(&app, "/preview/objs/%3Cb%3Enope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("No object with id &#60;b&#62;nope"), "{body}");
    for (query, says) in [
        ("survey=a_b", "Invalid survey"),
        ("before=yesterday", "Invalid before"),
    ] {
        let (status, body) = page(&app, &format!("/preview?{query}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(body.contains(says), "{body}");
    }
    app.add_obj(SCRIPT_ID).await;
    let obj_page = format!("/preview/objs/{}", encode_segment(SCRIPT_ID));
    for path in [obj_page.as_str(), "/preview"] {
        let (status, body) = page(&app, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!body.contains("<script"), "{path}: {body}");
        assert!(
            body.contains("&#60;script&#62;alert(&#34;pwned&#34;)"),
            "{path}: {body}"
        );
    }
    app.stop().await;
}

/// Objects `p-00` .. `p-54`, one second apart; `p-1x` have a ZTF row.
async fn add_many(app: &TestApp) {
    app.db
        .scalar_i64(
            "WITH o AS (INSERT INTO objs (id, ra, dec, internal_key, created_at, modified)
               SELECT 'p-' || lpad(i::text, 2, '0'), 1, 2, 'k',
                      timestamp '2026-12-01' + i * interval '1 second', now()
               FROM generate_series(0, 54) i RETURNING id),
             t AS (INSERT INTO thumbnails (created_at, modified, type, public_url, origin, survey, obj_id)
               SELECT now(), now(), 'new', '/x.png', 'survey', 'ZTF', id FROM o WHERE id LIKE 'p-1_'
               RETURNING 1)
             SELECT (SELECT count(*) FROM o) + (SELECT count(*) FROM t)",
        )
        .await;
}

fn older_link(body: &str) -> Option<String> {
    let start = body.find("id=\"older\" href=\"")? + "id=\"older\" href=\"".len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].replace("&amp;", "&").replace("&#43;", "+"))
}

fn listed(body: &str) -> Vec<String> {
    body.split("<section class=\"obj\" data-obj=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(String::from))
        .collect()
}

#[tokio::test]
async fn the_list_pages_by_key_newest_first_and_filters_by_survey() {
    let app = spawn(true).await;
    add_many(&app).await;
    let (status, body) = page(&app, "/preview", None).await;
    assert_eq!(status, StatusCode::OK);
    let first = listed(&body);
    assert_eq!(first.len(), 50);
    assert_eq!(first[0], "p-54");
    assert_eq!(first[49], "p-05");
    let next = older_link(&body).expect("an older link");
    let (status, body) = page(&app, &next, None).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_eq!(listed(&body), ["p-04", "p-03", "p-02", "p-01", "p-00"]);
    assert_eq!(older_link(&body), None);
    let (_, body) = page(&app, "/preview?survey=ztf", None).await;
    let ztf = listed(&body);
    assert_eq!(ztf.len(), 10, "{ztf:?}");
    assert!(ztf.iter().all(|id| id.starts_with("p-1")), "{ztf:?}");
    app.stop().await;
}

#[tokio::test]
async fn each_page_statement_can_be_served_by_indexes() {
    let app = spawn(true).await;
    let statements = [
        OBJ_SQL.replace("$1", "'x'"),
        latest_sql(false, false).replace("$1", "50"),
        latest_sql(false, true)
            .replace("$2", "50")
            .replace("$1", "'ZTF'"),
        latest_sql(true, true)
            .replace("$4", "50")
            .replace("$3", "'ZTF'")
            .replace("$2", "'x'")
            .replace("$1", "timestamp '2026-12-01'"),
    ];
    let txn = app.db.db.begin().await.expect("begin");
    // With sequential scans priced out, a plan that still has one has no
    // index to use.
    txn.execute_unprepared("SET LOCAL enable_seqscan = off")
        .await
        .expect("set");
    for sql in statements {
        let rows = txn
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("EXPLAIN {sql}"),
            ))
            .await
            .expect("explain");
        let plan: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get_by_index::<String>(0).ok())
            .collect();
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Seq Scan on objs") && !plan.contains("Seq Scan on thumbnails"),
            "{sql}\n{plan}"
        );
    }
    drop(txn);
    app.stop().await;
}

#[tokio::test]
async fn a_token_in_the_query_is_never_logged() {
    // The real `thumbnails sidecar` process, logging at trace level.
    let sidecar = crate::running::TracedSidecar::start(&[(VIEWER, "view")]).await;
    let port = sidecar.port;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let wrong = "not-the-viewer-token-0002";
    for (token, expected) in [(VIEWER, 303), (wrong, 401)] {
        let r = browser
            .get(format!(
                "http://127.0.0.1:{port}/preview?survey=ZTF&token={token}"
            ))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), expected, "{token}");
    }
    let text = sidecar.stop().await;
    assert!(text.contains("/preview"), "the requests are logged: {text}");
    for token in [VIEWER, wrong] {
        assert!(!text.contains(token), "{token} was logged");
    }
}
