//! What the service needs of a (SkyPortal) database, checked before it
//! migrates and when it starts, so that a role without the grants or a
//! schema older than the service supports stops with one line naming the
//! grant or the column, instead of a raw SQL error or, worse, a service
//! that starts and then dead-letters every event.
//!
//! The rules ([`Column`], [`column_problems`]) are pure and unit-tested; the
//! two `check_*` functions read the catalog.

use sea_orm::sqlx::{self, PgPool};

/// The oldest SkyPortal schema the service can write into, as the README
/// states it.
pub const OLDEST_SUPPORTED: &str = "SkyPortal's schema with thumbnails.survey (per-survey alert stamps) and a nullable thumbnails.is_grayscale";

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The role lacks a privilege; `grant` is the statement that gives it.
    #[error("the database role {role} lacks {what}; as the owner, run: {grant}")]
    Grant {
        role: String,
        what: String,
        grant: String,
    },
    /// The tables are older than the service supports.
    #[error("the database schema is older than this service supports: {problem}; the oldest supported is {OLDEST_SUPPORTED}")]
    TooOld { problem: String },
    #[error("reading the database catalog: {0}")]
    Db(#[from] sqlx::Error),
}

/// A column of `objs` or `thumbnails` as the catalog describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub table: String,
    pub name: String,
    /// `information_schema.columns.udt_name` (`varchar`, `float8`,
    /// `thumbnail_types`, ...).
    pub udt: String,
    pub nullable: bool,
    pub has_default: bool,
}

/// How the service uses a column.
#[derive(Clone, Copy, PartialEq)]
enum Use {
    /// Always written: any nullability will do.
    Written,
    /// Written NULL by some writer: must be nullable.
    MayBeNull,
}

/// The columns the service writes, with the types it binds (`text` and
/// `varchar` are interchangeable for it).
const WRITES: &[(&str, &str, &[&str], Use)] = &[
    ("objs", "id", &["varchar", "text"], Use::Written),
    ("objs", "ra", &["float8"], Use::MayBeNull),
    ("objs", "dec", &["float8"], Use::MayBeNull),
    ("objs", "is_roid", &["bool"], Use::Written),
    ("objs", "internal_key", &["varchar", "text"], Use::Written),
    ("objs", "created_at", &["timestamp"], Use::Written),
    ("objs", "modified", &["timestamp"], Use::Written),
    ("thumbnails", "id", &["int4", "int8"], Use::Written),
    ("thumbnails", "created_at", &["timestamp"], Use::Written),
    ("thumbnails", "modified", &["timestamp"], Use::Written),
    ("thumbnails", "type", &["thumbnail_types"], Use::Written),
    (
        "thumbnails",
        "file_uri",
        &["varchar", "text"],
        Use::MayBeNull,
    ),
    (
        "thumbnails",
        "public_url",
        &["varchar", "text"],
        Use::MayBeNull,
    ),
    ("thumbnails", "origin", &["varchar", "text"], Use::MayBeNull),
    ("thumbnails", "survey", &["varchar", "text"], Use::MayBeNull),
    ("thumbnails", "is_grayscale", &["bool"], Use::MayBeNull),
    ("thumbnails", "obj_id", &["varchar", "text"], Use::Written),
];

