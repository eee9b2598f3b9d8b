//! Opening the pool. TLS comes from the URL's libpq parameters (`sslmode`,
//! `sslrootcert`, `sslcert`, `sslkey`), which sqlx applies to every
//! connection of the pool, so also to the feed's LISTEN connection (opened
//! from the pool's options) and to migrations; the password from
//! `database.password_file` is set on the same options. A failure is one
//! clause in words, naming the host.

use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::Error as SqlxError;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, RuntimeErr};

use super::StoreError;
use crate::config::{libpq_param, redact, DatabaseConfig, Secret};

/// Opens the pool of `database` (its URL and password file).
pub async fn open(
    database: &DatabaseConfig,
    max_connections: u32,
) -> Result<DatabaseConnection, StoreError> {
    connect_as(&database.url, database.password.as_ref(), max_connections).await
}

/// Opens a pool from a URL alone (tests and tools that hold only a URL).
/// Per-statement logging is off; slow statements are logged.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, StoreError> {
    connect_as(url, None, max_connections).await
}

async fn connect_as(
    url: &str,
    password: Option<&Secret>,
    max_connections: u32,
) -> Result<DatabaseConnection, StoreError> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(true)
        .sqlx_logging_level(tracing::log::LevelFilter::Trace)
        .sqlx_slow_statements_logging_settings(
            tracing::log::LevelFilter::Warn,
            Duration::from_secs(1),
        );
    if let Some(password) = password.cloned() {
        // The file's password wins over one in the URL.
        opts.map_sqlx_postgres_opts(move |o| o.password(password.expose()));
    }
    Database::connect(opts)
        .await
        .map_err(|e| connect_error(url, &e))
}

/// Creates the database named in the config's URL if the server does not
/// have it yet (so `thumbnails run` works on a fresh server). Connects to
/// the server's `postgres` database for that, with the same TLS settings
/// and password.
pub async fn ensure_database(database: &DatabaseConfig) -> Result<(), StoreError> {
    let Some((admin_url, name)) = admin_url(&database.url) else {
        return Ok(());
    };
    let admin = connect_as(&admin_url, database.password.as_ref(), 1).await?;
    let exists = |admin: DatabaseConnection, name: String| async move {
        admin
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT 1 FROM pg_database WHERE datname = $1",
                [name.into()],
            ))
            .await
            .map(|row| row.is_some())
    };
    if !exists(admin.clone(), name.clone()).await? {
        tracing::info!(database = %name, "creating the database");
        let created = admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await;
        // Another process may have created it meanwhile.
        if let Err(e) = created {
            if !exists(admin.clone(), name.clone()).await? {
                return Err(e.into());
            }
        }
    }
    let _ = admin.close().await;
    Ok(())
}

/// The URL of the server's `postgres` database (the query, with its TLS
/// parameters, kept) and the database name, when the name is a plain one.
fn admin_url(url: &str) -> Option<(String, String)> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (server, name) = base.rsplit_once('/')?;
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || !name.chars().all(plain) || server.ends_with('/') {
        return None;
    }
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    Some((format!("{server}/postgres{query}"), name.to_string()))
}

/// "cannot connect to the database "x" at host:port: <why>".
fn connect_error(url: &str, e: &DbErr) -> StoreError {
    let opts = PgConnectOptions::from_str(url).ok();
    let (at, host) = match &opts {
        Some(o) => {
            let host = o.get_host().to_string();
            let db = o.get_database().unwrap_or(o.get_username());
            (format!("\"{db}\" at {host}:{}", o.get_port()), host)
        }
        None => (format!("at {}", redact(url)), String::new()),
    };
    let cause = match e {
        DbErr::Conn(RuntimeErr::SqlxError(sqlx)) => describe(sqlx, url, &host),
        other => other.to_string(),
    };
    StoreError::Connect { at, cause }
}

fn describe(e: &SqlxError, url: &str, host: &str) -> String {
    // The handshake's rustls error comes as `Tls` or inside `Io`.
    if let Some(tls) = crate::tls::find_rustls(e) {
        let trust = match libpq_param(url, "sslrootcert") {
            Some(path) => format!("sslrootcert {path}"),
            None => "the built-in web roots; set sslrootcert in database.url".into(),
        };
        return crate::tls::describe(
            tls,
            &crate::tls::Hints {
                host,
                trust: &trust,
                client_cert: "sslcert and sslkey in database.url",
            },
        );
    }
    match e {
        SqlxError::Tls(inner) => format!("TLS: {inner}"),
        SqlxError::Database(db) => {
            let message = db.message();
            if message.contains("no encryption") {
                format!("the server accepts only TLS connections ({message}): set sslmode=verify-full (or require) in database.url")
            } else if message.contains("requires a valid client certificate") {
                "the server requires a client certificate: set sslcert and sslkey in database.url"
                    .into()
            } else {
                message.to_string()
            }
        }
        SqlxError::Io(io) => io.to_string(),
        SqlxError::PoolTimedOut => "no connection within the connect timeout".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_url_keeps_the_tls_parameters() {
        assert_eq!(
            admin_url("postgres://u@h:5/app?sslmode=verify-full&sslrootcert=/c.crt"),
            Some((
                "postgres://u@h:5/postgres?sslmode=verify-full&sslrootcert=/c.crt".into(),
                "app".into()
            ))
        );
        assert_eq!(
            admin_url("postgres://u@h/app"),
            Some(("postgres://u@h/postgres".into(), "app".into()))
        );
        assert_eq!(admin_url("postgres://u@h/"), None);
        assert_eq!(admin_url("postgres://u@h/we\"ird"), None);
    }
}
