//! PostgreSQL expressions DataFusion cannot plan, rewritten in the syntax tree into ones it
//! plans with the same result:
//!
//! - `user`, which PostgreSQL reads as `current_user` (it is a reserved word: a column named
//!   `user` must be quoted), where DataFusion looks for a column: it becomes `session_user`,
//!   the name datafusion-pg-catalog gives `current_user` before this rewrite sees it;
//! - `EXISTS (subquery)` in a select list (pgAdmin and DBeaver ask this way whether a relation
//!   has indexes, triggers or children), which DataFusion plans only as a `WHERE` predicate
//!   ("Physical plan does not support logical expression Exists"). It becomes the scalar
//!   subquery `(SELECT count(*) > 0 FROM … WHERE …)`, which DataFusion decorrelates into a
//!   join; `NOT EXISTS` its negation;
//! - `make_interval(days => 1)`: DataFusion binds a named argument only after every earlier
//!   one, and `make_interval`'s all default to 0 in PostgreSQL; the call becomes positional,
//!   with 0 for those left out.
//! - `ARRAY(subquery)` (pgAdmin and DBeaver list a relation's columns, roles or options this
//!   way), which DataFusion reads as a call of a function `array`: the scalar subquery
//!   `(SELECT coalesce(array_agg(item ORDER BY …), '{}') FROM … WHERE …)`, in the subquery's
//!   order, `{}` (not NULL) where it has no rows, correlated or not. A grouped, distinct or
//!   limited subquery, or a set operation (`UNION` …), is aggregated as a derived table, when
//!   its order is its item's (or it has none); other forms are left to DataFusion's error;
//! - `pg_backend_pid()`, which datafusion-pg-catalog answers with 1 for every session: the
//!   session's own process id ([`Session`]), the `pid` its `pg_stat_activity` row has;
//! - `current_setting('name' [, missing_ok])` of a constant name: the value the parameter has
//!   in the session ([`Session::setting`], what `SHOW` answers), where the function alone knows
//!   only the server's defaults. A statement prepared before a later `SET` keeps the value it
//!   was prepared with;
//! - `pg_settings` and `pg_show_all_settings()`: the session's parameters, as `SHOW ALL` lists
//!   them (datafusion-pg-catalog's `pg_settings` has one row and no session);
//! - `pg_stat_activity` and the other relations [`crate::sql::activity`] adds to `pg_catalog`,
//!   written without a schema (PostgreSQL searches `pg_catalog` first): qualified with it, as
//!   datafusion-pg-catalog qualifies the relations it knows; not where a `WITH` names one.
//!
//! - a `FROM` function of one scalar column aliased without column names
//!   (`generate_series(1, 3) x`, `unnest(arr) u`): PostgreSQL names the column after the
//!   alias, DataFusion keeps the function's (`value`); the alias gets that column name.
//!
//! - `timezone(zone, ts)`, PostgreSQL's function form of `ts AT TIME ZONE zone`:
//!   `at_time_zone(ts, zone)`.
//!
//! - `x::json` / `x::jsonb` (and `CAST`): `json_in(x::json)` / `jsonb_in(x::jsonb)`, the text
//!   checked as JSON and `jsonb` normalized as PostgreSQL's input functions do;
//!
//! - `to_date(text, 'YYYY-MM-DD')` / `to_timestamp(text, 'YYYY-MM-DD HH24:MI')` with a constant
//!   PostgreSQL template pattern: the pattern in chrono's terms, which DataFusion's functions
//!   read;
//!
//! - `localtimestamp` / `localtime`: `CAST(now() AS TIMESTAMP)` / `CAST(now() AS TIME)`;
//!
//! - `mod(a, b)` / `div(a, b)`: `(a) % (b)` / `trunc((a) / (b))`;
//!
//! - `date_trunc(unit, ts, zone)`: `at_time_zone(date_trunc(unit, at_time_zone(ts, zone)),
//!   zone)`, truncated in the zone's wall clock as PostgreSQL does;
//!
//! - `substring(text FROM 'pattern')`, PostgreSQL's regular-expression form, which DataFusion
//!   reads as a start position: `(regexp_match(text, 'pattern'))[1]`;
//!
//! - a select-list alias a qualified `ORDER BY` column shares its name with (`CASE a.t … END
//!   AS t … ORDER BY a.t`, pgAdmin's default-privileges screens), which DataFusion calls
//!   ambiguous where PostgreSQL orders by the input column: the alias gets another plan name
//!   in the statement's top query;
//!
//! - `(record).field` (pgAdmin reads `aclexplode`'s records so): `(record)['field']`, which
//!   DataFusion reads as the struct's field; an anonymous row's `f1`, `f2` … (`(row(1, 2)).f2`)
//!   are DataFusion's `c0`, `c1` …;
//!
//! - `json_object_agg(k, v)` / `jsonb_object_agg`: `json_object_of_pairs(array_agg(
//!   json_object_pair(k, v)))`, its `ORDER BY` and `FILTER` kept on `array_agg`.
//!
//! - `pg_relation_size(rel [, fork])`, `pg_table_size(rel)`, `pg_total_relation_size(rel)`,
//!   `pg_indexes_size(rel)`: the relation's `schema.name`, found by its oid in `pg_class` (a
//!   correlated, aggregated subquery, so `pg_total_relation_size(c.oid)` over `pg_class` is a
//!   join), measured by [`crate::sql::functions::size`]; datafusion-pg-catalog's own answer
//!   is 0 for every relation.
//!
//! - `(start1, end1) OVERLAPS (start2, end2)`, which DataFusion does not plan: a `CASE` with
//!   PostgreSQL's rules (each period ordered, a lone NULL endpoint taken as the end, half-open
//!   periods, equal starts overlapping, NULL where the answer depends on a missing end); an
//!   `INTERVAL '…'` as the second item is `start + interval`. The `CASE` reads each item
//!   several times, so items calling `random()`, `clock_timestamp()` and the like, or over
//!   4,096 characters, are left to DataFusion's error.
//!
//! - PostgreSQL's prefix operators `|/ x`, `||/ x` and `@ x`, which DataFusion does not plan
//!   ("Unsupported SQL unary operator"): `sqrt(x)`, `cbrt(x)`, `abs(x)`. (`@ -5`, without
//!   parentheses, is a syntax error before this: sqlparser reads `@-` as one operator.)
//!
//! - `x::varchar(n)` / `character varying(n)` and `x::char(n)` / `character(n)` (`char`
//!   alone is `char(1)`), `bpchar`: `left(x::varchar, n)`, the first n characters as
//!   PostgreSQL's explicit cast keeps them, where DataFusion ignores the length or refuses the
//!   type. A `char(n)` value shorter than n is not padded with blanks (PostgreSQL shows
//!   `'ab'::char(4)` as `ab  `, and strips the blanks again in `||`, comparisons and casts to
//!   text, where this gives the same answers). An `INSERT … VALUES` of literals and
//!   parameters takes the fast path, which stores a `'…'::varchar(n)` or `$1::varchar(n)`
//!   whole (the columns are `text`); `INSERT … SELECT` truncates.
//!
//! Queries are rewritten, and the query or `VALUES` an `INSERT` takes its rows from (when it
//! is not on the literal fast path, [`crate::sql::values`]). Result columns keep
//! PostgreSQL's names (`user`, `exists`): [`crate::sql::colname`] takes them from the
//! statement as written.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    GroupByExpr, Ident, ObjectName, ObjectNamePart, OrderByKind, Query, SelectItem, SetExpr,
    Statement, Subscript, TableAlias, TableAliasColumnDef, TableFactor, UnaryOperator, Value,
    Visit, VisitMut, Visitor, VisitorMut, visit_expressions, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::sql::activity::RELATIONS;
