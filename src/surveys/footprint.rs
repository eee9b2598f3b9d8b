//! Which stored URLs point at a survey server, and how a survey server says
//! that a position is outside its footprint.

/// SDSS's SkyServer answers a cutout outside its footprint with HTTP 404
/// and this text.
const SDSS_OUTSIDE: &str = "outside the sdss footprint";

/// An absolute `http(s)://` URL: something to fetch. Placeholders
/// (`/static/images/...`) and uploads (`/static/thumbnails/...`) are
/// relative and never fetched.
pub fn is_fetchable(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Whether an SDSS answer body says the position is outside the footprint
/// (case-insensitive; the body may be HTML or plain text).
pub fn sdss_says_outside(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    text.contains(SDSS_OUTSIDE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_http_urls_are_fetched() {
        assert!(is_fetchable(
            "https://www.legacysurvey.org/viewer/jpeg-cutout?ra=1"
        ));
        assert!(is_fetchable("HTTP://skyservice.pha.jhu.edu/DR9/x"));
        assert!(!is_fetchable(super::super::OUTSIDE_SURVEY));
        assert!(!is_fetchable(super::super::CURRENTLY_UNAVAILABLE));
        assert!(!is_fetchable("/static/thumbnails/aa/bb/x_new.png"));
        assert!(!is_fetchable("ftp://x"));
        assert!(!is_fetchable(""));
        assert!(!is_fetchable("http:"));
    }

    #[test]
    fn reads_sdss_outside_footprint_answers() {
        assert!(sdss_says_outside(
            b"<html><body>ERROR: The position is outside the SDSS footprint.</body></html>"
        ));
        assert!(sdss_says_outside(b"Outside the SDSS Footprint"));
        assert!(!sdss_says_outside(b"<html>Internal error</html>"));
        assert!(!sdss_says_outside(&[0xff, 0xd8, 0xff, 0x00]));
    }
}
