//! The file store: the files of the layout (`thumbnails/<aa>/<bb>/<name>`)
//! in a folder (`storage.root`) or an S3-compatible bucket.
//!
//! [`layout`] is pure path logic (hashed folders, a file name that is safe
//! for any obj_id); [`FileStore`] does the I/O: stage, place before the
//! commit, keep or undo after it. [`bucket`] is the S3 backend; `fits` and
//! `beside` do the same for the original FITS cutout kept beside an alert
//! stamp's PNG (`cutouts.keep_fits`); [`batch`] places many at once.

mod batch;
mod beside;
mod bucket;
mod decode;
mod error;
mod fits;
pub mod health;
mod image;
mod layout;
mod staged;
mod store;

pub use batch::{apply_all, Applied, Write};
pub use beside::{FitsApplied, FitsWrite};
pub use bucket::{Bucket, Served};
pub use decode::{classify_image, Classified, DecodeError};
pub use error::FileError;
pub use fits::{
    content_type, fits_beside, fits_file_name, fits_url_beside, gzip_fits, parse_fits_name,
    png_beside, FITS_SUFFIX,
};
pub use image::{inspect_png, is_grayscale, ImageError, Inspected, MAX_SIDE, MIN_SIDE};
pub use layout::{
    dirs_of_hash, file_name, hashed_dirs, parse_file_name, safe_segments, stamp_file_name,
    ParsedName, RelPath, SUBDIR,
};
pub use staged::{Placed, SetAside, Staged};
pub use store::FileStore;