use crate::sql::functions::MAKE_INTERVAL_PARAMETERS;

/// What a rewrite takes from the session that sent the statement.
pub struct Session<'a> {
    /// The process id the session was given at start-up.
    pub pid: i32,
    /// The value a parameter (lower-case name) has in the session, as `SHOW` answers it.
    pub setting: &'a dyn Fn(&str) -> Option<String>,
    /// Every parameter, as `SHOW ALL` lists them.
    pub settings: &'a dyn Fn() -> Vec<Setting>,
}

/// One parameter of `pg_settings`.
pub struct Setting {
    pub name: String,
    pub value: String,
    /// PostgreSQL's `pg_settings.context` (`user`, `superuser`, `postmaster`, …).
    pub context: &'static str,
}

/// `pg_settings` (or `pg_show_all_settings()`) as the session's rows, in PostgreSQL 15's
/// columns: name, value and context as `SHOW ALL` knows them; descriptions, units and bounds
/// are PostgreSQL's documentation, not this server's, and NULL.
fn settings_relation(settings: &[Setting], alias: Option<TableAlias>) -> Option<TableFactor> {
    let quote = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let rows: Vec<String> = settings
        .iter()
        .map(|s| {
            format!(
                "({}, {}, {})",
                quote(&s.name),
                quote(&s.value),
                quote(s.context)
            )
        })
        .collect();
    let text = format!(
        "SELECT name, setting, CAST(NULL AS TEXT) AS unit, CAST(NULL AS TEXT) AS category, \
         CAST(NULL AS TEXT) AS short_desc, CAST(NULL AS TEXT) AS extra_desc, context, \
         'string' AS vartype, 'session' AS source, CAST(NULL AS TEXT) AS min_val, \
         CAST(NULL AS TEXT) AS max_val, CAST(NULL AS TEXT[]) AS enumvals, \
         CAST(NULL AS TEXT) AS boot_val, setting AS reset_val, CAST(NULL AS TEXT) AS sourcefile, \
         CAST(NULL AS INT) AS sourceline, false AS pending_restart \
         FROM (VALUES {}) AS settings(name, setting, context)",
        rows.join(", ")
    );
    let subquery = crate::sql::srf::parse_query(&text).ok()?;
    Some(TableFactor::Derived {
        lateral: false,
        subquery,
        alias: Some(alias.unwrap_or_else(|| TableAlias {
            explicit: true,
            name: Ident::new("pg_settings"),
            columns: Vec::new(),
            at: None,
        })),
        sample: None,
    })
}

/// The alias of a `FROM` function that returns one column of a scalar type
/// (`generate_series`, a one-array `unnest`), given without column names: PostgreSQL names the
/// column after the alias (`SELECT x FROM generate_series(1, 3) x`), or without an alias after
/// the function (`generate_series`, `unnest`), DataFusion keeps its own (`value`).
fn unnamed_scalar_column(factor: &TableFactor) -> bool {
    let (alias, scalar) = match factor {
        TableFactor::Table {
            name,
            args: Some(_),
            alias,
            ..
        } => {
            let scalar = matches!(name.0.as_slice(), [ObjectNamePart::Identifier(ident)]
                if ident.value.eq_ignore_ascii_case("generate_series"));
            (alias, scalar)
        }
        TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        } => (alias, array_exprs.len() == 1),
        _ => return false,
    };
    scalar && alias.as_ref().is_none_or(|alias| alias.columns.is_empty())
}

/// Whether `factor` reads `pg_settings` or `pg_show_all_settings()`.
fn is_settings_relation(factor: &TableFactor, ctes: &[String]) -> bool {
    let TableFactor::Table { name, args, .. } = factor else {
        return false;
    };
    let parts: Vec<&str> = name
        .0
        .iter()
        .filter_map(|part| part.as_ident().map(|ident| ident.value.as_str()))
        .collect();
    let relation = match parts.as_slice() {
        ["pg_catalog", relation] => *relation,
        [relation] if !ctes.iter().any(|cte| cte.eq_ignore_ascii_case(relation)) => *relation,
        _ => return false,
    };
    match args {
        None => relation.eq_ignore_ascii_case("pg_settings"),
        Some(args) => args.args.is_empty() && relation.eq_ignore_ascii_case("pg_show_all_settings"),
    }
}

/// `statement` with the forms above rewritten, or `None` when it has none of them.
pub fn rewrite(statement: &Statement, session: &Session) -> Option<Statement> {
    let insert_select = matches!(statement, Statement::Insert(insert) if insert.source.is_some());
    if !matches!(statement, Statement::Query(_)) && !insert_select {
        return None;
    }
    // Most queries have neither: look before copying the tree.
    let mut finder = Finder { ctes: Vec::new() };
    let clash = top_query(statement).is_some_and(|q| !clashing_aliases(q).is_empty());
    if Visit::visit(statement, &mut finder).is_continue() && !clash {
        return None;
    }
    let mut rewritten = statement.clone();
    if clash && let Statement::Query(query) = &mut rewritten {
        rename_in_top_query(query);
    }
    let mut rewriter = Rewriter {
        rewritten: 0,
        ctes: Vec::new(),
        session,
    };
    let _ = VisitMut::visit(&mut rewritten, &mut rewriter);
    (clash || rewriter.rewritten > 0).then_some(rewritten)
}

/// The query whose select list names the statement's result columns: the statement's, inside
/// any parentheses around it.
fn top_query(statement: &Statement) -> Option<&Query> {
    let Statement::Query(query) = statement else {
        return None;
    };
    let mut query = query.as_ref();
    while let SetExpr::Query(inner) = query.body.as_ref()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
    {
        query = inner;
    }
    Some(query)
}

/// [`rename_clashing_aliases`] in the query [`top_query`] finds.
fn rename_in_top_query(query: &mut Query) {
    let parenthesized = query.order_by.is_none() && query.limit_clause.is_none();
    match query.body.as_mut() {
        SetExpr::Query(inner) if parenthesized => rename_in_top_query(inner),
        _ => rename_clashing_aliases(query),
    }
}

/// The select-list aliases (lower case) a qualified `ORDER BY` column shares its name with
/// (`CASE a.t … END AS t … ORDER BY a.t`, pgAdmin's default-privileges screens): PostgreSQL
/// orders by the input column, DataFusion calls the two ambiguous.
fn clashing_aliases(query: &Query) -> Vec<String> {
    let Some(order_by) = &query.order_by else {
        return Vec::new();
    };
    let OrderByKind::Expressions(exprs) = &order_by.kind else {
        return Vec::new();
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Vec::new();
    };
    let qualified: Vec<String> = exprs
        .iter()
        .filter_map(|e| match &e.expr {
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                parts.last().map(|p| p.value.to_lowercase())
            }
            _ => None,
        })
        .collect();
    select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. }
                if qualified.contains(&alias.value.to_lowercase()) =>
            {
                Some(alias.value.to_lowercase())
            }
            _ => None,
        })
        .collect()
}

/// Gives the [`clashing_aliases`] of the statement's top query other plan names, in the select
/// list and where `ORDER BY` names them unqualified. Only the top query's: its names are the
/// client's columns, which [`crate::sql::colname`] takes from the statement as written, while
/// an outer query could read a subquery's by name.
fn rename_clashing_aliases(query: &mut Query) {
    let clashing = clashing_aliases(query);
    let renamed = |name: &str| Ident::new(format!("{name}__output"));
    if let SetExpr::Select(select) = query.body.as_mut() {
        for item in &mut select.projection {
            if let SelectItem::ExprWithAlias { alias, .. } = item
                && clashing.contains(&alias.value.to_lowercase())
            {
                *alias = renamed(&alias.value.to_lowercase());
            }
        }
    }
    if let Some(order_by) = &mut query.order_by
        && let OrderByKind::Expressions(exprs) = &mut order_by.kind
    {
        for e in exprs {
            if let Expr::Identifier(ident) = &e.expr
                && clashing.contains(&ident.value.to_lowercase())
            {
                e.expr = Expr::Identifier(renamed(&ident.value.to_lowercase()));
            }
        }
    }
}

