//! `storage`: where files live. A folder (`file://PATH`, today's layout,
//! the default) or an S3-compatible bucket (`s3://BUCKET/PREFIX`), with the
//! same keys under it: `thumbnails/<aa>/<bb>/<name>`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::secrets::{named, Secret};
use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The folder of `file://` storage when `url` is unset.
    pub root: PathBuf,
    /// Hashed subfolder levels under `thumbnails/`.
    pub depth: u8,
    /// `file://PATH` or `s3://BUCKET/PREFIX`; unset means `file://<root>`.
    pub url: Option<String>,
    /// Where a browser fetches the files (a website endpoint or a CDN):
    /// `public_url` is then `<public_base_url>/thumbnails/...`. Unset: the
    /// sidecar's `/static/thumbnails/...`.
    pub public_base_url: Option<String>,
    /// For `s3://` URLs; every key unset falls back to the usual `AWS_*`
    /// environment variables.
    pub s3: S3Config,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("persistentdata"),
            depth: 2,
            url: None,
            public_base_url: None,
            s3: S3Config::default(),
        }
    }
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// `http(s)://host:port` of a self-hosted store (Garage, MinIO, RustFS);
    /// unset for AWS (or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// `AWS_REGION` when unset (Garage's is `garage`).
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// A file holding the secret key (a Docker or Kubernetes secret); its
    /// content wins over `secret_access_key`.
    pub secret_access_key_file: Option<PathBuf>,
    /// `https://endpoint/bucket/key` addressing (self-hosted stores) rather
    /// than `https://bucket.endpoint/key`.
    pub path_style: bool,
    /// One request's time limit, in seconds; a request that fails this way
    /// is retried with back-off up to `retry_s`, then the write fails as
    /// unavailable (a delivery waits, an upload gets 503).
    pub timeout_s: f64,
    /// How long one operation keeps retrying.
    pub retry_s: f64,
    /// `secret_access_key_file`'s content, read at load.
    #[serde(skip)]
    pub secret_from_file: Option<Secret>,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            secret_access_key_file: None,
            path_style: true,
            timeout_s: 10.0,
            retry_s: 20.0,
            secret_from_file: None,
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("secret_access_key_file", &self.secret_access_key_file)
            .field("path_style", &self.path_style)
            .field("timeout_s", &self.timeout_s)
            .field("retry_s", &self.retry_s)
            .finish()
    }
}

impl S3Config {
    /// The secret key: the file's, else the key's (else none: `AWS_*`).
    pub fn secret(&self) -> Option<&str> {
        self.secret_from_file
            .as_ref()
            .map(Secret::expose)
            .or(self.secret_access_key.as_deref().filter(|s| !s.is_empty()))
    }

    pub(super) fn read_secret_file(&mut self) -> Result<(), ConfigError> {
        if let Some(path) = named(&self.secret_access_key_file) {
            let key = "storage.s3.secret_access_key_file";
            self.secret_from_file = Some(super::secrets::read_password(key, path)?);
        }
        Ok(())
    }
}

/// Where the files go, from `storage.url` (or `storage.root`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Folder(PathBuf),
    /// `prefix` has no leading or trailing `/` (`""` for the bucket's top).
    Bucket {
        bucket: String,
        prefix: String,
    },
}

impl StorageConfig {
    /// The backend `url` names (or the folder `root`), checked.
    pub fn location(&self) -> Result<Location, ConfigError> {
        match self.url.as_deref().filter(|u| !u.trim().is_empty()) {
            None => Ok(Location::Folder(self.root.clone())),
            Some(url) => parse_location(url.trim())
                .map_err(|why| ConfigError::Invalid(format!("storage.url: {why}"))),
        }
    }

    /// `public_base_url` without its trailing `/`, if set.
    pub fn public_base(&self) -> Option<&str> {
        self.public_base_url
            .as_deref()
            .map(|u| u.trim().trim_end_matches('/'))
            .filter(|u| !u.is_empty())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("{key}: {why}")));
        if self.depth > 16 {
            return bad("storage.depth", "must be between 0 and 16");
        }
        self.location()?;
        if let Some(base) = self.public_base() {
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return bad(
                    "storage.public_base_url",
                    "must be an http:// or https:// URL (or unset)",
                );
            }
        }
        if let Some(endpoint) = self.s3.endpoint.as_deref().filter(|e| !e.is_empty()) {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return bad(
                    "storage.s3.endpoint",
                    "must be an http:// or https:// URL (or unset)",
                );
            }
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(self.s3.timeout_s) {
            return bad("storage.s3.timeout_s", "must be a positive number");
        }
        if !(self.s3.retry_s.is_finite() && self.s3.retry_s >= 0.0) {
            return bad(
                "storage.s3.retry_s",
                "must be a number of seconds, 0 or more",
            );
        }
        Ok(())
    }
}

/// Parses `file://PATH` or `s3://BUCKET[/PREFIX]`.
pub fn parse_location(url: &str) -> Result<Location, String> {
    if let Some(path) = url.strip_prefix("file://") {
        if path.is_empty() {
            return Err("file:// needs a folder, as in file://persistentdata".into());
        }
        return Ok(Location::Folder(PathBuf::from(path)));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !valid_bucket(bucket) {
            return Err(format!(
                "{bucket:?} is no bucket name (3 to 63 of a-z, 0-9, '.', '-')"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|s| prefix.contains("//") || s == "." || s == "..")
        {
            return Err(format!("the prefix {prefix:?} has an empty, . or .. part"));
        }
        return Ok(Location::Bucket {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        });
    }
    Err(format!(
        "{url:?} is neither file://PATH nor s3://BUCKET/PREFIX"
    ))
}

fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls() {
        assert_eq!(
            parse_location("file://persistentdata"),
            Ok(Location::Folder("persistentdata".into()))
        );
        assert_eq!(
            parse_location("file:///srv/files"),
            Ok(Location::Folder("/srv/files".into()))
        );
        assert_eq!(
            parse_location("s3://thumbs"),
            Ok(Location::Bucket {
                bucket: "thumbs".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            parse_location("s3://thumbs/prod/v1/"),
            Ok(Location::Bucket {
                bucket: "thumbs".into(),
                prefix: "prod/v1".into()
            })
        );
        for bad in [
            "",
            "file://",
            "s3://",
            "s3://A_B",
            "s3://thumbs/a/../b",
            "s3://thumbs/a//b",
            "gs://thumbs",
            "/srv/files",
        ] {
            assert!(parse_location(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn root_is_the_folder_without_url_and_url_wins() {
        let mut c = StorageConfig::default();
        assert_eq!(
            c.location().expect("default"),
            Location::Folder("persistentdata".into())
        );
        c.url = Some("s3://b-1/p".into());
        assert!(matches!(c.location(), Ok(Location::Bucket { .. })));
        c.public_base_url = Some("https://cdn.example.org/".into());
        assert_eq!(c.public_base(), Some("https://cdn.example.org"));
        c.public_base_url = Some("cdn.example.org".into());
        assert!(c.validate().is_err());
    }

    #[test]
    fn the_secret_never_shows() {
        let s3 = S3Config {
            secret_access_key: Some("hunter22".into()),
            ..S3Config::default()
        };
        assert!(!format!("{s3:?}").contains("hunter22"));
        assert_eq!(s3.secret(), Some("hunter22"));
    }
}
