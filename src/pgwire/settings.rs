//! Session settings: `SET` / `SHOW` / `RESET` of `statement_timeout` and every other
//! parameter, `DISCARD`, and the bookkeeping of a connection's prepared statements that
//! `DISCARD ALL` needs.
//!
//! `SET [LOCAL]` / `SHOW` / `RESET statement_timeout` in PostgreSQL's units (`SET LOCAL` until
//! `COMMIT` / `ROLLBACK`); `RESET [ALL]` back to the start-up settings. Every other `SET` (time
//! zone, `search_path`, `DateStyle`, custom and `datafusion.*` names; quoted or not, lists kept
//! whole) is kept as text in the session, never passed to DataFusion, whose one configuration
//! all sessions share; `SHOW` answers the session's value or PostgreSQL 15's default (`SHOW
//! ALL`: `name, setting, description` rows). A change of `TimeZone`, `application_name`,
//! `DateStyle` or `IntervalStyle` is reported with `ParameterStatus`.
//! `SELECT set_config(name, value, is_local)` by itself is the `SET` it amounts to, answered
//! with the new value. Names are PostgreSQL 15's
//! (`pg15_parameters.txt`, from its `pg_settings`; a name with a dot is a custom parameter),
//! with its answers for a name it does not have (42704) or a session cannot change (55P02).
//! `DISCARD ALL` (what connection poolers send between clients) is `RESET ALL` plus closing
//! every cursor and portal and deallocating every prepared statement (whose names
//! [`PreparedStatements`] keeps, since pgwire's store cannot list them), 25001 inside a
//! transaction block. Tests: `tests/e2e/clients.rs::settings_stay_in_their_session`,
//! `tests/e2e/interrupt.rs`, `tests/e2e/external/psycopg.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    ContextModifier, DiscardObject, Expr, Ident, ObjectName, Reset, Set, Statement as Sql, Value,
};
use datafusion_postgres::hooks::HookClient;
use pgwire::api::ClientInfo;
use pgwire::api::Type;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::error::PgWireResult;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::startup::ParameterStatus;

use crate::error::SqlState;
use crate::pgwire::cancel::{Registry, StartupSettings, TIMEOUT_KEY, set_timeout, timeout};
use crate::pgwire::errors::{no_rows_plan, user_error};
use crate::pgwire::hooks::Answer;

/// `SET statement_timeout`, `SHOW statement_timeout` and `RESET` (of it, of any setting, or
/// `ALL`), in PostgreSQL's units and formats. datafusion-postgres's own handling of the setting
/// reads only whole numbers with one unit and turns anything else into "no timeout".
///
/// `SET`, `RESET` and `SHOW` take the names PostgreSQL 15 has ([`check_settable`]): any other
/// name is 42704, as in PostgreSQL, where datafusion-postgres would accept and ignore it.
///
/// `DISCARD ALL`, which connection poolers send before handing a connection to the next
/// client, is `RESET ALL` and `CLOSE ALL` (cursors and portals); outside a transaction block
/// only, as in PostgreSQL. `DISCARD PLANS`, `TEMP` and `SEQUENCES` have nothing to discard:
/// there are no cached plans, temporary tables or sequences.
pub struct SettingsHook {
    pub registry: Arc<Registry>,
}