/// Whether `expr` is `timezone(zone, ts)` (two positional arguments, no other clause), the
/// function form of `ts AT TIME ZONE zone`: `at_time_zone(ts, zone)`.
fn is_timezone_call(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(function)
        if function.over.is_none()
            && function.filter.is_none()
            && matches!(function.name.0.as_slice(),
                [ObjectNamePart::Identifier(ident)] | [_, ObjectNamePart::Identifier(ident)]
                    if ident.value.eq_ignore_ascii_case("timezone"))
            && matches!(&function.args, FunctionArguments::List(list)
                if list.args.len() == 2
                    && list.clauses.is_empty()
                    && list.args.iter().all(|a| matches!(a, FunctionArg::Unnamed(_)))))
}

/// Whether `expr` is the bare word `user`, which sqlparser reads as a call without
/// parentheses (as it reads `current_user`) and DataFusion then as a column.
fn is_user(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(function)
        if matches!(function.args, FunctionArguments::None)
            && matches!(function.name.0.as_slice(), [ObjectNamePart::Identifier(ident)]
                if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("user")))
}

/// The type `localtimestamp` / `localtime` (SQL's parenthesis-less functions, read by
/// sqlparser as a call without arguments and by DataFusion as a column) is the session's
/// clock in: `now()` cast to it, the session computing in UTC.
fn local_time(expr: &Expr) -> Option<&'static str> {
    let name = match expr {
        Expr::Function(function) if matches!(function.args, FunctionArguments::None) => {
            match function.name.0.as_slice() {
                [ObjectNamePart::Identifier(ident)] if ident.quote_style.is_none() => ident,
                _ => return None,
            }
        }
        Expr::Identifier(ident) if ident.quote_style.is_none() => ident,
        _ => return None,
    };
    match name.value.to_lowercase().as_str() {
        "localtimestamp" => Some("TIMESTAMP"),
        "localtime" => Some("TIME"),
        _ => None,
    }
}

/// The subquery of `ARRAY(subquery)`.
fn array_subquery(expr: &Expr) -> Option<&Query> {
    match expr {
        Expr::Function(function)
            if matches!(function.name.0.as_slice(), [ObjectNamePart::Identifier(ident)]
                if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("array")) =>
        {
            match &function.args {
                FunctionArguments::Subquery(query) => Some(query),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `(SELECT coalesce(array_agg(item ORDER BY …), make_array()) …)` for `ARRAY(subquery)`: see
/// the module's documentation. `None` for a form whose order it cannot keep.
fn array_as_scalar(subquery: &Query) -> Option<Expr> {
    // A set operation (`UNION` …) is ordered by its column's position only.
    let (item, alias) = match subquery.body.as_ref() {
        SetExpr::Select(select) => match select.projection.as_slice() {
            [SelectItem::UnnamedExpr(expr)] => (Some(expr), None),
            [SelectItem::ExprWithAlias { expr, alias }] => (Some(expr), Some(alias)),
            _ => return None,
        },
        _ => (None, None),
    };
    let orders: Vec<(Expr, bool)> = match &subquery.order_by {
        None => Vec::new(),
        Some(order_by) => match &order_by.kind {
            OrderByKind::Expressions(exprs) => exprs
                .iter()
                .map(|o| (o.expr.clone(), o.options.asc == Some(false)))
                .collect(),
            OrderByKind::All(_) => return None,
        },
    };
    // An ORDER BY naming the item by position or alias orders by the item.
    let is_item = |e: &Expr| match e {
        Expr::Value(v) => matches!(&v.value, Value::Number(n, _) if n == "1"),
        Expr::Identifier(ident) if alias.is_some_and(|a| a.value == ident.value) => true,
        other => item.is_some_and(|item| other == item),
    };
    let plain = is_plain(subquery);
    let order_text = |orders: &[(String, bool)]| {
        if orders.is_empty() {
            return String::new();
        }
        let listed: Vec<String> = orders
            .iter()
            .map(|(e, desc)| format!("{e}{}", if *desc { " DESC" } else { "" }))
            .collect();
        format!(" ORDER BY {}", listed.join(", "))
    };
    let scalar = if plain {
        let orders: Vec<(String, bool)> = orders
            .iter()
            .map(|(e, desc)| {
                let e = match item {
                    Some(item) if is_item(e) => item,
                    _ => e,
                };
                (e.to_string(), *desc)
            })
            .collect();
        let mut aggregated = subquery.clone();
        if let (SetExpr::Select(select), Some(item)) = (aggregated.body.as_mut(), item) {
            let expr = parse_expr(&format!(
                "coalesce(array_agg({item}{}), make_array())",
                order_text(&orders)
            ))?;
            select.projection = vec![SelectItem::UnnamedExpr(expr)];
        }
        aggregated.order_by = None;
        aggregated
    } else {
        if !orders.iter().all(|(e, _)| is_item(e)) {
            return None;
        }
        let orders: Vec<(String, bool)> = orders
            .iter()
            .map(|(_, desc)| ("array_rows.item".to_string(), *desc))
            .collect();
        *crate::sql::srf::parse_query(&format!(
            "SELECT coalesce(array_agg(array_rows.item{}), make_array()) \
             FROM ({subquery}) AS array_rows(item)",
            order_text(&orders)
        ))
        .ok()?
    };
    Some(Expr::Subquery(Box::new(scalar)))
}

/// `json_object_agg(k, v …)` or `jsonb_object_agg` (two positional arguments, not a
/// window): the name of the scalar function that turns its pairs into an object.
fn object_agg(expr: &Expr) -> Option<&'static str> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let [ObjectNamePart::Identifier(ident)] = function.name.0.as_slice() else {
        return None;
    };
    let pairs = match ident.value.to_lowercase().as_str() {
        "json_object_agg" => "json_object_of_pairs",
        "jsonb_object_agg" => "jsonb_object_of_pairs",
        _ => return None,
    };
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let plain = list.args.len() == 2
        && list
            .args
            .iter()
            .all(|a| matches!(a, FunctionArg::Unnamed(_)))
        && function.over.is_none()
        && function.within_group.is_empty();
    plain.then_some(pairs)
}

/// `json_object_agg(k, v [ORDER BY …]) [FILTER (…)]` as `json_object_of_pairs(array_agg(
/// json_object_pair(k, v) [ORDER BY …]) [FILTER (…)])`: `array_agg` collects, in its order, and NULL
/// over no rows, as PostgreSQL's aggregate gives.
fn object_agg_of_pairs(expr: &mut Expr, pairs: &str) {
    let Expr::Function(function) = expr else {
        return;
    };
    let FunctionArguments::List(list) = &mut function.args else {
        return;
    };
    let (key, value) = (list.args[0].clone(), list.args[1].clone());
    let pair = crate::sql::srf::call("json_object_pair", vec![]);
    let Expr::Function(mut pair) = pair else {
        return;
    };
    if let FunctionArguments::List(pair_args) = &mut pair.args {
        pair_args.args = vec![key, value];
    }
    list.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Function(
        pair,
    )))];
    function.name = ObjectName::from(vec![Ident::new("array_agg")]);
    let aggregate = std::mem::replace(expr, Expr::value(Value::Null));
    *expr = crate::sql::srf::call(pairs, vec![aggregate]);
}

