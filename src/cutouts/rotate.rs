//! Rotation as `scipy.ndimage.rotate(data, angle, reshape=True, order=1,
//! mode="constant", cval=0)` does it: the canvas grows to the rotated
//! image's bounding box, samples are bilinear, points outside the input are 0.

/// Rotates a row-major `width` x `height` image by `angle` degrees (scipy's
/// sense, axes (row, column)); returns the pixels and the new width, height.
pub fn rotate(src: &[f32], width: usize, height: usize, angle: f64) -> (Vec<f32>, usize, usize) {
    let (s, c) = sin_cos_deg(angle);
    let (ih, iw) = (height as f64, width as f64);
    // rot_matrix @ [[0, 0, ih, ih], [0, iw, 0, iw]], then ptp + 0.5, truncated.
    let ptp = |v: [f64; 4]| {
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        ((max - min) + 0.5) as usize
    };
    let oh = ptp([0.0, s * iw, c * ih, c * ih + s * iw]).max(1);
    let ow = ptp([0.0, c * iw, -s * ih, -s * ih + c * iw]).max(1);
    // Output (r, q) samples input (c r + s q + off_r, -s r + c q + off_c).
    let (ocr, occ) = ((oh as f64 - 1.0) / 2.0, (ow as f64 - 1.0) / 2.0);
    let off_r = (ih - 1.0) / 2.0 - (c * ocr + s * occ);
    let off_c = (iw - 1.0) / 2.0 - (-s * ocr + c * occ);
    let (max_r, max_c) = (ih - 1.0, iw - 1.0);
    const EPS: f64 = 1e-9;
    let mut out = vec![0f32; ow * oh];
    for (r, row) in out.chunks_exact_mut(ow).enumerate() {
        let r = r as f64;
        for (q, px) in row.iter_mut().enumerate() {
            let q = q as f64;
            let y = c * r + s * q + off_r;
            let x = -s * r + c * q + off_c;
            if y < -EPS || x < -EPS || y > max_r + EPS || x > max_c + EPS {
                continue;
            }
            let (y, x) = (y.clamp(0.0, max_r), x.clamp(0.0, max_c));
            let (y0, x0) = (y.floor() as usize, x.floor() as usize);
            let (y1, x1) = ((y0 + 1).min(height - 1), (x0 + 1).min(width - 1));
            let (fy, fx) = ((y - y0 as f64) as f32, (x - x0 as f64) as f32);
            let at = |yy: usize, xx: usize| src[yy * width + xx];
            let top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * fx;
            let bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * fx;
            *px = top + (bottom - top) * fy;
        }
    }
    (out, ow, oh)
}

/// Turns a row-major `width` x `height` image by `quarters` x 90 degrees
/// as [`rotate`] does by `-90 * quarters` (counter-clockwise when row 0 is
/// drawn at the bottom), moving pixels without arithmetic, so blanks stay
/// where they are; returns the pixels and the new width, height.
pub fn quarter_turns(
    src: &[f32],
    width: usize,
    height: usize,
    quarters: u32,
) -> (Vec<f32>, usize, usize) {
    let (w, h) = (width, height);
    match quarters % 4 {
        0 => (src.to_vec(), w, h),
        2 => (src.iter().rev().copied().collect(), w, h),
        // New (column x, row y) takes old (row h-1-x, column y) ...
        1 => {
            let out = (0..w)
                .flat_map(|y| (0..h).map(move |x| src[(h - 1 - x) * w + y]))
                .collect();
            (out, h, w)
        }
        // ... or old (row x, column w-1-y).
        _ => {
            let out = (0..w)
                .flat_map(|y| (0..h).map(move |x| src[x * w + (w - 1 - y)]))
                .collect();
            (out, h, w)
        }
    }
}

/// sin and cos of degrees, exact at multiples of 90 (as scipy's sindg/cosdg).
fn sin_cos_deg(angle: f64) -> (f64, f64) {
    let a = angle.rem_euclid(360.0);
    match a {
        0.0 => (0.0, 1.0),
        90.0 => (1.0, 0.0),
        180.0 => (0.0, -1.0),
        270.0 => (-1.0, 0.0),
        _ => a.to_radians().sin_cos(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canvas_grows_like_scipy() {
        let src = vec![1.0; 63 * 63];
        let (_, w, h) = rotate(&src, 63, 63, -30.0);
        assert_eq!((w, h), (86, 86));
        let (_, w, h) = rotate(&src, 63, 63, 30.0);
        assert_eq!((w, h), (86, 86));
        let (_, w, h) = rotate(&vec![1.0; 41 * 63], 41, 63, 90.0);
        assert_eq!((w, h), (63, 41));
    }

    #[test]
    fn zero_is_identity_and_corners_are_zero_when_turned() {
        let src: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let (out, w, h) = rotate(&src, 8, 8, 0.0);
        assert_eq!((w, h), (8, 8));
        assert_eq!(out, src);
        let (out, w, _) = rotate(&vec![5.0; 63 * 63], 63, 63, 30.0);
        assert_eq!(out[0], 0.0);
        assert!((out[43 * w + 43] - 5.0).abs() < 1e-5);
    }

    #[test]
    fn ninety_degrees_moves_pixels_exactly() {
        // 2 x 3 (w x h): rows [0 1] [2 3] [4 5]
        let src = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let (out, w, h) = rotate(&src, 2, 3, 90.0);
        assert_eq!((w, h), (3, 2));
        // scipy.ndimage.rotate(a, 90) == np.rot90(a): [[1 3 5] [0 2 4]]
        assert_eq!(out, vec![1.0, 3.0, 5.0, 0.0, 2.0, 4.0]);
    }

    #[test]
    fn quarter_turns_are_rotate_by_minus_ninety_and_keep_nan_in_place() {
        let src: Vec<f32> = (0..12).map(|i| i as f32).collect();
        for q in 0..5 {
            let (a, aw, ah) = quarter_turns(&src, 3, 4, q);
            let (b, bw, bh) = rotate(&src, 3, 4, -90.0 * f64::from(q));
            assert_eq!((a, aw, ah), (b, bw, bh), "{q} quarters");
        }
        let mut holed = src.clone();
        holed[4] = f32::NAN;
        let (out, _, _) = quarter_turns(&holed, 3, 4, 1);
        assert_eq!(out.iter().filter(|v| v.is_nan()).count(), 1);
    }
}
