//! The `survey` label of an alert stamp (`ZTF`, `LSST`, ...).

/// Longest label accepted (SkyPortal's labels are a few letters).
pub const MAX_SURVEY_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("survey must be 1 to {MAX_SURVEY_LEN} letters, digits or '-' (got {0:?})")]
pub struct InvalidSurvey(pub String);

/// Upper-cases and checks a survey label: `Some("Ztf")` -> `Some("ZTF")`;
/// absent or blank -> `None` (the archival row). Only `[A-Z0-9-]` is
/// accepted, so the label can sit in a file name as is, and a name with a
/// survey (`_<SURVEY>.png`, no lower-case letter) never looks like one
/// without (`_<type>.png`, always lower-case).
pub fn normalise_survey(survey: Option<&str>) -> Result<Option<String>, InvalidSurvey> {
    let Some(raw) = survey else {
        return Ok(None);
    };
    let label = raw.trim().to_ascii_uppercase();
    if label.is_empty() {
        return Ok(None);
    }
    if is_survey_label(&label) {
        Ok(Some(label))
    } else {
        Err(InvalidSurvey(raw.to_string()))
    }
}

/// Whether `s` is a label as stored: 1 to [`MAX_SURVEY_LEN`] of `[A-Z0-9-]`.
pub fn is_survey_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SURVEY_LEN
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_upper_cased_and_checked() {
        assert_eq!(normalise_survey(None), Ok(None));
        assert_eq!(normalise_survey(Some("")), Ok(None));
        assert_eq!(normalise_survey(Some("  ")), Ok(None));
        assert_eq!(normalise_survey(Some("Ztf")), Ok(Some("ZTF".into())));
        assert_eq!(normalise_survey(Some(" lsst ")), Ok(Some("LSST".into())));
        assert_eq!(normalise_survey(Some("WFST-2")), Ok(Some("WFST-2".into())));
        for bad in ["../x", "a_b", "ZTF.png", "é", "a b", &"A".repeat(33)] {
            assert!(normalise_survey(Some(bad)).is_err(), "{bad}");
        }
    }
}
