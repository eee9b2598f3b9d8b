//! Layered configuration: built-in defaults, then `config.yaml`, then
//! `THUMBNAILS_<SECTION>__<KEY>` environment variables.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod secrets;
mod storage;
pub use secrets::{libpq_param, Secret};
pub use storage::{parse_location, Location, S3Config, StorageConfig};

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "THUMBNAILS_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} not found")]
    Missing(PathBuf),
    #[error("config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub amqp: AmqpConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub surveys: SurveysConfig,
    pub feed: FeedConfig,
    pub reconcile: ReconcileConfig,
    pub grayscale: GrayscaleConfig,
    pub on_demand: OnDemandConfig,
    /// How alert cutouts (FITS, FITS.gz, Avro packets) are drawn.
    pub cutouts: crate::cutouts::CutoutSettings,
    pub log: LogConfig,
}

/// The database feed: `objs` triggers -> outbox -> `obj.created`/`obj.updated`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    pub enabled: bool,
    pub poll_interval_s: f64,
    pub batch: u32,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval_s: 5.0,
            batch: 500,
        }
    }
}

/// The worker's self-healing sweep.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    pub interval_s: u64,
    pub ps1_retry_after_s: u64,
    pub batch: u32,
    pub max_queued: u32,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            interval_s: 300,
            ps1_retry_after_s: 3600,
            batch: 10_000,
            max_queued: 10_000,
        }
    }
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// libpq-style URL; `sslmode`, `sslrootcert`, `sslcert` and `sslkey`
    /// apply to every connection (pool, feed listener, migrate, tools).
    pub url: String,
    pub max_connections: u32,
    /// A file holding the password (a Docker or Kubernetes secret); its
    /// content wins over a password in `url`.
    pub password_file: Option<PathBuf>,
    /// `password_file`'s content, read at load.
    #[serde(skip)]
    pub password: Option<Secret>,
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// The broker's nodes: one URL, or several (a YAML list, or one string
    /// with commas, as `THUMBNAILS_AMQP__URL` gives). Kept as one
    /// comma-separated string; [`split_urls`] gives the list.
    #[serde(deserialize_with = "url_or_urls")]
    pub url: String,
    pub exchange: String,
    pub queue: String,
    pub prefetch: u16,
    /// Quorum queue bound to `alert.cutouts` (its own, so that a burst of
    /// alerts never delays object events); dead letters in `<name>.dead`.
    pub cutouts_queue: String,
    /// Unacknowledged alerts the worker holds at once.
    pub cutouts_prefetch: u16,
    /// A file holding the password for every node of `url`; its content
    /// wins over a password in the URLs.
    pub password_file: Option<PathBuf>,
    /// For `amqps://` nodes.
    pub tls: AmqpTlsConfig,
    /// `password_file`'s content, read at load.
    #[serde(skip)]
    pub password: Option<Secret>,
}

/// TLS to `amqps://` nodes. The files are read at each connection, so
/// renewed certificates are picked up on the next reconnect.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpTlsConfig {
    /// CA certificates (PEM) trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM), for brokers that require one.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Log in with the SASL EXTERNAL mechanism (the broker takes the user
    /// name from the client certificate) instead of a user and password.
    pub external: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    pub tokens: Vec<TokenConfig>,
    /// A YAML or JSON file holding more tokens, a list as in `tokens`
    /// (a Docker or Kubernetes secret); added to `tokens` at load.
    pub tokens_file: Option<PathBuf>,
    pub max_body_bytes: usize,
    /// Serve the preview pages (`/preview`, `/preview/objs/{obj_id}`) to
    /// anyone; when false (the default) they need a token with scope `view`.
    pub preview_open: bool,
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: String,
    #[serde(default)]
    pub scopes: Vec<Scope>,
}