/// Whether `expr` is `substring(text FROM pattern)` with a text pattern (pgAdmin reads a
/// table's fill factor so): PostgreSQL's regular-expression form, which DataFusion reads as a
/// start position.
fn is_substring_pattern(expr: &Expr) -> bool {
    matches!(expr, Expr::Substring {
        substring_from: Some(from),
        substring_for: None,
        ..
    } if matches!(from.as_ref(), Expr::Value(v) if matches!(v.value,
        Value::SingleQuotedString(_) | Value::EscapedStringLiteral(_))))
}

/// `substring(text FROM pattern)` as `regexp_match(text, pattern)[1]`: the part the
/// pattern's first parenthesized group matched, or the whole match without one; NULL when it
/// does not match.
fn substring_by_pattern(expr: &mut Expr) {
    let Expr::Substring {
        expr: text,
        substring_from: Some(pattern),
        ..
    } = expr
    else {
        return;
    };
    let call = crate::sql::srf::call("regexp_match", vec![*text.clone(), *pattern.clone()]);
    *expr = Expr::CompoundFieldAccess {
        root: Box::new(Expr::Nested(Box::new(call))),
        access_chain: vec![AccessExpr::Subscript(Subscript::Index {
            index: Expr::value(Value::Number("1".into(), false)),
        })],
    };
}

/// Whether `expr` is `to_date(text, 'pattern')` / `to_timestamp(text, 'pattern')` with a
/// PostgreSQL template pattern (`YYYY-MM-DD`), which DataFusion's functions read as chrono's
/// (`%Y-%m-%d`); a pattern with a `%` is taken as chrono's already.
fn pg_pattern_call(expr: &Expr) -> bool {
    let Expr::Function(function) = expr else {
        return false;
    };
    let named = matches!(function.name.0.as_slice(), [ObjectNamePart::Identifier(i)]
        if i.value.eq_ignore_ascii_case("to_date") || i.value.eq_ignore_ascii_case("to_timestamp"));
    named
        && matches!(&function.args, FunctionArguments::List(list)
            if matches!(list.args.as_slice(), [_, FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))]
                if matches!(&v.value, Value::SingleQuotedString(p) if !p.contains('%'))))
}

/// The pattern of a [`pg_pattern_call`] in chrono's terms.
fn chrono_pattern(expr: &mut Expr) {
    if let Expr::Function(function) = expr
        && let FunctionArguments::List(list) = &mut function.args
        && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) =
            list.args.get_mut(1)
        && let Value::SingleQuotedString(pattern) = &mut v.value
    {
        *pattern = crate::sql::functions::pg_pattern_to_strftime(pattern);
    }
}

/// The operator of `mod(a, b)` (`%`) or `div(a, b)` (`/`, truncated), PostgreSQL's function
/// forms DataFusion has not.
fn arithmetic_call(expr: &Expr) -> Option<BinaryOperator> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let [ObjectNamePart::Identifier(ident)] = function.name.0.as_slice() else {
        return None;
    };
    let op = match ident.value.to_lowercase().as_str() {
        "mod" => BinaryOperator::Modulo,
        "div" => BinaryOperator::Divide,
        _ => return None,
    };
    let plain = function.over.is_none()
        && matches!(&function.args, FunctionArguments::List(list)
            if list.args.len() == 2
                && list.args.iter().all(|a| matches!(a, FunctionArg::Unnamed(FunctionArgExpr::Expr(_)))));
    plain.then_some(op)
}

/// `mod(a, b)` as `(a) % (b)`, `div(a, b)` as `trunc((a) / (b))`.
fn arithmetic(expr: &mut Expr, op: BinaryOperator) {
    let Expr::Function(function) = expr else {
        return;
    };
    let Some(args) = crate::sql::srf::plain_args(&function.args) else {
        return;
    };
    let [a, b] = args.as_slice() else {
        return;
    };
    let divide = op == BinaryOperator::Divide;
    let operation = Expr::Nested(Box::new(Expr::BinaryOp {
        left: Box::new(Expr::Nested(Box::new(a.clone()))),
        op,
        right: Box::new(Expr::Nested(Box::new(b.clone()))),
    }));
    *expr = if divide {
        crate::sql::srf::call("trunc", vec![operation])
    } else {
        operation
    };
}

/// Whether `expr` is `date_trunc(unit, ts, zone)`, PostgreSQL's truncation in a time zone's
/// wall clock, which DataFusion has not.
fn is_zoned_date_trunc(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(function)
        if function.over.is_none()
            && matches!(function.name.0.as_slice(), [ObjectNamePart::Identifier(i)]
                if i.value.eq_ignore_ascii_case("date_trunc"))
            && matches!(&function.args, FunctionArguments::List(list)
                if list.args.len() == 3
                    && list.args.iter().all(|a| matches!(a, FunctionArg::Unnamed(_)))))
}

/// `date_trunc(unit, ts, zone)` as `at_time_zone(date_trunc(unit, at_time_zone(ts, zone)),
/// zone)`: the instant read as the zone's wall clock, truncated there, and read back.
fn zoned_date_trunc(expr: &mut Expr) {
    let Expr::Function(function) = expr else {
        return;
    };
    let Some(args) = crate::sql::srf::plain_args(&function.args) else {
        return;
    };
    let [unit, ts, zone] = args.as_slice() else {
        return;
    };
    use crate::sql::srf::call;
    let local = call("at_time_zone", vec![ts.clone(), zone.clone()]);
    let truncated = call("date_trunc", vec![unit.clone(), local]);
    *expr = call("at_time_zone", vec![truncated, zone.clone()]);
}

/// The part of a relation a size function measures (`'main'`, `'total'`, `'indexes'`, or
/// `pg_relation_size`'s fork argument) and the relation argument, if `expr` calls one.
fn relation_size_call(expr: &Expr) -> Option<(String, Expr)> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let name = match function.name.0.as_slice() {
        [ObjectNamePart::Identifier(name)] => name,
        [
            ObjectNamePart::Identifier(schema),
            ObjectNamePart::Identifier(name),
        ] if schema.value.eq_ignore_ascii_case("pg_catalog") => name,
        _ => return None,
    };
    let args = crate::sql::srf::plain_args(&function.args)?;
    let part = match (name.value.to_lowercase().as_str(), args.as_slice()) {
        ("pg_relation_size" | "pg_table_size", [_]) => "'main'".to_string(),
        ("pg_relation_size", [_, fork]) => fork.to_string(),
        ("pg_total_relation_size", [_]) => "'total'".to_string(),
        ("pg_indexes_size", [_]) => "'indexes'".to_string(),
        _ => return None,
    };
    Some((part, args.into_iter().next()?))
}

/// [`crate::sql::functions::size::RELATION_SIZE`] of the relation whose oid `relation` is.
/// The subquery's aliases are its own, so an outer `c.oid` still names the outer `c`.
fn relation_size(relation: &Expr, part: &str) -> Option<Expr> {
    parse_expr(&format!(
        "{}((SELECT max(tf_size_n.nspname || '.' || tf_size_c.relname) \
         FROM pg_catalog.pg_class tf_size_c \
         JOIN pg_catalog.pg_namespace tf_size_n ON tf_size_c.relnamespace = tf_size_n.oid \
         WHERE tf_size_c.oid = ({relation})), {part})",
        crate::sql::functions::size::RELATION_SIZE
    ))
}

