//! thumbnails: gives every astronomical object its thumbnails.
//!
//! - [`surveys`]: pure URL logic (templates, Python float repr, PS1 pages).
//! - [`store`]: PostgreSQL through SeaORM (entities, migrations, batched writes).
//! - [`bus`]: RabbitMQ through lapin (topology, confirms, supervised consumer).
//! - [`worker`]: `obj.created` events become survey thumbnail rows.
//! - [`app`]: the subcommands, wired from config.

pub mod app;
pub mod bus;
pub mod cli;
pub mod config;
pub mod shutdown;
pub mod store;
pub mod surveys;
pub mod telemetry;
pub mod testkit;
pub mod worker;