// Secrets are never printed by `Debug` (a config dumped into a log or a
// panic message): URLs lose their password, tokens are hidden.

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact(&self.url))
            .field("max_connections", &self.max_connections)
            .field("password_file", &self.password_file)
            .field("password", &self.password)
            .finish()
    }
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact_urls(&self.url))
            .field("exchange", &self.exchange)
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("cutouts_queue", &self.cutouts_queue)
            .field("cutouts_prefetch", &self.cutouts_prefetch)
            .field("password_file", &self.password_file)
            .field("tls", &self.tls)
            .field("password", &self.password)
            .finish()
    }
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("token", &"***")
            .field("scopes", &self.scopes)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Upload,
    Manage,
    /// Read the HTML preview pages.
    View,
}

impl Scope {
    /// The name in `http.tokens` (and in error messages).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Manage => "manage",
            Self::View => "view",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SurveysConfig {
    pub sdss: TemplateConfig,
    pub ls: TemplateConfig,
    pub ps1: Ps1Config,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    pub template: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Ps1Config {
    pub lookup_url: String,
    pub timeout_s: f64,
    /// Lookups in flight at once to the lookup host; the rest wait their turn
    /// (the wait does not count against `timeout_s`).
    pub max_concurrent: usize,
    /// A lookup that failed (`currently_unavailable`) is tried again after
    /// this long, then after twice as long each time, up to `retry_max_s`.
    pub retry_first_s: f64,
    pub retry_max_s: f64,
}

/// The background pass that classifies stored survey images (and finds
/// out-of-footprint ones) by fetching them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrayscaleConfig {
    pub enabled: bool,
    pub concurrency: usize,
    pub rate_per_s: f64,
    pub timeout_s: f64,
    pub max_bytes: usize,
    pub interval_s: f64,
    pub retry_base_s: f64,
}

/// The surveys made only on request (`POST /api/objs/{obj_id}/thumbnails/{type}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OnDemandConfig {
    pub timeout_s: f64,
    pub max_bytes: usize,
    pub sm: LookupConfig,
    pub hst: TemplateConfig,
    pub chandra: TemplateConfig,
    pub jwst: TemplateConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    pub lookup_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub const DEFAULT_SDSS_TEMPLATE: &str = "https://skyserver.sdss.org/dr18/SkyServerWS/ImgCutout/getjpeg?TaskName=SkyServer.Chart.List&ra={ra}&dec={dec}&scale=0.3&width=200&height=200&opt=G&query=&Grid=on";
pub const DEFAULT_SM_LOOKUP: &str = "https://api.skymapper.nci.org.au/public/siap/dr4/query?POS={ra},{dec}&SIZE=0.0264&BAND=all&FORMAT=image/png&VERB=3&INTERSECT=covers&RESPONSEFORMAT=CSV";
pub const DEFAULT_HST_TEMPLATE: &str =
    "https://hla.stsci.edu/cgi-bin/fitscut.cgi?ra={ra}&dec={dec}&size=256&format=png";
pub const DEFAULT_LS_TEMPLATE: &str = "https://www.legacysurvey.org/viewer/jpeg-cutout?ra={ra}&dec={dec}&size=200&layer=ls-dr10&pixscale=0.3&bands=griz";
/// The Legacy Survey DR11 template documented in config.yaml and the README:
/// not the default (a release change is an operator's config edit, then
/// `thumbnails resurvey --type ls`). DR11's viewer layer joins its north and
/// south halves and draws g, r, z by default; the layer must be named, as
/// the viewer falls back to DR9 without one.
pub const LS_DR11_TEMPLATE: &str = "https://www.legacysurvey.org/viewer/jpeg-cutout?ra={ra}&dec={dec}&size=200&layer=ls-dr11&pixscale=0.3&bands=grz";

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/thumbnails".into(),
            max_connections: 10,
            password_file: None,
            password: None,
        }
    }
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: "thumbnails".into(),
            queue: "thumbnails.object-created".into(),
            prefetch: 4096,
            cutouts_queue: "thumbnails.alert-cutouts".into(),
            cutouts_prefetch: 256,
            password_file: None,
            tls: AmqpTlsConfig::default(),
            password: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8642".into(),
            tokens: Vec::new(),
            tokens_file: None,
            max_body_bytes: 10 * 1024 * 1024,
            preview_open: false,
        }
    }
}

