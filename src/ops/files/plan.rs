//! Pure planning for `thumbnails files`: where a row's file should be, what
//! a file found on disk is. No I/O: the caller passes what it saw.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::files::{
    dirs_of_hash, parse_file_name, parse_fits_name, ParsedName, RelPath, FITS_SUFFIX, SUBDIR,
};
use crate::surveys::{normalise_survey, ThumbnailType};

/// A row that names a stored file.
#[derive(Debug, Clone, PartialEq)]
pub struct RowFile {
    pub id: i32,
    pub obj_id: String,
    pub ttype: ThumbnailType,
    pub survey: Option<String>,
    pub file_uri: String,
}

/// What to do about one row's file.
#[derive(Debug, Clone, PartialEq)]
pub enum RowPlan {
    /// The file is where the current depth puts it.
    InPlace,
    /// The file exists elsewhere under the uploads folder: move it to `to`
    /// and point the row there.
    Move {
        from: PathBuf,
        to: PathBuf,
        public_url: String,
    },
    /// The row's file is gone but one sits at the right place (a repair
    /// stopped between the move and the row update): point the row there.
    Repoint { to: PathBuf, public_url: String },
    /// Neither the row's file nor one at the right place exists.
    Missing,
    /// `file_uri` is outside `<root>/thumbnails`, or the row's survey is not
    /// a label the service writes: not ours to move.
    Foreign,
}

/// Where the current layout puts `row`'s file.
pub fn expected(row: &RowFile, depth: u8) -> Option<RelPath> {
    let survey = normalise_survey(row.survey.as_deref()).ok()?;
    Some(RelPath::stamp(
        &row.obj_id,
        row.ttype,
        survey.as_deref(),
        depth,
    ))
}

/// `path` lies inside `<root>/thumbnails` (lexically: no `..`, relative
/// parts or other roots).
pub fn is_under_uploads(path: &Path, root: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| !matches!(c, Component::ParentDir | Component::CurDir))
        && path.starts_with(root.join(SUBDIR))
}

/// Plans one row; `exists` says whether a path is a regular file.
pub fn plan_row(row: &RowFile, root: &Path, depth: u8, exists: impl Fn(&Path) -> bool) -> RowPlan {
    let current = PathBuf::from(&row.file_uri);
    let Some(rel) = expected(row, depth) else {
        return RowPlan::Foreign;
    };
    if !is_under_uploads(&current, root) {
        return RowPlan::Foreign;
    }
    let to = rel.path_under(root);
    if current == to {
        return if exists(&current) {
            RowPlan::InPlace
        } else {
            RowPlan::Missing
        };
    }
    if exists(&current) {
        RowPlan::Move {
            from: current,
            to,
            public_url: rel.public_url(),
        }
    } else if exists(&to) {
        RowPlan::Repoint {
            to,
            public_url: rel.public_url(),
        }
    } else {
        RowPlan::Missing
    }
}

/// What a file found under `<root>/thumbnails` is.
#[derive(Debug, Clone, PartialEq)]
pub enum FileKind {
    /// A hidden file: an upload, replacement or delete in flight. Never touched.
    InFlight,
    /// Not a name this service writes. Never touched.
    Foreign,
    /// One of ours; `at_depth` if its folders are the current depth's.
    Ours { parsed: ParsedName, at_depth: bool },
    /// An alert stamp's kept FITS (`cutouts.keep_fits`), beside its PNG.
    /// No row names it: it is ours while a row of its stamp exists.
    Fits { parsed: ParsedName, at_depth: bool },
}