/// The two periods of `(s1, e1) OVERLAPS (s2, e2)`, if `expr` is one.
fn overlaps(expr: &Expr) -> Option<[&Expr; 4]> {
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::Overlaps,
        right,
    } = expr
    else {
        return None;
    };
    fn pair(e: &Expr) -> Option<[&Expr; 2]> {
        match e {
            Expr::Tuple(items) => match items.as_slice() {
                [start, end] => Some([start, end]),
                _ => None,
            },
            _ => None,
        }
    }
    let [s1, e1] = pair(left)?;
    let [s2, e2] = pair(right)?;
    Some([s1, e1, s2, e2])
}

/// The most text the four items of an `OVERLAPS` may hold to be rewritten: the `CASE` repeats
/// each several times, so an `OVERLAPS` nested in another's items would grow the statement
/// geometrically; past this it is left to DataFusion's error.
const OVERLAPS_ITEMS_MAX_CHARS: usize = 4096;

/// PostgreSQL's `OVERLAPS` of the periods `[s1, e1]` and `[s2, e2]` as a `CASE`
/// (`overlaps_timestamp`'s rules, see the module's documentation).
fn overlaps_case([s1, e1, s2, e2]: [&Expr; 4]) -> Option<Expr> {
    let items: Vec<String> = [s1, e1, s2, e2]
        .iter()
        .map(|e| e.to_string().to_lowercase())
        .collect();
    if items.iter().map(String::len).sum::<usize>() > OVERLAPS_ITEMS_MAX_CHARS {
        return None;
    }
    // Each item is evaluated several times: one whose value changes per call would compare
    // different values, so it is left to DataFusion's error rather than answered wrong.
    const VOLATILE: [&str; 4] = ["random(", "clock_timestamp(", "timeofday(", "uuid("];
    if items.iter().any(|i| VOLATILE.iter().any(|v| i.contains(v))) {
        return None;
    }
    // An interval as the end is the period's length.
    let end = |start: &Expr, end: &Expr| match end {
        Expr::Interval(_) => format!("(({start}) + ({end}))"),
        other => format!("({other})"),
    };
    let (e1, e2) = (end(s1, e1), end(s2, e2));
    let (s1, s2) = (format!("({s1})"), format!("({s2})"));
    // Each period ordered; a NULL start takes the end's place (the end is then unknown).
    let first = |s: &str, e: &str| {
        format!("(CASE WHEN {s} IS NULL THEN {e} WHEN {e} < {s} THEN {e} ELSE {s} END)")
    };
    let last = |s: &str, e: &str| {
        format!("(CASE WHEN {s} IS NULL THEN NULL WHEN {e} < {s} THEN {s} ELSE {e} END)")
    };
    let (a1, b1, a2, b2) = (
        first(&s1, &e1),
        last(&s1, &e1),
        first(&s2, &e2),
        last(&s2, &e2),
    );
    let unknown = format!("{b1} IS NULL OR {b2} IS NULL");
    parse_expr(&format!(
        "(CASE WHEN {a1} > {a2} THEN (CASE WHEN {a1} < {b2} THEN true WHEN {unknown} THEN NULL ELSE false END) \
         WHEN {a1} < {a2} THEN (CASE WHEN {a2} < {b1} THEN true WHEN {unknown} THEN NULL ELSE false END) \
         WHEN {a1} = {a2} THEN (CASE WHEN {unknown} THEN NULL ELSE true END) END)"
    ))
}

/// The function a PostgreSQL prefix operator (`|/`, `||/`, `@`) is, if `expr` applies one.
fn prefix_operator(expr: &Expr) -> Option<&'static str> {
    match expr {
        Expr::UnaryOp { op, .. } => match op {
            UnaryOperator::PGSquareRoot => Some("sqrt"),
            UnaryOperator::PGCubeRoot => Some("cbrt"),
            UnaryOperator::PGAbs => Some("abs"),
            _ => None,
        },
        _ => None,
    }
}

