//! The pages' view model, pure: which rows are shown (the newest per
//! `(survey, type)`), in SkyPortal's order (alert stamps new/ref/sub per
//! survey, then sdss, dr8, ls, ps1, then the on-demand sm, hst, chandra,
//! jwst), and how each is drawn (an image, a placeholder, or a URL this
//! page will not load).

use chrono::NaiveDateTime;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::store::preview::{ObjRows, ThumbRow};
use crate::surveys::{ThumbnailType, CURRENTLY_UNAVAILABLE, OUTSIDE_SURVEY};

/// How a row is drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picture {
    /// An image to load from `src` (the service's own files, or a survey's).
    Image { src: String },
    /// A PS1 placeholder: `outside_survey` or `currently_unavailable`.
    Placeholder { name: &'static str, url: String },
    /// No URL, or one that is neither `/...` nor `http(s)://`: shown as text.
    Unusable { url: String },
}

/// One thumbnail as a page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    pub id: i32,
    /// `new`, `ref`, `sub`, `sdss`, ... (`none` for a NULL type).
    pub ttype: String,
    pub survey: Option<String>,
    pub origin: String,
    /// `grayscale`, `colour` or `not classified`.
    pub grayscale: &'static str,
    pub modified: String,
    /// `/api/thumbnail/{id}`.
    pub row_url: String,
    /// The kept FITS of an alert stamp (with `cutouts.keep_fits`).
    pub fits_url: Option<String>,
    pub picture: Picture,
}

impl Tile {
    /// The picture's kind, a CSS class: `image`, `placeholder`, `unusable`.
    pub fn kind(&self) -> &'static str {
        match self.picture {
            Picture::Image { .. } => "image",
            Picture::Placeholder { .. } => "placeholder",
            Picture::Unusable { .. } => "unusable",
        }
    }
}

/// An object with its tiles in layout order.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjView {
    pub id: String,
    /// `/preview/objs/{id}`, the id percent-encoded.
    pub page_url: String,
    pub position: String,
    pub created_at: String,
    pub tiles: Vec<Tile>,
}

/// What [`newest_per_survey_and_type`] compares: the key and the age.
pub trait RowKey {
    fn key(&self) -> (Option<String>, Option<ThumbnailType>);
    fn age(&self) -> (NaiveDateTime, i32);
}

impl RowKey for ThumbRow {
    fn key(&self) -> (Option<String>, Option<ThumbnailType>) {
        (self.survey.clone(), self.ttype)
    }
    fn age(&self) -> (NaiveDateTime, i32) {
        (self.created_at, self.id)
    }
}

/// Keeps the newest row (`created_at`, then `id`) of each `(survey, type)`
/// (SkyPortal's readers keep the same), in id order. The unique indexes
/// allow only one, but a database SkyPortal writes to beside us may
/// predate them.
pub fn newest_per_survey_and_type<R: RowKey>(rows: Vec<R>) -> Vec<R> {
    use std::collections::HashMap;
    type Key = (Option<String>, Option<ThumbnailType>);
    let mut newest: HashMap<Key, R> = HashMap::new();
    for row in rows {
        match newest.get(&row.key()) {
            Some(kept) if kept.age() >= row.age() => {}
            _ => {
                newest.insert(row.key(), row);
            }
        }
    }
    let mut kept: Vec<R> = newest.into_values().collect();
    kept.sort_by_key(|r| r.age().1);
    kept
}

/// Where a row goes: alert stamps first (per survey, uploads without a
/// survey first, then by label), then archival, then on-demand, then the
/// rest; `id` last, so the order is total.
fn layout_key(row: &ThumbRow) -> (u8, Option<String>, u8, String, i32) {
    use ThumbnailType as T;
    let (group, rank) = match row.ttype {
        Some(T::New) => (0, 0),
        Some(T::Ref) => (0, 1),
        Some(T::Sub) => (0, 2),
        Some(T::NewGz) => (0, 3),
        Some(T::RefGz) => (0, 4),
        Some(T::SubGz) => (0, 5),
        Some(T::Sdss) => (1, 0),
        Some(T::Dr8) => (1, 1),
        Some(T::Ls) => (1, 2),
        Some(T::Ps1) => (1, 3),
        Some(T::Sm) => (2, 0),
        Some(T::Hst) => (2, 1),
        Some(T::Chandra) => (2, 2),
        Some(T::Jwst) => (2, 3),
        None => (3, 0),
    };
    // Stamps are grouped by survey; other rows by type first.
    let (survey, tail) = if group == 0 {
        (row.survey.clone(), String::new())
    } else {
        (None, row.survey.clone().unwrap_or_default())
    };
    (group, survey, rank, tail, row.id)
}

/// The rows to show, in layout order.
pub fn layout(rows: Vec<ThumbRow>) -> Vec<ThumbRow> {
    let mut kept = newest_per_survey_and_type(rows);
    kept.sort_by_key(layout_key);
    kept
}

pub fn picture(public_url: Option<&str>) -> Picture {
    let Some(url) = public_url.filter(|u| !u.is_empty()) else {
        return Picture::Unusable { url: String::new() };
    };
    if url == OUTSIDE_SURVEY || url.ends_with("/outside_survey.png") {
        return Picture::Placeholder {
            name: "outside_survey",
            url: url.into(),
        };
    }
    if url == CURRENTLY_UNAVAILABLE || url.ends_with("/currently_unavailable.png") {
        return Picture::Placeholder {
            name: "currently_unavailable",
            url: url.into(),
        };
    }
    let fetchable = (url.starts_with('/') && !url.starts_with("//"))
        || url.starts_with("https://")
        || url.starts_with("http://");
    if fetchable {
        Picture::Image { src: url.into() }
    } else {
        Picture::Unusable { url: url.into() }
    }
}

pub fn tile(row: &ThumbRow, keep_fits: bool) -> Tile {
    let is_stamp = matches!(
        row.ttype,
        Some(ThumbnailType::New | ThumbnailType::Ref | ThumbnailType::Sub)
    );
    let fits_url = if keep_fits && is_stamp && row.file_uri.is_some() {
        row.public_url
            .as_deref()
            .and_then(crate::files::fits_url_beside)
    } else {
        None
    };
    Tile {
        id: row.id,
        ttype: row.ttype.map_or("none", |t| t.as_str()).to_string(),
        survey: row.survey.clone(),
        origin: row.origin.clone().unwrap_or_else(|| "-".into()),
        grayscale: match row.is_grayscale {
            Some(true) => "grayscale",
            Some(false) => "colour",
            None => "not classified",
        },
        modified: format_time(row.modified),
        row_url: format!("/api/thumbnail/{}", row.id),
        fits_url,
        picture: picture(row.public_url.as_deref()),
    }
}

pub fn obj_view(obj: ObjRows, keep_fits: bool) -> ObjView {
    let position = match (obj.obj.ra, obj.obj.dec) {
        (Some(ra), Some(dec)) => format!("RA {ra:.5}, Dec {dec:+.5}"),
        _ => "no position".into(),
    };
    ObjView {
        page_url: format!("/preview/objs/{}", encode_segment(&obj.obj.id)),
        id: obj.obj.id,
        position,
        created_at: format_time(obj.obj.created_at),
        tiles: layout(obj.rows)
            .iter()
            .map(|r| tile(r, keep_fits))
            .collect(),
    }
}

pub fn format_time(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// RFC 3986's unreserved characters, the only ones left as they are.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986's unreserved characters, so an
/// id is one path segment whatever it holds (`/`, `?`, `<`, spaces), and a
/// token one cookie value.
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
