//! The Postgres front end: datafusion-postgres' session service behind TimeFusion's own
//! accept loop, authentication and error mapping.
//!
//! Clients authenticate with MD5 password authentication against `PGWIRE_USER` /
//! `PGWIRE_PASSWORD`. Queries and `INSERT`s run through DataFusion (simple and extended
//! protocol); `INSERT` reaches the ingest path through the table provider's data sink.
//! `INSERT … VALUES` of plain literals skips DataFusion planning ([`crate::sql::values`]) and goes
//! straight to the ingest path. Every error is mapped to a SQLSTATE in exactly one place,
//! [`crate::sql::error::sqlstate_of`], through the pgwire error handler.

pub mod cancel;
pub mod connection;
pub mod copy;
pub mod settings;
pub mod wire_text;

pub mod auth;
pub mod errors;
pub mod extended;
pub mod hooks;
pub(crate) mod oid_types;
pub mod parameters;
pub mod pipeline;
pub mod simple;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use pgwire::api::auth::DefaultServerParameterProvider;
use pgwire::api::copy::CopyHandler;
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::FieldInfo;
use pgwire::api::{ErrorHandler, PgWireServerHandlers, RandomPidSecretKeyGenerator};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::AuthMethod;
use crate::engine::core::Maintenance;
use crate::engine::ingest::Ingest;
use crate::engine::schema::Catalog;
use crate::pgwire::auth::{PasswordAuth, Tls};
use crate::pgwire::connection::{Admission, ConnectionLimits};
use crate::pgwire::copy::handler::{CopyHook, CopyRows};
use crate::pgwire::errors::SqlStateErrors;
use crate::pgwire::extended::{ExtendedQueries, Parser};
use crate::pgwire::hooks::{
    AbortedTransactionHook, Hook, LiteralInsertHook, MutationHook, PlanCacheHook, RewriteHook,
    SavepointHook, VacuumHook,
};
use crate::pgwire::simple::SimpleQueries;
use crate::sql::colname;
use crate::sql::slots::Slots;

/// The handlers pgwire calls for each connection.
pub struct Handlers {
    session: Arc<DfSessionService>,
    inserts: Arc<Hook<LiteralInsertHook>>,
    auth: Arc<PasswordAuth>,
    parameters: Arc<DefaultServerParameterProvider>,
    interrupts: Arc<cancel::Registry>,
    pids: Arc<RandomPidSecretKeyGenerator>,
    trust: bool,
    copy: Arc<CopyRows>,
    tls: Option<Tls>,
    max_depth: usize,
    log_min_duration: Option<std::time::Duration>,
    slots: Arc<Slots>,
    /// The plan cache's hook and the session it plans in, for simple queries answered from
    /// kept plans before (`simple::SimpleQueries`).
    plans: Arc<PlanCacheHook>,
    context: Arc<SessionContext>,
}

/// The parameters sent to clients at start-up (`server_version` …).
fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = crate::sql::SERVER_VERSION.to_string();
    parameters
}

/// Who may connect, and how: the one login, its authentication method, and TLS.
pub struct Access {
    pub user: String,
    pub password: String,
    /// Let the user in without a password (`PGWIRE_INSECURE_NO_PASSWORD`); `password` is
    /// then ignored.
    pub trust: bool,
    pub method: AuthMethod,
    pub tls: Option<Tls>,
}

/// Bounds on what one statement may take.
pub struct Limits {
    /// Parsed bytes of a `COPY FROM STDIN` held (and so all-or-nothing) before it is written.
    pub copy_atomic_bytes: usize,
    /// How deep a statement's expressions may be ([`crate::sql::statement_text::check_depth`]).
    pub max_expression_depth: usize,
    /// Statements at least this long are logged (`TIMEFUSION_LOG_MIN_DURATION_MS`).
    pub log_min_duration: Option<std::time::Duration>,
    /// The slots statements run in, shared with Flight SQL.
    pub slots: Arc<Slots>,
    /// Optimized plans of repeated queries (`TIMEFUSION_PLAN_CACHE_ENTRIES`).
    pub plan_cache: Arc<crate::sql::plan_cache::PlanCache>,
}

