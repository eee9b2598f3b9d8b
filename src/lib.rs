//! thumbnails: gives every astronomical object its thumbnails.
//!
//! - [`surveys`]: pure URL logic (templates, Python float repr, PS1 pages).
//! - [`cutouts`]: pure alert cutouts: FITS, FITS.gz or a ZTF Avro packet in,
//!   PNG out, drawn as SkyPortal draws them.
//! - [`store`]: PostgreSQL through SeaORM (entities, migrations, batched writes).
//! - [`bus`]: RabbitMQ through lapin (topology, confirms, supervised consumer).
//! - [`files`]: the upload file store under `storage.root`.
//! - [`worker`]: `obj.created` events become survey thumbnail rows, and
//!   `alert.cutouts` alert stamps; a sweep heals.
//! - [`feed`]: `objs` triggers -> outbox -> `obj.created`/`obj.updated`.
//! - [`sidecar`]: the HTTP upload API and static file server.
//! - [`ops`]: operator tools: `replay`, `resurvey`, `files`, `cutouts draw`,
//!   `dead-letters migrate`.
//! - [`remote`]: fetching from survey servers: the grayscale pass and the
//!   on-demand surveys.
//! - [`app`]: the subcommands, wired from config.

pub mod app;
pub mod bus;
pub mod cli;
pub mod config;
pub mod cutouts;
pub mod feed;
pub mod files;
pub mod ops;
pub mod remote;
pub mod shutdown;
pub mod sidecar;
pub mod store;
pub mod surveys;
pub mod telemetry;
pub mod tls;
pub mod worker;