impl Default for Ps1Config {
    fn default() -> Self {
        Self {
            lookup_url: "http://ps1images.stsci.edu/cgi-bin/ps1cutouts".into(),
            timeout_s: 15.0,
            max_concurrent: 16,
            retry_first_s: 60.0,
            retry_max_s: 3600.0,
        }
    }
}

impl Default for GrayscaleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 4,
            rate_per_s: 5.0,
            timeout_s: 10.0,
            max_bytes: 2 * 1024 * 1024,
            interval_s: 60.0,
            retry_base_s: 60.0,
        }
    }
}

impl Default for OnDemandConfig {
    fn default() -> Self {
        Self {
            timeout_s: 15.0,
            max_bytes: 2 * 1024 * 1024,
            sm: LookupConfig {
                lookup_url: DEFAULT_SM_LOOKUP.into(),
            },
            hst: TemplateConfig {
                template: DEFAULT_HST_TEMPLATE.into(),
            },
            chandra: TemplateConfig::default(),
            jwst: TemplateConfig::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database: DatabaseConfig::default(),
            amqp: AmqpConfig::default(),
            http: HttpConfig::default(),
            storage: StorageConfig::default(),
            surveys: SurveysConfig {
                sdss: TemplateConfig {
                    template: DEFAULT_SDSS_TEMPLATE.into(),
                },
                ls: TemplateConfig {
                    template: DEFAULT_LS_TEMPLATE.into(),
                },
                ps1: Ps1Config::default(),
            },
            feed: FeedConfig::default(),
            reconcile: ReconcileConfig::default(),
            grayscale: GrayscaleConfig::default(),
            on_demand: OnDemandConfig::default(),
            cutouts: crate::cutouts::CutoutSettings::default(),
            log: LogConfig::default(),
        }
    }
}

