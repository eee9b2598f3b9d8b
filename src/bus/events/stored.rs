//! `thumbnail.stored`: one message per object per commit, carrying every
//! row of that object the commit created or changed.

use serde::Serialize;

use super::ORIGIN_SURVEY;

/// One row of a `thumbnail.stored` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredThumbnail<'a> {
    pub id: i32,
    #[serde(rename = "type")]
    pub ttype: &'a str,
    pub public_url: Option<&'a str>,
    pub file_uri: Option<&'a str>,
    /// `survey` for archival rows, `upload` for uploads.
    pub origin: &'a str,
    /// The alert stream of a stamp (`ZTF`, ...); `null` for archival rows.
    pub survey: Option<&'a str>,
    /// The original cutout kept beside a stamp's PNG (`cutouts.keep_fits`):
    /// `/static/thumbnails/.../<obj_id>_<type>_<SURVEY>.fits.gz`. Absent
    /// when none was kept, so other bodies keep their exact shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fits_url: Option<&'a str>,
}

impl<'a> StoredThumbnail<'a> {
    /// The one way to describe a stored row: a row without an origin is
    /// SkyPortal's own, so an archival survey row.
    pub fn new(
        id: i32,
        ttype: &'a str,
        public_url: Option<&'a str>,
        file_uri: Option<&'a str>,
        origin: Option<&'a str>,
        survey: Option<&'a str>,
    ) -> Self {
        Self {
            id,
            ttype,
            public_url,
            file_uri,
            origin: origin.unwrap_or(ORIGIN_SURVEY),
            survey,
            fits_url: None,
        }
    }

    /// The same row naming its kept FITS (if any).
    pub fn with_fits_url(self, fits_url: Option<&'a str>) -> Self {
        Self { fits_url, ..self }
    }
}

/// The `thumbnail.stored` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThumbnailStored<'a> {
    pub obj_id: &'a str,
    pub thumbnails: Vec<StoredThumbnail<'a>>,
}

/// What precedes the first row's id in a body (`[{"id":`): the splice point
/// for a body whose id the database assigns.
const FIRST_ID: &str = "[{\"id\":0,";

impl<'a> ThumbnailStored<'a> {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// One event per object, objects in the order first seen, rows in the
    /// order given.
    pub fn per_object(rows: impl IntoIterator<Item = (&'a str, StoredThumbnail<'a>)>) -> Vec<Self> {
        let mut events: Vec<Self> = Vec::new();
        let mut index: std::collections::HashMap<&'a str, usize> = Default::default();
        for (obj_id, row) in rows {
            let i = *index.entry(obj_id).or_insert_with(|| {
                events.push(Self {
                    obj_id,
                    thumbnails: Vec::new(),
                });
                events.len() - 1
            });
            events[i].thumbnails.push(row);
        }
        events
    }

    /// The bodies to publish for `rows`: one per object ([`per_object`]).
    ///
    /// [`per_object`]: Self::per_object
    pub fn bodies(rows: impl IntoIterator<Item = (&'a str, StoredThumbnail<'a>)>) -> Vec<Vec<u8>> {
        Self::per_object(rows).iter().map(Self::to_json).collect()
    }

    /// For a one-row event whose id is not known yet: the body split around
    /// the id, so that `head + id + tail` is exactly the body [`to_json`]
    /// gives once the id is known (the upload committer has the database
    /// splice the id in). The row's own id is ignored.
    ///
    /// [`to_json`]: Self::to_json
    pub fn split_at_id(obj_id: &'a str, row: StoredThumbnail<'a>) -> (String, String) {
        let body = Self {
            obj_id,
            thumbnails: vec![StoredThumbnail { id: 0, ..row }],
        }
        .to_json();
        let body = String::from_utf8(body).unwrap_or_default();
        // A '"' inside a JSON string is always escaped, so the first match
        // is the structural one.
        match body.find(FIRST_ID) {
            Some(at) => {
                let cut = at + FIRST_ID.len() - "0,".len();
                (body[..cut].to_string(), body[cut + 1..].to_string())
            }
            None => (body, String::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i32, ttype: &'static str) -> StoredThumbnail<'static> {
        StoredThumbnail::new(id, ttype, Some("https://x"), None, None, None)
    }

    #[test]
    fn has_the_contract_shape() {
        let body = ThumbnailStored {
            obj_id: "ZTF1",
            thumbnails: vec![row(12, "ls")],
        }
        .to_json();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"obj_id": "ZTF1", "thumbnails": [{"id": 12, "type": "ls",
                "public_url": "https://x", "file_uri": null, "origin": "survey", "survey": null}]})
        );
    }

    #[test]
    fn a_kept_fits_is_named_and_otherwise_absent() {
        let url = "/static/thumbnails/aa/bb/ZTF1_new_ZTF.fits.gz";
        let with = StoredThumbnail::new(
            3,
            "new",
            Some("/static/thumbnails/aa/bb/ZTF1_new_ZTF.png"),
            Some("/srv/x.png"),
            Some("upload"),
            Some("ZTF"),
        );
        let v = |row: StoredThumbnail<'_>| -> serde_json::Value {
            serde_json::to_value(&row).expect("json")
        };
        assert_eq!(v(with.clone().with_fits_url(Some(url)))["fits_url"], url);
        let without = v(with.with_fits_url(None));
        assert!(without.get("fits_url").is_none(), "{without}");
        assert_eq!(without.as_object().map(|o| o.len()), Some(6));
    }

    #[test]
    fn rows_are_grouped_per_object_in_order() {
        let events = ThumbnailStored::per_object([
            ("a", row(1, "sdss")),
            ("b", row(2, "sdss")),
            ("a", row(3, "ls")),
        ]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].obj_id, "a");
        assert_eq!(
            events[0]
                .thumbnails
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            [1, 3]
        );
        assert_eq!(events[1].thumbnails, vec![row(2, "sdss")]);
    }

    #[test]
    fn split_at_id_splices_to_the_whole_body() {
        for obj_id in ["ZTF1", "a\"[{\"id\":0,b", "é\\"] {
            let upload = StoredThumbnail::new(
                99,
                "new",
                Some("/static/x.png"),
                Some("/srv/x.png"),
                Some("upload"),
                Some("ZTF"),
            );
            let (head, tail) = ThumbnailStored::split_at_id(obj_id, upload.clone());
            let whole = ThumbnailStored {
                obj_id,
                thumbnails: vec![StoredThumbnail { id: 4711, ..upload }],
            }
            .to_json();
            assert_eq!(format!("{head}4711{tail}").into_bytes(), whole, "{obj_id}");
        }
    }
}