/// What is wrong with `columns` (of tables that exist), first problem
/// first; empty when the service can write them. A `thumbnails` column the
/// service does not know, NOT NULL without a default, would fail every
/// insert too. `objs` may have such columns: the worker only inserts objs
/// for upstream publishers, and SkyPortal's own objs rows come with them.
pub fn column_problems(columns: &[Column]) -> Vec<String> {
    let mut problems = Vec::new();
    let present = |t: &str| columns.iter().any(|c| c.table == t);
    for (table, name, udts, use_) in WRITES {
        if !present(table) {
            continue;
        }
        let Some(col) = columns
            .iter()
            .find(|c| c.table == *table && c.name == *name)
        else {
            problems.push(format!("column {table}.{name} is missing"));
            continue;
        };
        if !udts.contains(&col.udt.as_str()) {
            problems.push(format!(
                "column {table}.{name} is {}, not {}",
                col.udt, udts[0]
            ));
        }
        if *use_ == Use::MayBeNull && !col.nullable {
            problems.push(format!(
                "column {table}.{name} is NOT NULL (the service leaves it NULL)"
            ));
        }
    }
    for col in columns.iter().filter(|c| c.table == "thumbnails") {
        let known = WRITES
            .iter()
            .any(|(t, n, _, _)| *t == "thumbnails" && *n == col.name);
        if !known && !col.nullable && !col.has_default {
            problems.push(format!(
                "column thumbnails.{} is NOT NULL without a default (the service does not write it)",
                col.name
            ));
        }
    }
    problems
}

const COLUMNS: &str = "SELECT table_name::text, column_name::text, udt_name::text,
        is_nullable = 'YES', column_default IS NOT NULL
    FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name IN ('objs', 'thumbnails')";

/// Checks the columns the service writes (tables not created yet pass:
/// migrating creates them).
pub async fn check_columns(pool: &PgPool) -> Result<(), SchemaError> {
    let rows: Vec<(String, String, String, bool, bool)> =
        sqlx::query_as(COLUMNS).fetch_all(pool).await?;
    let columns: Vec<Column> = rows
        .into_iter()
        .map(|(table, name, udt, nullable, has_default)| Column {
            table,
            name,
            udt,
            nullable,
            has_default,
        })
        .collect();
    match column_problems(&columns).into_iter().next() {
        Some(problem) => Err(SchemaError::TooOld { problem }),
        None => Ok(()),
    }
}

/// The catalog facts the privilege check needs, read in one query.
const PRIVILEGES: &str = "SELECT current_user::text,
    (SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = to_regclass('thumbnails')),
    ARRAY(SELECT p FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'TRIGGER']) p
          WHERE to_regclass('objs') IS NOT NULL
            AND NOT has_table_privilege(to_regclass('objs'), p)),
    ARRAY(SELECT p FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) p
          WHERE to_regclass('thumbnails') IS NOT NULL
            AND NOT has_table_privilege(to_regclass('thumbnails'), p)),
    COALESCE((SELECT pg_has_role(relowner, 'USAGE') FROM pg_class
              WHERE oid = to_regclass('thumbnails')), true),
    (SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema()
       AND indexname IN ('thumbnails_obj_id_type_archival_key',
                         'thumbnails_obj_id_type_survey_key',
                         'thumbnails_ps1_unavailable_idx')) = 3,
    has_schema_privilege(current_schema(), 'CREATE')
      OR to_regclass('thumbnails_feed_state') IS NOT NULL,
    (SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = to_regclass('objs')),
    COALESCE((SELECT pg_has_role(relowner, 'USAGE') FROM pg_class
              WHERE oid = to_regclass('objs')), true),
    to_regclass($1) IS NOT NULL";

