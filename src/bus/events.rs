//! Message bodies the service publishes.

use serde::Serialize;

/// `origin` of a row a user uploaded.
pub const ORIGIN_UPLOAD: &str = "upload";
/// `origin` of an archival survey row (and of a row without an origin:
/// SkyPortal's own writers leave it NULL).
pub const ORIGIN_SURVEY: &str = "survey";

/// The `thumbnail.stored` body, published after each committed row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThumbnailStored<'a> {
    pub id: i32,
    pub obj_id: &'a str,
    #[serde(rename = "type")]
    pub ttype: &'a str,
    pub public_url: Option<&'a str>,
    pub file_uri: Option<&'a str>,
    /// `survey` for archival rows, `upload` for uploads.
    pub origin: &'a str,
}

impl ThumbnailStored<'_> {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_the_contract_shape() {
        let body = ThumbnailStored {
            id: 12,
            obj_id: "ZTF1",
            ttype: "ls",
            public_url: Some("https://x"),
            file_uri: None,
            origin: "survey",
        }
        .to_json();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"id": 12, "obj_id": "ZTF1", "type": "ls",
                "public_url": "https://x", "file_uri": null, "origin": "survey"})
        );
    }
}
