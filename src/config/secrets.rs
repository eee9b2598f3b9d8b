//! Secrets from files (`database.password_file`, `amqp.password_file`,
//! `http.tokens_file`: what Docker and Kubernetes secrets provide) and the
//! checks of the TLS files the config names, all at load: an unreadable
//! file is a one-line error naming the key and the path, at start.

use std::path::{Path, PathBuf};

use super::{split_urls, AmqpConfig, Config, ConfigError, TokenConfig};

/// A secret read from a file. Never shown: `Debug` prints `***`, and it is
/// not serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that hands it to a driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A file key that is set (an empty value, as an empty environment
/// variable gives, means unset).
pub(crate) fn named(path: &Option<PathBuf>) -> Option<&Path> {
    path.as_deref().filter(|p| !p.as_os_str().is_empty())
}

fn read(key: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Invalid(format!("{key}: cannot read {}: {e}", path.display())))
}

/// A password file's content: one line; the trailing newline that editors
/// and `echo` add is not part of the password.
pub(super) fn read_password(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let text = read(key, path)?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{key}: {} is empty",
            path.display()
        )));
    }
    Ok(Secret::new(value))
}

fn check_readable(key: &str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| ConfigError::Invalid(format!("{key}: cannot read {}: {e}", path.display())))
}

impl Config {
    /// Reads the secret files into the config and checks that every
    /// certificate and key file it names can be read.
    pub(super) fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        if let Some(path) = named(&self.database.password_file) {
            self.database.password = Some(read_password("database.password_file", path)?);
        }
        if let Some(path) = named(&self.amqp.password_file) {
            self.amqp.password = Some(read_password("amqp.password_file", path)?);
        }
        self.storage.s3.read_secret_file()?;
        if let Some(path) = named(&self.http.tokens_file) {
            let key = "http.tokens_file";
            let text = read(key, path)?;
            // JSON is YAML too.
            let tokens: Vec<TokenConfig> = serde_yaml::from_str(&text).map_err(|e| {
                // serde_yaml quotes no values in its messages, only positions.
                ConfigError::Invalid(format!(
                    "{key}: {} is not a list of {{token, scopes}}: {}",
                    path.display(),
                    e.to_string().replace('\n', " ")
                ))
            })?;
            if let Some(i) = tokens.iter().position(|t| t.token.len() < 8) {
                return Err(ConfigError::Invalid(format!(
                    "{key}: token {i} of {} must be at least 8 characters",
                    path.display()
                )));
            }
            self.http.tokens.extend(tokens);
        }
        for (name, value) in pg_url_files(&self.database.url) {
            check_readable(&format!("database.url: {name}"), Path::new(&value))?;
        }
        let tls = &self.amqp.tls;
        for (key, path) in [
            ("amqp.tls.ca_file", &tls.ca_file),
            ("amqp.tls.cert_file", &tls.cert_file),
            ("amqp.tls.key_file", &tls.key_file),
        ] {
            if let Some(path) = named(path) {
                check_readable(key, path)?;
            }
        }
        Ok(())
    }

    /// Logs, once and without the values, which secrets come from files
    /// (and that they replace a password given in a URL).
    pub fn announce_secret_files(&self) {
        if let Some(path) = named(&self.database.password_file) {
            let replaces = url_has_password(&self.database.url);
            tracing::info!(file = %path.display(), replaces_url_password = replaces, "database password from database.password_file");
        }
        if let Some(path) = named(&self.amqp.password_file) {
            let replaces = split_urls(&self.amqp.url)
                .iter()
                .any(|u| url_has_password(u));
            tracing::info!(file = %path.display(), replaces_url_password = replaces, "broker password from amqp.password_file");
        }
        if let Some(path) = named(&self.storage.s3.secret_access_key_file) {
            tracing::info!(file = %path.display(), "bucket secret key from storage.s3.secret_access_key_file");
        }
        if let Some(path) = named(&self.http.tokens_file) {
            tracing::info!(file = %path.display(), tokens = self.http.tokens.len(), "API tokens include http.tokens_file");
        }
    }
}