/// Classifies a file by its folders under `<root>/thumbnails` and its name.
pub fn classify(dirs: &[String], name: &str, depth: u8) -> FileKind {
    if name.starts_with('.') {
        return FileKind::InFlight;
    }
    let at_depth = |p: &ParsedName| dirs == dirs_of_hash(&p.hash, depth).as_slice();
    if name.ends_with(FITS_SUFFIX) {
        return match parse_fits_name(name) {
            None => FileKind::Foreign,
            Some(parsed) => FileKind::Fits {
                at_depth: at_depth(&parsed),
                parsed,
            },
        };
    }
    match parse_file_name(name) {
        None => FileKind::Foreign,
        Some(parsed) => FileKind::Ours {
            at_depth: at_depth(&parsed),
            parsed,
        },
    }
}

/// The `(obj_id, type, survey)` a row or a file name is the stamp of, for
/// matching a kept FITS to its row (`None` for a shortened name).
pub fn stamp_key(parsed: &ParsedName) -> Option<(String, ThumbnailType, Option<String>)> {
    Some((parsed.obj_id.clone()?, parsed.ttype, parsed.survey.clone()))
}

/// [`stamp_key`] of a row (its survey normalised as the file name has it).
pub fn row_key(row: &RowFile) -> Option<(String, ThumbnailType, Option<String>)> {
    let survey = normalise_survey(row.survey.as_deref()).ok()?;
    Some((row.obj_id.clone(), row.ttype, survey))
}

/// The row (index into `rows`) a file found without a row of its own
/// belongs to: same object, type and survey as its name says. `rows` are
/// rows whose own file is missing, so the file is that row's image moved
/// by hand (or restored at another depth): it goes back into place, never
/// away. Shortened names (obj_ids over 150 characters) do not give their
/// obj_id back and are not matched.
pub fn claimant(parsed: &ParsedName, rows: &[RowFile]) -> Option<usize> {
    let obj_id = parsed.obj_id.as_deref()?;
    rows.iter().position(|r| {
        r.obj_id == obj_id
            && r.ttype == parsed.ttype
            && normalise_survey(r.survey.as_deref()).ok().flatten() == parsed.survey
    })
}

/// The move that puts `file` back as `row`'s file, at the current depth.
pub fn plan_claim(row: &RowFile, file: &Path, root: &Path, depth: u8) -> Option<RowPlan> {
    let rel = expected(row, depth)?;
    Some(RowPlan::Move {
        from: file.to_path_buf(),
        to: rel.path_under(root),
        public_url: rel.public_url(),
    })
}