/// What a statement asks of the settings, when this hook answers it.
enum Action {
    /// `SET [LOCAL] statement_timeout` (`LOCAL`: until the transaction ends).
    SetTimeout {
        timeout: Option<Duration>,
        local: bool,
    },
    /// `COMMIT` / `ROLLBACK`: a `SET LOCAL` ends; the statement itself goes on to the next hook.
    EndTransaction,
    ShowTimeout,
    /// `SHOW` of a parameter no session can change (`server_version`): the server's value.
    ShowFixed(String, &'static str),
    /// `SHOW name`: the session's value, else PostgreSQL 15's default; `None` from `run` (to
    /// datafusion-postgres) when neither is known (`catalogs`).
    Show(String),
    /// `SHOW ALL`.
    ShowAll,
    /// `SET [LOCAL] name` of a parameter kept per session as text (`value` `None`: `DEFAULT`).
    SetSession {
        name: String,
        value: Option<String>,
        local: bool,
    },
    Reset(Option<String>),
    Discard(DiscardObject),
}

/// Parameters PostgreSQL 15 reports with `ParameterStatus` when they change (`GUC_REPORT`)
/// that a session can set.
const REPORTED: [&str; 4] = ["timezone", "application_name", "datestyle", "intervalstyle"];

fn is_timeout(name: &str) -> bool {
    name.eq_ignore_ascii_case("statement_timeout")
}

/// `SHOW TIME ZONE`.
fn is_time_zone(variable: &[Ident]) -> bool {
    matches!(variable, [time, zone] if time.value.eq_ignore_ascii_case("time") && zone.value.eq_ignore_ascii_case("zone"))
}

/// The text a `SET` stores, as `SHOW` answers it: strings unquoted, lists joined with ", ";
/// `None` for `DEFAULT` (and `SET TIME ZONE LOCAL`), which reset the parameter.
fn session_value(values: &[Expr]) -> Option<String> {
    let text = |value: &Expr| match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.clone(),
            Value::Boolean(b) => if *b { "on" } else { "off" }.into(),
            other => other.to_string(),
        },
        Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    };
    match values {
        [Expr::Identifier(ident)]
            if ident.value.eq_ignore_ascii_case("default")
                || ident.value.eq_ignore_ascii_case("local") =>
        {
            None
        }
        values => Some(values.iter().map(text).collect::<Vec<_>>().join(", ")),
    }
}

/// The session's value of `name` (set in the session or given at start-up, in any case),
/// else PostgreSQL 15's default.
fn shown_value<C: ClientInfo + ?Sized>(client: &C, name: &str) -> Option<String> {
    client
        .metadata()
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.clone())
        .or_else(|| crate::sql::catalog::setting(name).map(str::to_string))
}

/// `SHOW`'s column name: PostgreSQL's spelling of the parameter.
fn display_name(name: &str) -> &str {
    match name {
        "timezone" => "TimeZone",
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        name => name,
    }
}

/// PostgreSQL 15's run-time parameters, one `name context` a line (`pg_settings.context`).
const PG_PARAMETERS: &str = include_str!("pg15_parameters.txt");

/// The `pg_settings.context` of PostgreSQL 15's parameter `name` (lower case), `None` if
/// PostgreSQL has no such parameter.
fn parameter_context(name: &str) -> Option<&'static str> {
    PG_PARAMETERS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (parameter, context) = line.split_once(' ')?;
            (parameter == name).then_some(context)
        })
}

/// A parameter name as PostgreSQL looks it up: its parts joined by dots, in lower case
/// (parameter names are case-insensitive, quoted or not).
fn parameter_name(name: &ObjectName) -> String {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => ident.value.to_lowercase(),
            None => part.to_string().to_lowercase(),
        })
        .collect();
    parts.join(".")
}

fn unrecognized(name: &str) -> pgwire::error::PgWireError {
    user_error(
        SqlState::UNDEFINED_OBJECT,
        format!("unrecognized configuration parameter \"{name}\""),
    )
}

/// Whether a session may `SET` or `RESET` parameter `name` (lower case), with PostgreSQL's
/// answer when it may not: 42704 for a name PostgreSQL 15 does not have, 55P02 for one a
/// session cannot change. A name with a dot is a custom parameter (PostgreSQL's placeholders,
/// DataFusion's `datafusion.*` options) and is always accepted.
fn check_settable(name: &str) -> PgWireResult<()> {
    if name.contains('.') {
        return Ok(());
    }
    let cannot = |why: &str| {
        Err(user_error(
            SqlState::CANT_CHANGE_RUNTIME_PARAM,
            format!("parameter \"{name}\" cannot be {why}"),
        ))
    };
    match parameter_context(name) {
        None => Err(unrecognized(name)),
        Some("user" | "superuser") => Ok(()),
        Some("internal") => cannot("changed"),
        Some("postmaster") => cannot("changed without restarting the server"),
        Some("sighup") => cannot("changed now"),
        // backend, superuser-backend
        Some(_) => cannot("set after connection start"),
    }
}

