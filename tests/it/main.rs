//! Integration tests against the real PostgreSQL and RabbitMQ. The shared
//! helpers (databases, broker names, the PS1 stand-in) are the `testkit`
//! crate's.

use testkit::helpers;

mod blocked;
mod cli;
mod cluster;
mod cutouts;
mod cutouts_cli;
mod dashboard;
mod db_restart;
mod faults;
mod feed;
mod full_disk;
mod garage;
mod kept_fits;
mod lsst;
mod migration;
mod ops;
mod preview;
mod refused;
mod remote;
mod running;
mod sidecar;
mod skyportal;
mod tls;
mod worker;
