//! The HTTP sidecar end to end: a real server on a random port, the real
//! PostgreSQL and RabbitMQ, a temporary storage root.

mod alerts;
pub(crate) mod app;
mod committer;
mod cutouts;
mod fuzz;
mod manage;
mod meta;
mod reliability;
mod security;
mod stamps;
mod upload;
