//! The askama templates (`templates/preview/*.html`) and their inputs.
//! askama escapes every `{{ }}` for HTML (the `.html` extension), so ids,
//! URLs and reasons show as text whatever they hold.

use askama::Template;
use axum::http::StatusCode;

use super::dead_letters::{DeadQueue, PEEK, SHOWN};
use super::view::{ObjView, Picture};
use crate::store::preview::{BACKLOG_CAP, PAGE_SIZE};

#[derive(Template)]
#[template(path = "preview/obj.html")]
struct ObjPage<'a> {
    obj: &'a ObjView,
}

#[derive(Template)]
#[template(path = "preview/list.html")]
struct ListPage<'a> {
    objs: &'a [ObjView],
    survey: &'a str,
    paged: bool,
    older: Option<String>,
    backlog: String,
    dead: Vec<DeadView>,
    page_size: u64,
}

#[derive(Template)]
#[template(path = "preview/error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// A dead-letter queue as the list page shows it.
struct DeadView {
    queue: String,
    count: String,
    failed: bool,
    reasons: Vec<String>,
    note: String,
}

pub struct ListInput<'a> {
    pub objs: &'a [ObjView],
    pub survey: &'a str,
    pub paged: bool,
    pub older: Option<String>,
    pub backlog: i64,
    pub dead: &'a [DeadQueue],
}

pub fn obj(obj: &ObjView) -> Result<String, askama::Error> {
    ObjPage { obj }.render()
}

pub fn list(input: ListInput<'_>) -> Result<String, askama::Error> {
    let backlog = if input.backlog >= BACKLOG_CAP {
        format!("at least {BACKLOG_CAP} rows")
    } else {
        plural(input.backlog, "row")
    };
    let dead = input
        .dead
        .iter()
        .map(|d| {
            let (count, failed) = match &d.messages {
                Ok(n) => (plural(i64::from(*n), "message"), false),
                Err(e) => (format!("not counted: {e}"), true),
            };
            let note = match (d.reasons.is_empty(), d.reasons_are_newest) {
                (true, _) => String::new(),
                (false, true) => format!("the newest {} (read at most every 10 minutes)", d.reasons.len()),
                (false, false) => format!(
                    "the last {SHOWN} of the first {PEEK} in the queue (read at most every 10 minutes)"
                ),
            };
            DeadView {
                queue: d.queue.clone(),
                count,
                failed,
                reasons: d.reasons.clone(),
                note,
            }
        })
        .collect();
    ListPage {
        objs: input.objs,
        survey: input.survey,
        paged: input.paged,
        older: input.older,
        backlog,
        dead,
        page_size: PAGE_SIZE,
    }
    .render()
}

fn plural(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// An error page; falls back to plain text if even that cannot render.
pub fn error(status: StatusCode, message: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    ErrorPage {
        status: status.as_u16(),
        reason,
        message,
    }
    .render()
    .unwrap_or_else(|_| format!("{} {reason}", status.as_u16()))
}
