//! Pure survey logic: URL templates, Python-style float formatting and the
//! PS1 lookup page. Nothing here does I/O.

mod footprint;
mod label;
mod on_demand;
mod ps1;
mod pyfloat;
mod template;

pub use footprint::{is_fetchable, sdss_says_outside};
pub use label::{is_survey_label, normalise_survey, InvalidSurvey, MAX_SURVEY_LEN};
pub use on_demand::{parse_csv, parse_siap_csv, SiapOutcome, Source, ON_DEMAND};
pub use ps1::{lookup_url, parse_lookup_page, Ps1Outcome, CURRENTLY_UNAVAILABLE, OUTSIDE_SURVEY};
pub use pyfloat::py_repr;
pub use template::{Template, TemplateError};

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Every value of SkyPortal's `thumbnail_types` enum, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThumbnailType {
    New,
    Ref,
    Sub,
    Sdss,
    Dr8,
    Ls,
    Ps1,
    Sm,
    Hst,
    Chandra,
    Jwst,
    NewGz,
    RefGz,
    SubGz,
}

impl ThumbnailType {
    pub const ALL: [ThumbnailType; 14] = [
        Self::New,
        Self::Ref,
        Self::Sub,
        Self::Sdss,
        Self::Dr8,
        Self::Ls,
        Self::Ps1,
        Self::Sm,
        Self::Hst,
        Self::Chandra,
        Self::Jwst,
        Self::NewGz,
        Self::RefGz,
        Self::SubGz,
    ];

    /// The archival types the worker makes, in the order it makes them.
    pub const ARCHIVAL: [ThumbnailType; 3] = [Self::Sdss, Self::Ls, Self::Ps1];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Ref => "ref",
            Self::Sub => "sub",
            Self::Sdss => "sdss",
            Self::Dr8 => "dr8",
            Self::Ls => "ls",
            Self::Ps1 => "ps1",
            Self::Sm => "sm",
            Self::Hst => "hst",
            Self::Chandra => "chandra",
            Self::Jwst => "jwst",
            Self::NewGz => "new_gz",
            Self::RefGz => "ref_gz",
            Self::SubGz => "sub_gz",
        }
    }
}

impl fmt::Display for ThumbnailType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not among the defined enum values. Enum name: thumbnail_types. Possible values: new, ref, sub, sdss, dr8, ls, ps1, sm, hst, chandra, jwst, new_gz, ref_gz, sub_gz")]
pub struct UnknownType(pub String);

impl FromStr for ThumbnailType {
    type Err = UnknownType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownType(s.to_string()))
    }
}

/// The templated (lookup-free) surveys, ready to render URLs.
#[derive(Debug, Clone)]
pub struct Templates {
    pub sdss: Template,
    pub ls: Template,
}

impl Templates {
    pub fn new(sdss: &str, ls: &str) -> Result<Self, TemplateError> {
        Ok(Self {
            sdss: Template::parse(sdss)?,
            ls: Template::parse(ls)?,
        })
    }

    /// The URL for a templated type, `None` for types that need a lookup or
    /// an upload.
    pub fn url(&self, ttype: ThumbnailType, ra: f64, dec: f64) -> Option<String> {
        match ttype {
            ThumbnailType::Sdss => Some(self.sdss.render(ra, dec)),
            ThumbnailType::Ls => Some(self.ls.render(ra, dec)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for t in ThumbnailType::ALL {
            assert_eq!(t.as_str().parse::<ThumbnailType>(), Ok(t));
            assert_eq!(
                serde_json::to_string(&t).expect("serialises"),
                format!("\"{t}\"")
            );
        }
        let e = "bogus".parse::<ThumbnailType>().expect_err("unknown");
        assert!(e
            .to_string()
            .contains("is not among the defined enum values"));
    }

    #[test]
    fn the_documented_dr11_template_renders() {
        let t = Templates::new(
            crate::config::DEFAULT_SDSS_TEMPLATE,
            crate::config::LS_DR11_TEMPLATE,
        )
        .expect("valid");
        assert_eq!(
            t.url(ThumbnailType::Ls, 10.0, -0.0).as_deref(),
            Some("https://www.legacysurvey.org/viewer/jpeg-cutout?ra=10.0&dec=-0.0&size=200&layer=ls-dr11&pixscale=0.3&bands=grz")
        );
        // config.yaml documents the same template, in a comment.
        let yaml = include_str!("../../config.yaml");
        assert!(
            yaml.contains(&format!("#   \"{}\"", crate::config::LS_DR11_TEMPLATE)),
            "config.yaml's DR11 comment differs from LS_DR11_TEMPLATE"
        );
    }

    #[test]
    fn default_templates_give_skyportal_urls() {
        let t = Templates::new(
            crate::config::DEFAULT_SDSS_TEMPLATE,
            crate::config::DEFAULT_LS_TEMPLATE,
        )
        .expect("valid");
        assert_eq!(
            t.url(ThumbnailType::Ls, 234.22, -22.33).as_deref(),
            Some("https://www.legacysurvey.org/viewer/jpeg-cutout?ra=234.22&dec=-22.33&size=200&layer=ls-dr10&pixscale=0.3&bands=griz")
        );
        assert_eq!(
            t.url(ThumbnailType::Sdss, 10.0, 1e-05).as_deref(),
            Some("https://skyserver.sdss.org/dr18/SkyServerWS/ImgCutout/getjpeg?TaskName=SkyServer.Chart.List&ra=10.0&dec=1e-05&scale=0.3&width=200&height=200&opt=G&query=&Grid=on")
        );
        assert_eq!(t.url(ThumbnailType::Ps1, 1.0, 1.0), None);
    }
}
