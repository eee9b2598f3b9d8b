//! The PS1 cutout lookup, as SkyPortal does it: build the query URL, then read
//! the HTML page it returns.

use super::py_repr;

/// Placeholder stored when PS1 has no images at the position.
pub const OUTSIDE_SURVEY: &str = "/static/images/outside_survey.png";
/// Placeholder stored when the lookup failed; `replay --missing` retries it.
pub const CURRENTLY_UNAVAILABLE: &str = "/static/images/currently_unavailable.png";

const NO_IMAGES: &str = "No PS1 3PI images were found";

/// What a lookup page says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ps1Outcome {
    Image(String),
    OutsideSurvey,
    Unavailable,
}

impl Ps1Outcome {
    pub fn into_url(self) -> String {
        match self {
            Ps1Outcome::Image(url) => url,
            Ps1Outcome::OutsideSurvey => OUTSIDE_SURVEY.into(),
            Ps1Outcome::Unavailable => CURRENTLY_UNAVAILABLE.into(),
        }
    }
}

/// `{lookup}?pos={ra}+{dec}&filter=color&...&size=240`, exactly as SkyPortal
/// asks it (the `+` is a literal space separator, not encoded).
pub fn lookup_url(lookup: &str, ra: f64, dec: f64) -> String {
    format!(
        "{lookup}?pos={}+{}&filter=color&filter=g&filter=r&filter=i&filetypes=stack&size=240",
        py_repr(ra),
        py_repr(dec)
    )
}

/// Reads a lookup page: the first `src="//ps1images.stsci.edu..."` wins and
/// becomes `https://...`; else the "no images" text means outside the survey;
/// anything else is unavailable.
pub fn parse_lookup_page(page: &str) -> Ps1Outcome {
    if let Some(url) = first_image_src(page) {
        return Ps1Outcome::Image(url);
    }
    if page.contains(NO_IMAGES) {
        Ps1Outcome::OutsideSurvey
    } else {
        Ps1Outcome::Unavailable
    }
}

/// Equivalent of SkyPortal's `re.search('src="//ps1images.stsci.edu.*?"')`:
/// `.` matches any character but a newline, and the match ends at the next
/// quote on the same line.
fn first_image_src(page: &str) -> Option<String> {
    const HEAD: &str = "src=\"//ps1images";
    let mut from = 0;
    while let Some(i) = page[from..].find(HEAD) {
        let start = from + i;
        let after = &page[start + HEAD.len()..];
        if let Some(url_rest) = match_host_tail(after) {
            if let Some(end) = url_rest.find(['"', '\n']) {
                if url_rest.as_bytes()[end] == b'"' {
                    let consumed = after.len() - url_rest.len();
                    let url = &page[start + 5..start + HEAD.len() + consumed + end];
                    return Some(format!("https:{url}"));
                }
            }
        }
        from = start + 1;
    }
    None
}

/// Matches `.stsci.edu` where each `.` is any non-newline character; returns
/// the text after it.
fn match_host_tail(s: &str) -> Option<&str> {
    let mut chars = s.char_indices();
    for want in ".stsci.edu".chars() {
        let (_, c) = chars.next()?;
        if want == '.' {
            if c == '\n' {
                return None;
            }
        } else if c != want {
            return None;
        }
    }
    Some(chars.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_skyportal_query() {
        assert_eq!(
            lookup_url("http://ps1/cgi-bin/ps1cutouts", 234.22, -0.0),
            "http://ps1/cgi-bin/ps1cutouts?pos=234.22+-0.0&filter=color&filter=g&filter=r&filter=i&filetypes=stack&size=240"
        );
    }

    #[test]
    fn image_link_wins() {
        let page = r#"<html>No PS1 3PI images were found? no: <img src="//ps1images.stsci.edu/cgi-bin/fitscut.cgi?red=/a.fits&size=240" alt=""><img src="//ps1images.stsci.edu/second"></html>"#;
        assert_eq!(
            parse_lookup_page(page),
            Ps1Outcome::Image(
                "https://ps1images.stsci.edu/cgi-bin/fitscut.cgi?red=/a.fits&size=240".into()
            )
        );
    }

    #[test]
    fn no_images_page_is_outside_survey() {
        assert_eq!(
            parse_lookup_page("<p>No PS1 3PI images were found at that position</p>"),
            Ps1Outcome::OutsideSurvey
        );
        assert_eq!(Ps1Outcome::OutsideSurvey.into_url(), OUTSIDE_SURVEY);
    }

    #[test]
    fn anything_else_is_unavailable() {
        for page in [
            "",
            "<html>error</html>",
            "src=\"//ps1images.stsci.edu/unterminated\n\"",
            "src=\"//elsewhere.org/x.png\"",
        ] {
            assert_eq!(parse_lookup_page(page), Ps1Outcome::Unavailable, "{page}");
        }
    }

    #[test]
    fn dots_in_host_match_any_character_like_the_regex() {
        assert_eq!(
            parse_lookup_page("src=\"//ps1imagesXstsciYedu/p\""),
            Ps1Outcome::Image("https://ps1imagesXstsciYedu/p".into())
        );
    }
}
