//! Work that fetches from survey servers: the background grayscale pass
//! over stored survey rows ([`grayscale`]) and the on-demand surveys
//! ([`on_demand`]), and the schema registry of Rubin packets
//! ([`schema_registry`]). [`fetch`] is the survey servers' HTTP path: a timeout, a
//! size cap while streaming, a start rate and a per-host pause after 429.

pub mod fetch;
pub mod grayscale;
pub mod on_demand;
pub mod schema_registry;

pub use fetch::{FetchError, Fetched, Fetcher};
