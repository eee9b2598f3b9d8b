//! Pure path logic: where an upload lives, relative to `storage.root`.
//!
//! `<root>/thumbnails/<aa>/<bb>/<obj_id>_<type>.png`, where `aabb...` is the
//! hex sha256 of the obj_id (`depth` levels of two hex digits). The obj_id is
//! written into the file name through an injective encoding that keeps
//! `[A-Za-z0-9_.-]` as is and writes every other byte (and a leading `.`) as
//! `~XX`, so no obj_id can name a directory, a hidden file or a parent.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::surveys::ThumbnailType;

/// The folder under `storage.root` that holds uploads (and the URL prefix
/// after `/static/`).
pub const SUBDIR: &str = "thumbnails";

/// Encoded obj_ids longer than this are shortened and suffixed with their
/// hash, keeping file names far below the usual 255-byte limit.
const MAX_STEM: usize = 150;
const KEPT_PREFIX: usize = 100;

/// Hex sha256 of the obj_id.
fn hex_sha256(obj_id: &str) -> String {
    hex::encode(Sha256::digest(obj_id.as_bytes()))
}

/// The `depth` folder names (two hex digits each) for an obj_id.
pub fn hashed_dirs(obj_id: &str, depth: u8) -> Vec<String> {
    dirs_of_hash(&hex_sha256(obj_id), depth)
}

/// `<encoded obj_id>_<type>.png`; equal to `<obj_id>_<type>.png` for the
/// usual alphanumeric ids.
pub fn file_name(obj_id: &str, ttype: ThumbnailType) -> String {
    format!("{}_{}.png", encode_stem(obj_id), ttype.as_str())
}

/// [`file_name`], or `<encoded obj_id>_<type>_<SURVEY>.png` for an alert
/// stamp. `survey` is a label checked by
/// [`crate::surveys::normalise_survey`] (`[A-Z0-9-]`, so it needs no
/// encoding and, having no lower-case letter, is never taken for a type).
pub fn stamp_file_name(obj_id: &str, ttype: ThumbnailType, survey: Option<&str>) -> String {
    match survey {
        None => file_name(obj_id, ttype),
        Some(s) => format!("{}_{}_{}.png", encode_stem(obj_id), ttype.as_str(), s),
    }
}

fn encode_stem(obj_id: &str) -> String {
    let mut out = String::with_capacity(obj_id.len());
    for (i, b) in obj_id.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("~{b:02X}"));
        }
    }
    if out.len() > MAX_STEM {
        // "~~" never occurs in an unshortened encoding, so the two forms
        // cannot collide; the full hash keeps shortened names distinct.
        out.truncate(KEPT_PREFIX);
        out.push_str("~~");
        out.push_str(&hex_sha256(obj_id));
    }
    out
}

/// What a stored file's name says, read back by [`parse_file_name`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    /// The obj_id; `None` for a shortened (hash-suffixed) name.
    pub obj_id: Option<String>,
    /// Hex sha256 of the obj_id (the hashed folders come from it).
    pub hash: String,
    pub ttype: ThumbnailType,
    pub survey: Option<String>,
}

/// The inverse of [`stamp_file_name`]: `None` for any name this service
/// would not write (temporary files, foreign files, non-canonical
/// encodings), so that only our own files are ever moved or removed.
pub fn parse_file_name(name: &str) -> Option<ParsedName> {
    let rest = name.strip_suffix(".png")?;
    let (rest, survey) = match rest.rsplit_once('_') {
        Some((head, last)) if crate::surveys::is_survey_label(last) => {
            (head, Some(last.to_string()))
        }
        _ => (rest, None),
    };
    // The longest type that ends the name (`new_gz` before a shorter one).
    let ttype = ThumbnailType::ALL
        .iter()
        .filter(|t| {
            rest.len() > t.as_str().len()
                && rest.ends_with(t.as_str())
                && rest.as_bytes()[rest.len() - t.as_str().len() - 1] == b'_'
        })
        .max_by_key(|t| t.as_str().len())
        .copied()?;
    let stem = &rest[..rest.len() - ttype.as_str().len() - 1];
    // The last "~~": a prefix cut inside "~XX" may end in "~".
    let (obj_id, hash) = match stem.rsplit_once("~~") {
        Some((prefix, hash)) => {
            let is_hash = hash.len() == 64
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !is_hash || prefix.len() != KEPT_PREFIX {
                return None;
            }
            (None, hash.to_string())
        }
        None => {
            let obj_id = decode_stem(stem)?;
            let hash = hex_sha256(&obj_id);
            (Some(obj_id), hash)
        }
    };
    let parsed = ParsedName {
        obj_id,
        hash,
        ttype,
        survey,
    };
    // Only canonical names: encoding the parsed obj_id gives the name back.
    if let Some(id) = &parsed.obj_id {
        if stamp_file_name(id, ttype, parsed.survey.as_deref()) != name {
            return None;
        }
    }
    Some(parsed)
}

