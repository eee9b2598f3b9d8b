//! The upload file store rooted at `storage.root`.
//!
//! [`layout`] is pure path logic (hashed folders, a file name that is safe
//! for any obj_id); [`FileStore`] does the I/O: stage to a temporary file,
//! place it with an atomic rename, and undo on failure.

mod decode;
mod image;
mod layout;
mod store;

pub use decode::{classify_image, Classified, DecodeError};
pub use image::{inspect_png, is_grayscale, ImageError, Inspected, MAX_SIDE, MIN_SIDE};
pub use layout::{
    dirs_of_hash, file_name, hashed_dirs, parse_file_name, stamp_file_name, ParsedName, RelPath,
    SUBDIR,
};
pub use store::{FileError, FileStore, Placed, SetAside, Staged};
