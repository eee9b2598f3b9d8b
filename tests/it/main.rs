//! Integration tests against the real PostgreSQL and RabbitMQ.

mod cli;
mod faults;
mod feed;
mod helpers;
mod migration;
mod ops;
mod sidecar;
mod worker;