impl Config {
    /// Loads defaults, then the YAML file at `path` (which must exist), then
    /// the environment, and validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::Missing(path.to_path_buf()));
        }
        Self::from_figment(
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Yaml::file_exact(path))
                .merge(Env::prefixed(ENV_PREFIX).split("__")),
        )
    }

    /// The built-in defaults and the environment, no file: for commands
    /// that need no service (`cutouts draw`).
    pub fn defaults_and_env() -> Result<Self, ConfigError> {
        Self::from_figment(
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Env::prefixed(ENV_PREFIX).split("__")),
        )
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(one_line(&e)))?;
        config.validate()?;
        config.read_secret_files()?;
        Ok(config)
    }

    /// Checks what serde cannot: values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("{key}: {why}")));
        self.cutouts.validate().map_err(ConfigError::Invalid)?;
        if self.amqp.cutouts_queue.trim().is_empty() || self.amqp.cutouts_queue == self.amqp.queue {
            return bad(
                "amqp.cutouts_queue",
                "must be a queue name of its own (not amqp.queue)",
            );
        }
        if self.amqp.cutouts_prefetch == 0 {
            return bad("amqp.cutouts_prefetch", "must be at least 1");
        }
        for (key, template) in [
            ("surveys.sdss.template", &self.surveys.sdss.template),
            ("surveys.ls.template", &self.surveys.ls.template),
        ] {
            if !template.contains("{ra}") || !template.contains("{dec}") {
                return bad(key, "must contain {ra} and {dec}");
            }
        }
        check_amqp_urls(&self.amqp.url)
            .map_err(|why| ConfigError::Invalid(format!("amqp.url: {why}")))?;
        secrets::check_amqp_tls(&self.amqp)?;
        if self.amqp.exchange.is_empty() {
            return bad("amqp.exchange", "must not be empty");
        }
        if self.amqp.queue.is_empty() {
            return bad("amqp.queue", "must not be empty");
        }
        if self.amqp.prefetch == 0 {
            return bad("amqp.prefetch", "must be at least 1");
        }
        if !(self.surveys.ps1.timeout_s.is_finite() && self.surveys.ps1.timeout_s > 0.0) {
            return bad("surveys.ps1.timeout_s", "must be a positive number");
        }
        if self.surveys.ps1.max_concurrent == 0 {
            return bad("surveys.ps1.max_concurrent", "must be at least 1");
        }
        let ps1 = &self.surveys.ps1;
        if !(ps1.retry_first_s.is_finite() && ps1.retry_first_s > 0.0) {
            return bad("surveys.ps1.retry_first_s", "must be a positive number");
        }
        if !(ps1.retry_max_s.is_finite() && ps1.retry_max_s >= ps1.retry_first_s) {
            return bad(
                "surveys.ps1.retry_max_s",
                "must be a number at least surveys.ps1.retry_first_s",
            );
        }
        for (key, template) in [
            ("on_demand.sm.lookup_url", &self.on_demand.sm.lookup_url),
            ("on_demand.hst.template", &self.on_demand.hst.template),
            (
                "on_demand.chandra.template",
                &self.on_demand.chandra.template,
            ),
            ("on_demand.jwst.template", &self.on_demand.jwst.template),
        ] {
            if !template.is_empty() && (!template.contains("{ra}") || !template.contains("{dec}")) {
                return bad(key, "must be \"\" or contain {ra} and {dec}");
            }
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        for (key, value) in [
            ("grayscale.rate_per_s", self.grayscale.rate_per_s),
            ("grayscale.timeout_s", self.grayscale.timeout_s),
            ("grayscale.interval_s", self.grayscale.interval_s),
            ("grayscale.retry_base_s", self.grayscale.retry_base_s),
            ("on_demand.timeout_s", self.on_demand.timeout_s),
        ] {
            if !positive(value) {
                return bad(key, "must be a positive number");
            }
        }
        for (key, value) in [
            ("grayscale.concurrency", self.grayscale.concurrency),
            ("grayscale.max_bytes", self.grayscale.max_bytes),
            ("on_demand.max_bytes", self.on_demand.max_bytes),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1");
            }
        }
        self.storage.validate()?;
        if self.database.max_connections == 0 {
            return bad("database.max_connections", "must be at least 1");
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad("http.listen", "must be an address such as 127.0.0.1:8642");
        }
        if !(self.feed.poll_interval_s.is_finite() && self.feed.poll_interval_s > 0.0) {
            return bad("feed.poll_interval_s", "must be a positive number");
        }
        if !(1..=10_000).contains(&self.feed.batch) {
            return bad("feed.batch", "must be between 1 and 10000");
        }
        if self.reconcile.max_queued == 0 {
            return bad("reconcile.max_queued", "must be at least 1");
        }
        if !(1..=100_000).contains(&self.reconcile.batch) {
            return bad("reconcile.batch", "must be between 1 and 100000");
        }
        for (i, token) in self.http.tokens.iter().enumerate() {
            if token.token.len() < 8 {
                return bad(
                    &format!("http.tokens[{i}].token"),
                    "must be at least 8 characters",
                );
            }
        }
        Ok(())
    }
}

/// Figment errors can span lines; the contract wants one line naming the key.
fn one_line(e: &figment::Error) -> String {
    let mut parts = Vec::new();
    for err in e.clone() {
        let key = err.path.join(".");
        let text = err.kind.to_string();
        let source = err
            .metadata
            .as_ref()
            .map(|m| format!(" (from {})", m.name))
            .unwrap_or_default();
        if key.is_empty() {
            parts.push(format!("{text}{source}"));
        } else {
            parts.push(format!("{key}: {text}{source}"));
        }
    }
    parts.join("; ").replace('\n', " ")
}

/// `amqp.url` from YAML: a string, or a list of strings (joined with commas).
fn url_or_urls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(s)) => Ok(s),
        Ok(OneOrMany::Many(list)) => {
            if let Some(bad) = list.iter().find(|u| u.contains(',')) {
                return Err(serde::de::Error::custom(format!(
                    "a list item holds a comma: {}",
                    redact(bad)
                )));
            }
            Ok(list.join(","))
        }
        Err(_) => Err(serde::de::Error::custom("expected a URL or a list of URLs")),
    }
}