/// The characters a cast to `varchar(n)`, `char(n)` (`char` alone: 1) or `bpchar(n)` keeps,
/// `Some(None)` for `bpchar` without a length, `None` when `expr` is no such cast.
fn char_cast(expr: &Expr) -> Option<Option<u64>> {
    use datafusion::sql::sqlparser::ast::CharacterLength;
    let Expr::Cast { data_type, .. } = expr else {
        return None;
    };
    // A length of 0 is PostgreSQL's error; DataFusion's answer (no truncation) stays.
    let length = |l: &Option<CharacterLength>| match l {
        Some(CharacterLength::IntegerLength { length, .. }) if *length > 0 => Some(Some(*length)),
        _ => None,
    };
    match data_type {
        DataType::Varchar(l) | DataType::CharacterVarying(l) | DataType::CharVarying(l) => {
            length(l)
        }
        DataType::Char(None) | DataType::Character(None) => Some(Some(1)),
        DataType::Char(l) | DataType::Character(l) => length(l),
        DataType::Custom(name, modifiers)
            if matches!(name.0.as_slice(), [ObjectNamePart::Identifier(i)]
                if i.value.eq_ignore_ascii_case("bpchar")) =>
        {
            match modifiers.as_slice() {
                [] => Some(None),
                [n] => n.parse().ok().filter(|n| *n > 0).map(Some),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `left(x::varchar, n)` for a [`char_cast`]: the cast stays inside, unbounded, so it still
/// types a parameter (`$1::varchar(3)`).
fn truncating_cast(expr: &mut Expr, keep: Option<u64>) {
    let Expr::Cast { data_type, .. } = expr else {
        return;
    };
    *data_type = DataType::Varchar(None);
    if let Some(keep) = keep {
        let cast = std::mem::replace(expr, Expr::value(Value::Null));
        *expr = crate::sql::srf::call(
            "left",
            vec![cast, Expr::value(Value::Number(keep.to_string(), false))],
        );
    }
}

/// The input function of a `::json` / `::jsonb` cast (`json_in` / `jsonb_in`), or `None`
/// when `expr` is no such cast.
fn json_cast(expr: &Expr) -> Option<&'static str> {
    match expr {
        Expr::Cast {
            data_type: DataType::JSON,
            ..
        } => Some("json_in"),
        Expr::Cast {
            data_type: DataType::JSONB,
            ..
        } => Some("jsonb_in"),
        _ => None,
    }
}

/// Whether `expr` is `(record).field` (pgAdmin reads `aclexplode`'s records so), which
/// DataFusion refuses ("Dot access not supported for non-string expr"); `record['field']`,
/// its subscript form, reads the struct's field.
fn is_field_of_parenthesized(expr: &Expr) -> bool {
    matches!(expr, Expr::CompoundFieldAccess { root, access_chain }
        if matches!(root.as_ref(), Expr::Nested(_))
            && access_chain
                .iter()
                .any(|a| matches!(a, AccessExpr::Dot(Expr::Identifier(_)))))
}

/// `(record).a.b` as `(record)['a']['b']`. An anonymous row's fields are PostgreSQL's `f1`,
/// `f2` … where DataFusion's `row(…)` names them `c0`, `c1` …: `(row(1, 2)).f2` reads `c1`.
fn field_subscripts(expr: &mut Expr) {
    let Expr::CompoundFieldAccess { root, access_chain } = expr else {
        return;
    };
    // The number of fields of an anonymous row (0: not one).
    let arity = match root.as_ref() {
        Expr::Nested(inner) => match inner.as_ref() {
            Expr::Tuple(items) => items.len(),
            Expr::Function(function)
                if matches!(function.name.0.as_slice(),
                    [ObjectNamePart::Identifier(name)] if name.value.eq_ignore_ascii_case("row")) =>
            {
                crate::sql::srf::plain_args(&function.args).map_or(0, |args| args.len())
            }
            _ => 0,
        },
        _ => 0,
    };
    for (i, access) in access_chain.iter_mut().enumerate() {
        if let AccessExpr::Dot(Expr::Identifier(ident)) = access {
            let position = ident
                .value
                .strip_prefix('f')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| (1..=arity).contains(n) && i == 0);
            let field = match position {
                Some(n) => format!("c{}", n - 1),
                None => ident.value.clone(),
            };
            *access = AccessExpr::Subscript(Subscript::Index {
                index: Expr::Value(Value::SingleQuotedString(field).into()),
            });
        }
    }
}

/// Whether `expr` is `pg_backend_pid()` (datafusion-pg-catalog has dropped a `pg_catalog.`).
fn is_backend_pid(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(function)
        if matches!(function.name.0.as_slice(), [ObjectNamePart::Identifier(ident)]
                if ident.value.eq_ignore_ascii_case("pg_backend_pid"))
            && matches!(&function.args, FunctionArguments::List(list) if list.args.is_empty()))
}

/// The parameter `expr` reads if it is `current_setting('name' [, missing_ok])` of a constant.
fn current_setting_name(expr: &Expr) -> Option<&str> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let [ObjectNamePart::Identifier(ident)] = function.name.0.as_slice() else {
        return None;
    };
    if !ident.value.eq_ignore_ascii_case("current_setting") {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    match list.args.first() {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))))
            if list.args.len() <= 2 =>
        {
            match &v.value {
                Value::SingleQuotedString(name) => Some(name),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether `expr` calls `make_interval` with an argument by name.
fn is_named_make_interval(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(function)
        if matches!(function.name.0.as_slice(), [ObjectNamePart::Identifier(ident)]
                if ident.value.eq_ignore_ascii_case("make_interval"))
            && matches!(&function.args, FunctionArguments::List(list)
                if list.args.iter().any(|a| argument_name(a).is_some())))
}

/// The name of an argument passed by name (`days => 1`), which sqlparser keeps as an
/// identifier or, in some dialects, as an expression.
fn argument_name(arg: &FunctionArg) -> Option<&str> {
    match arg {
        FunctionArg::Named { name, .. } => Some(&name.value),
        FunctionArg::ExprNamed {
            name: Expr::Identifier(name),
            ..
        } => Some(&name.value),
        _ => None,
    }
}

/// The arguments of a `make_interval` call by name, by position: 0 for those left out up
/// to the last one given. `None` when a name is not one of its parameters (DataFusion then
/// reports it).
fn make_interval_positional(args: &[FunctionArg]) -> Option<Vec<FunctionArg>> {
    let mut slots: Vec<Option<FunctionArgExpr>> = vec![None; MAKE_INTERVAL_PARAMETERS.len()];
    for (i, arg) in args.iter().enumerate() {
        let (slot, value) = match arg {
            FunctionArg::Unnamed(value) => (i, value),
            FunctionArg::Named { arg: value, .. } | FunctionArg::ExprNamed { arg: value, .. } => {
                let name = argument_name(arg)?;
                let slot = MAKE_INTERVAL_PARAMETERS
                    .iter()
                    .position(|p| p.eq_ignore_ascii_case(name))?;
                (slot, value)
            }
        };
        *slots.get_mut(slot)? = Some(value.clone());
    }
    let given = slots.iter().rposition(Option::is_some)? + 1;
    let zero = FunctionArgExpr::Expr(parse_expr("0")?);
    Some(
        slots
            .into_iter()
            .take(given)
            .map(|slot| FunctionArg::Unnamed(slot.unwrap_or_else(|| zero.clone())))
            .collect(),
    )
}

/// Calls `each` on every select-list item of `set`, through set operations.
fn select_items(set: &mut SetExpr, each: &mut impl FnMut(&mut SelectItem)) {
    match set {
        SetExpr::Select(select) => select.projection.iter_mut().for_each(&mut *each),
        SetExpr::SetOperation { left, right, .. } => {
            select_items(left, each);
            select_items(right, each);
        }
        _ => {}
    }
}

/// Whether a select list of `set` has an `EXISTS` anywhere in its expressions.
fn exists_in_select_list(set: &SetExpr) -> bool {
    match set {
        SetExpr::Select(select) => select.projection.iter().any(|item| match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                visit_expressions(expr, |e| match e {
                    Expr::Exists { .. } => ControlFlow::Break(()),
                    _ => ControlFlow::Continue(()),
                })
                .is_break()
            }
            _ => false,
        }),
        SetExpr::SetOperation { left, right, .. } => {
            exists_in_select_list(left) || exists_in_select_list(right)
        }
        _ => false,
    }
}

/// Whether `name` is one of [`RELATIONS`] without a schema, and no `WITH` seen so far names
/// it (`ctes`: a query's are seen before its `FROM`).
fn is_unqualified_relation(name: &ObjectName, ctes: &[String]) -> bool {
    matches!(name.0.as_slice(), [ObjectNamePart::Identifier(ident)]
        if ident.quote_style.is_none()
            && RELATIONS.iter().any(|r| ident.value.eq_ignore_ascii_case(r))
            && !ctes.iter().any(|cte| ident.value.eq_ignore_ascii_case(cte)))
}

/// Finds whether a statement has anything [`Rewriter`] rewrites, without copying it.
struct Finder {
    /// The names the statement's `WITH` clauses give.
    ctes: Vec<String>,
}