/// Whether `SHOW name` (lower case) names something to show: a PostgreSQL 15 parameter, a
/// custom parameter, `ALL`, or datafusion-postgres's `catalogs`.
fn showable(name: &str) -> bool {
    name.contains('.') || matches!(name, "all" | "catalogs") || parameter_context(name).is_some()
}

/// The value `name` (lower case) has in `client`'s session, as `SHOW` answers it; `None` for a
/// name it does not know.
pub(crate) fn current_value<C: ClientInfo + ?Sized>(client: &C, name: &str) -> Option<String> {
    if is_timeout(name) {
        return Some(format_timeout(timeout(client)));
    }
    if showable(name) && name != "all" {
        return shown_value(client, name);
    }
    None
}

/// `SELECT set_config(name, value, is_local)` by itself, with constant arguments (pg_dump and
/// psql scripts set `search_path` this way), or over the parameter's own row of
/// `pg_show_all_settings()` ([`settings_row_of`], pgAdmin): the `SET [LOCAL] name = 'value'`
/// it amounts to (a NULL value is `DEFAULT`), and the parameter's name. `None` for any other statement;
/// `set_config` anywhere else is refused by its function ([`crate::sql::catalog`]).
fn set_config_call(statement: &Sql) -> Option<PgWireResult<(Sql, String)>> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr};
    let Sql::Query(query) = statement else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [SelectItem::UnnamedExpr(Expr::Function(call))] = select.projection.as_slice() else {
        return None;
    };
    let is_set_config = call
        .name
        .0
        .last()
        .and_then(|part| part.as_ident())
        .is_some_and(|ident| ident.value.eq_ignore_ascii_case("set_config"));
    if !is_set_config || query.with.is_some() {
        return None;
    }
    let by_itself = select.from.is_empty() && select.selection.is_none();
    let settings_row = settings_row_of(select);
    if !by_itself && settings_row.is_none() {
        return None;
    }
    let FunctionArguments::List(list) = &call.args else {
        return None;
    };
    let constant = |arg: &FunctionArg| match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => Some(v.value.clone()),
        _ => None,
    };
    let arguments: Option<Vec<Value>> = list.args.iter().map(constant).collect();
    let parsed = match arguments.as_deref() {
        Some(
            [
                Value::SingleQuotedString(name),
                value,
                Value::Boolean(local),
            ],
        ) if settings_row.is_none_or(|row| row.eq_ignore_ascii_case(name)) => {
            let value = match value {
                Value::SingleQuotedString(value) => {
                    format!("'{}'", value.replace('\'', "''"))
                }
                Value::Null => "DEFAULT".to_string(),
                _ => return Some(Err(set_config_usage())),
            };
            let name = name.to_lowercase();
            let quoted: Vec<String> = name
                .split('.')
                .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
                .collect();
            let scope = if *local { "LOCAL " } else { "" };
            let text = format!("SET {scope}{} = {value}", quoted.join("."));
            let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
            match datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, &text) {
                Ok(mut statements) if statements.len() == 1 => statements.pop().map(|s| (s, name)),
                _ => None,
            }
        }
        _ => None,
    };
    Some(parsed.ok_or_else(set_config_usage))
}

/// The parameter a `FROM pg_show_all_settings() WHERE name = 'x'` (or `pg_settings`) picks:
/// pgAdmin sets `bytea_output` on connecting with
/// `SELECT set_config('bytea_output', 'hex', false) FROM pg_show_all_settings() WHERE name =
/// 'bytea_output'`, one row for a parameter that exists.
fn settings_row_of(select: &datafusion::sql::sqlparser::ast::Select) -> Option<&str> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, TableFactor};
    let [from] = select.from.as_slice() else {
        return None;
    };
    let TableFactor::Table { name, args, .. } = &from.relation else {
        return None;
    };
    let relation = name.0.last().and_then(|part| part.as_ident())?;
    let settings = match args {
        Some(args) => {
            args.args.is_empty() && relation.value.eq_ignore_ascii_case("pg_show_all_settings")
        }
        None => relation.value.eq_ignore_ascii_case("pg_settings"),
    };
    if !settings || !from.joins.is_empty() {
        return None;
    }
    let Some(Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    }) = &select.selection
    else {
        return None;
    };
    let column = match left.as_ref() {
        Expr::Identifier(ident) => ident,
        Expr::CompoundIdentifier(parts) => parts.last()?,
        _ => return None,
    };
    match right.as_ref() {
        Expr::Value(v) if column.value.eq_ignore_ascii_case("name") => match &v.value {
            Value::SingleQuotedString(name) => Some(name),
            _ => None,
        },
        _ => None,
    }
}

