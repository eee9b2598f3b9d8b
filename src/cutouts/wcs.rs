//! The linear part of a FITS world coordinate system (WCS Paper I, section
//! 2.1.2), and the turn that puts North up and East left.
//!
//! Intermediate world coordinates are `M . (p - CRPIX)`, `p` = (column,
//! row); their x points East (increasing RA), their y North. `M` is the CD
//! matrix, or `CDELTi * PCi_j`. Only `M` matters for orientation, so
//! `CRPIX`, `CRVAL` and the projection are not read; `CTYPE` neither,
//! because Rubin's stamps have none.

/// The CD, PC and CDELT cards of one HDU, as read.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Cards {
    cd: [[Option<f64>; 2]; 2],
    pc: [[Option<f64>; 2]; 2],
    cdelt: [Option<f64>; 2],
    /// A WCS card whose value is not a number: the WCS is not usable.
    unreadable: bool,
}

impl Cards {
    /// Keeps `key = value` when the key is one of the matrix cards; `false`
    /// for any other key.
    pub fn take(&mut self, key: &[u8], value: Option<f64>) -> bool {
        let slot = if let Some((i, j)) = element(key, b"CD") {
            &mut self.cd[i][j]
        } else if let Some((i, j)) = element(key, b"PC") {
            &mut self.pc[i][j]
        } else if let Some(i) = axis(key, b"CDELT") {
            &mut self.cdelt[i]
        } else {
            return false;
        };
        match value.filter(|v| v.is_finite()) {
            Some(v) => *slot = Some(v),
            None => self.unreadable = true,
        }
        true
    }

    /// `M`, with FITS' defaults: CD when any CDi_j is given (missing
    /// elements 0), else PC (missing elements of the identity) times CDELT
    /// (missing: 1) when any PCi_j is given. None without either, or when
    /// `M` is singular or a card unreadable.
    pub fn matrix(&self) -> Option<[[f64; 2]; 2]> {
        let given = |m: &[[Option<f64>; 2]; 2]| m.iter().flatten().any(Option::is_some);
        let m = if given(&self.cd) {
            self.cd.map(|row| row.map(|v| v.unwrap_or(0.0)))
        } else if given(&self.pc) {
            let mut m = [[0.0; 2]; 2];
            for (i, row) in m.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    let identity = if i == j { 1.0 } else { 0.0 };
                    *v = self.cdelt[i].unwrap_or(1.0) * self.pc[i][j].unwrap_or(identity);
                }
            }
            m
        } else {
            return None;
        };
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        let norm2: f64 = m.iter().flatten().map(|v| v * v).sum();
        // Relative to the scale: a determinant this small is a degenerate
        // (or overflowing) matrix that has no orientation to speak of.
        let usable = !self.unreadable && det.is_finite() && det.abs() > 1e-9 * norm2;
        usable.then_some(m)
    }
}

/// "CD1_2" -> (0, 1) for prefix "CD".
fn element(key: &[u8], prefix: &[u8]) -> Option<(usize, usize)> {
    match key.strip_prefix(prefix)? {
        [i @ b'1'..=b'2', b'_', j @ b'1'..=b'2'] => {
            Some((usize::from(i - b'1'), usize::from(j - b'1')))
        }
        _ => None,
    }
}

/// "CDELT2" -> 1 for prefix "CDELT".
fn axis(key: &[u8], prefix: &[u8]) -> Option<usize> {
    match key.strip_prefix(prefix)? {
        [i @ b'1'..=b'2'] => Some(usize::from(i - b'1')),
        _ => None,
    }
}

/// How to move a stamp drawn as stored (row 0 at the bottom, column 0 at
/// the left) so that North is up and East left: first mirror the columns
/// (when `mirror`), then turn it counter-clockwise on screen by `degrees`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Turn {
    pub mirror: bool,
    pub degrees: f64,
}