impl Visitor for Finder {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if is_unqualified_relation(relation, &self.ctes) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if is_settings_relation(factor, &self.ctes) || unnamed_scalar_column(factor) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            let names = with
                .cte_tables
                .iter()
                .map(|cte| cte.alias.name.value.clone());
            self.ctes.extend(names);
        }
        if exists_in_select_list(&query.body) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if is_user(expr)
            || is_named_make_interval(expr)
            || is_timezone_call(expr)
            || is_backend_pid(expr)
            || current_setting_name(expr).is_some()
            || array_subquery(expr).is_some()
            || object_agg(expr).is_some()
            || is_field_of_parenthesized(expr)
            || json_cast(expr).is_some()
            || char_cast(expr).is_some()
            || prefix_operator(expr).is_some()
            || overlaps(expr).is_some()
            || relation_size_call(expr).is_some()
            || is_substring_pattern(expr)
            || pg_pattern_call(expr)
            || is_zoned_date_trunc(expr)
            || arithmetic_call(expr).is_some()
            || local_time(expr).is_some()
        {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

struct Rewriter<'a> {
    rewritten: usize,
    ctes: Vec<String>,
    session: &'a Session<'a>,
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if is_settings_relation(factor, &self.ctes)
            && let TableFactor::Table { alias, .. } = factor
            && let Some(settings) = settings_relation(&(self.session.settings)(), alias.clone())
        {
            *factor = settings;
            self.rewritten += 1;
        }
        let function = if matches!(factor, TableFactor::UNNEST { .. }) {
            "unnest"
        } else {
            "generate_series"
        };
        if unnamed_scalar_column(factor)
            && let TableFactor::Table { alias, .. } | TableFactor::UNNEST { alias, .. } = factor
        {
            let alias = alias.get_or_insert_with(|| TableAlias {
                explicit: false,
                name: Ident::new(function),
                columns: vec![],
                at: None,
            });
            alias.columns = vec![TableAliasColumnDef {
                name: alias.name.clone(),
                data_type: None,
            }];
            self.rewritten += 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        if is_unqualified_relation(relation, &self.ctes) {
            relation
                .0
                .insert(0, ObjectNamePart::Identifier(Ident::new("pg_catalog")));
            self.rewritten += 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            let names = with
                .cte_tables
                .iter()
                .map(|cte| cte.alias.name.value.clone());
            self.ctes.extend(names);
        }
        let rewritten = &mut self.rewritten;
        select_items(&mut query.body, &mut |item| {
            let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item
            else {
                return;
            };
            let before = *rewritten;
            let _ = visit_expressions_mut(expr, |e| {
                if let Expr::Exists { subquery, negated } = e
                    && let Some(scalar) = exists_as_scalar(subquery, *negated)
                {
                    *e = scalar;
                    *rewritten += 1;
                }
                ControlFlow::<()>::Continue(())
            });
            // DataFusion names every scalar subquery `(<subquery>)`: two in one select list
            // would collide. The plan's alias is not the client's column name, which
            // `colname` takes from the statement as written.
            if *rewritten > before
                && let SelectItem::UnnamedExpr(expr) = item
            {
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: Ident::new(format!("exists_{rewritten}")),
                };
            }
        });
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if is_backend_pid(expr)
            && let Some(pid) = parse_expr(&format!("CAST({} AS INT)", self.session.pid))
        {
            *expr = pid;
            self.rewritten += 1;
        }
        if let Some(scalar) = array_subquery(expr).and_then(array_as_scalar) {
            *expr = scalar;
            self.rewritten += 1;
        }
        if let Some(name) = current_setting_name(expr)
            && let Some(value) = (self.session.setting)(&name.to_lowercase())
        {
            *expr = Expr::Value(Value::SingleQuotedString(value).into());
            self.rewritten += 1;
        }
        if is_user(expr)
            && let Expr::Function(function) = expr
        {
            // datafusion-pg-catalog has renamed `current_user` in the statement to the
            // function it registers, `session_user` (the same user: there is no SET ROLE).
            function.name = ObjectName::from(vec![Ident::new("session_user")]);
            self.rewritten += 1;
        }
        if is_named_make_interval(expr)
            && let Expr::Function(function) = expr
            && let FunctionArguments::List(list) = &mut function.args
            && let Some(positional) = make_interval_positional(&list.args)
        {
            list.args = positional;
            self.rewritten += 1;
        }
        if is_field_of_parenthesized(expr) {
            field_subscripts(expr);
            self.rewritten += 1;
        }
        if is_substring_pattern(expr) {
            substring_by_pattern(expr);
            self.rewritten += 1;
        }
        if pg_pattern_call(expr) {
            chrono_pattern(expr);
            self.rewritten += 1;
        }
        if is_zoned_date_trunc(expr) {
            zoned_date_trunc(expr);
            self.rewritten += 1;
        }
        if let Some(data_type) = local_time(expr)
            && let Some(now) = parse_expr(&format!("CAST(now() AS {data_type})"))
        {
            *expr = now;
            self.rewritten += 1;
        }
        if let Some(op) = arithmetic_call(expr) {
            arithmetic(expr, op);
            self.rewritten += 1;
        }
        if let Some(case) = overlaps(expr).and_then(overlaps_case) {
            *expr = case;
            self.rewritten += 1;
        }
        if let Some((part, relation)) = relation_size_call(expr)
            && let Some(size) = relation_size(&relation, &part)
        {
            *expr = size;
            self.rewritten += 1;
        }
        if let Some(function) = prefix_operator(expr)
            && let Expr::UnaryOp { expr: operand, .. } = expr
        {
            let operand = std::mem::replace(operand.as_mut(), Expr::value(Value::Null));
            *expr = crate::sql::srf::call(function, vec![operand]);
            self.rewritten += 1;
        }
        if let Some(keep) = char_cast(expr) {
            truncating_cast(expr, keep);
            self.rewritten += 1;
        }
        if let Some(input) = json_cast(expr) {
            // The cast stays inside: it types a parameter (`$1::jsonb`) and marks the text.
            let cast = std::mem::replace(expr, Expr::value(Value::Null));
            *expr = crate::sql::srf::call(input, vec![cast]);
            self.rewritten += 1;
        }
        if let Some(pairs) = object_agg(expr) {
            object_agg_of_pairs(expr, pairs);
            self.rewritten += 1;
        }
        if is_timezone_call(expr)
            && let Expr::Function(function) = expr
            && let FunctionArguments::List(list) = &mut function.args
        {
            function.name = ObjectName::from(vec![Ident::new("at_time_zone")]);
            list.args.swap(0, 1);
            self.rewritten += 1;
        }
        ControlFlow::Continue(())
    }
}