/// What `SHOW name` answers; a custom parameter's name comes as its dotted parts.
fn show(variable: &[Ident]) -> PgWireResult<Action> {
    let parts: Vec<String> = variable.iter().map(|v| v.value.to_lowercase()).collect();
    let name = parts.join(".");
    if is_timeout(&name) {
        Ok(Action::ShowTimeout)
    } else if matches!(name.as_str(), "server_version" | "server_version_num")
        && let Some(value) = crate::sql::catalog::setting(&name)
    {
        Ok(Action::ShowFixed(name, value))
    } else if name == "all" {
        Ok(Action::ShowAll)
    } else if showable(&name) {
        Ok(Action::Show(name))
    } else {
        Err(unrecognized(&name))
    }
}

fn set_config_usage() -> pgwire::error::PgWireError {
    user_error(
        SqlState::FEATURE_NOT_SUPPORTED,
        "set_config takes constant arguments here: SELECT set_config('name', 'value', is_local)",
    )
}

impl SettingsHook {
    fn action(&self, statement: &Sql) -> Option<PgWireResult<Action>> {
        match statement {
            Sql::Set(Set::SingleAssignment {
                scope,
                variable,
                values,
                ..
            }) if is_timeout(&parameter_name(variable)) => {
                Some(self.timeout(values).map(|timeout| Action::SetTimeout {
                    timeout,
                    local: matches!(scope, Some(ContextModifier::Local)),
                }))
            }
            Sql::Set(Set::SingleAssignment {
                scope,
                variable,
                values,
                ..
            }) => {
                let name = parameter_name(variable);
                match check_settable(&name) {
                    Err(e) => Some(Err(e)),
                    Ok(()) => Some(Ok(Action::SetSession {
                        name,
                        value: session_value(values),
                        local: matches!(scope, Some(ContextModifier::Local)),
                    })),
                }
            }
            Sql::Set(Set::SetTimeZone { local, value }) => Some(Ok(Action::SetSession {
                name: "timezone".into(),
                value: session_value(std::slice::from_ref(value)),
                local: *local,
            })),
            Sql::Commit { .. }
            | Sql::Rollback {
                savepoint: None, ..
            } => Some(Ok(Action::EndTransaction)),
            Sql::ShowVariable { variable } if is_time_zone(variable) => {
                Some(Ok(Action::Show("timezone".into())))
            }
            Sql::ShowVariable { variable } if !variable.is_empty() => Some(show(variable)),
            Sql::Discard { object_type } => Some(Ok(Action::Discard(*object_type))),
            Sql::Reset(reset) => Some(match &reset.reset {
                Reset::ALL => Ok(Action::Reset(None)),
                Reset::ConfigurationParameter(name) => {
                    let name = parameter_name(name);
                    check_settable(&name).map(|()| Action::Reset(Some(name)))
                }
            }),
            _ => None,
        }
    }

    /// The timeout `SET statement_timeout` gives: `DEFAULT` (the server's), a number of
    /// milliseconds or a quoted value with a unit.
    fn timeout(&self, values: &[Expr]) -> PgWireResult<Option<Duration>> {
        let [value] = values else {
            return Err(user_error(
                SqlState::INVALID_PARAMETER_VALUE,
                "SET statement_timeout takes only one argument",
            ));
        };
        match value {
            Expr::Identifier(ident) if ident.value.eq_ignore_ascii_case("default") => {
                Ok(self.registry.default_timeout)
            }
            Expr::Value(v) => match &v.value {
                Value::Number(text, _)
                | Value::SingleQuotedString(text)
                | Value::DoubleQuotedString(text) => parse_timeout(text),
                _ => Err(bad_timeout(&value.to_string())),
            },
            other => Err(bad_timeout(&other.to_string())),
        }
    }

