//! The S3-compatible bucket backend (`storage.url: s3://BUCKET/PREFIX`),
//! through the `object_store` crate: the same keys as the folder's layout
//! (`<prefix>/thumbnails/<aa>/<bb>/<name>`), a row's `file_uri` being
//! `s3://BUCKET/<key>`.
//!
//! An object store has no rename: a write is one PUT of the whole object
//! (atomic: readers see the old bytes or the new, never a part), the
//! previous bytes kept in memory until the commit so that a failed commit
//! puts them back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetResult, ObjectMeta, ObjectStore, ObjectStoreExt,
    RetryConfig,
};

use super::error::FileError;
use super::layout::{RelPath, SUBDIR};
use crate::config::StorageConfig;

/// A bucket (and prefix) the files live in.
#[derive(Debug)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    name: String,
    /// No leading or trailing `/`; `""` for the bucket's top.
    prefix: String,
    /// Where the store answers, for messages.
    endpoint: String,
}

impl Bucket {
    /// A client for `bucket` (no request is made: see [`Bucket::check`]).
    pub fn open(config: &StorageConfig, bucket: &str, prefix: &str) -> Result<Self, FileError> {
        let s3 = &config.s3;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let set = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_owned);
        if let Some(endpoint) = set(&s3.endpoint) {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = set(&s3.region) {
            builder = builder.with_region(region);
        }
        if let Some(id) = set(&s3.access_key_id) {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = s3.secret() {
            builder = builder.with_secret_access_key(secret);
        }
        let endpoint = builder
            .get_config_value(&object_store::aws::AmazonS3ConfigKey::Endpoint)
            .unwrap_or_else(|| "AWS S3".to_string());
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 10,
            retry_timeout: Duration::from_secs_f64(s3.retry_s),
        };
        let client = ClientOptions::new()
            .with_allow_http(endpoint.starts_with("http://"))
            .with_timeout(Duration::from_secs_f64(s3.timeout_s))
            .with_connect_timeout(Duration::from_secs_f64(s3.timeout_s.min(5.0)));
        let store = builder
            .with_virtual_hosted_style_request(!s3.path_style)
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(|e| FileError::Bucket {
                op: "configure",
                key: String::new(),
                at: format!("bucket {bucket} at {endpoint}"),
                reason: reason(&e),
                cause: Arc::new(e),
            })?;
        Ok(Self {
            store: Arc::new(store),
            name: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint,
        })
    }

    /// `bucket B at ENDPOINT`, for messages.
    pub fn describe(&self) -> String {
        format!("bucket {} at {}", self.name, self.endpoint)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes and removes a probe object: the bucket exists, the key may
    /// write and delete, and the store answers.
    pub async fn check(&self) -> Result<(), FileError> {
        let probe = self.under(&format!(
            ".thumbnails-probe-{}",
            uuid::Uuid::new_v4().simple()
        ));
        self.put(&probe, Bytes::from_static(b"probe")).await?;
        self.delete(&probe).await
    }

    /// `<prefix>/<rest>`.
    fn under(&self, rest: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rest)
        } else {
            Key::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// The key of a file of the layout.
    pub fn key(&self, rel: &RelPath) -> Key {
        self.under(&rel.as_url_path())
    }

    /// The key of `thumbnails/<segments...>` (a `/static` request's path,
    /// its segments already checked).
    pub fn key_of_segments(&self, segments: &[&str]) -> Key {
        self.under(&format!("{SUBDIR}/{}", segments.join("/")))
    }

    /// The `file_uri` of a key: `s3://BUCKET/KEY`.
    pub fn uri(&self, key: &Key) -> String {
        format!("s3://{}/{key}", self.name)
    }

    /// The key a `file_uri` names, if it is an object of this bucket under
    /// `<prefix>/thumbnails/` (the only objects the service removes).
    pub fn key_of_uri(&self, uri: &str) -> Option<Key> {
        let rest = uri
            .strip_prefix("s3://")?
            .strip_prefix(self.name.as_str())?;
        let rest = rest.strip_prefix('/')?;
        let rest = if self.prefix.is_empty() {
            rest
        } else {
            rest.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?
        };
        let path = rest.strip_prefix(SUBDIR)?.strip_prefix('/')?;
        let segments = crate::files::safe_segments(path)?;
        Some(self.key_of_segments(&segments))
    }

    /// The key's path under `<prefix>/thumbnails/` (`aa/bb/name`), if it
    /// is there.
    pub fn layout_path<'k>(&self, key: &'k Key) -> Option<&'k str> {
        let key = key.as_ref();
        let rest = if self.prefix.is_empty() {
            key
        } else {
            key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?
        };
        rest.strip_prefix(SUBDIR)?.strip_prefix('/')
    }

    /// The object's bytes, or `None` if there is none.
    pub async fn get(&self, key: &Key) -> Result<Option<Bytes>, FileError> {
        match self.store.get(key).await {
            Ok(got) => got
                .bytes()
                .await
                .map(Some)
                .map_err(|e| self.error("read", key, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("read", key, e)),
        }
    }

    /// The object for serving: `None` if absent; `Err(NotModified)` is
    /// mapped by the caller from `if_none_match`.
    pub async fn get_for_serving(
        &self,
        key: &Key,
        if_none_match: Option<String>,
    ) -> Result<Served, FileError> {
        let options = GetOptions {
            if_none_match,
            ..GetOptions::default()
        };
        match self.store.get_opts(key, options).await {
            Ok(got) => Ok(Served::Found(Box::new(got))),
            Err(object_store::Error::NotFound { .. }) => Ok(Served::Missing),
            Err(object_store::Error::NotModified { .. }) => Ok(Served::NotModified),
            Err(e) => Err(self.error("read", key, e)),
        }
    }

    /// Whether the object exists.
    pub async fn exists(&self, key: &Key) -> Result<bool, FileError> {
        match self.store.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("read", key, e)),
        }
    }

    pub async fn put(&self, key: &Key, bytes: Bytes) -> Result<(), FileError> {
        self.store
            .put(key, bytes.into())
            .await
            .map(drop)
            .map_err(|e| self.error("write", key, e))
    }

    /// Removes the object; one already gone is no error.
    pub async fn delete(&self, key: &Key) -> Result<(), FileError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("remove", key, e)),
        }
    }

    /// Every object under `<prefix>/thumbnails/`, listed page by page.
    pub fn list(
        &self,
    ) -> impl futures_util::Stream<Item = Result<ObjectMeta, FileError>> + Send + 'static {
        let top = self.under(SUBDIR);
        let at = self.describe();
        self.store.list(Some(&top)).map(move |r| {
            r.map_err(|e| FileError::Bucket {
                op: "list",
                key: top.to_string(),
                at: at.clone(),
                reason: reason(&e),
                cause: Arc::new(e),
            })
        })
    }

    fn error(&self, op: &'static str, key: &Key, source: object_store::Error) -> FileError {
        FileError::Bucket {
            op,
            key: key.to_string(),
            at: self.describe(),
            reason: reason(&source),
            cause: Arc::new(source),
        }
    }
}

