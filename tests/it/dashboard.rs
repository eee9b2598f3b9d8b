//! The Grafana dashboard (`docs/grafana/thumbnails.json`) and `/metrics`
//! cannot drift apart: after a short real run (the preview scene: worker
//! events, a failed and retried PS1 lookup, uploads, alert stamps through
//! the API and the queue, dead letters, one grayscale pass), every metric
//! name in the dashboard's PromQL must be a sample name on `/metrics`
//! (histograms as their `_bucket` series, exactly as queried).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::preview::scene::Scene;

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana/thumbnails.json");

/// Keywords, and the aggregation operators (which may be followed by
/// `by (...)` rather than by their parenthesis).
const KEYWORDS: [&str; 23] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// Removes `open`..`close` spans (not nested: label matchers, ranges).
fn strip(expr: &str, open: char, close: char) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in expr.chars() {
        match c {
            c if c == open && !inside => inside = true,
            c if c == close && inside => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

/// The metric names a PromQL expression reads: identifiers that are not
/// functions (followed by `(`), keywords, grouping labels or numbers.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let expr = strip(&strip(expr, '{', '}'), '[', ']');
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut after_grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if KEYWORDS.contains(&word.as_str()) {
                after_grouping = matches!(
                    word.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                );
                continue;
            }
            if next != Some(&'(') {
                names.insert(word);
            }
            continue;
        }
        if c == '(' && after_grouping {
            // `by (le, route)`: labels, not metrics.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            after_grouping = false;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    names
}

/// Every metric the dashboard's panels query.
fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(DASHBOARD).expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut names = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .expect("every target has a PromQL expr");
            names.extend(metric_names(expr));
        }
    }
    names
}

fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(String::from))
        .collect()
}

#[test]
fn promql_names_are_found_and_labels_are_not() {
    let names = metric_names(
        "histogram_quantile(0.95, sum by (le, route) (rate(a_seconds_bucket{route=\"/x\"}[$__rate_interval]))) + on (q) b_total offset 5m + max without (x) (c)",
    );
    assert_eq!(
        names,
        BTreeSet::from(["a_seconds_bucket".into(), "b_total".into(), "c".into()])
    );
    let all = dashboard_metrics();
    assert!(all.len() >= 12, "{all:?}");
    assert!(all.iter().all(|n| n.starts_with("thumbnails_")), "{all:?}");
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported_after_a_short_run() {
    let wanted = dashboard_metrics();
    let scene = Scene::build(true).await;
    let app = &scene.app;
    let classifier = Arc::new(
        thumbnails::remote::grayscale::Classifier::new(&app.config.grayscale, app.db.db.clone())
            .expect("classifier"),
    );
    classifier
        .pass(&CancellationToken::new())
        .await
        .expect("a grayscale pass");
    // The list page reads the dead letters and the backlog (so does the
    // sidecar's gauge loop, at start and every 30 s).
    let (status, _, _) = app.send(reqwest::Method::GET, "/preview", None, None).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let (_, _, body) = app.send(reqwest::Method::GET, "/metrics", None, None).await;
        let have = exported(&String::from_utf8_lossy(&body));
        let missing: Vec<&String> = wanted.iter().filter(|n| !have.contains(*n)).collect();
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics does not export: {missing:?}"
    );
    scene.stop().await;
}
