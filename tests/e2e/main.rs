//! The end-to-end suite: every test here starts the real `timefusion` binary on port 0
//! against a temporary data directory and talks to it the way users do, over pgwire (psql,
//! tokio-postgres) and Arrow Flight, then checks what it answers and what it left on disk.
//! One binary with a module per area (the InfluxDB 3 / GreptimeDB layout), so a change under
//! `src/` links one test executable, not one per file.
//!
//! Run it:
//!
//! ```sh
//! scripts/test-deps.sh && cargo test --test e2e    # everything (what CI runs, via `cargo test`)
//! cargo test --test e2e -- --skip external::       # without Java, Node, Python or SeaweedFS
//! cargo test --test e2e -- slt::                   # one module
//! ```
//!
//! psql and openssl are needed by every module. The tests under [`external`] also need pgjdbc
//! and a JDK, Node with `tests/node`'s packages, the Python virtualenv `scripts/test-deps.sh`
//! fills (`TIMEFUSION_VENV`, default `.venv`; or `TIMEFUSION_TEST_PYTHON`) and SeaweedFS from it
//! (or `TIMEFUSION_TEST_WEED`). Helpers live in [`common`]; data files (SQL logic tests,
//! replayed catalog queries, client scripts) stay beside this folder in `tests/`.

mod activity;
mod clients;
mod common;
mod condition_cache;
mod copy;
mod crash;
mod external;
mod flight;
mod health;
mod interrupt;
mod introspection;
mod layout;
mod limits;
mod logs;
mod maintenance;
mod mutation;
mod partition_failure;
mod pipeline;
mod plan_cache;
mod security;
mod slt;
mod validation;
mod write_read;