/// Checks, before migrating, that the role can do what migrating and
/// running need on SkyPortal's tables: read and write `objs` and create its
/// triggers, write `thumbnails`, create the service's own tables, and (until
/// they exist) build the unique indexes on `thumbnails` and the preview's
/// index on `objs`, which PostgreSQL lets only a table's owner (or a member
/// of the owner's role) do.
pub async fn check_privileges(pool: &PgPool) -> Result<(), SchemaError> {
    type Row = (
        String,
        Option<String>,
        Vec<String>,
        Vec<String>,
        bool,
        bool,
        bool,
        Option<String>,
        bool,
        bool,
    );
    let (
        role,
        thumbnails_owner,
        objs_missing,
        thumbnails_missing,
        owns_thumbnails,
        indexes_built,
        can_create,
        objs_owner,
        owns_objs,
        preview_index_built,
    ): Row = sqlx::query_as(PRIVILEGES)
        .bind(migration::PREVIEW_INDEX)
        .fetch_one(pool)
        .await?;
    let quoted = |r: &str| format!("\"{}\"", r.replace('"', "\"\""));
    let grant = |privileges: &[String], table: &str| SchemaError::Grant {
        role: quoted(&role),
        what: format!("{} on table {table}", privileges.join(", ")),
        grant: format!(
            "GRANT {} ON {table} TO {};",
            privileges.join(", "),
            quoted(&role)
        ),
    };
    if !objs_missing.is_empty() {
        return Err(grant(&objs_missing, "objs"));
    }
    if !thumbnails_missing.is_empty() {
        return Err(grant(&thumbnails_missing, "thumbnails"));
    }
    // Only a table's owner may build an index on it: membership in the
    // owner's role is the grant.
    let owner_rights = |owner: Option<String>, table: &str, to_do: String| {
        let owner = quoted(&owner.unwrap_or_default());
        SchemaError::Grant {
            role: quoted(&role),
            what: format!("the rights of {owner} (owner of {table}) to {to_do}"),
            grant: format!("GRANT {owner} TO {};", quoted(&role)),
        }
    };
    if !owns_thumbnails && !indexes_built {
        return Err(owner_rights(
            thumbnails_owner,
            "thumbnails",
            "build its unique indexes".into(),
        ));
    }
    if !owns_objs && !preview_index_built {
        return Err(owner_rights(
            objs_owner,
            "objs",
            format!(
                "build the index {} on objs (created_at, id)",
                migration::PREVIEW_INDEX
            ),
        ));
    }
    if !can_create {
        return Err(SchemaError::Grant {
            role: quoted(&role),
            what: "CREATE on the schema (for the service's own tables)".into(),
            grant: format!(
                "GRANT CREATE ON SCHEMA current_schema TO {};",
                quoted(&role)
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skyportal() -> Vec<Column> {
        WRITES
            .iter()
            .map(|(table, name, udts, use_)| Column {
                table: (*table).into(),
                name: (*name).into(),
                udt: udts[0].into(),
                nullable: *use_ == Use::MayBeNull,
                has_default: *name == "id" && *table == "thumbnails",
            })
            .collect()
    }

    #[test]
    fn todays_skyportal_schema_passes() {
        assert_eq!(column_problems(&skyportal()), Vec::<String>::new());
        assert_eq!(column_problems(&[]), Vec::<String>::new());
    }

    #[test]
    fn a_missing_survey_column_is_named() {
        let cols: Vec<Column> = skyportal()
            .into_iter()
            .filter(|c| c.name != "survey")
            .collect();
        assert_eq!(
            column_problems(&cols),
            vec!["column thumbnails.survey is missing"]
        );
    }

    #[test]
    fn a_not_null_is_grayscale_is_named() {
        let mut cols = skyportal();
        for c in cols.iter_mut().filter(|c| c.name == "is_grayscale") {
            c.nullable = false;
        }
        assert_eq!(
            column_problems(&cols),
            vec!["column thumbnails.is_grayscale is NOT NULL (the service leaves it NULL)"]
        );
    }

    #[test]
    fn an_unknown_required_thumbnails_column_is_named_but_not_one_of_objs() {
        let mut cols = skyportal();
        for table in ["objs", "thumbnails"] {
            cols.push(Column {
                table: table.into(),
                name: "extra".into(),
                udt: "int4".into(),
                nullable: false,
                has_default: false,
            });
        }
        assert_eq!(
            column_problems(&cols),
            vec!["column thumbnails.extra is NOT NULL without a default (the service does not write it)"]
        );
    }

    #[test]
    fn a_wrong_type_is_named() {
        let mut cols = skyportal();
        for c in cols.iter_mut().filter(|c| c.name == "type") {
            c.udt = "varchar".into();
        }
        assert_eq!(
            column_problems(&cols),
            vec!["column thumbnails.type is varchar, not thumbnail_types"]
        );
    }
}