/// Whether a URL's user info holds a password (`user:password@`).
fn url_has_password(url: &str) -> bool {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => url[s + 3..at].contains(':'),
        _ => false,
    }
}

/// The files a libpq URL names (`sslrootcert`, `sslcert`, `sslkey`), as
/// (parameter, path). An inline PEM value (sqlx takes those) is no file.
fn pg_url_files(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| matches!(*k, "sslrootcert" | "sslcert" | "sslkey"))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .filter(|(_, v)| !v.is_empty() && !v.starts_with("-----BEGIN"))
        .collect()
}

/// A query parameter of a libpq URL, decoded (`sslrootcert`, `sslmode`).
pub fn libpq_param(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

/// `%XX` escapes of a URL query value (paths rarely hold any).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `amqp.tls` keys make sense together and with `amqp.url`.
pub(super) fn check_amqp_tls(amqp: &AmqpConfig) -> Result<(), ConfigError> {
    let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("{key}: {why}")));
    let tls = &amqp.tls;
    let (cert, key) = (named(&tls.cert_file), named(&tls.key_file));
    if cert.is_some() != key.is_some() {
        return bad(
            "amqp.tls.cert_file",
            "amqp.tls.cert_file and amqp.tls.key_file go together",
        );
    }
    if tls.external && cert.is_none() {
        return bad(
            "amqp.tls.external",
            "the EXTERNAL mechanism needs a client certificate (amqp.tls.cert_file, amqp.tls.key_file)",
        );
    }
    let any_tls = named(&tls.ca_file).is_some() || cert.is_some() || tls.external;
    let any_amqps = split_urls(&amqp.url)
        .iter()
        .any(|u| u.to_ascii_lowercase().starts_with("amqps://"));
    if any_tls && !any_amqps {
        return bad(
            "amqp.tls",
            "is set, but no node of amqp.url is amqps:// (TLS settings would be ignored)",
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn password_files_load_from_env_win_and_never_show() {
        Jail::expect_with(|jail| {
            jail.create_file("c.yaml", "database:\n  url: postgres://app:in-url@db/x\n")?;
            jail.create_file("db_pw", "db-secret\n")?;
            jail.create_file("mq_pw", "mq-secret")?;
            jail.set_env("THUMBNAILS_DATABASE__PASSWORD_FILE", "db_pw");
            jail.set_env("THUMBNAILS_AMQP__PASSWORD_FILE", "mq_pw");
            let c = Config::load(Path::new("c.yaml")).expect("loads");
            let db = c.database.password.as_ref().expect("read");
            assert_eq!(db.expose(), "db-secret");
            assert_eq!(
                c.amqp.password.as_ref().map(Secret::expose),
                Some("mq-secret")
            );
            let shown = format!("{c:?} {c:#?}");
            for secret in ["db-secret", "mq-secret", "in-url"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
            jail.set_env("THUMBNAILS_DATABASE__PASSWORD_FILE", "missing_pw");
            let e = Config::load(Path::new("c.yaml")).expect_err("unreadable");
            let text = e.to_string();
            assert!(text.contains("database.password_file"), "{text}");
            assert!(text.contains("missing_pw"), "{text}");
            assert!(!text.contains('\n'), "{text}");
            jail.create_file("empty_pw", "\n")?;
            jail.set_env("THUMBNAILS_DATABASE__PASSWORD_FILE", "empty_pw");
            let e = Config::load(Path::new("c.yaml")).expect_err("empty");
            assert!(e.to_string().contains("is empty"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_bucket_secret_file_wins_and_never_shows() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.yaml",
                "storage:\n  url: s3://b-1/p\n  s3:\n    secret_access_key: in-yaml\n",
            )?;
            jail.create_file("s3_secret", "from-file\n")?;
            jail.set_env(
                "THUMBNAILS_STORAGE__S3__SECRET_ACCESS_KEY_FILE",
                "s3_secret",
            );
            let c = Config::load(Path::new("c.yaml")).expect("loads");
            assert_eq!(c.storage.s3.secret(), Some("from-file"));
            let shown = format!("{c:?}");
            for secret in ["from-file", "in-yaml"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
            jail.set_env("THUMBNAILS_STORAGE__S3__SECRET_ACCESS_KEY_FILE", "nowhere");
            let e = Config::load(Path::new("c.yaml")).expect_err("unreadable");
            assert!(
                e.to_string().contains("storage.s3.secret_access_key_file"),
                "{e}"
            );
            Ok(())
        });
    }

    #[test]
    fn tokens_file_adds_yaml_or_json_tokens() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.yaml",
                "http:\n  tokens: [{token: inline-token, scopes: [upload]}]\n  tokens_file: t.json\n",
            )?;
            jail.create_file(
                "t.json",
                r#"[{"token": "file-token-1", "scopes": ["manage"]}]"#,
            )?;
            let c = Config::load(Path::new("c.yaml")).expect("loads");
            let tokens: Vec<&str> = c.http.tokens.iter().map(|t| t.token.as_str()).collect();
            assert_eq!(tokens, vec!["inline-token", "file-token-1"]);
            assert!(!format!("{c:?}").contains("file-token-1"));
            jail.create_file("t.json", "- token: short\n")?;
            let e = Config::load(Path::new("c.yaml")).expect_err("short token");
            let text = e.to_string();
            assert!(text.contains("http.tokens_file"), "{text}");
            assert!(!text.contains("short"), "the value is not shown: {text}");
            jail.create_file("t.json", "token: [oops\n")?;
            let e = Config::load(Path::new("c.yaml")).expect_err("not a list");
            assert!(e.to_string().contains("http.tokens_file"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn amqp_tls_keys_are_checked_together() {
        Jail::expect_with(|jail| {
            jail.create_file("crt", "x")?;
            jail.create_file(
                "c.yaml",
                "amqp:\n  url: amqps://h:5671/%2f\n  tls: {cert_file: crt, key_file: crt, external: true}\n",
            )?;
            let c = Config::load(Path::new("c.yaml")).expect("loads");
            assert!(c.amqp.tls.external);
            for (yaml, key) in [
                (
                    "amqp:\n  url: amqps://h/%2f\n  tls: {cert_file: crt}\n",
                    "amqp.tls.cert_file",
                ),
                (
                    "amqp:\n  url: amqps://h/%2f\n  tls: {external: true}\n",
                    "amqp.tls.external",
                ),
                ("amqp:\n  tls: {ca_file: crt}\n", "amqp.tls"),
                (
                    "amqp:\n  url: amqps://h/%2f\n  tls: {ca_file: nothere}\n",
                    "amqp.tls.ca_file",
                ),
                (
                    "database:\n  url: postgres://h/x?sslmode=verify-full&sslrootcert=nothere\n",
                    "sslrootcert",
                ),
            ] {
                jail.create_file("d.yaml", yaml)?;
                let e = Config::load(Path::new("d.yaml")).expect_err(yaml);
                assert!(e.to_string().contains(key), "{key}: {e}");
            }
            Ok(())
        });
    }

    #[test]
    fn names_the_files_of_a_libpq_url() {
        let url = "postgres://u@h/db?sslmode=verify-full&sslrootcert=/a/ca.crt&sslcert=/a/c%20d.crt&sslkey=/a/k.key";
        assert_eq!(
            pg_url_files(url),
            vec![
                ("sslrootcert".to_string(), "/a/ca.crt".to_string()),
                ("sslcert".to_string(), "/a/c d.crt".to_string()),
                ("sslkey".to_string(), "/a/k.key".to_string()),
            ]
        );
        assert!(pg_url_files("postgres://u@h/db").is_empty());
    }

    #[test]
    fn secrets_never_show() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s:#?}"), "*** ***");
        assert!(url_has_password("amqp://u:p@h/"));
        assert!(!url_has_password("amqp://u@h/"));
        assert!(!url_has_password("amqps://h:5671/%2f"));
    }
}