/// Whether `query` is a plain `SELECT … FROM … WHERE … [ORDER BY …]`: one row per row its
/// `FROM` and `WHERE` keep, so an aggregate over it can replace its select list in place (and a
/// correlated one stays a subquery DataFusion decorrelates). Grouped, distinct, limited, `WITH`
/// and set-operation queries are not, nor is a select list that calls a function (which may be
/// an aggregate: one row even over none).
fn is_plain(query: &Query) -> bool {
    let calls = |item: &SelectItem| {
        let expr = match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
            _ => return false,
        };
        visit_expressions(expr, |e| match e {
            Expr::Function(_) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    };
    let empty_group_by = |g: &GroupByExpr| matches!(g, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    matches!(query.body.as_ref(), SetExpr::Select(select)
        if select.distinct.is_none()
            && select.having.is_none()
            && empty_group_by(&select.group_by)
            && !select.projection.iter().any(calls))
        && query.with.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none()
}

/// `(SELECT count(*) > 0 …)` for `EXISTS (subquery)`. A plain `SELECT … FROM … WHERE …` keeps
/// its `FROM` and `WHERE`, so a correlated one stays a subquery DataFusion decorrelates; any
/// other (grouped, limited, a union, or a select list that calls a function, which may be an
/// aggregate: one row even over none) is counted as a derived table.
fn exists_as_scalar(subquery: &Query, negated: bool) -> Option<Expr> {
    let plain = is_plain(subquery);
    let counted = if plain {
        let mut counted = subquery.clone();
        if let SetExpr::Select(select) = counted.body.as_mut() {
            select.projection = vec![SelectItem::UnnamedExpr(parse_expr("count(*) > 0")?)];
        }
        counted.order_by = None;
        counted
    } else {
        *crate::sql::srf::parse_query(&format!(
            "SELECT count(*) > 0 FROM ({subquery}) AS exists_rows"
        ))
        .ok()?
    };
    let scalar = Expr::Subquery(Box::new(counted));
    Some(if negated {
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr: Box::new(scalar),
        }
    } else {
        scalar
    })
}

/// An expression this crate builds as text, parsed with PostgreSQL's dialect.
pub(crate) fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_overlaps_do_not_grow_the_statement_geometrically() {
        let mut overlaps = "(a, b) OVERLAPS (c, d)".to_string();
        for _ in 0..8 {
            overlaps = format!("({overlaps}, b) OVERLAPS (c, d)");
        }
        let out = rewritten(&format!("SELECT {overlaps}")).unwrap_or_default();
        assert!(out.len() < 100_000, "{} characters", out.len());
        let one = rewritten("SELECT (a, b) OVERLAPS (c, d)").expect("rewritten");
        assert!(one.contains("CASE WHEN"), "{one}");
        let volatile =
            rewritten("SELECT (now(), now() + random() * INTERVAL '1 day') OVERLAPS (a, b)");
        assert!(
            volatile.as_ref().is_none_or(|v| !v.contains("CASE WHEN")),
            "{volatile:?}"
        );
    }

    fn rewritten(sql: &str) -> Option<String> {
        let statement = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .expect("tokens")
            .parse_statement()
            .expect("statement");
        let setting = |name: &str| (name == "search_path").then(|| "app, public".to_string());
        let all = || {
            vec![Setting {
                name: "search_path".to_string(),
                value: "app, public".to_string(),
                context: "user",
            }]
        };
        let session = Session {
            pid: 4242,
            setting: &setting,
            settings: &all,
        };
        rewrite(&statement, &session).map(|s| s.to_string())
    }

    #[test]
    fn monitoring_relations_are_found_in_pg_catalog_unless_a_with_names_them() {
        assert_eq!(
            rewritten(
                "SELECT a.pid FROM pg_stat_activity a \
                 WHERE a.pid NOT IN (SELECT pid FROM PG_LOCKS)"
            )
            .as_deref(),
            Some(
                "SELECT a.pid FROM pg_catalog.pg_stat_activity a \
                 WHERE a.pid NOT IN (SELECT pid FROM pg_catalog.PG_LOCKS)"
            )
        );
        assert_eq!(rewritten("SELECT * FROM pg_catalog.pg_locks"), None);
        assert_eq!(rewritten("SELECT * FROM \"pg_locks\""), None);
        assert_eq!(
            rewritten("WITH pg_locks AS (SELECT 1) SELECT * FROM pg_locks"),
            None
        );
    }

    #[test]
    fn pg_backend_pid_is_the_sessions() {
        assert_eq!(
            rewritten("SELECT pg_backend_pid() FROM t WHERE pid <> pg_backend_pid()").as_deref(),
            Some("SELECT CAST(4242 AS INT) FROM t WHERE pid <> CAST(4242 AS INT)")
        );
    }

    #[test]
    fn current_setting_of_a_constant_name_is_the_sessions_value() {
        assert_eq!(
            rewritten(
                "SELECT current_setting('Search_Path'), current_setting('search_path', true), \
                 current_setting('no_such', true), current_setting(name) FROM t"
            )
            .as_deref(),
            Some(
                "SELECT 'app, public', 'app, public', current_setting('no_such', true), \
                 current_setting(name) FROM t"
            )
        );
    }

    #[test]
    fn array_of_a_subquery_is_an_aggregate_in_its_order() {
        assert_eq!(
            rewritten(
                "SELECT ARRAY(SELECT r.name AS n FROM r WHERE r.oid = c.owner ORDER BY 1 DESC) FROM c"
            )
            .as_deref(),
            Some(
                "SELECT (SELECT coalesce(array_agg(r.name ORDER BY r.name DESC), make_array()) \
                 FROM r WHERE r.oid = c.owner) FROM c"
            )
        );
        assert_eq!(
            rewritten("SELECT array(SELECT DISTINCT x FROM t ORDER BY x)").as_deref(),
            Some(
                "SELECT (SELECT coalesce(array_agg(array_rows.item ORDER BY array_rows.item), \
                 make_array()) FROM (SELECT DISTINCT x FROM t ORDER BY x) AS array_rows (item))"
            )
        );
        // Distinct values in another column's order: no array_agg form keeps it.
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT DISTINCT x FROM t ORDER BY y)"),
            None
        );
        assert_eq!(rewritten("SELECT ARRAY[1, 2]"), None);
        // A set operation is a derived table, ordered by its column's position only.
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT 1 UNION SELECT 2 ORDER BY 1 DESC)").as_deref(),
            Some(
                "SELECT (SELECT coalesce(array_agg(array_rows.item ORDER BY array_rows.item DESC), \
                 make_array()) FROM (SELECT 1 UNION SELECT 2 ORDER BY 1 DESC) AS array_rows (item))"
            )
        );
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT x FROM t UNION SELECT y FROM u ORDER BY x)"),
            None
        );
    }

    #[test]
    fn pg_settings_is_the_sessions() {
        let settings =
            rewritten("SELECT s.setting FROM pg_catalog.pg_settings s").expect("rewritten");
        assert!(
            settings.contains("VALUES ('search_path', 'app, public', 'user')"),
            "{settings}"
        );
        assert!(settings.ends_with(") s"), "{settings}");
        let function = rewritten("SELECT name FROM pg_show_all_settings()").expect("rewritten");
        assert!(function.ends_with(") AS pg_settings"), "{function}");
        assert_eq!(
            rewritten("WITH pg_settings AS (SELECT 1) SELECT * FROM pg_settings"),
            None
        );
    }

    #[test]
    fn user_is_current_user_unless_quoted() {
        assert_eq!(
            rewritten("SELECT user, upper(user) FROM t").as_deref(),
            Some("SELECT session_user, upper(session_user) FROM t")
        );
        assert_eq!(rewritten("SELECT \"user\", t.user FROM t"), None);
    }

    #[test]
    fn exists_in_a_select_list_is_counted_and_elsewhere_left_to_datafusion() {
        assert_eq!(
            rewritten(
                "SELECT c.relname, NOT EXISTS (SELECT 1 FROM i WHERE i.rel = c.oid ORDER BY 1) \
                 FROM c WHERE EXISTS (SELECT 1 FROM n WHERE n.oid = c.ns)"
            )
            .as_deref(),
            Some(
                "SELECT c.relname, NOT (SELECT count(*) > 0 FROM i WHERE i.rel = c.oid) AS exists_1 \
                 FROM c WHERE EXISTS (SELECT 1 FROM n WHERE n.oid = c.ns)"
            )
        );
        assert_eq!(
            rewritten("SELECT EXISTS (SELECT a FROM t GROUP BY a LIMIT 1)").as_deref(),
            Some(
                "SELECT (SELECT count(*) > 0 FROM (SELECT a FROM t GROUP BY a LIMIT 1) AS exists_rows) AS exists_1"
            )
        );
        // An aggregate gives one row even over none: counted whole, never emptied.
        assert_eq!(
            rewritten("SELECT EXISTS (SELECT max(a) FROM t WHERE false)").as_deref(),
            Some(
                "SELECT (SELECT count(*) > 0 FROM (SELECT max(a) FROM t WHERE false) AS exists_rows) AS exists_1"
            )
        );
        assert_eq!(rewritten("SELECT a FROM t WHERE EXISTS (SELECT 1)"), None);
    }

    #[test]
    fn make_interval_by_name_becomes_positional() {
        assert_eq!(
            rewritten("SELECT make_interval(days => 2), make_interval(1, secs => 1.5)").as_deref(),
            Some("SELECT make_interval(0, 0, 0, 2), make_interval(1, 0, 0, 0, 0, 0, 1.5)")
        );
        assert_eq!(rewritten("SELECT make_interval(1, 2)"), None);
        assert_eq!(
            rewritten("SELECT make_interval(fortnights => 1)"),
            None,
            "an unknown name is left for DataFusion to report"
        );
    }

    #[test]
    fn a_field_of_a_parenthesized_record_is_its_subscript() {
        assert_eq!(
            rewritten("SELECT (d).grantee, (t.s).a.b FROM t").as_deref(),
            Some("SELECT (d)['grantee'], (t.s)['a']['b'] FROM t")
        );
        assert_eq!(rewritten("SELECT t.s FROM t"), None);
    }

    #[test]
    fn object_agg_collects_pairs_with_array_agg() {
        assert_eq!(
            rewritten("SELECT json_object_agg(k, v ORDER BY v) FILTER (WHERE v > 1) FROM t")
                .as_deref(),
            Some(
                "SELECT json_object_of_pairs(array_agg(json_object_pair(k, v) ORDER BY v) FILTER (WHERE v > 1)) FROM t"
            )
        );
    }

    #[test]
    fn an_alias_a_qualified_order_by_column_shares_gets_another_plan_name() {
        assert_eq!(
            rewritten("(SELECT CASE a.t WHEN 1 THEN 'x' END AS t FROM a ORDER BY a.t, t)")
                .as_deref(),
            Some(
                "(SELECT CASE a.t WHEN 1 THEN 'x' END AS t__output FROM a ORDER BY a.t, t__output)"
            )
        );
        // A subquery's names are its outer query's to read: left alone.
        assert_eq!(
            rewritten("SELECT s.t FROM (SELECT a.t + 1 AS t FROM a ORDER BY a.t) s"),
            None
        );
    }
}
