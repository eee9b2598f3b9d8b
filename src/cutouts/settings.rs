//! The `cutouts` config section: how stamps look and what input is accepted.
//! The defaults draw what SkyPortal draws.

use serde::{Deserialize, Serialize};

use super::Kind;

/// How cutouts are drawn (config section `cutouts`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CutoutSettings {
    /// Side of the square PNG, in pixels (SkyPortal: 4 in at 42 dpi = 168).
    pub size: u32,
    /// Colour map: `bone` (SkyPortal), `gray` or `viridis`.
    pub colormap: Colormap,
    /// Stretch per kind of cutout, applied after min-max normalisation.
    pub stretch: Stretches,
    /// How the display limits are chosen from the stretched values.
    pub interval: Interval,
    /// Percentiles of the stretched values mapped to black and white
    /// (`interval: percentile` only). SkyPortal: 1 and 100.
    pub percentiles: Percentiles,
    /// A gzipped cutout may inflate to at most this many bytes.
    pub max_inflated_bytes: usize,
    /// Smallest accepted image side (NAXIS1 and NAXIS2), in pixels.
    pub min_side: usize,
    /// Largest accepted image side, in pixels.
    pub max_side: usize,
    /// Which way up stamps are drawn: as SkyPortal draws them, or North up
    /// and East left from the stamp's WCS.
    pub orientation: Facing,
    /// Keep each stamp's original FITS bytes, gzipped, beside its PNG as
    /// `<obj_id>_<type>_<SURVEY>.fits.gz` (served under `/static`, named in
    /// `thumbnail.stored` as `fits_url`).
    pub keep_fits: bool,
    /// Confluent schema registry asked for the schema ids of Rubin packets
    /// the service does not ship (empty: none; such packets are refused).
    pub schema_registry_url: String,
    /// Put before an LSST diaObjectId (or ssObjectId) to make the `obj_id`.
    pub lsst_obj_prefix: String,
}

impl Default for CutoutSettings {
    fn default() -> Self {
        Self {
            size: 168,
            colormap: Colormap::Bone,
            stretch: Stretches::default(),
            interval: Interval::Percentile,
            percentiles: Percentiles::default(),
            max_inflated_bytes: 16 * 1024 * 1024,
            min_side: 8,
            max_side: 2048,
            orientation: Facing::Skyportal,
            keep_fits: false,
            schema_registry_url: String::new(),
            lsst_obj_prefix: String::new(),
        }
    }
}

/// Which way up stamps are drawn (`cutouts.orientation`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Facing {
    /// As SkyPortal draws them: ZTF rows flipped, LSST rotated by -ROTPA.
    #[default]
    Skyportal,
    /// North up and East left, from the stamp's WCS (`CD` or `PC` matrix);
    /// a stamp without a usable WCS is drawn as `skyportal`.
    NorthUp,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Colormap {
    Bone,
    Gray,
    Viridis,
}

/// Value stretches, as astropy.visualization names them; `x` in [0, 1].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Stretch {
    /// y = x
    Linear,
    /// y = ln(1000 x + 1) / ln(1001) (astropy `LogStretch()`)
    Log,
    /// y = sqrt(x)
    Sqrt,
    /// y = asinh(x / 0.1) / asinh(1 / 0.1) (astropy `AsinhStretch()`)
    Asinh,
}

/// How the limits mapped to the ends of the colour map are chosen.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// `percentiles.low`..`percentiles.high` of the stretched values
    /// (astropy `AsymmetricPercentileInterval`).
    Percentile,
    /// IRAF's zscale of the stretched values (astropy `ZScaleInterval()`
    /// with its defaults); `percentiles` is then unused.
    Zscale,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Stretches {
    pub science: Stretch,
    pub template: Stretch,
    pub difference: Stretch,
}

impl Default for Stretches {
    fn default() -> Self {
        Self {
            science: Stretch::Log,
            template: Stretch::Log,
            difference: Stretch::Linear,
        }
    }
}

