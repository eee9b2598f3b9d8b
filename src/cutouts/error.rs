//! Why a cutout could not be drawn: one variant per cause, each with a
//! stable short [`CutoutError::reason`] (a metric label, a dead-letter reason)
//! and a sentence for people (`Display`, the HTTP 400 message).

/// Everything that can go wrong between bytes in and PNG out. All of these
/// are permanent: the same bytes fail the same way again.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CutoutError {
    #[error("the cutout is neither gzip nor FITS (it starts with neither 1f 8b nor SIMPLE)")]
    NotFits,
    #[error("the gzipped cutout inflates past the limit of {limit} bytes")]
    GzipTooLarge { limit: usize },
    #[error("the gzipped cutout is corrupt: {0}")]
    Gzip(String),
    #[error("the FITS header has no END card")]
    NoEndCard,
    #[error("the FITS header has a bad or missing {key}: {why}")]
    Header { key: &'static str, why: String },
    #[error("the FITS image has NAXIS = {0}; only 2-dimensional images are drawn")]
    Naxis(i64),
    #[error("the FITS image is {width} x {height}; each side must be between {min} and {max}")]
    Size {
        width: i64,
        height: i64,
        min: usize,
        max: usize,
    },
    #[error("the FITS image has BITPIX = {0}; only 8, 16, 32, 64, -32 and -64 are read")]
    Bitpix(i64),
    #[error("the FITS data is truncated: the header announces {needed} bytes, {got} are there")]
    Truncated { needed: usize, got: usize },
    #[error("every pixel of the cutout is NaN or blank")]
    AllNan,
    #[error("the alert packet is not readable Avro: {0}")]
    Avro(String),
    #[error("the packet starts with byte {0}: neither an Avro container file (Obj 01) nor a Confluent-framed alert (magic byte 0)")]
    Magic(u8),
    #[error("schema id {0} is unknown: the service ships lsst.v7_0 to v11_0 (700 to 1100); set cutouts.schema_registry_url for others")]
    UnknownSchema(u32),
    #[error("the writer schema of id {0} cannot be used: {1}")]
    Schema(u32, String),
    #[error("the container file holds no alert records")]
    EmptyContainer,
    #[error("the alert packet lacks {0}")]
    AlertField(&'static str),
    #[error("the alert packet holds no cutouts")]
    NoCutouts,
    #[error("the PNG could not be encoded: {0}")]
    Png(String),
}

impl CutoutError {
    /// A short, stable label: safe for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFits => "not_fits",
            Self::GzipTooLarge { .. } => "gzip_too_large",
            Self::Gzip(_) => "gzip",
            Self::NoEndCard => "no_end_card",
            Self::Header { .. } => "header",
            Self::Naxis(_) => "naxis",
            Self::Size { .. } => "size",
            Self::Bitpix(_) => "bitpix",
            Self::Truncated { .. } => "truncated",
            Self::AllNan => "all_nan",
            Self::Avro(_) => "avro",
            Self::Magic(_) => "magic",
            Self::UnknownSchema(_) => "unknown_schema",
            Self::Schema(..) => "schema",
            Self::EmptyContainer => "no_alerts",
            Self::AlertField(_) => "alert_field",
            Self::NoCutouts => "no_cutouts",
            Self::Png(_) => "png",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_short_labels_and_messages_are_sentences() {
        let all = [
            CutoutError::NotFits,
            CutoutError::GzipTooLarge { limit: 1 },
            CutoutError::Gzip("x".into()),
            CutoutError::NoEndCard,
            CutoutError::Header {
                key: "BITPIX",
                why: "missing".into(),
            },
            CutoutError::Naxis(3),
            CutoutError::Size {
                width: 1,
                height: 1,
                min: 8,
                max: 2048,
            },
            CutoutError::Bitpix(7),
            CutoutError::Truncated { needed: 2, got: 1 },
            CutoutError::AllNan,
            CutoutError::Avro("x".into()),
            CutoutError::Magic(1),
            CutoutError::UnknownSchema(1203),
            CutoutError::Schema(1203, "x".into()),
            CutoutError::EmptyContainer,
            CutoutError::AlertField("objectId"),
            CutoutError::NoCutouts,
            CutoutError::Png("x".into()),
        ];
        let mut seen = std::collections::HashSet::new();
        for e in all {
            let r = e.reason();
            assert!(
                r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{r}"
            );
            assert!(seen.insert(r), "duplicate reason {r}");
            assert!(e.to_string().len() > 15, "{e}");
        }
    }
}
