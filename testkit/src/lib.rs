//! Test and benchmark scaffolding for `thumbnails`, kept out of the product
//! crate: the integration tests (`tests/it`) and the `bench` binary share it.
//!
//! - [`helpers`]: a fresh migrated database per test ([`helpers::TestDb`]),
//!   throwaway exchange and queue names ([`helpers::TestBus`]), a running
//!   worker, polling with a deadline ([`helpers::eventually`]).
//! - [`ps1`]: a local stand-in for the PS1 cutout service.

pub mod helpers;
pub mod lsst;
pub mod pg_server;
pub mod ps1;
