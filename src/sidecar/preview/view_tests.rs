//! Unit tests of the view model (`view.rs`): layout order, newest rows,
//! pictures, tiles, encoded ids.

use super::*;
use ThumbnailType as T;

fn at(s: i64) -> NaiveDateTime {
    chrono::DateTime::from_timestamp(1_700_000_000 + s, 0)
        .expect("time")
        .naive_utc()
}

fn row(id: i32, ttype: Option<T>, survey: Option<&str>, url: &str) -> ThumbRow {
    ThumbRow {
        id,
        ttype,
        survey: survey.map(Into::into),
        origin: Some("survey".into()),
        public_url: Some(url.into()),
        file_uri: None,
        is_grayscale: None,
        created_at: at(i64::from(id)),
        modified: at(i64::from(id)),
    }
}

#[test]
fn stamps_per_survey_then_archival_then_on_demand() {
    let rows = vec![
        row(1, Some(T::Ps1), None, OUTSIDE_SURVEY),
        row(2, Some(T::Sub), Some("ZTF"), "/s/z_sub"),
        row(3, Some(T::Hst), None, "https://hst"),
        row(4, Some(T::New), Some("ZTF"), "/s/z_new"),
        row(5, Some(T::Sdss), None, "https://sdss"),
        row(6, Some(T::Ref), Some("LSST"), "/s/l_ref"),
        row(7, Some(T::New), Some("LSST"), "/s/l_new"),
        row(8, Some(T::Ls), None, "https://ls"),
        row(9, None, None, "/odd"),
        row(10, Some(T::New), None, "/upload_new"),
        row(11, Some(T::Ref), Some("ZTF"), "/s/z_ref"),
        row(12, Some(T::Sm), None, "https://sm"),
    ];
    let order: Vec<(String, Option<String>)> = layout(rows)
        .iter()
        .map(|r| {
            (
                r.ttype.map_or("none", |t| t.as_str()).into(),
                r.survey.clone(),
            )
        })
        .collect();
    let s = |t: &str, v: Option<&str>| (t.to_string(), v.map(String::from));
    assert_eq!(
        order,
        vec![
            s("new", None),
            s("new", Some("LSST")),
            s("ref", Some("LSST")),
            s("new", Some("ZTF")),
            s("ref", Some("ZTF")),
            s("sub", Some("ZTF")),
            s("sdss", None),
            s("ls", None),
            s("ps1", None),
            s("sm", None),
            s("hst", None),
            s("none", None),
        ]
    );
}

#[test]
fn keeps_the_newest_row_per_survey_and_type() {
    let mut old = row(1, Some(T::New), Some("ZTF"), "/old");
    old.created_at = at(100);
    let new = row(2, Some(T::New), Some("ZTF"), "/new");
    let other = row(3, Some(T::New), Some("LSST"), "/lsst");
    let kept = newest_per_survey_and_type(vec![old.clone(), new, other]);
    let urls: Vec<_> = kept.iter().filter_map(|r| r.public_url.clone()).collect();
    assert_eq!(urls, ["/old", "/lsst"], "created_at decides before id");
}

#[test]
fn placeholders_and_unusable_urls_are_not_images() {
    assert_eq!(
        picture(Some(OUTSIDE_SURVEY)),
        Picture::Placeholder {
            name: "outside_survey",
            url: OUTSIDE_SURVEY.into()
        }
    );
    assert!(matches!(
        picture(Some(CURRENTLY_UNAVAILABLE)),
        Picture::Placeholder {
            name: "currently_unavailable",
            ..
        }
    ));
    assert!(matches!(
        picture(Some("/static/thumbnails/a.png")),
        Picture::Image { .. }
    ));
    assert!(matches!(
        picture(Some("https://x/y.jpg")),
        Picture::Image { .. }
    ));
    for bad in [
        "javascript:alert(1)",
        "//evil/x.png",
        "data:image/png;base64,AA",
        "",
    ] {
        assert!(
            matches!(picture(Some(bad)), Picture::Unusable { .. }),
            "{bad}"
        );
    }
    assert!(matches!(picture(None), Picture::Unusable { .. }));
}

#[test]
fn tiles_say_what_each_row_is() {
    let mut r = row(
        7,
        Some(T::New),
        Some("ZTF"),
        "/static/thumbnails/ab/cd/Z_new_ZTF.png",
    );
    r.file_uri = Some("/data/thumbnails/ab/cd/Z_new_ZTF.png".into());
    r.is_grayscale = Some(false);
    let t = tile(&r, true);
    assert_eq!(t.row_url, "/api/thumbnail/7");
    assert_eq!(t.grayscale, "colour");
    assert_eq!(t.modified, "2023-11-14 22:13:27 UTC");
    assert_eq!(
        t.fits_url.as_deref(),
        Some("/static/thumbnails/ab/cd/Z_new_ZTF.fits.gz")
    );
    assert_eq!(tile(&r, false).fits_url, None, "not kept");
}

#[test]
fn ids_become_one_path_segment() {
    assert_eq!(encode_segment("ZTF21aaa-b_c.d~"), "ZTF21aaa-b_c.d~");
    assert_eq!(encode_segment("a/b?<script>"), "a%2Fb%3F%3Cscript%3E");
    assert_eq!(encode_segment("é "), "%C3%A9%20");
}