    /// The answer to `statement`, `None` when it is for another hook. A change to a
    /// [`REPORTED`] parameter (by `SET`, `RESET`, `DISCARD` or the end of a `SET LOCAL`) is
    /// sent to the client as `ParameterStatus`, as PostgreSQL does: psycopg, for one, shows
    /// `timestamptz` values in the zone it last heard.
    async fn answer(
        &self,
        statement: &Sql,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let action = match self.action(statement)? {
            Ok(action) => action,
            Err(e) => return Some(Err(e)),
        };
        let before: Vec<Option<String>> = REPORTED
            .iter()
            .map(|name| shown_value(&*client, name))
            .collect();
        let answer = self.run(action, client);
        for (name, before) in REPORTED.iter().zip(before) {
            let after = shown_value(&*client, name);
            if after != before
                && let Some(value) = after
            {
                let status = ParameterStatus::new(display_name(name).to_string(), value);
                if let Err(e) = client
                    .send_message(PgWireBackendMessage::ParameterStatus(status))
                    .await
                {
                    return Some(Err(e));
                }
            }
        }
        answer
    }

    /// `SELECT set_config(…)` ([`set_config_call`]): the `SET`, then the value the parameter
    /// has now.
    async fn set_config(
        &self,
        call: PgWireResult<(Sql, String)>,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        let (set, name) = call?;
        self.answer(&set, client)
            .await
            .unwrap_or_else(|| Err(unrecognized(&name)))?;
        let value = current_value(&*client, &name).unwrap_or_default();
        show_response("set_config", &value)
    }

    /// Runs `action`; `None` when the statement is for the next hook (`EndTransaction`, and a
    /// `DISCARD` in an aborted transaction, which the transaction hook refuses).
    fn run(&self, action: Action, client: &mut dyn HookClient) -> Option<PgWireResult<Response>> {
        Some(match action {
            Action::SetTimeout { timeout, local } => {
                if scope_setting(client, TIMEOUT_KEY, local) {
                    set_timeout(client, timeout);
                }
                Ok(Response::Execution(Tag::new("SET")))
            }
            Action::EndTransaction => {
                let saved = client
                    .session_extensions()
                    .insert(LocalSettings(HashMap::new()));
                let metadata = client.metadata_mut();
                for (key, before) in saved.iter().flat_map(|saved| saved.0.iter()) {
                    match before {
                        Some(value) => metadata.insert(key.clone(), value.clone()),
                        None => metadata.remove(key),
                    };
                }
                return None;
            }
            Action::ShowTimeout => {
                show_response("statement_timeout", &format_timeout(timeout(client)))
            }
            Action::ShowFixed(name, value) => show_response(&name, value),
            Action::ShowAll => show_all(client),
            Action::Show(name) => {
                let value = shown_value(client, &name)?;
                show_response(display_name(&name), &value)
            }
            Action::SetSession { name, value, local } => {
                if scope_setting(client, &name, local) {
                    match value {
                        Some(value) => {
                            client.metadata_mut().insert(name, value);
                        }
                        None => restore_startup(client, Some(name)),
                    }
                }
                Ok(Response::Execution(Tag::new("SET")))
            }
            Action::Reset(name) => {
                reset(client, name);
                Ok(Response::Execution(Tag::new("RESET")))
            }
            Action::Discard(object) => {
                match client.transaction_status() {
                    // TransactionStatementHook answers that the transaction is aborted.
                    TransactionStatus::Error => return None,
                    TransactionStatus::Transaction if object == DiscardObject::ALL => {
                        return Some(Err(user_error(
                            SqlState::ACTIVE_SQL_TRANSACTION,
                            "DISCARD ALL cannot run inside a transaction block",
                        )));
                    }
                    _ => {}
                }
                if object == DiscardObject::ALL {
                    reset(client, None);
                    client.portal_store().clear_portals();
                    for name in PreparedStatements::take(&*client) {
                        client.portal_store().rm_statement(&name);
                    }
                }
                // PostgreSQL's tags: `DISCARD TEMPORARY` answers `DISCARD TEMP` too.
                Ok(Response::Execution(Tag::new(&format!("DISCARD {object}"))))
            }
        })
    }
}