/// A store's error in short: an S3 answer's status, code and message
/// (`403 Forbidden AccessDenied: Invalid signature`) rather than the whole
/// request and XML body; other errors (no answer, a timeout) as they are.
fn reason(e: &object_store::Error) -> String {
    let text = e.to_string();
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let rest = text.split_once(open.as_str())?.1;
        Some(rest.split_once(&format!("</{t}>"))?.0.to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => {
            let status = text
                .split_once("status code: ")
                .and_then(|(_, s)| s.split_once(':'))
                .map(|(s, _)| format!("{s} "))
                .unwrap_or_default();
            format!("{status}{code}: {message}")
        }
        _ => text,
    }
}

/// What a `/static` request finds in the bucket.
pub enum Served {
    Found(Box<GetResult>),
    NotModified,
    Missing,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surveys::ThumbnailType;

    fn bucket(prefix: &str) -> Bucket {
        let mut config = StorageConfig::default();
        config.s3.endpoint = Some("http://127.0.0.1:9".into());
        config.s3.region = Some("garage".into());
        config.s3.access_key_id = Some("GK1".into());
        config.s3.secret_access_key = Some("secret".into());
        Bucket::open(&config, "thumbs", prefix).expect("a client")
    }

    #[test]
    fn keys_and_uris_follow_the_folder_layout() {
        let rel = RelPath::stamp("ZTF1", ThumbnailType::New, Some("ZTF"), 2);
        for prefix in ["", "prod/v1"] {
            let b = bucket(prefix);
            let key = b.key(&rel);
            let want = if prefix.is_empty() {
                rel.as_url_path()
            } else {
                format!("{prefix}/{}", rel.as_url_path())
            };
            assert_eq!(key.as_ref(), want);
            let uri = b.uri(&key);
            assert_eq!(uri, format!("s3://thumbs/{want}"));
            assert_eq!(b.key_of_uri(&uri), Some(key.clone()));
            assert_eq!(
                b.layout_path(&key),
                rel.as_url_path().strip_prefix("thumbnails/")
            );
        }
        let b = bucket("prod");
        for foreign in [
            "s3://other/prod/thumbnails/ab/cd/x_new.png",
            "s3://thumbs/test/thumbnails/ab/cd/x_new.png",
            "s3://thumbs/prod/elsewhere/x_new.png",
            "s3://thumbs/prod/thumbnails/../x_new.png",
            "/srv/persistentdata/thumbnails/ab/cd/x_new.png",
        ] {
            assert_eq!(b.key_of_uri(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn an_s3_answer_is_said_in_short() {
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Error performing PUT http://h/b/k in 1ms - Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Forbidden: Invalid signature</Message></Error>".into(),
        };
        assert_eq!(
            reason(&e),
            "403 Forbidden AccessDenied: Forbidden: Invalid signature"
        );
        let e = object_store::Error::Generic {
            store: "S3",
            source: "error sending request".into(),
        };
        assert_eq!(reason(&e), "Generic S3 error: error sending request");
    }

    #[test]
    fn describes_bucket_and_endpoint() {
        assert_eq!(bucket("").describe(), "bucket thumbs at http://127.0.0.1:9");
    }
}