/// A file without a row may be removed only once older than `grace`: an
/// upload places its file a moment before its row commits.
pub fn may_remove_orphan(age: Option<Duration>, grace: Duration) -> bool {
    age.is_some_and(|a| a >= grace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::hashed_dirs;

    const ROOT: &str = "/srv/data";

    fn row(file_uri: &str) -> RowFile {
        RowFile {
            id: 1,
            obj_id: "ZTF1".into(),
            ttype: ThumbnailType::New,
            survey: Some("ztf".into()),
            file_uri: file_uri.into(),
        }
    }

    fn at(depth: u8) -> PathBuf {
        RelPath::stamp("ZTF1", ThumbnailType::New, Some("ZTF"), depth).path_under(Path::new(ROOT))
    }

    #[test]
    fn a_file_is_claimed_by_the_row_its_name_names_only() {
        let parsed = |name: &str| parse_file_name(name).expect("ours");
        let rows = [
            RowFile {
                ttype: ThumbnailType::Sdss,
                survey: None,
                ..row("/srv/data/thumbnails/x/ZTF1_sdss.png")
            },
            row("/srv/data/thumbnails/x/ZTF1_new_ZTF.png"),
        ];
        assert_eq!(claimant(&parsed("ZTF1_new_ZTF.png"), &rows), Some(1));
        assert_eq!(claimant(&parsed("ZTF1_sdss.png"), &rows), Some(0));
        assert_eq!(claimant(&parsed("ZTF1_new_LSST.png"), &rows), None);
        assert_eq!(claimant(&parsed("ZTF2_new_ZTF.png"), &rows), None);
        assert_eq!(claimant(&parsed("ZTF1_ref_ZTF.png"), &rows), None);
        let file = Path::new("/srv/data/thumbnails/elsewhere/ZTF1_new_ZTF.png");
        assert_eq!(
            plan_claim(&rows[1], file, Path::new(ROOT), 2),
            Some(RowPlan::Move {
                from: file.to_path_buf(),
                to: at(2),
                public_url: RelPath::stamp("ZTF1", ThumbnailType::New, Some("ZTF"), 2).public_url(),
            })
        );
    }

    #[test]
    fn rows_are_planned_against_the_current_depth() {
        let root = Path::new(ROOT);
        let (d1, d2) = (at(1), at(2));
        let r1 = row(&d1.to_string_lossy());
        let only = |p: PathBuf| move |q: &Path| q == p;
        assert_eq!(plan_row(&r1, root, 1, only(d1.clone())), RowPlan::InPlace);
        assert_eq!(plan_row(&r1, root, 1, |_| false), RowPlan::Missing);
        match plan_row(&r1, root, 2, only(d1.clone())) {
            RowPlan::Move {
                from,
                to,
                public_url,
            } => {
                assert_eq!((from, &to), (d1.clone(), &d2));
                assert!(public_url.ends_with("/ZTF1_new_ZTF.png"));
                assert_eq!(public_url.matches('/').count(), 5, "{public_url}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plan_row(&r1, root, 2, only(d2.clone())),
            RowPlan::Repoint { to, .. } if to == d2
        ));
        assert_eq!(plan_row(&r1, root, 2, |_| false), RowPlan::Missing);
        for foreign in [
            "/etc/passwd",
            "relative/x.png",
            "/srv/data/thumbnails/../x.png",
        ] {
            assert_eq!(plan_row(&row(foreign), root, 2, |_| true), RowPlan::Foreign);
        }
        let mut bad_survey = r1.clone();
        bad_survey.survey = Some("../x".into());
        assert_eq!(plan_row(&bad_survey, root, 2, |_| true), RowPlan::Foreign);
    }

    #[test]
    fn files_are_classified_by_name_and_folders() {
        let dirs = hashed_dirs("ZTF1", 2);
        assert!(matches!(
            classify(&dirs, "ZTF1_new.png", 2),
            FileKind::Ours { at_depth: true, .. }
        ));
        assert!(matches!(
            classify(&dirs[..1], "ZTF1_new.png", 2),
            FileKind::Ours {
                at_depth: false,
                ..
            }
        ));
        assert!(matches!(
            classify(&dirs, "ZTF1_new.png", 1),
            FileKind::Ours {
                at_depth: false,
                ..
            }
        ));
        match classify(&dirs, "ZTF1_new_ZTF.fits.gz", 2) {
            FileKind::Fits {
                parsed,
                at_depth: true,
            } => {
                let row = RowFile {
                    survey: Some("ztf".into()),
                    ..row("/x")
                };
                assert_eq!(stamp_key(&parsed), row_key(&row));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(&dirs[..1], "ZTF1_new_ZTF.fits.gz", 2),
            FileKind::Fits {
                at_depth: false,
                ..
            }
        ));
        for foreign in ["ZTF1_new.fits.gz", "ZTF1_new_ZTF.fits", "x.fits.gz"] {
            assert_eq!(classify(&dirs, foreign, 2), FileKind::Foreign, "{foreign}");
        }
        assert_eq!(classify(&dirs, ".upload-1.tmp", 2), FileKind::InFlight);
        assert_eq!(classify(&dirs, "notes.txt", 2), FileKind::Foreign);
    }

    #[test]
    fn orphans_wait_for_the_grace_period() {
        let grace = Duration::from_secs(3600);
        assert!(!may_remove_orphan(None, grace));
        assert!(!may_remove_orphan(Some(Duration::from_secs(5)), grace));
        assert!(may_remove_orphan(Some(grace), grace));
    }
}
