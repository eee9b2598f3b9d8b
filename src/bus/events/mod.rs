//! Every message body the service reads or writes, in one place, with no
//! I/O: `obj.created` / `obj.updated` (read by the worker, written by
//! `replay` and the feed) and `thumbnail.stored` (written after each commit).

pub mod cutouts;
mod obj;
mod stored;

pub use cutouts::{
    AlertCutouts, Alerts, CutoutsBody, DrawnAlert, InvalidAlert, PacketReader, StampError,
};
pub use obj::{
    parse_types, validate_id, Archival, InvalidEvent, ObjCreated, ObjUpdated, RawObjCreated,
    MAX_ID_LEN,
};
pub use stored::{StoredThumbnail, ThumbnailStored};

/// `origin` of a row a user uploaded.
pub const ORIGIN_UPLOAD: &str = "upload";
/// `origin` of an archival survey row (and of a row without an origin:
/// SkyPortal's own writers leave it NULL).
pub const ORIGIN_SURVEY: &str = "survey";
