//! Which way up a stamp is drawn: SkyPortal's survey rules, or North up
//! and East left from the stamp's WCS.

use super::rotate::{quarter_turns, rotate};
use super::settings::Facing;
use super::wcs;
use super::{Image, Orientation};

/// The oriented pixels with the top displayed row first, and whether
/// North up was asked for but the image has no usable WCS. `skyportal`:
/// the survey's orientation, then "row 0 at the bottom" (matplotlib's
/// `origin="lower"`). `north_up`: the WCS's [`wcs::Turn`] instead of the
/// survey's.
pub fn display_order(
    image: &Image,
    orientation: Orientation,
    facing: Facing,
) -> (Vec<f32>, usize, usize, bool) {
    let (w, h) = (image.width, image.height);
    let m = match (facing, image.wcs) {
        (Facing::NorthUp, Some(m)) => m,
        (facing, _) => {
            let (px, w, h) = survey_order(image, orientation);
            return (px, w, h, facing == Facing::NorthUp);
        }
    };
    let turn = wcs::north_up(m, w, h);
    let mut px = image.pixels.clone();
    if turn.mirror {
        px.chunks_exact_mut(w).for_each(<[f32]>::reverse);
    }
    // Counter-clockwise on screen is clockwise in stored order (row 0 at
    // the bottom), scipy's negative angles.
    let quarters = turn.degrees / 90.0;
    let (turned, tw, th) = if quarters.fract() == 0.0 {
        quarter_turns(&px, w, h, quarters as u32)
    } else {
        rotate(&px, w, h, -turn.degrees)
    };
    (flip_rows(&turned, tw), tw, th, false)
}

/// SkyPortal's orientation of the survey's stamps.
fn survey_order(image: &Image, orientation: Orientation) -> (Vec<f32>, usize, usize) {
    let (w, h) = (image.width, image.height);
    match orientation {
        // Flipped rows shown bottom-up: the stored order.
        Orientation::Ztf => (image.pixels.clone(), w, h),
        Orientation::AsStored => (flip_rows(&image.pixels, w), w, h),
        Orientation::Lsst => match image.rotpa {
            Some(rotpa) if rotpa != 0.0 => {
                let (rotated, rw, rh) = rotate(&image.pixels, w, h, -rotpa);
                (flip_rows(&rotated, rw), rw, rh)
            }
            _ => (flip_rows(&image.pixels, w), w, h),
        },
    }
}

fn flip_rows(px: &[f32], w: usize) -> Vec<f32> {
    px.rchunks_exact(w).flatten().copied().collect()
}

#[cfg(test)]
#[path = "north_up_tests.rs"]
mod tests;