/// The node URLs of `amqp.url` (comma-separated, blanks trimmed).
pub fn split_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// At least one URL, each `amqp://` or `amqps://`.
fn check_amqp_urls(list: &str) -> Result<(), String> {
    let urls = split_urls(list);
    if urls.is_empty() {
        return Err("must name at least one broker URL".into());
    }
    for url in &urls {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("amqp://") || lower.starts_with("amqps://")) {
            return Err(format!("{} is not an amqp:// or amqps:// URL", redact(url)));
        }
    }
    Ok(())
}

/// [`redact`] for each URL of a comma-separated list.
pub fn redact_urls(list: &str) -> String {
    list.split(',').map(redact).collect::<Vec<_>>().join(",")
}

/// Removes a password from a URL before it is shown: the one in the user
/// info and a `password=` query parameter.
pub fn redact(url: &str) -> String {
    let url = redact_userinfo(url);
    match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url,
    }
}

fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn shipped_config_yaml_equals_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
        let from_file: Config = Figment::from(Yaml::file_exact(&path))
            .extract()
            .expect("config.yaml parses");
        assert_eq!(from_file, Config::default());
    }

    #[test]
    fn env_overrides_nested_keys() {
        Jail::expect_with(|jail| {
            jail.create_file("c.yaml", "amqp:\n  prefetch: 7\n")?;
            jail.set_env("THUMBNAILS_SURVEYS__PS1__LOOKUP_URL", "");
            jail.set_env("THUMBNAILS_DATABASE__URL", "postgres://x/y");
            jail.set_env("THUMBNAILS_STORAGE__ROOT", "/tmp/store");
            let c = Config::load(Path::new("c.yaml")).expect("loads");
            assert_eq!(c.amqp.prefetch, 7);
            assert_eq!(c.surveys.ps1.lookup_url, "");
            assert_eq!(c.database.url, "postgres://x/y");
            assert_eq!(c.storage.root, PathBuf::from("/tmp/store"));
            assert_eq!(c.amqp.queue, "thumbnails.object-created");
            Ok(())
        });
    }

    #[test]
    fn wrong_type_names_the_key_on_one_line() {
        Jail::expect_with(|jail| {
            jail.create_file("c.yaml", "amqp:\n  prefetch: lots\n")?;
            let e = Config::load(Path::new("c.yaml")).expect_err("must fail");
            let text = e.to_string();
            assert!(text.contains("amqp.prefetch"), "{text}");
            assert!(!text.contains('\n'), "{text}");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("c.yaml", "amqp:\n  prefetc: 7\n")?;
            let e = Config::load(Path::new("c.yaml")).expect_err("must fail");
            assert!(e.to_string().contains("prefetc"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = Config::load(Path::new("/nonexistent/thumbs.yaml")).expect_err("must fail");
        assert!(e.to_string().contains("/nonexistent/thumbs.yaml"), "{e}");
    }

    #[test]
    fn feed_and_reconcile_keys_load_from_env_and_are_checked() {
        Jail::expect_with(|jail| {
            jail.create_file("c.yaml", "reconcile:\n  interval_s: 0\n")?;
            jail.set_env("THUMBNAILS_FEED__ENABLED", "false");
            jail.set_env("THUMBNAILS_FEED__POLL_INTERVAL_S", "0.5");
            jail.set_env("THUMBNAILS_RECONCILE__PS1_RETRY_AFTER_S", "60");
            let c = Config::load(Path::new("c.yaml")).expect("loads");
            assert!(!c.feed.enabled);
            assert_eq!(c.feed.poll_interval_s, 0.5);
            assert_eq!(c.reconcile.interval_s, 0);
            assert_eq!(c.reconcile.ps1_retry_after_s, 60);
            assert_eq!(c.reconcile.batch, 10_000);
            jail.set_env("THUMBNAILS_FEED__BATCH", "0");
            let e = Config::load(Path::new("c.yaml")).expect_err("must fail");
            assert!(e.to_string().contains("feed.batch"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn template_without_placeholders_is_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("c.yaml", "surveys:\n  ls:\n    template: http://x\n")?;
            let e = Config::load(Path::new("c.yaml")).expect_err("must fail");
            assert!(e.to_string().contains("surveys.ls.template"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn grayscale_and_on_demand_keys_load_and_are_checked() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.yaml",
                "grayscale:\n  enabled: false\n  concurrency: 2\non_demand:\n  jwst:\n    template: \"http://j?ra={ra}&dec={dec}\"\n",
            )?;
            jail.set_env("THUMBNAILS_ON_DEMAND__SM__LOOKUP_URL", "");
            let c = Config::load(Path::new("c.yaml")).expect("loads");
            assert!(!c.grayscale.enabled);
            assert_eq!(c.grayscale.concurrency, 2);
            assert_eq!(c.on_demand.sm.lookup_url, "");
            assert_eq!(c.on_demand.jwst.template, "http://j?ra={ra}&dec={dec}");
            assert_eq!(c.on_demand.hst.template, DEFAULT_HST_TEMPLATE);
            jail.create_file("d.yaml", "on_demand:\n  hst:\n    template: http://x\n")?;
            let e = Config::load(Path::new("d.yaml")).expect_err("must fail");
            assert!(e.to_string().contains("on_demand.hst.template"), "{e}");
            jail.create_file("e.yaml", "grayscale:\n  rate_per_s: 0\n")?;
            let e = Config::load(Path::new("e.yaml")).expect_err("must fail");
            assert!(e.to_string().contains("grayscale.rate_per_s"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn amqp_url_takes_a_list_from_yaml_or_commas_from_env_and_is_checked() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.yaml",
                "amqp:\n  url:\n    - amqp://u:p@a:5701/%2f\n    - amqps://u:p@b:5702/%2f\n",
            )?;
            let c = Config::load(Path::new("c.yaml")).expect("loads");
            assert_eq!(c.amqp.url, "amqp://u:p@a:5701/%2f,amqps://u:p@b:5702/%2f");
            assert_eq!(split_urls(&c.amqp.url).len(), 2);
            let shown = format!("{:?}", c.amqp);
            assert!(!shown.contains("u:p@"), "{shown}");
            assert!(shown.contains("amqps://u:***@b:5702/%2f"), "{shown}");

            jail.set_env(
                "THUMBNAILS_AMQP__URL",
                "amqp://x@h1:1/%2f, amqp://x@h2:2/%2f",
            );
            let c = Config::load(Path::new("c.yaml")).expect("loads");
            assert_eq!(
                split_urls(&c.amqp.url),
                vec!["amqp://x@h1:1/%2f", "amqp://x@h2:2/%2f"]
            );

            for bad in ["", " , ", "amqp://h:1/%2f,http://u:secret@h:2/"] {
                jail.set_env("THUMBNAILS_AMQP__URL", bad);
                let e = Config::load(Path::new("c.yaml")).expect_err(bad);
                let text = e.to_string();
                assert!(text.contains("amqp.url"), "{text}");
                assert!(!text.contains("secret"), "{text}");
            }
            jail.clear_env();
            jail.create_file("d.yaml", "amqp:\n  url: [7]\n")?;
            let e = Config::load(Path::new("d.yaml")).expect_err("not URLs");
            assert!(e.to_string().contains("amqp.url"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/db"),
            "postgres://postgres@127.0.0.1/db"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&password=s3cret"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
    }

    #[test]
    fn debug_never_prints_secrets() {
        let mut config = Config::default();
        config.database.url = "postgres://app:db-secret@db:5432/thumbnails".into();
        config.amqp.url = "amqp://svc:mq-secret@mq:5672/%2f".into();
        config.http.tokens = vec![TokenConfig {
            token: "tok-secret".into(),
            scopes: vec![Scope::Upload],
        }];
        let shown = format!("{config:?} {config:#?}");
        for secret in ["db-secret", "mq-secret", "tok-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("postgres://app:***@db:5432/thumbnails"),
            "{shown}"
        );
    }
}