/// Where a `SET` of metadata key `key` lasts, before it is made; `false` when it is to be
/// ignored. `SET LOCAL` records the value from before the transaction's first `SET LOCAL` of
/// `key`, which `COMMIT` / `ROLLBACK` restore; outside a transaction block PostgreSQL ignores it
/// (with a warning). A plain `SET` or `RESET` outlives the transaction, so a value recorded by
/// an earlier `SET LOCAL` is dropped.
fn scope_setting(client: &mut dyn HookClient, key: &str, local: bool) -> bool {
    if local && client.transaction_status() == TransactionStatus::Idle {
        return false;
    }
    let mut saved = client
        .session_extensions()
        .get::<LocalSettings>()
        .map(|l| l.0.clone())
        .unwrap_or_default();
    if local {
        let before = client.metadata().get(key).cloned();
        saved.entry(key.to_string()).or_insert(before);
    } else {
        saved.remove(key);
    }
    client.session_extensions().insert(LocalSettings(saved));
    true
}

/// `RESET name`, or `RESET ALL` with `None`: back to the settings the session started with.
fn reset(client: &mut dyn HookClient, name: Option<String>) {
    match &name {
        Some(name) => {
            scope_setting(
                client,
                if is_timeout(name) { TIMEOUT_KEY } else { name },
                false,
            );
        }
        None => {
            client
                .session_extensions()
                .insert(LocalSettings(HashMap::new()));
        }
    }
    restore_startup(client, name);
}

/// Sets `name` (all with `None`) back to its start-up value.
fn restore_startup(client: &mut dyn HookClient, name: Option<String>) {
    let startup = client
        .session_extensions()
        .get::<StartupSettings>()
        .map(|s| s.0.clone())
        .unwrap_or_default();
    let metadata = client.metadata_mut();
    let names: Vec<String> = match name {
        Some(name) if is_timeout(&name) => vec![TIMEOUT_KEY.into()],
        Some(name) => vec![name],
        None => metadata.keys().chain(startup.keys()).cloned().collect(),
    };
    for name in names {
        match startup.get(&name) {
            Some(value) => metadata.insert(name, value.clone()),
            None => metadata.remove(&name),
        };
    }
}

/// The names of a connection's prepared statements, kept by `pgwire::extended::ExtendedQueries` on
/// Parse and Close, because pgwire's statement store cannot list them: `DISCARD ALL`
/// (`DEALLOCATE ALL`, what connection poolers send between clients) drops them all.
#[derive(Default)]
pub(crate) struct PreparedStatements(parking_lot::Mutex<std::collections::BTreeSet<String>>);

impl PreparedStatements {
    pub(crate) fn parsed<C: ClientInfo + ?Sized>(client: &C, name: &str) {
        if !name.is_empty() {
            let names = client
                .session_extensions()
                .get_or_insert_with(Self::default);
            names.0.lock().insert(name.to_string());
        }
    }

    pub(crate) fn closed<C: ClientInfo + ?Sized>(client: &C, name: &str) {
        if let Some(names) = client.session_extensions().get::<Self>() {
            names.0.lock().remove(name);
        }
    }

    fn take<C: ClientInfo + ?Sized>(client: &C) -> Vec<String> {
        client
            .session_extensions()
            .get::<Self>()
            .map(|names| std::mem::take(&mut *names.0.lock()).into_iter().collect())
            .unwrap_or_default()
    }
}

/// The metadata values settings had before this transaction's first `SET LOCAL` of them
/// (`None`: not set), restored when it ends: a setting made for one transaction must not reach
/// the next, which behind a transaction-pooling proxy may be another client's.
struct LocalSettings(HashMap<String, Option<String>>);

/// `SHOW ALL`'s columns, as PostgreSQL names them.
const SHOW_ALL_COLUMNS: [&str; 3] = ["name", "setting", "description"];

