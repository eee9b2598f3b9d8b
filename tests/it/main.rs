//! Integration tests against the real PostgreSQL and RabbitMQ.

mod cli;
mod faults;
mod helpers;
mod migration;
mod ops;
mod remote;
mod sidecar;
mod worker;
