//! Display limits: numpy's percentile (linear interpolation) and astropy's
//! `ZScaleInterval`. Both take finite values only.

/// numpy `percentile(values, p)` with linear interpolation; `p` in
/// [0, 100]. Reorders `values` (selection, not a full sort). `values` must
/// not be empty.
pub fn percentile(values: &mut [f32], p: f64) -> f32 {
    let n = values.len();
    if n == 0 {
        return f32::NAN;
    }
    let rank = (p / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let frac = rank - lo as f64;
    let (_, &mut below, above) = values.select_nth_unstable_by(lo, f32::total_cmp);
    if frac == 0.0 || above.is_empty() {
        return below;
    }
    let next = above.iter().copied().fold(f32::INFINITY, f32::min);
    (f64::from(below) + (f64::from(next) - f64::from(below)) * frac) as f32
}

/// astropy `ZScaleInterval()` with its defaults (n_samples 1000, contrast
/// 0.25, max_reject 0.5, min_npixels 5, krej 2.5, max_iterations 5): a line
/// is fitted to the sorted samples with iterative k-sigma rejection; its
/// slope, divided by the contrast, spans the limits around the median.
pub fn zscale(values: &[f32]) -> (f32, f32) {
    const N_SAMPLES: usize = 1000;
    const CONTRAST: f64 = 0.25;
    const MAX_REJECT: f64 = 0.5;
    const MIN_NPIXELS: usize = 5;
    const KREJ: f64 = 2.5;
    const MAX_ITERATIONS: usize = 5;

    if values.is_empty() {
        return (f32::NAN, f32::NAN);
    }
    let stride = ((values.len() as f64 / N_SAMPLES as f64) as usize).max(1);
    let mut samples: Vec<f64> = values
        .iter()
        .step_by(stride)
        .take(N_SAMPLES)
        .map(|&v| f64::from(v))
        .collect();
    samples.sort_by(f64::total_cmp);
    let npix = samples.len();
    let (mut vmin, mut vmax) = (samples[0], samples[npix - 1]);
    let minpix = MIN_NPIXELS.max((npix as f64 * MAX_REJECT) as usize);
    let ngrow = ((npix as f64 * 0.01) as usize).max(1);
    let mut bad = vec![false; npix];
    let mut grown = vec![false; npix];
    let (mut ngood, mut last_ngood) = (npix, npix + 1);
    let mut slope = 0.0;
    for _ in 0..MAX_ITERATIONS {
        if ngood >= last_ngood || ngood < minpix {
            break;
        }
        let (intercept, s) = fit_line(&samples, &bad);
        slope = s;
        let flat = |i: usize| samples[i] - (intercept + slope * i as f64);
        let good: Vec<f64> = (0..npix).filter(|&i| !bad[i]).map(flat).collect();
        let mean = good.iter().sum::<f64>() / good.len() as f64;
        let var = good.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / good.len() as f64;
        let threshold = KREJ * var.sqrt();
        for (i, b) in bad.iter_mut().enumerate() {
            if flat(i).abs() > threshold {
                *b = true;
            }
        }
        // np.convolve(bad, ones(ngrow), mode="same"): each bad sample
        // spreads over a window of ngrow.
        let back = (ngrow - 1) / 2;
        for (i, g) in grown.iter_mut().enumerate() {
            let from = (i + back + 1).saturating_sub(ngrow);
            let to = (i + back).min(npix - 1);
            *g = bad[from..=to].iter().any(|&b| b);
        }
        bad.copy_from_slice(&grown);
        last_ngood = ngood;
        ngood = bad.iter().filter(|&&b| !b).count();
    }
    if ngood >= minpix {
        let slope = slope / CONTRAST;
        let center = (npix - 1) / 2;
        let median = if npix % 2 == 1 {
            samples[npix / 2]
        } else {
            (samples[npix / 2 - 1] + samples[npix / 2]) / 2.0
        };
        vmin = vmin.max(median - (center as f64 - 1.0) * slope);
        vmax = vmax.min(median + (npix - center) as f64 * slope);
    }
    (vmin as f32, vmax as f32)
}

/// Least-squares line through (i, y[i]) over the samples not marked bad:
/// (intercept, slope).
fn fit_line(y: &[f64], bad: &[bool]) -> (f64, f64) {
    let (mut n, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, (&v, &b)) in y.iter().zip(bad).enumerate() {
        if !b {
            let x = i as f64;
            n += 1.0;
            sx += x;
            sy += v;
            sxx += x * x;
            sxy += x * v;
        }
    }
    let det = n * sxx - sx * sx;
    if n == 0.0 || det == 0.0 {
        return (if n > 0.0 { sy / n } else { 0.0 }, 0.0);
    }
    let slope = (n * sxy - sx * sy) / det;
    ((sy - slope * sx) / n, slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        let mut v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&mut v, 0.0), 1.0);
        assert_eq!(percentile(&mut v, 100.0), 5.0);
        assert_eq!(percentile(&mut v, 50.0), 3.0);
        // numpy.percentile([1, 2, 3, 4, 5], 1) == 1.04
        assert!((percentile(&mut v, 1.0) - 1.04).abs() < 1e-6);
        let mut even: Vec<f32> = (0..100).map(|i| i as f32).rev().collect();
        // numpy.percentile(range(100), 1) == 0.99
        assert!((percentile(&mut even, 1.0) - 0.99).abs() < 1e-5);
        assert_eq!(percentile(&mut [7.0], 1.0), 7.0);
    }

    #[test]
    fn zscale_of_a_ramp_spans_it_and_outliers_are_ignored() {
        let mut ramp: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let (lo, hi) = zscale(&ramp);
        assert_eq!((lo, hi), (0.0, 999.0));
        ramp[500] = 1e9;
        let (lo, hi) = zscale(&ramp);
        assert!(lo >= 0.0 && hi < 1e6, "{lo} {hi}");
    }

    #[test]
    fn zscale_of_a_constant_is_that_constant() {
        assert_eq!(zscale(&[3.0; 50]), (3.0, 3.0));
    }
}