impl Handlers {
    pub fn new(
        context: Arc<SessionContext>,
        catalog: Arc<Catalog>,
        ingest: Arc<Ingest>,
        access: Access,
        limits: Limits,
        maintenance: Arc<dyn Maintenance>,
        interrupts: Arc<cancel::Registry>,
    ) -> Self {
        let parameters = server_parameters();
        let plans = Arc::new(PlanCacheHook {
            cache: limits.plan_cache,
        });
        let inserts = Arc::new(Hook(LiteralInsertHook {
            catalog: catalog.clone(),
            ingest: ingest.clone(),
        }));
        Handlers {
            context: context.clone(),
            plans: plans.clone(),
            session: Arc::new(DfSessionService::new_with_hooks(
                context,
                vec![
                    Arc::new(Hook(AbortedTransactionHook)),
                    Arc::new(Hook(VacuumHook {
                        catalog: catalog.clone(),
                        maintenance,
                    })),
                    Arc::new(Hook(CopyHook {
                        catalog: catalog.clone(),
                        atomic_bytes: limits.copy_atomic_bytes,
                    })),
                    inserts.clone(),
                    Arc::new(Hook(SavepointHook)),
                    Arc::new(Hook(settings::SettingsHook {
                        registry: interrupts.clone(),
                    })),
                    Arc::new(Hook(RewriteHook)),
                    Arc::new(MutationHook {
                        catalog: catalog.clone(),
                    }),
                    Arc::new(CursorStatementHook),
                    Arc::new(SetShowHook),
                    Arc::new(TransactionStatementHook),
                    plans.clone(),
                ],
            )),
            auth: Arc::new(PasswordAuth::new(
                access.user,
                access.password,
                access.method,
            )),
            parameters: Arc::new(parameters),
            pids: Arc::new(RandomPidSecretKeyGenerator::default()),
            interrupts,
            trust: access.trust,
            copy: Arc::new(CopyRows { ingest }),
            tls: access.tls,
            inserts,
            max_depth: limits.max_expression_depth,
            log_min_duration: limits.log_min_duration,
            slots: limits.slots,
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::new(SimpleQueries {
            session: self.session.clone(),
            inserts: self.inserts.clone(),
            max_depth: self.max_depth,
            log_min_duration: self.log_min_duration,
            slots: self.slots.clone(),
            plans: self.plans.clone(),
            context: self.context.clone(),
        })
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::new(ExtendedQueries {
            parser: Arc::new(Parser {
                inner: self.session.query_parser(),
                max_depth: self.max_depth,
                catalog: self.inserts.0.catalog.clone(),
            }),
            ingest: self.inserts.0.ingest.clone(),
            log_min_duration: self.log_min_duration,
            session: self.session.clone(),
            slots: self.slots.clone(),
        })
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::new(self.auth.startup(
            self.trust,
            self.tls.as_ref(),
            self.parameters.clone(),
            self.pids.clone(),
            self.interrupts.clone(),
        ))
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlStateErrors)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.interrupts.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.copy.clone()
    }
}

/// `fields` with the names PostgreSQL gives them ([`colname::names_for`]) on the
/// `RowDescription` only: the plan keeps DataFusion's unique names, and two columns may share
/// one, as in PostgreSQL.
pub(crate) fn postgres_names(fields: Vec<FieldInfo>, items: &[colname::Item]) -> Vec<FieldInfo> {
    let names = colname::names_for(fields.len(), items);
    fields
        .into_iter()
        .zip(names)
        .map(|(field, name)| match name {
            Some(name) if name != field.name() => FieldInfo::new(
                name.to_string(),
                field.table_id(),
                field.column_id(),
                field.datatype().clone(),
                field.format(),
            )
            .with_format_options(field.format_options().clone())
            .with_type_size(field.type_size())
            .with_type_modifier(field.type_modifier()),
            _ => field,
        })
        .collect()
}

/// Connections past `TIMEFUSION_MAX_CONNECTIONS` that may be waiting at once for their
/// start-up message to be refused (or their cancel request served); beyond, they are dropped.
const REFUSALS_IN_FLIGHT: usize = 64;

/// Accepts Postgres connections until `shutdown` fires; at most `max_connections` sessions at
/// once ([`connection`] answers the others 53300).
pub async fn serve(
    listener: TcpListener,
    handlers: Arc<Handlers>,
    max_connections: usize,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let sessions = Arc::new(Semaphore::new(max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    loop {
        let (socket, addr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
        };
        let (permit, admission) = match sessions.clone().try_acquire_owned() {
            Ok(permit) => (permit, Admission::Admitted),
            Err(_) => match refusals.clone().try_acquire_owned() {
                Ok(permit) => (permit, Admission::Full { max_connections }),
                Err(_) => {
                    tracing::warn!(%addr, max_connections, "connection dropped: TIMEFUSION_MAX_CONNECTIONS reached");
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let handlers = handlers.clone();
        tokio::spawn(async move {
            let connections = &crate::metrics::get().connections;
            let admitted = admission == Admission::Admitted;
            if admitted {
                connections.inc();
            }
            if let Err(e) = connection::serve(socket, handlers, admission, limits).await {
                tracing::debug!(%addr, "connection ended with error: {e}");
            }
            if admitted {
                connections.dec();
            }
            drop(permit);
        });
    }
    tracing::info!(
        open = max_connections - sessions.available_permits(),
        "stopped accepting Postgres connections"
    );
}

#[cfg(test)]
mod tests {
    use pgwire::api::Type;
    use pgwire::api::results::FieldFormat;

    use super::*;

    #[test]
    fn postgres_names_keep_everything_but_the_name() {
        let field = FieldInfo::new(
            "x".into(),
            Some(7),
            Some(2),
            Type::TEXT,
            FieldFormat::Binary,
        )
        .with_type_modifier(12);
        let named = postgres_names(vec![field], &[colname::Item::Named("count".into())]);
        assert_eq!(named[0].name(), "count");
        assert_eq!(named[0].table_id(), Some(7));
        assert_eq!(named[0].column_id(), Some(2));
        assert_eq!(named[0].format(), FieldFormat::Binary);
        assert_eq!(named[0].type_modifier(), 12);
    }
}
