//! Scaling a stamp onto the square canvas as matplotlib's `imshow` does
//! (3.10+, `interpolation='auto'`, Agg): aspect kept, centred on white;
//! pixel blocks (`nearest`) when enlarging more than 3 times or by exactly
//! 1 or 2, else Agg's `hanning` filter, which when enlarging has radius 1:
//! the two neighbours weighted 0.5 + 0.5 cos(pi d), a cosine
//! interpolation.

/// matplotlib's resampling choice for `interpolation='auto'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Hanning,
}

/// Fixed-point weights: 8 bits, as Agg's sub-pixel grid.
pub const ONE: u32 = 256;

/// Where the image lands on one axis of the canvas and how canvas pixels
/// sample it: the first canvas pixel inside the image, and for each canvas
/// pixel from there the two source pixels and the weight of the second
/// (of [`ONE`]; 0 for `nearest`).
pub struct Axis {
    pub first: usize,
    pub taps: Vec<(usize, usize, u32)>,
}

/// The factor that fits a `w` x `h` image into `size`, aspect kept.
pub fn factor(w: usize, h: usize, size: usize) -> f64 {
    (size as f64 / w as f64).min(size as f64 / h as f64)
}

/// matplotlib's `_resample` rule: `nearest` when both axes grow by more
/// than 3 times or by exactly 1 or 2, else `hanning`. (More than 3, as
/// matplotlib's code compares, so 56 pixels into 168 are smoothed.)
pub fn filter(w: usize, h: usize, size: usize) -> Filter {
    let f = factor(w, h, size);
    let blocky = |n: usize| {
        let (n, extent) = (n as f64, n as f64 * f);
        // A hair of tolerance: 84 * (168 / 84) need not be exactly 168.
        let near = |k: f64| (extent - k * n).abs() < 1e-9 * extent;
        (extent > 3.0 * n && !near(3.0)) || near(1.0) || near(2.0)
    };
    if blocky(w) && blocky(h) {
        Filter::Nearest
    } else {
        Filter::Hanning
    }
}

/// The taps of one axis of `src` pixels onto a `canvas`-pixel side: the
/// extent `src * factor` centred; the canvas pixels whose centre falls in
/// it sample the source at u = (centre - start) / factor (pixel i covers
/// [i, i + 1)), on Agg's 1/256 sub-pixel grid. Past the edge pixels'
/// centres Agg reflects, which for two taps is the edge pixel itself.
pub fn axis(src: usize, canvas: usize, factor: f64, filter: Filter) -> Axis {
    let extent = src as f64 * factor;
    let start = (canvas as f64 - extent) / 2.0;
    let last = (src - 1) as i64;
    let mut first = canvas;
    let mut taps = Vec::with_capacity(canvas);
    for o in 0..canvas {
        let centre = o as f64 + 0.5;
        if centre < start || centre > start + extent {
            continue;
        }
        first = first.min(o);
        let u = ((centre - start) / factor * f64::from(ONE)).round() as i64;
        taps.push(match filter {
            Filter::Nearest => {
                // matplotlib flips the data so that a centre exactly on a
                // border takes the pixel before it.
                let i = ((u - 1) >> 8).clamp(0, last) as usize;
                (i, i, 0)
            }
            Filter::Hanning => {
                let v = u - i64::from(ONE / 2);
                let i0 = v >> 8;
                let d = (v & 0xff) as f64 / f64::from(ONE);
                // Agg's hanning at distances d and 1 - d, which sum to 1.
                let w = (0.5 - 0.5 * (std::f64::consts::PI * d).cos()) * f64::from(ONE);
                let (a, b) = (i0.clamp(0, last) as usize, (i0 + 1).clamp(0, last) as usize);
                (a, b, w.round() as u32)
            }
        });
    }
    Axis { first, taps }
}