fn decode_stem(stem: &str) -> Option<String> {
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'~' {
            let hex = stem.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `depth` folder names for a hex sha256 (see [`hashed_dirs`]).
pub fn dirs_of_hash(hash: &str, depth: u8) -> Vec<String> {
    (0..usize::from(depth.min(32)))
        .filter_map(|i| hash.get(2 * i..2 * i + 2).map(str::to_string))
        .collect()
}

/// A file's place under `storage.root`: `thumbnails/<aa>/<bb>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath {
    dirs: Vec<String>,
    name: String,
}

impl RelPath {
    pub fn new(obj_id: &str, ttype: ThumbnailType, depth: u8) -> Self {
        Self::stamp(obj_id, ttype, None, depth)
    }

    /// An alert stamp's place (`survey` checked, see [`stamp_file_name`]).
    pub fn stamp(obj_id: &str, ttype: ThumbnailType, survey: Option<&str>, depth: u8) -> Self {
        let mut dirs = vec![SUBDIR.to_string()];
        dirs.extend(hashed_dirs(obj_id, depth));
        Self {
            dirs,
            name: stamp_file_name(obj_id, ttype, survey),
        }
    }

    /// A place given by its folders (starting with `thumbnails`) and name,
    /// as found in a stored path rather than computed.
    pub fn from_parts(dirs: Vec<String>, name: String) -> Self {
        Self { dirs, name }
    }

    pub fn file_name(&self) -> &str {
        &self.name
    }

    /// The same folder, another file (a stamp's kept FITS).
    pub(super) fn with_file_name(mut self, name: String) -> Self {
        self.name = name;
        self
    }

    /// `thumbnails/aa/bb/name`, with `/` separators.
    pub fn as_url_path(&self) -> String {
        let mut s = self.dirs.join("/");
        s.push('/');
        s.push_str(&self.name);
        s
    }

    /// The `public_url` column: `/static/thumbnails/aa/bb/name`.
    pub fn public_url(&self) -> String {
        format!("/static/{}", self.as_url_path())
    }

    /// The folder holding the file, under `root`.
    pub fn dir_under(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        p.extend(&self.dirs);
        p
    }

    /// The file, under `root`.
    pub fn path_under(&self, root: &Path) -> PathBuf {
        self.dir_under(root).join(&self.name)
    }
}

/// A stored path is folders of hex digits and a file name from the file
/// store's alphabet; anything else (`..`, hidden names, separators, NUL)
/// is refused before the file system is touched.
pub fn safe_segments(path: &str) -> Option<Vec<&str>> {
    let segments: Vec<&str> = path.split('/').collect();
    let ok = !segments.is_empty()
        && segments.len() <= 17
        && segments.iter().all(|s| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.len() <= 255
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-~".contains(&b))
        });
    ok.then_some(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Component;

    #[test]
    fn usual_ids_are_kept_and_hashed() {
        let p = RelPath::new("ZTF21aaaaaaa", ThumbnailType::New, 2);
        let h = hex_sha256("ZTF21aaaaaaa");
        assert_eq!(
            p.as_url_path(),
            format!("thumbnails/{}/{}/ZTF21aaaaaaa_new.png", &h[0..2], &h[2..4])
        );
        assert_eq!(p.public_url(), format!("/static/{}", p.as_url_path()));
        assert_eq!(
            p.path_under(Path::new("/srv")),
            PathBuf::from(format!(
                "/srv/thumbnails/{}/{}/ZTF21aaaaaaa_new.png",
                &h[0..2],
                &h[2..4]
            ))
        );
        assert_eq!(hashed_dirs("x", 0), Vec::<String>::new());
        assert_eq!(hashed_dirs("x", 3).len(), 3);
    }

    #[test]
    fn unsafe_ids_are_encoded() {
        assert_eq!(
            file_name("../../etc/passwd", ThumbnailType::Ref),
            "~2E.~2F..~2Fetc~2Fpasswd_ref.png"
        );
        assert_eq!(file_name("/abs", ThumbnailType::Sub), "~2Fabs_sub.png");
        assert_eq!(file_name("a\0b", ThumbnailType::New), "a~00b_new.png");
        assert_eq!(
            file_name("%2e%2e", ThumbnailType::New),
            "~252e~252e_new.png"
        );
        assert_eq!(file_name("a~b", ThumbnailType::New), "a~7Eb_new.png");
        assert_eq!(
            file_name("SN 2021abc", ThumbnailType::New),
            "SN~202021abc_new.png"
        );
        assert_eq!(file_name("", ThumbnailType::New), "_new.png");
    }

    #[test]
    fn stamps_name_their_survey() {
        let p = RelPath::stamp("ZTF21a", ThumbnailType::New, Some("ZTF"), 2);
        assert_eq!(p.file_name(), "ZTF21a_new_ZTF.png");
        assert_eq!(
            RelPath::stamp("ZTF21a", ThumbnailType::New, None, 2),
            RelPath::new("ZTF21a", ThumbnailType::New, 2)
        );
        assert_ne!(
            stamp_file_name("a", ThumbnailType::New, Some("LSST")),
            stamp_file_name("a", ThumbnailType::New, Some("ZTF"))
        );
    }

    #[test]
    fn names_parse_back() {
        let p = parse_file_name("ZTF21a_new_gz_ZTF.png").expect("stamp");
        assert_eq!(p.obj_id.as_deref(), Some("ZTF21a"));
        assert_eq!(p.ttype, ThumbnailType::NewGz);
        assert_eq!(p.survey.as_deref(), Some("ZTF"));
        assert_eq!(p.hash, hex_sha256("ZTF21a"));
        let p = parse_file_name("a_b_ref.png").expect("archival");
        assert_eq!(
            (p.obj_id.as_deref(), p.ttype, p.survey),
            (Some("a_b"), ThumbnailType::Ref, None)
        );
        for foreign in [
            ".upload-123.tmp",
            "x.png",
            "x_nope.png",
            "x_new.jpg",
            "~2e_new.png.tmp",
            "a~41_new.png", // non-canonical: A is written as A
            "_new.png~",
        ] {
            assert_eq!(parse_file_name(foreign), None, "{foreign}");
        }
        let long = "a".repeat(300);
        let p = parse_file_name(&file_name(&long, ThumbnailType::Sub)).expect("long");
        assert_eq!((p.obj_id, p.hash), (None, hex_sha256(&long)));
        assert_eq!(dirs_of_hash(&hex_sha256("x"), 2), hashed_dirs("x", 2));
    }

    #[test]
    fn long_ids_are_shortened_distinctly() {
        let a = "a".repeat(300);
        let b = format!("{}b", "a".repeat(299));
        let (fa, fb) = (
            file_name(&a, ThumbnailType::New),
            file_name(&b, ThumbnailType::New),
        );
        assert_ne!(fa, fb);
        assert!(fa.len() < 200, "{}", fa.len());
    }

    proptest! {
        #[test]
        fn never_escapes_and_never_collides(a in any::<String>(), b in any::<String>()) {
            for id in [&a, &b] {
                let rel = RelPath::new(id, ThumbnailType::New, 2);
                let path = rel.path_under(Path::new("/root"));
                prop_assert!(path.starts_with("/root/thumbnails"));
                let comps: Vec<Component> = path.components().collect();
                prop_assert_eq!(comps.len(), 6);
                prop_assert!(comps.iter().all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
                let name = rel.file_name();
                prop_assert!(!name.starts_with('.'));
                prop_assert!(name.bytes().all(|c| c.is_ascii_alphanumeric() || b"_.-~".contains(&c)));
                prop_assert!(name.len() < 200);
            }
            if a != b {
                prop_assert_ne!(file_name(&a, ThumbnailType::New), file_name(&b, ThumbnailType::New));
            }
            for survey in [None, Some("ZTF"), Some("2")] {
                let name = stamp_file_name(&a, ThumbnailType::Ref, survey);
                let parsed = parse_file_name(&name).expect("our names parse");
                prop_assert_eq!(parsed.hash, hex_sha256(&a));
                prop_assert_eq!(parsed.ttype, ThumbnailType::Ref);
                prop_assert_eq!(parsed.survey.as_deref(), survey);
                if let Some(id) = parsed.obj_id {
                    prop_assert_eq!(id, a.clone());
                }
            }
        }
    }
}
