//! The resurvey core: page, render, update the rows that differ.

use std::fmt;

use sea_orm::sqlx;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use super::batch::{read_page, update_page, Changes, PageRow, COUNT};
use crate::bus::Publisher;
use crate::ops::{pg_pool, OpsError, Progress};
use crate::surveys::{Templates, ThumbnailType};

#[derive(Debug, Clone)]
pub struct ResurveyOptions {
    /// `Sdss` and/or `Ls` (which also covers the retired `Dr8`).
    pub types: Vec<ThumbnailType>,
    pub batch_size: usize,
    pub dry_run: bool,
    /// Before/after samples to keep per type (dry runs show them).
    pub samples: usize,
    /// Show a progress bar or progress log lines.
    pub progress: bool,
    /// Cancelled: finish the current page, then stop (a later run resumes).
    pub stop: CancellationToken,
}

/// One row's change, as shown by `--dry-run`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub id: i32,
    pub obj_id: String,
    /// The stored type, and the type after the rewrite (a lone `dr8` row
    /// becomes `ls`).
    pub ttype: String,
    pub new_type: String,
    pub before: Option<String>,
    pub after: String,
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let retype = if self.ttype == self.new_type {
            String::new()
        } else {
            format!(", type {} -> {}", self.ttype, self.new_type)
        };
        write!(
            f,
            "  thumbnail {} (obj {}, {}{retype})\n    before: {}\n    after:  {}",
            self.id,
            self.obj_id,
            self.ttype,
            self.before.as_deref().unwrap_or("(null)"),
            self.after
        )
    }
}

/// Counts for one requested type.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeSummary {
    pub ttype: ThumbnailType,
    /// Survey rows of this type examined (for `ls`, `dr8` rows included).
    pub examined: u64,
    /// Rows changed (or, in a dry run, that would change).
    pub rewritten: u64,
    /// Rows whose object has no ra or dec.
    pub skipped: u64,
    /// Rows whose update failed permanently (logged with their id).
    pub failed: u64,
    pub samples: Vec<Sample>,
}

impl TypeSummary {
    fn new(ttype: ThumbnailType) -> Self {
        Self {
            ttype,
            examined: 0,
            rewritten: 0,
            skipped: 0,
            failed: 0,
            samples: Vec::new(),
        }
    }

