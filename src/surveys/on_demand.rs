//! The on-demand surveys (`sm`, `hst`, `chandra`, `jwst`): never made by
//! the worker, only when asked for. `sm` is a SkyMapper SIAP lookup whose
//! CSV answer names the PNG; the others are URL templates.

use super::{Template, TemplateError, ThumbnailType};

/// The types made only on request, in the enum's order.
pub const ON_DEMAND: [ThumbnailType; 4] = [
    ThumbnailType::Sm,
    ThumbnailType::Hst,
    ThumbnailType::Chandra,
    ThumbnailType::Jwst,
];

/// Header names SkyMapper's SIAP (and other SIAP services) use for the
/// image access URL, in order of preference.
const ACCESS_COLUMNS: [&str; 4] = ["get_image", "access_url", "accessurl", "url"];

/// How an on-demand type finds its image URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Nothing configured: no outbound call, the row gets a placeholder.
    Disabled,
    /// The rendered template is the image URL.
    Template(Template),
    /// The rendered URL answers a SIAP CSV whose first row names the image.
    SiapCsv(Template),
}

impl Source {
    /// `""` disables the type; anything else must hold `{ra}` and `{dec}`.
    pub fn template(source: &str) -> Result<Self, TemplateError> {
        if source.is_empty() {
            return Ok(Self::Disabled);
        }
        Template::parse(source).map(Self::Template)
    }

    pub fn siap_csv(source: &str) -> Result<Self, TemplateError> {
        if source.is_empty() {
            return Ok(Self::Disabled);
        }
        Template::parse(source).map(Self::SiapCsv)
    }
}

/// What a SIAP CSV answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiapOutcome {
    /// The first row's image access URL.
    Image(String),
    /// A well-formed answer without rows: no image covers the position.
    NoImages,
    /// Not a CSV table (an HTML or VOTable error page, an empty body).
    Unreadable,
}

/// Reads a SIAP `RESPONSEFORMAT=CSV` answer: the first data row's access
/// URL, from the first column named like one (`get_image`, `access_url`,
/// ...), else the row's first `http(s)://` value ending in or naming PNG,
/// else its first `http(s)://` value.
pub fn parse_siap_csv(text: &str) -> SiapOutcome {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() || trimmed.starts_with('<') {
        return SiapOutcome::Unreadable;
    }
    let rows = parse_csv(trimmed);
    let Some((header, data)) = rows.split_first() else {
        return SiapOutcome::Unreadable;
    };
    let Some(first) = data.iter().find(|r| r.iter().any(|f| !f.is_empty())) else {
        return SiapOutcome::NoImages;
    };
    let is_url = |f: &str| super::is_fetchable(f.trim());
    let by_name = ACCESS_COLUMNS.iter().find_map(|want| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(want))
            .and_then(|i| first.get(i))
            .filter(|f| is_url(f))
    });
    let png = || {
        first
            .iter()
            .find(|f| is_url(f) && f.to_ascii_lowercase().contains("png"))
    };
    let any = || first.iter().find(|f| is_url(f));
    match by_name.or_else(png).or_else(any) {
        Some(url) => SiapOutcome::Image(url.trim().to_string()),
        None => SiapOutcome::Unreadable,
    }
}

/// RFC 4180 CSV: fields split by commas, rows by CRLF or LF, `"` quotes
/// with `""` for a quote inside. Lenient: a stray quote is kept as text.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    const SM_LOOKUP: &str = "https://api.skymapper.nci.org.au/public/siap/dr4/query?POS={ra},{dec}&SIZE=0.0264&BAND=all&FORMAT=image/png&VERB=3&INTERSECT=covers&RESPONSEFORMAT=CSV";

    #[test]
    fn skymapper_lookup_url_uses_python_floats() {
        let Source::SiapCsv(t) = Source::siap_csv(SM_LOOKUP).expect("valid") else {
            panic!("a SIAP lookup");
        };
        assert_eq!(
            t.render(234.22, -10.0),
            "https://api.skymapper.nci.org.au/public/siap/dr4/query?POS=234.22,-10.0&SIZE=0.0264&BAND=all&FORMAT=image/png&VERB=3&INTERSECT=covers&RESPONSEFORMAT=CSV"
        );
        assert_eq!(Source::siap_csv(""), Ok(Source::Disabled));
        assert_eq!(Source::template(""), Ok(Source::Disabled));
        assert!(Source::template("https://hla/x?ra={ra}").is_err());
    }

    #[test]
    fn first_row_access_url_wins() {
        let csv = "unique_image_id,band,ra_cntr,dec_cntr,get_image,get_fits\r\n\
            20140425124821-10,g,189.99,-11.62,\"https://api.skymapper.nci.org.au/public/siap/dr4/get_image?IMAGE=20140425124821-10&SIZE=0.0264&POS=189.99,-11.62&FORMAT=png\",https://x/fits\r\n\
            20140425124821-11,r,189.99,-11.62,https://second,https://x/fits2\r\n";
        assert_eq!(
            parse_siap_csv(csv),
            SiapOutcome::Image("https://api.skymapper.nci.org.au/public/siap/dr4/get_image?IMAGE=20140425124821-10&SIZE=0.0264&POS=189.99,-11.62&FORMAT=png".into())
        );
    }

    #[test]
    fn without_a_known_column_the_png_url_is_taken() {
        let csv = "id,fits,preview\n1,https://x/a.fits,https://x/a.png\n";
        assert_eq!(
            parse_siap_csv(csv),
            SiapOutcome::Image("https://x/a.png".into())
        );
        let csv = "id,link\n1,https://x/cutout?id=1\n";
        assert_eq!(
            parse_siap_csv(csv),
            SiapOutcome::Image("https://x/cutout?id=1".into())
        );
    }

    #[test]
    fn header_only_is_no_images_and_errors_are_unreadable() {
        assert_eq!(
            parse_siap_csv("unique_image_id,band,get_image\r\n"),
            SiapOutcome::NoImages
        );
        for page in [
            "",
            "   ",
            "<?xml version=\"1.0\"?><VOTABLE><INFO name=\"QUERY_STATUS\" value=\"ERROR\"/></VOTABLE>",
            "<html>502 Bad Gateway</html>",
            "id,band\n1,g\n",
        ] {
            assert_eq!(parse_siap_csv(page), SiapOutcome::Unreadable, "{page}");
        }
    }

    #[test]
    fn csv_quotes_and_line_ends() {
        assert_eq!(
            parse_csv("a,\"b,c\",\"d \"\"e\"\"\"\r\nx,,z"),
            vec![
                vec!["a".to_string(), "b,c".into(), "d \"e\"".into()],
                vec!["x".to_string(), "".into(), "z".into()],
            ]
        );
        assert_eq!(parse_csv(""), Vec::<Vec<String>>::new());
        assert_eq!(parse_csv("a\n"), vec![vec!["a".to_string()]]);
    }

    #[test]
    fn on_demand_types_are_never_archival() {
        for t in ON_DEMAND {
            assert!(!ThumbnailType::ARCHIVAL.contains(&t));
        }
    }
}