impl Stretches {
    pub fn for_kind(&self, kind: Kind) -> Stretch {
        match kind {
            Kind::Science => self.science,
            Kind::Template => self.template,
            Kind::Difference => self.difference,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Percentiles {
    pub low: f64,
    pub high: f64,
}

impl Default for Percentiles {
    fn default() -> Self {
        Self {
            low: 1.0,
            high: 100.0,
        }
    }
}

/// What [`super::decode`] accepts: the part of the settings that guards
/// against hostile input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_inflated_bytes: usize,
    pub min_side: usize,
    pub max_side: usize,
}

impl Default for Limits {
    fn default() -> Self {
        CutoutSettings::default().limits()
    }
}

/// Largest `max_side` accepted by [`CutoutSettings::validate`].
pub const MAX_SIDE_CEILING: usize = 8192;

impl CutoutSettings {
    pub fn limits(&self) -> Limits {
        Limits {
            max_inflated_bytes: self.max_inflated_bytes,
            min_side: self.min_side,
            max_side: self.max_side,
        }
    }

    /// Checks the values; the error names the key (`cutouts.<key>: why`).
    pub fn validate(&self) -> Result<(), String> {
        let bad = |key: &str, why: &str| Err(format!("cutouts.{key}: {why}"));
        if !(16..=2048).contains(&self.size) {
            return bad("size", "must be between 16 and 2048 pixels");
        }
        let Percentiles { low, high } = self.percentiles;
        if !(low.is_finite() && (0.0..100.0).contains(&low)) {
            return bad("percentiles.low", "must be at least 0 and below 100");
        }
        if !(high.is_finite() && high > low && high <= 100.0) {
            return bad(
                "percentiles.high",
                "must be above percentiles.low and at most 100",
            );
        }
        if !(1..=MAX_SIDE_CEILING).contains(&self.min_side) {
            return bad("min_side", "must be between 1 and 8192");
        }
        if !(self.min_side..=MAX_SIDE_CEILING).contains(&self.max_side) {
            return bad("max_side", "must be between min_side and 8192");
        }
        if !(2 * 2880..=1 << 30).contains(&self.max_inflated_bytes) {
            return bad("max_inflated_bytes", "must be between 5760 and 1 GiB");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_skyportals_look_and_valid() {
        let s = CutoutSettings::default();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.size, 168);
        assert_eq!(s.colormap, Colormap::Bone);
        assert_eq!(s.stretch.for_kind(Kind::Science), Stretch::Log);
        assert_eq!(s.stretch.for_kind(Kind::Difference), Stretch::Linear);
    }

    #[test]
    fn validate_names_the_key() {
        let mut s = CutoutSettings {
            size: 4,
            ..Default::default()
        };
        assert!(s
            .validate()
            .expect_err("fails")
            .starts_with("cutouts.size:"));
        s.size = 168;
        s.percentiles.high = 0.5;
        assert!(s
            .validate()
            .expect_err("fails")
            .starts_with("cutouts.percentiles.high:"));
        s.percentiles.high = 100.0;
        s.max_side = 4;
        assert!(s
            .validate()
            .expect_err("fails")
            .starts_with("cutouts.max_side:"));
    }

    #[test]
    fn serde_names_are_lower_case_and_unknown_keys_rejected() {
        let s: CutoutSettings = serde_json::from_str(
            r#"{"colormap":"viridis","stretch":{"science":"asinh"},"interval":"zscale"}"#,
        )
        .expect("test setup");
        assert_eq!(s.colormap, Colormap::Viridis);
        assert_eq!(s.stretch.science, Stretch::Asinh);
        assert_eq!(s.stretch.template, Stretch::Log);
        assert_eq!(s.interval, Interval::Zscale);
        assert!(serde_json::from_str::<CutoutSettings>(r#"{"colour":"bone"}"#).is_err());
    }
}