    /// The summary line printed at the end of a run.
    pub fn line(&self, dry_run: bool) -> String {
        let (verb, tail) = if dry_run {
            ("would rewrite", "; dry run, nothing changed")
        } else {
            ("rewrote", "")
        };
        format!(
            "resurvey {}: {verb} {} of {} rows ({} skipped, {} failed{tail})",
            self.ttype, self.rewritten, self.examined, self.skipped, self.failed
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub types: Vec<TypeSummary>,
    /// Stopped early by `stop`; the counts cover the pages done.
    pub interrupted: bool,
}

impl Summary {
    pub fn of(&self, ttype: ThumbnailType) -> Option<&TypeSummary> {
        self.types.iter().find(|t| t.ttype == ttype)
    }

    fn of_mut(&mut self, ttype: ThumbnailType) -> Option<&mut TypeSummary> {
        self.types.iter_mut().find(|t| t.ttype == ttype)
    }

    pub fn rewritten(&self) -> u64 {
        self.types.iter().map(|t| t.rewritten).sum()
    }
}

/// The stored types a requested type covers.
fn stored_types(t: ThumbnailType) -> &'static [&'static str] {
    match t {
        ThumbnailType::Ls => &["ls", "dr8"],
        ThumbnailType::Sdss => &["sdss"],
        _ => &[],
    }
}

/// Which requested type a stored type belongs to.
fn bucket(stored: &str) -> Option<ThumbnailType> {
    match stored {
        "sdss" => Some(ThumbnailType::Sdss),
        "ls" | "dr8" => Some(ThumbnailType::Ls),
        _ => None,
    }
}

/// Rewrites every survey row of `opts.types` whose URL differs from the
/// current template. With `publisher`, each rewritten row is announced with
/// `thumbnail.stored` before its page commits (a spurious refresh after a
/// failed commit is harmless; a missed one is not). Page k is written while
/// page k+1 is read.
pub async fn resurvey(
    db: &DatabaseConnection,
    templates: &Templates,
    publisher: Option<&Publisher>,
    opts: &ResurveyOptions,
) -> Result<Summary, OpsError> {
    let pool = pg_pool(db)?;
    let mut requested: Vec<ThumbnailType> = Vec::new();
    for t in &opts.types {
        if stored_types(*t).is_empty() {
            return Err(OpsError::Invalid(format!(
                "resurvey rewrites sdss and ls only, not {t}"
            )));
        }
        if !requested.contains(t) {
            requested.push(*t);
        }
    }
    let stored: Vec<String> = requested
        .iter()
        .flat_map(|t| stored_types(*t).iter().map(|s| s.to_string()))
        .collect();
    let mut summary = Summary {
        types: requested.iter().map(|t| TypeSummary::new(*t)).collect(),
        interrupted: false,
    };
    let names: Vec<&str> = requested.iter().map(|t| t.as_str()).collect();
    let total = if opts.progress {
        let (n,): (i64,) = sqlx::query_as(COUNT).bind(&stored).fetch_one(pool).await?;
        u64::try_from(n).unwrap_or(0)
    } else {
        0
    };
    let label = format!("resurvey {}", names.join(","));
    let mut progress = Progress::new(&label, "rows", total, opts.progress);
    let limit = i64::try_from(opts.batch_size.max(1)).unwrap_or(10_000);
    let mut page = if opts.stop.is_cancelled() {
        summary.interrupted = true;
        Vec::new()
    } else {
        read_page(pool, 0, &stored, limit).await?
    };
    while let Some(end) = page.last().map(|r| r.0) {
        let full = page.len() as i64 >= limit;
        let changes = plan(&page, templates, opts, &mut summary);
        let more = full && !opts.stop.is_cancelled();
        let write = async {
            if changes.ids.is_empty() {
                Ok((Vec::new(), Vec::new()))
            } else {
                update_page(pool, publisher, changes, &progress).await
            }
        };
        let read = async {
            if more {
                read_page(pool, end, &stored, limit).await
            } else {
                Ok(Vec::new())
            }
        };
        let (written, next) = tokio::join!(write, read);
        let (updated, failed) = written?;
        for (_, _, ttype, ..) in &updated {
            if let Some(s) = bucket(ttype).and_then(|b| summary.of_mut(b)) {
                s.rewritten += 1;
            }
        }
        for b in failed {
            if let Some(s) = summary.of_mut(b) {
                s.failed += 1;
            }
        }
        progress.inc(page.len() as u64);
        progress.set_message(format!("{} rewritten", summary.rewritten()));
        if full && !more {
            summary.interrupted = true;
        }
        page = next?;
    }
    progress.finish();
    Ok(summary)
}

/// Counts a page and picks the rows whose URL (or type) must change; in a
/// dry run, counts them and keeps samples instead.
fn plan(
    page: &[PageRow],
    templates: &Templates,
    opts: &ResurveyOptions,
    summary: &mut Summary,
) -> Changes {
    let mut changes = Changes::default();
    for (id, obj_id, ttype, before, ra, dec, lone_dr8) in page {
        let Some(b) = bucket(ttype) else { continue };
        let Some(counts) = summary.of_mut(b) else {
            continue;
        };
        counts.examined += 1;
        let (Some(ra), Some(dec)) = (ra, dec) else {
            counts.skipped += 1;
            continue;
        };
        let Some(url) = templates.url(b, *ra, *dec) else {
            continue;
        };
        if before.as_deref() == Some(url.as_str()) && !lone_dr8 {
            continue;
        }
        if opts.dry_run {
            counts.rewritten += 1;
            if counts.samples.len() < opts.samples {
                counts.samples.push(Sample {
                    id: *id,
                    obj_id: obj_id.clone(),
                    ttype: ttype.clone(),
                    new_type: if *lone_dr8 {
                        "ls".into()
                    } else {
                        ttype.clone()
                    },
                    before: before.clone(),
                    after: url,
                });
            }
        } else {
            changes.ids.push(*id);
            changes.urls.push(url);
            changes.buckets.push(b);
        }
    }
    changes
}