/// The [`Turn`] for the matrix `m` of a stamp `width` x `height`. The
/// angle is the rotation nearest to the (possibly skewed) matrix; it snaps
/// to a multiple of 90 degrees when that moves no corner by more than a
/// quarter pixel, so a WCS a hair off the axes moves pixels exactly instead
/// of blurring them and blackening the corners.
pub fn north_up(m: [[f64; 2]; 2], width: usize, height: usize) -> Turn {
    // Screen (right, up) = (West, North) = (-x, y): the rows of A.
    let mut a = [[-m[0][0], -m[0][1]], [m[1][0], m[1][1]]];
    let mirror = a[0][0] * a[1][1] - a[0][1] * a[1][0] < 0.0;
    if mirror {
        // Mirroring the columns first negates A's first column.
        a[0][0] = -a[0][0];
        a[1][0] = -a[1][0];
    }
    let degrees = (a[1][0] - a[0][1])
        .atan2(a[0][0] + a[1][1])
        .to_degrees()
        .rem_euclid(360.0);
    let quarter = (degrees / 90.0).round() * 90.0;
    let half_diagonal = (width as f64).hypot(height as f64) / 2.0;
    let off_by = (degrees - quarter).to_radians().abs() * half_diagonal;
    let degrees = if off_by <= 0.25 {
        quarter.rem_euclid(360.0)
    } else {
        degrees
    };
    Turn { mirror, degrees }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cards(pairs: &[(&str, f64)]) -> Cards {
        let mut c = Cards::default();
        for (k, v) in pairs {
            assert!(c.take(k.as_bytes(), Some(*v)), "{k}");
        }
        c
    }

    #[test]
    fn cd_wins_over_pc_and_pc_defaults_to_identity() {
        let c = cards(&[("CD1_1", -2.0), ("CD2_2", 2.0), ("PC1_2", 5.0)]);
        assert_eq!(c.matrix(), Some([[-2.0, 0.0], [0.0, 2.0]]));
        let c = cards(&[("PC1_2", 0.5), ("CDELT1", -3.0)]);
        assert_eq!(c.matrix(), Some([[-3.0, -1.5], [0.0, 1.0]]));
        assert!(!Cards::default().take(b"CRPIX1", Some(1.0)));
    }

    #[test]
    fn absent_singular_or_unreadable_is_none() {
        assert_eq!(Cards::default().matrix(), None);
        assert_eq!(cards(&[("CDELT1", -1.0), ("CDELT2", 1.0)]).matrix(), None);
        assert_eq!(
            cards(&[
                ("CD1_1", 1.0),
                ("CD1_2", 1.0),
                ("CD2_1", 2.0),
                ("CD2_2", 2.0)
            ])
            .matrix(),
            None
        );
        let mut c = cards(&[("PC1_1", 1.0)]);
        assert!(c.take(b"PC2_2", None));
        assert_eq!(c.matrix(), None);
        assert_eq!(cards(&[("PC1_1", 1e300), ("PC2_2", 1e300)]).matrix(), None);
    }

    #[test]
    fn turns_of_the_usual_cases() {
        // East left, North up already.
        let t = north_up([[-1.0, 0.0], [0.0, 1.0]], 30, 30);
        assert_eq!(
            t,
            Turn {
                mirror: false,
                degrees: 0.0
            }
        );
        // East right: mirror only.
        let t = north_up([[1.0, 0.0], [0.0, 1.0]], 30, 30);
        assert_eq!(
            t,
            Turn {
                mirror: true,
                degrees: 0.0
            }
        );
        // North down, East left after a half turn... i.e. rows flipped.
        let t = north_up([[-1.0, 0.0], [0.0, -1.0]], 30, 30);
        assert_eq!(
            t,
            Turn {
                mirror: true,
                degrees: 180.0
            }
        );
        // Rubin's v10 stamp: about 41 degrees (its ROTPA is 41.58).
        let t = north_up([[-4.1743e-5, 3.6714e-5], [3.6705e-5, 4.1709e-5]], 30, 30);
        assert!(!t.mirror && (t.degrees - 41.3).abs() < 0.2, "{t:?}");
        // A hair off the axes snaps; a degree off does not.
        let tiny = 0.1f64.to_radians();
        let t = north_up(
            [[-tiny.cos(), tiny.sin()], [tiny.sin(), tiny.cos()]],
            30,
            30,
        );
        assert_eq!(t.degrees, 0.0);
        let one = 1f64.to_radians();
        let t = north_up([[-one.cos(), one.sin()], [one.sin(), one.cos()]], 30, 30);
        assert!((t.degrees - 1.0).abs() < 1e-9, "{t:?}");
    }
}