/// `SHOW ALL`: each PostgreSQL 15 parameter this server has a value for (set in the session
/// or at start-up, else PostgreSQL's default), then custom parameters set in the session,
/// sorted by name as PostgreSQL sorts them. Descriptions are empty: PostgreSQL's are its own
/// documentation, not this server's.
fn show_all<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Response> {
    let settings = all_values(client);
    let fields: Arc<Vec<FieldInfo>> = Arc::new(
        SHOW_ALL_COLUMNS
            .iter()
            .map(|name| FieldInfo::new(name.to_string(), None, None, Type::TEXT, FieldFormat::Text))
            .collect(),
    );
    let mut rows = Vec::with_capacity(settings.len());
    for setting in &settings {
        let mut encoder = DataRowEncoder::new(fields.clone());
        encoder.encode_field(&Some(setting.name.as_str()))?;
        encoder.encode_field(&Some(setting.value.as_str()))?;
        encoder.encode_field(&Some(""))?;
        rows.push(Ok(encoder.take_row()));
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures::stream::iter(rows),
    )))
}

/// Every parameter `SHOW ALL` lists, with the session's values and PostgreSQL's
/// `pg_settings.context` (`user` for a custom parameter), sorted by name.
pub(crate) fn all_values<C: ClientInfo + ?Sized>(client: &C) -> Vec<crate::sql::pg_forms::Setting> {
    let mut settings: Vec<(String, String)> = PG_PARAMETERS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|name| {
            let value = if is_timeout(name) {
                format_timeout(timeout(client))
            } else {
                shown_value(client, name)?
            };
            Some((display_name(name).to_string(), value))
        })
        .collect();
    settings.extend(
        client
            .metadata()
            .iter()
            .filter(|(key, _)| key.contains('.'))
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    settings.sort_by_key(|(name, _)| name.to_lowercase());
    settings
        .into_iter()
        .map(|(name, value)| crate::sql::pg_forms::Setting {
            context: parameter_context(&name.to_lowercase()).unwrap_or("user"),
            name,
            value,
        })
        .collect()
}

/// A one-row, one-column text result, as `SHOW` answers.
fn show_response(name: &str, value: &str) -> PgWireResult<Response> {
    let fields = Arc::new(vec![FieldInfo::new(
        name.to_string(),
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]);
    let mut encoder = DataRowEncoder::new(fields.clone());
    encoder.encode_field(&Some(value))?;
    let row = encoder.take_row();
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures::stream::iter([Ok(row)]),
    )))
}

fn bad_timeout(value: &str) -> pgwire::error::PgWireError {
    user_error(
        SqlState::INVALID_PARAMETER_VALUE,
        format!("invalid value for parameter \"statement_timeout\": \"{value}\""),
    )
}

/// A `statement_timeout` value as PostgreSQL reads it: a number, in milliseconds unless it has
/// one of the units `us`, `ms`, `s`, `min`, `h`, `d`; zero turns the timeout off.
fn parse_timeout(text: &str) -> PgWireResult<Option<Duration>> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad_timeout(text))?;
    let ms_per_unit = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(bad_timeout(text)),
    };
    let ms = (number * ms_per_unit).round();
    if !ms.is_finite() || ms > i32::MAX as f64 {
        return Err(bad_timeout(text));
    }
    Ok((ms >= 1.0).then(|| Duration::from_millis(ms as u64)))
}

/// A timeout as `SHOW` prints it in PostgreSQL: `0`, or the largest unit that divides it.
fn format_timeout(timeout: Option<Duration>) -> String {
    let Some(ms) = timeout.map(|t| t.as_millis()) else {
        return "0".into();
    };
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1_000),
    ] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The plan Parse gets for a `SHOW` this hook answers: one text column, no rows.
fn show_plan(name: &str) -> PgWireResult<LogicalPlan> {
    rows_plan(&[name])
}

/// The plan Parse describes for a result of text columns named `columns`, which the hook
/// answers itself at Execute.
fn rows_plan(columns: &[&str]) -> PgWireResult<LogicalPlan> {
    let schema = arrow::datatypes::Schema::new(
        columns
            .iter()
            .map(|name| {
                arrow::datatypes::Field::new(*name, arrow::datatypes::DataType::Utf8, false)
            })
            .collect::<Vec<_>>(),
    );
    let schema = datafusion::common::DFSchema::try_from(schema)
        .map_err(|e| user_error(SqlState::INTERNAL_ERROR, e.to_string()))?;
    Ok(LogicalPlan::EmptyRelation(
        datafusion::logical_expr::EmptyRelation {
            produce_one_row: false,
            schema: Arc::new(schema),
        },
    ))
}

