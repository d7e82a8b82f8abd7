//! TimeFusion: a Postgres-wire analytical time-series database over Delta Lake.
//!
//! The crate is a library with a thin binary (`main.rs`), in layers that import downwards only:
//!
//! - [`pgwire`], [`flight`] and [`otlp`], the protocol front ends, depend on [`sql`] and on the
//!   engine's write path ([`engine::ingest`]) only; [`grpc`] is the port Flight and OTLP share;
//! - [`sql`] is the DataFusion session: the table provider that unions the buffer with Delta,
//!   catalog tables, functions, rewrites of what DataFusion cannot plan, error classification;
//! - [`engine`] is storage: the write path (`ingest` → `wal` → `buffer`), the flusher's core
//!   (`buffer` → `delta` on `storage`), and maintenance; it knows no protocol and no SQL front end;
//! - [`http`] reports health and [`metrics`] over HTTP, and takes OTLP/HTTP exports;
//! - [`config`], [`error`], [`metrics`] and [`panics`] are leaves anyone may use;
//! - [`server`] is the composition root, the one module that sees every layer.
//!
//! `ARCHITECTURE.md` maps the modules, the data flow and the invariants with their tests.

pub mod config;
pub mod engine;
pub mod error;
pub mod flight;
#[cfg(test)]
mod fuzz;
pub mod grpc;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod otlp;
pub mod panics;
pub mod pgwire;
pub mod server;
pub mod sql;
