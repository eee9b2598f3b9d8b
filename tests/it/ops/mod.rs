//! The operator tools against the real PostgreSQL and RabbitMQ.

mod files;
mod kept_fits;
mod replay;
mod resurvey;

use std::path::Path;
use std::process::Output;

use sea_orm::sqlx::{self, PgPool};
use thumbnails::config::{Config, DEFAULT_LS_TEMPLATE, DEFAULT_SDSS_TEMPLATE};
use thumbnails::surveys::Templates;

use crate::helpers::TestDb;

pub fn pool(db: &TestDb) -> &PgPool {
    db.db.get_postgres_connection_pool()
}

/// An object; `created_at` and `modified` a day ago.
pub async fn obj(db: &TestDb, id: &str, ra: Option<f64>, dec: Option<f64>, is_roid: bool) {
    sqlx::query(
        "INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified)
         VALUES ($1, $2, $3, $4, md5($1), now() AT TIME ZONE 'utc' - interval '1 day',
                 now() AT TIME ZONE 'utc' - interval '1 day')",
    )
    .bind(id)
    .bind(ra)
    .bind(dec)
    .bind(is_roid)
    .execute(pool(db))
    .await
    .expect("insert obj");
}

/// A thumbnail row written a day ago; returns its id.
pub async fn thumb(
    db: &TestDb,
    obj_id: &str,
    ttype: &str,
    url: Option<&str>,
    origin: Option<&str>,
) -> i32 {
    let (id,): (i32,) = sqlx::query_as(
        "INSERT INTO thumbnails (created_at, modified, type, public_url, origin, obj_id)
         VALUES (now() AT TIME ZONE 'utc' - interval '1 day', now() AT TIME ZONE 'utc' - interval '1 day',
                 $1::thumbnail_types, $2, $3, $4)
         RETURNING id",
    )
    .bind(ttype)
    .bind(url)
    .bind(origin)
    .bind(obj_id)
    .fetch_one(pool(db))
    .await
    .expect("insert thumbnail");
    id
}

/// Every thumbnail row: (id, obj_id, type, public_url, origin, modified).
pub type Snapshot = Vec<(
    i32,
    String,
    String,
    Option<String>,
    Option<String>,
    chrono::NaiveDateTime,
)>;

pub async fn snapshot(db: &TestDb) -> Snapshot {
    sqlx::query_as(
        "SELECT id, obj_id, type::text, public_url, origin, modified FROM thumbnails ORDER BY id",
    )
    .fetch_all(pool(db))
    .await
    .expect("snapshot")
}

pub fn templates() -> Templates {
    Templates::new(DEFAULT_SDSS_TEMPLATE, DEFAULT_LS_TEMPLATE).expect("default templates")
}

pub fn ls_url(ra: &str, dec: &str) -> String {
    DEFAULT_LS_TEMPLATE
        .replace("{ra}", ra)
        .replace("{dec}", dec)
}

pub fn sdss_url(ra: &str, dec: &str) -> String {
    DEFAULT_SDSS_TEMPLATE
        .replace("{ra}", ra)
        .replace("{dec}", dec)
}

/// Runs the real binary with a minimal config file and `env` overrides
/// (database and broker come from the environment, as operators do it).
pub async fn thumbnails_cli(
    dir: &Path,
    config: &Config,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let path = dir.join("config.yaml");
    std::fs::write(&path, "log:\n  format: text\n").expect("write config");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_thumbnails"));
    cmd.arg("--config")
        .arg(&path)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("THUMBNAILS_DATABASE__URL", &config.database.url)
        .env("THUMBNAILS_AMQP__URL", &config.amqp.url)
        .env("THUMBNAILS_AMQP__EXCHANGE", &config.amqp.exchange)
        .env("THUMBNAILS_AMQP__QUEUE", &config.amqp.queue)
        .env("THUMBNAILS_SURVEYS__PS1__LOOKUP_URL", "");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("run the thumbnails binary")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
