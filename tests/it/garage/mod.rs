//! The bucket backend against a real 3-node Garage (`scripts/garage`):
//! every path that writes or reads files, the faults of a store that
//! refuses, does not answer or loses a node, and `files migrate`.
//!
//! Opt-in, like the cluster test: `cargo test --test it garage --
//! --ignored` (`.ci/run` runs them when `garage` is installed). Each test
//! works under a prefix of its own in the cluster's bucket.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use bytes::Bytes;
use thumbnails::config::{Config, StorageConfig};
use thumbnails::files::FileStore;

mod audit;
mod faults;
mod migrate;
mod node_stop;
mod paths;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/garage");

/// The local cluster of `scripts/garage`, brought up once per test run.
pub struct Garage {
    pub key_id: String,
    pub secret: String,
}

pub const BUCKET: &str = "thumbnails";
pub const S3: &str = "http://127.0.0.1:3900";
pub const WEB: &str = "http://127.0.0.1:3902";
pub const WEB_HOST: &str = "thumbnails.web.garage.localhost";

pub fn script(args: &[&str]) -> String {
    let out = Command::new(SCRIPT)
        .args(args)
        .output()
        .expect("run scripts/garage");
    assert!(
        out.status.success(),
        "scripts/garage {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Garage {
    pub fn get() -> &'static Garage {
        static UP: OnceLock<Garage> = OnceLock::new();
        UP.get_or_init(|| {
            script(&["up"]);
            let dir = PathBuf::from(
                std::env::var("GARAGE_DIR").unwrap_or_else(|_| "/tmp/thumbnails-garage".into()),
            );
            let read = |name: &str| {
                std::fs::read_to_string(dir.join(name))
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .trim()
                    .to_string()
            };
            Garage {
                key_id: read("key_id"),
                secret: read("secret_key"),
            }
        })
    }

    /// A fresh prefix of the bucket, as `storage` keys.
    pub fn storage(&self, prefix: &str) -> StorageConfig {
        let mut s = StorageConfig {
            url: Some(format!("s3://{BUCKET}/{prefix}")),
            ..StorageConfig::default()
        };
        s.s3.endpoint = Some(S3.into());
        s.s3.region = Some("garage".into());
        s.s3.access_key_id = Some(self.key_id.clone());
        s.s3.secret_access_key = Some(self.secret.clone());
        s.s3.path_style = true;
        s
    }

    /// Points `config` at a fresh prefix; returns the prefix.
    pub fn configure(&self, config: &mut Config) -> String {
        let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        let root = config.storage.root.clone();
        config.storage = self.storage(&prefix);
        // A folder store would write here: it must stay empty.
        config.storage.root = root;
        prefix
    }
}

/// The store a config names (to look into the bucket from the test).
pub fn store_of(config: &Config) -> FileStore {
    FileStore::from_config(&config.storage).expect("store")
}

/// The object a row's `file_uri` names, if it exists.
pub async fn object(store: &FileStore, file_uri: &str) -> Option<Bytes> {
    let path = store
        .layout_path_of(file_uri)
        .unwrap_or_else(|| panic!("{file_uri} is not an object of {}", store.describe()));
    store.read_layout(&path).await.expect("read the object")
}

/// The listing once `settled` holds of it, or the last one after ten
/// seconds: Garage's listing can show an object for a moment after its
/// DELETE returned (seen on the 3-node cluster of `scripts/garage`).
pub async fn objects_settled(
    store: &FileStore,
    settled: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = objects(store).await;
        if settled(&got) || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Every object under the store's `thumbnails/`, as `aa/bb/name`.
pub async fn objects(store: &FileStore) -> Vec<String> {
    use futures_util::TryStreamExt;
    let bucket = store.bucket().expect("a bucket store");
    let mut out: Vec<String> = bucket
        .list()
        .map_ok(|meta| {
            bucket
                .layout_path(&meta.location)
                .unwrap_or_default()
                .to_string()
        })
        .try_collect()
        .await
        .expect("list");
    out.sort();
    out
}
