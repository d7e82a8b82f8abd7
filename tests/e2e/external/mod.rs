//! Tests that need more than psql and openssl: a JDK with pgjdbc, Go with pgx, Node with node-postgres, the
//! Python virtualenvs (psycopg, SQLAlchemy, asyncpg, pyarrow, delta-rs `deltalake`, the ADBC
//! Flight SQL driver, the OpenTelemetry SDK and its OTLP exporters; the newest client releases
//! in a second one) or
//! SeaweedFS, all installed by `scripts/test-deps.sh`. Without them, run the rest with
//! `cargo test -- --skip external::`; every module outside this one needs none of them.

mod asyncpg;
mod delta_rs_python;
mod flight_python;
mod jdbc;
mod node_pg;
mod otlp_python;
mod pgx;
mod prometheus;
mod psycopg;
mod s3;
mod s3_outage;