#[async_trait]
impl Answer for SettingsHook {
    async fn answer(
        &self,
        statement: &Sql,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(call) = set_config_call(statement) {
            return Some(self.set_config(call, client).await);
        }
        self.answer(statement, client).await
    }

    async fn plan(
        &self,
        statement: &Sql,
        _context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if let Some(call) = set_config_call(statement) {
            return Some(call.and_then(|_| show_plan("set_config")));
        }
        Some(match self.action(statement)? {
            Ok(Action::ShowTimeout) => show_plan("statement_timeout"),
            Ok(Action::ShowFixed(name, _)) => show_plan(&name),
            Ok(Action::ShowAll) => rows_plan(&SHOW_ALL_COLUMNS),
            Ok(Action::Show(name)) => {
                shown_value(client, &name)?;
                show_plan(display_name(&name))
            }
            Ok(Action::EndTransaction) => return None,
            Ok(_) => Ok(no_rows_plan()),
            Err(e) => Err(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_and_print_like_postgres() {
        let ms = |text: &str| parse_timeout(text).map(|t| t.map(|d| d.as_millis()));
        assert_eq!(ms("0").ok(), Some(None));
        assert_eq!(ms("250").ok(), Some(Some(250)));
        assert_eq!(ms("1.5s").ok(), Some(Some(1500)));
        assert_eq!(ms("5 s").ok(), Some(Some(5000)));
        assert_eq!(ms("2min").ok(), Some(Some(120_000)));
        assert_eq!(ms("1h").ok(), Some(Some(3_600_000)));
        assert_eq!(ms("1d").ok(), Some(Some(86_400_000)));
        assert_eq!(ms("1500us").ok(), Some(Some(2)));
        assert_eq!(ms("100us").ok(), Some(None));
        for bad in ["", "s", "-5", "5 sec", "abc", "99999999999999"] {
            assert!(ms(bad).is_err(), "{bad:?} was accepted");
        }
        let shown = |ms: u64| format_timeout(Some(Duration::from_millis(ms)));
        assert_eq!(format_timeout(None), "0");
        assert_eq!(shown(1500), "1500ms");
        assert_eq!(shown(5000), "5s");
        assert_eq!(shown(120_000), "2min");
        assert_eq!(shown(7_200_000), "2h");
        assert_eq!(shown(86_400_000), "1d");
    }

    #[test]
    fn parameter_names_are_postgres_15s() {
        let code = |name: &str| {
            check_settable(name).err().map(|e| match e {
                pgwire::error::PgWireError::UserError(info) => info.code,
                other => other.to_string(),
            })
        };
        for settable in [
            "statement_timeout",
            "application_name",
            "timezone",
            "datestyle",
            "search_path",
            "work_mem",
            "role",
            "datafusion.execution.batch_size",
            "myapp.tenant",
        ] {
            assert_eq!(code(settable), None, "{settable}");
        }
        assert_eq!(
            code("some_unknown_name").as_deref(),
            Some(SqlState::UNDEFINED_OBJECT.code())
        );
        for fixed in [
            "server_version",
            "shared_buffers",
            "archive_command",
            "log_connections",
        ] {
            assert_eq!(
                code(fixed).as_deref(),
                Some(SqlState::CANT_CHANGE_RUNTIME_PARAM.code()),
                "{fixed}"
            );
        }
        assert!(showable("server_version") && showable("all") && !showable("nope"));

        let name = |sql: &str| {
            let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
            match datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, sql)
                .ok()
                .and_then(|mut s| s.pop())
            {
                Some(Sql::Reset(reset)) => match reset.reset {
                    Reset::ConfigurationParameter(name) => parameter_name(&name),
                    Reset::ALL => "ALL".into(),
                },
                other => panic!("not a RESET: {other:?}"),
            }
        };
        assert_eq!(name("RESET \"TimeZone\""), "timezone");
        assert_eq!(name("RESET Statement_Timeout"), "statement_timeout");
        assert_eq!(name("RESET MyApp.\"Tenant\""), "myapp.tenant");
    }
}
