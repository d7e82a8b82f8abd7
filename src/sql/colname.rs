//! The names PostgreSQL gives result columns.
//!
//! DataFusion names an unaliased select item after its whole expression (`count(*)`,
//! `max(otel_logs_and_spans.duration)`, `Int64(1) + Int64(1)`); PostgreSQL names it after
//! the function, column or type it is built from (`count`, `max`, `?column?`), and clients
//! read rows by those names (`rs.getLong("count")`, `row["count"]`, a BI tool's headers).
//! [`select_names`] follows PostgreSQL 15's `FigureColname` (`parser/parse_target.c`) over the
//! statement's syntax tree, and [`rename`] puts the names on the result's `RowDescription`
//! only: the plan keeps DataFusion's unique names, so `SELECT count(a), count(b)` (two
//! columns named `count`, as in PostgreSQL) still plans.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, ArrayElemTypeDef, DataType, Expr, Ident, ObjectNamePart, Query, SelectItem,
    SetExpr, Statement, TimezoneInfo, TrimWhereField, Value, VisitMut, VisitorMut,
};

/// What one select item contributes to the result's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// One column, named by PostgreSQL's rules.
    Named(String),
    /// `*` or `t.*`: as many columns as the relation has, already named after them.
    Wildcard,
}

/// The result columns of `statement` as PostgreSQL names them, or `None` when it is not a
/// query whose columns come from a select list (`VALUES`, `SHOW`, DML …).
pub fn select_names(statement: &Statement) -> Option<Vec<Item>> {
    match statement {
        Statement::Query(query) => query_items(query),
        _ => None,
    }
}

/// `statement` with the select items DataFusion would give the same name aliased apart, or
/// `None` when no two collide.
///
/// PostgreSQL allows a select list to repeat a name (`SELECT ts, ts::date`, `SELECT 1, 1`);
/// DataFusion refuses to plan it ("Projections require unique expression names"), and it
/// names a cast after its operand, so any column next to a cast of itself collides. The
/// aliases are only in the plan: [`rename`] gives the client PostgreSQL's names, taken from
/// the statement as written.
pub fn alias_duplicates(statement: &Statement) -> Option<Statement> {
    let Statement::Query(query) = statement else {
        return None;
    };
    let collide = selects(&query.body).any(collides);
    let numbered = numbered_calls(query);
    if !collide && numbered.is_empty() {
        return None;
    }
    let mut statement = statement.clone();
    let Statement::Query(query) = &mut statement else {
        return None;
    };
    if collide {
        let mut next = 0;
        alias_in(&mut query.body, &mut next);
    }
    wrap_calls(query, &numbered);
    Some(statement)
}

/// The function DataFusion cannot see through: `SAME(x, k)` is `x`, and names itself with
/// `k`. See [`numbered_calls`].
pub const SAME: &str = "__timefusion_same";

/// Calls that differ only in casts of their arguments (`max(x)`, `max(x::float8)`) must plan
/// under different names: DataFusion names a cast after its operand, so both are `max(x)`
/// inside the aggregate (or window) node, which refuses to plan two of them ("Schema contains
/// duplicate unqualified field name"); aliases cannot help, they come later. Returns the text
/// (lower case) of every such call but one per name, numbered; the one left is a call
/// without casts if there is one. [`wrap_calls`] then tells them apart.
fn numbered_calls(query: &Query) -> Vec<(String, i64)> {
    use datafusion::sql::sqlparser::ast::{Visit, Visitor};
    /// Each call: its stripped name, its text, and whether it has a cast to wrap.
    struct Calls(Vec<(String, String, bool)>);
    impl Visitor for Calls {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(_) = expr {
                let mut stripped = expr.clone();
                let _ = VisitMut::visit(&mut stripped, &mut Strip);
                let cast = Visit::visit(expr, &mut HasCast).is_break();
                self.0.push((
                    stripped.to_string().to_lowercase(),
                    expr.to_string().to_lowercase(),
                    cast,
                ));
            }
            ControlFlow::Continue(())
        }
    }
    struct HasCast;
    impl Visitor for HasCast {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Cast { .. } => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    // The whole query: a call in `HAVING` or `ORDER BY` joins the same aggregate node.
    let mut calls = Calls(Vec::new());
    let _ = Visit::visit(query, &mut calls);
    let mut seen: Vec<(String, Vec<(String, bool)>)> = Vec::new();
    for (stripped, text, cast) in calls.0 {
        match seen.iter_mut().find(|(s, _)| *s == stripped) {
            Some((_, texts)) if !texts.iter().any(|(t, _)| *t == text) => texts.push((text, cast)),
            Some(_) => {}
            None => seen.push((stripped, vec![(text, cast)])),
        }
    }
    seen.into_iter()
        .flat_map(|(_, mut texts)| {
            texts.sort_by_key(|(_, cast)| *cast);
            texts.into_iter().skip(1).map(|(text, _)| text)
        })
        .zip(1..)
        .collect()
}

/// Wraps each cast of a non-literal in the calls [`numbered_calls`] found as [`SAME`]`(cast,
/// k)`, `k` the call's number, wherever the call appears (select list, `HAVING`, `ORDER BY`),
/// so each occurrence still refers to the same aggregate. A cast of a literal
/// (`'1 hour'::interval`) stays as it is, for the planner's checks of constant arguments.
fn wrap_calls(query: &mut Query, numbered: &[(String, i64)]) {
    if numbered.is_empty() {
        return;
    }
    struct Wrap(i64);
    impl VisitorMut for Wrap {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::Cast { expr: inner, .. } = expr
                && !matches!(inner.as_ref(), Expr::Value(_))
            {
                let cast = std::mem::replace(expr, Expr::Value(Value::Null.into()));
                *expr = same(cast, self.0);
            }
            ControlFlow::Continue(())
        }
    }
    struct Calls<'a>(&'a [(String, i64)]);
    impl VisitorMut for Calls<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::Function(_) = expr {
                let text = expr.to_string().to_lowercase();
                if let Some((_, k)) = self.0.iter().find(|(t, _)| *t == text) {
                    let _ = VisitMut::visit(expr, &mut Wrap(*k));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(query, &mut Calls(numbered));
}

/// Registers [`SAME`].
pub fn register(context: &datafusion::prelude::SessionContext) {
    context.register_udf(datafusion::logical_expr::ScalarUDF::from(Same::new()));
}

/// [`SAME`]: its first argument, unchanged.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Same {
    signature: datafusion::logical_expr::Signature,
}

impl Same {
    fn new() -> Self {
        Same {
            signature: datafusion::logical_expr::Signature::any(
                2,
                datafusion::logical_expr::Volatility::Immutable,
            ),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Same {
    fn name(&self) -> &str {
        SAME
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(
        &self,
        arg_types: &[arrow::datatypes::DataType],
    ) -> datafusion::common::Result<arrow::datatypes::DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        Ok(args.args[0].clone())
    }
}

/// `SAME(expr, k)` as syntax.
fn same(expr: Expr, k: i64) -> Expr {
    use datafusion::sql::sqlparser::ast::{
        Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, ObjectName,
    };
    let arg = |e: Expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(e));
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(SAME)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![
                arg(expr),
                arg(Expr::Value(Value::Number(k.to_string(), false).into())),
            ],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// The select lists of a query body: each side of a set operation is planned on its own.
fn selects(body: &SetExpr) -> Box<dyn Iterator<Item = &[SelectItem]> + '_> {
    match body {
        SetExpr::Select(select) => Box::new(std::iter::once(select.projection.as_slice())),
        SetExpr::Query(query) => selects(&query.body),
        SetExpr::SetOperation { left, right, .. } => Box::new(selects(left).chain(selects(right))),
        _ => Box::new(std::iter::empty()),
    }
}

fn alias_in(body: &mut SetExpr, next: &mut usize) {
    match body {
        SetExpr::Select(select) => {
            let clashing = clashes(&select.projection);
            for (item, clashes) in select.projection.iter_mut().zip(clashing) {
                if !clashes {
                    continue;
                }
                *next += 1;
                let alias = Ident::with_quote('"', format!("?column?{next}"));
                *item = match std::mem::replace(item, SelectItem::Wildcard(Default::default())) {
                    SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                        SelectItem::ExprWithAlias { expr, alias }
                    }
                    other => other,
                };
            }
        }
        SetExpr::Query(query) => alias_in(&mut query.body, next),
        SetExpr::SetOperation { left, right, .. } => {
            alias_in(left, next);
            alias_in(right, next);
        }
        _ => {}
    }
}

fn collides(projection: &[SelectItem]) -> bool {
    clashes(projection).into_iter().any(|c| c)
}

/// For each select item, whether DataFusion may plan it under a name another item also has:
/// an equal [`plan_name`], or, next to a wildcard (whose columns are not known here), an
/// unaliased column reference under casts (`SELECT *, ts::date`; a bare `*, ts` is aliased
/// by the compatibility parser already).
fn clashes(projection: &[SelectItem]) -> Vec<bool> {
    let wildcard = projection.iter().any(|item| {
        matches!(
            item,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    let keys: Vec<Option<(String, bool)>> = projection.iter().map(plan_name).collect();
    keys.iter()
        .map(|key| match key {
            Some((name, column)) => {
                (wildcard && *column)
                    || keys
                        .iter()
                        .filter(|other| other.as_ref().is_some_and(|(o, _)| o == name))
                        .count()
                        > 1
            }
            None => false,
        })
        .collect()
}

/// Takes away what DataFusion's names do not show: casts and parentheses, at any depth, and
/// all but the last part of a column reference.
struct Strip;

impl VisitorMut for Strip {
    type Break = ();
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let inner = match expr {
            Expr::Cast { expr: inner, .. } | Expr::Nested(inner) => {
                std::mem::replace(inner.as_mut(), Expr::Value(Value::Null.into()))
            }
            Expr::CompoundIdentifier(idents) => match idents.pop() {
                Some(last) => Expr::Identifier(last),
                None => return ControlFlow::Continue(()),
            },
            _ => return ControlFlow::Continue(()),
        };
        *expr = inner;
        ControlFlow::Continue(())
    }
}

/// An approximation of the name DataFusion plans a select item under, and whether it is an
/// unaliased column reference: casts and parentheses are transparent at any depth (DataFusion
/// names `max(x::float8)` as `max(x)`) and a column is named by its last part. Two equal keys
/// may plan fine (`a.id, b.id`); aliasing them apart then costs nothing but the rewrite.
fn plan_name(item: &SelectItem) -> Option<(String, bool)> {
    match item {
        SelectItem::UnnamedExpr(expr) => {
            let mut stripped = expr.clone();
            let _ = VisitMut::visit(&mut stripped, &mut Strip);
            match &stripped {
                Expr::Identifier(ident) => Some((normalized(ident), true)),
                // DataFusion names a scalar subquery after its one column.
                Expr::Subquery(query) => match query.body.as_ref() {
                    SetExpr::Select(select) => match select.projection.as_slice() {
                        [item] => plan_name(item),
                        _ => None,
                    },
                    _ => None,
                },
                other => Some((other.to_string().to_lowercase(), false)),
            }
        }
        SelectItem::ExprWithAlias { alias, .. } => Some((normalized(alias), false)),
        _ => None,
    }
}

/// The name each of `columns` result columns gets from `items`: `Some(name)` for a column a
/// named item lines up with, `None` to keep the column's own. A wildcard's column count is
/// unknown here, so the items before the first wildcard name the leading columns and those
/// after the last name the trailing ones; when they do not line up, nothing is renamed.
pub fn names_for(columns: usize, items: &[Item]) -> Vec<Option<&str>> {
    let head = items
        .iter()
        .position(|i| *i == Item::Wildcard)
        .unwrap_or(items.len());
    let tail = items
        .iter()
        .rev()
        .position(|i| *i == Item::Wildcard)
        .unwrap_or(0);
    let wildcards = head < items.len();
    if (!wildcards && items.len() != columns) || head + tail > columns {
        return vec![None; columns];
    }
    let from_end = columns - tail;
    (0..columns)
        .map(|i| {
            let item = if i < head {
                &items[i]
            } else if wildcards && i >= from_end {
                &items[items.len() - tail + (i - from_end)]
            } else {
                return None;
            };
            match item {
                Item::Named(name) => Some(name.as_str()),
                Item::Wildcard => None,
            }
        })
        .collect()
}

/// The select list of a query: the leftmost `SELECT` of a set operation names its columns.
fn query_items(query: &Query) -> Option<Vec<Item>> {
    let mut body = query.body.as_ref();
    loop {
        body = match body {
            SetExpr::Select(select) => {
                let wildcard = select.projection.iter().any(|i| {
                    matches!(
                        i,
                        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                    )
                });
                return Some(
                    select
                        .projection
                        .iter()
                        .map(|i| item(i, wildcard))
                        .collect(),
                );
            }
            SetExpr::Query(query) => query.body.as_ref(),
            SetExpr::SetOperation { left, .. } => left.as_ref(),
            _ => return None,
        };
    }
}

fn item(item: &SelectItem, wildcard: bool) -> Item {
    match item {
        SelectItem::UnnamedExpr(expr) => Item::Named(figure(expr).0),
        // The compatibility parser aliases `n.oid` next to `n.*` as `__alias_oid`, so that
        // DataFusion plans the duplicate; the client sees `oid`, as PostgreSQL names it.
        SelectItem::ExprWithAlias { alias, .. } => {
            let name = normalized(alias);
            match name.strip_prefix("__alias_").filter(|_| wildcard) {
                Some(name) => Item::Named(name.to_string()),
                None => Item::Named(name),
            }
        }
        // `expr AS (a, b)` (not PostgreSQL) may stand for several columns, as a wildcard does.
        SelectItem::Wildcard(_)
        | SelectItem::QualifiedWildcard(..)
        | SelectItem::ExprWithAliases { .. } => Item::Wildcard,
    }
}

/// PostgreSQL's `FigureColnameInternal`: the name and its strength (2: a column, function or
/// keyword construct; 1: a type name from a cast; 0: nothing, `?column?`).
fn figure(expr: &Expr) -> (String, u8) {
    let named = |name: &str| (name.to_string(), 2);
    match expr {
        Expr::Identifier(ident) => (normalized(ident), 2),
        Expr::CompoundIdentifier(idents) => match idents.last() {
            Some(ident) => (normalized(ident), 2),
            None => unnamed(),
        },
        // `a[1]` is named after `a`, `(row).f` after `f`.
        Expr::CompoundFieldAccess { root, access_chain } => {
            let field = access_chain.iter().rev().find_map(|access| match access {
                AccessExpr::Dot(Expr::Identifier(ident)) => Some(normalized(ident)),
                _ => None,
            });
            match field {
                Some(name) => (name, 2),
                None => figure(root),
            }
        }
        Expr::Function(function) => match function.name.0.last() {
            Some(ObjectNamePart::Identifier(ident)) => (normalized(ident), 2),
            _ => unnamed(),
        },
        Expr::Cast {
            expr, data_type, ..
        } => match figure(expr) {
            (name, 2) => (name, 2),
            _ => (type_name(data_type), 1),
        },
        Expr::TypedString(typed) => (type_name(&typed.data_type), 1),
        Expr::Interval(_) => ("interval".to_string(), 1),
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => figure(inner),
        Expr::Case { else_result, .. } => match else_result.as_deref().map(figure) {
            Some((name, 2)) => (name, 2),
            _ => ("case".to_string(), 1),
        },
        // `NOT EXISTS` is a boolean expression around it, which PostgreSQL leaves unnamed.
        Expr::Exists { negated: false, .. } => named("exists"),
        Expr::Subquery(query) => match query_items(query).as_deref() {
            Some([Item::Named(name), ..]) => (name.clone(), 2),
            _ => unnamed(),
        },
        Expr::Array(_) => named("array"),
        Expr::Tuple(_) => named("row"),
        Expr::AtTimeZone { .. } => named("timezone"),
        Expr::Extract { .. } => named("extract"),
        Expr::Substring { .. } => named("substring"),
        Expr::Position { .. } => named("position"),
        Expr::Overlay { .. } => named("overlay"),
        Expr::Ceil { .. } => named("ceil"),
        Expr::Floor { .. } => named("floor"),
        Expr::Trim { trim_where, .. } => named(match trim_where {
            Some(TrimWhereField::Leading) => "ltrim",
            Some(TrimWhereField::Trailing) => "rtrim",
            _ => "btrim",
        }),
        _ => unnamed(),
    }
}

fn unnamed() -> (String, u8) {
    ("?column?".to_string(), 0)
}

/// An identifier as PostgreSQL stores it: folded to lower case unless quoted.
fn normalized(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The name PostgreSQL's grammar gives a type written in a cast (`::int` is `int4`).
fn type_name(data_type: &DataType) -> String {
    let name = match data_type {
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => "int4",
        DataType::BigInt(_) | DataType::Int8(_) => "int8",
        DataType::SmallInt(_) | DataType::Int2(_) => "int2",
        DataType::Real | DataType::Float4 => "float4",
        DataType::Double(_) | DataType::DoublePrecision | DataType::Float8 => "float8",
        DataType::Float(info) => match info {
            datafusion::sql::sqlparser::ast::ExactNumberInfo::Precision(p) if *p <= 24 => "float4",
            _ => "float8",
        },
        DataType::Bool | DataType::Boolean => "bool",
        DataType::Varchar(_) | DataType::CharacterVarying(_) | DataType::CharVarying(_) => {
            "varchar"
        }
        DataType::Char(_) | DataType::Character(_) => "bpchar",
        DataType::Numeric(_) | DataType::Decimal(_) | DataType::Dec(_) => "numeric",
        DataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timestamptz",
        DataType::Timestamp(..) => "timestamp",
        DataType::Time(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timetz",
        DataType::Time(..) => "time",
        DataType::Interval { .. } => "interval",
        DataType::Text => "text",
        DataType::Date => "date",
        DataType::JSON => "json",
        DataType::JSONB => "jsonb",
        DataType::Uuid => "uuid",
        DataType::Bytea => "bytea",
        DataType::Regclass => "regclass",
        DataType::Bit(_) => "bit",
        DataType::BitVarying(_) | DataType::VarBit(_) => "varbit",
        // `text[]` is named after its element type.
        DataType::Array(
            ArrayElemTypeDef::SquareBracket(inner, _)
            | ArrayElemTypeDef::AngleBracket(inner)
            | ArrayElemTypeDef::Parenthesis(inner),
        ) => return type_name(inner),
        DataType::Custom(name, _) => {
            return match name.0.last() {
                Some(ObjectNamePart::Identifier(ident)) => normalized(ident),
                _ => name.to_string().to_lowercase(),
            };
        }
        other => {
            let text = other.to_string().to_lowercase();
            return text.split(['(', ' ', '[']).next().unwrap_or("").to_string();
        }
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn names(sql: &str) -> Vec<String> {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0);
        select_names(&statement)
            .expect("a select list")
            .into_iter()
            .map(|item| match item {
                Item::Named(name) => name,
                Item::Wildcard => "*".into(),
            })
            .collect()
    }

    /// Every expected name is what PostgreSQL 15 answered for the same select list
    /// (`psql -c` against a throwaway 15.x server).
    #[test]
    fn names_follow_postgres_figure_colname() {
        let sql = "select count(*), 1+1, case when true then 1 end, extract(year from now()), \
            now() at time zone 'UTC', coalesce(null,'x'), '{}'::jsonb->>'a', trim(' a '), \
            substring('abc' from 1 for 1), position('a' in 'abc'), current_date, user, \
            array[1], (select 1), 1::text, 'a'::text, 1::int4, interval '1 day', \
            timestamp '2020-01-01', cast(null as text), exists(select 1), not exists(select 1), x.a, x.a::text, \
            -x.a, row(1,2), array(select 1), greatest(1,2), nullif(1,2), 'a' like 'b', \
            x.a is null, date_trunc('day', now()), (select a from (select 1 as a) y), \
            x.a::int::text, (x.a), count(*) filter (where true), sum(x.a) over (), true, \
            null, current_timestamp, now() - interval '1 day', 'a' || 'b', x.a in (1), \
            lower('A'), percentile_cont(0.5) within group (order by x.a), cast(x.a as text), \
            x from (select 1 as a) x group by x.a, x";
        let postgres = "count ?column? case extract timezone coalesce ?column? btrim \
            substring position current_date user array ?column? text text int4 interval \
            timestamp text exists ?column? a a ?column? row array greatest nullif ?column? ?column? \
            date_trunc a a a count sum ?column? ?column? current_timestamp ?column? \
            ?column? ?column? lower percentile_cont a x";
        assert_eq!(names(sql), postgres.split_whitespace().collect::<Vec<_>>());
    }

    #[test]
    fn casts_name_the_type_postgres_stores() {
        let sql = "select 1::int, 1::bigint, 1::smallint, 1::real, 1::double precision, \
            1::float, true::boolean, 'a'::varchar(3), 'a'::char, 1::decimal(3,1), \
            '2020-01-01'::timestamptz, '2020-01-01'::timestamp with time zone, \
            '2020-01-01'::timestamp, '{}'::text[], 1::oid, \"Mixed\", 1::text::int, \
            '10:00'::time with time zone, 'a'::name, 1::float(3), now()::timestamptz \
            from (select 1 as \"Mixed\") q";
        let postgres = "int4 int8 int2 float4 float8 float8 bool varchar bpchar numeric \
            timestamptz timestamptz timestamp text oid Mixed int4 timetz name float4 now";
        assert_eq!(names(sql), postgres.split_whitespace().collect::<Vec<_>>());
    }

    #[test]
    fn aliases_wildcards_and_set_operations() {
        assert_eq!(
            names("select a as B, a as \"B\", t.*, 1"),
            ["b", "B", "*", "?column?"]
        );
        assert_eq!(names("(select max(a) from t) union all select 1"), ["max"]);
        assert_eq!(
            names("with w as (select 1 as a) select a, count(a) from w group by a"),
            ["a", "count"]
        );
        let compat = Parser::parse_sql(&PostgreSqlDialect {}, "select n.oid as __alias_oid, n.*")
            .expect("parses")
            .remove(0);
        assert_eq!(
            select_names(&compat).expect("a select list")[0],
            Item::Named("oid".into())
        );
        let values = Parser::parse_sql(&PostgreSqlDialect {}, "values (1)")
            .expect("parses")
            .remove(0);
        assert_eq!(select_names(&values), None);
    }

    #[test]
    fn only_colliding_items_are_aliased_apart() {
        let parse = |sql: &str| {
            Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .expect("parses")
                .remove(0)
        };
        let rewritten = |sql: &str| alias_duplicates(&parse(sql)).map(|s| s.to_string());
        assert_eq!(rewritten("SELECT ts, count(*) FROM t"), None);
        assert_eq!(rewritten("SELECT a.id, b.id AS c FROM t"), None);
        assert_eq!(
            rewritten("SELECT ts, ts::DATE, count(*) FROM t").as_deref(),
            Some("SELECT ts AS \"?column?1\", ts::DATE AS \"?column?2\", count(*) FROM t")
        );
        assert_eq!(
            rewritten("SELECT 1 AS a, 2 AS A UNION ALL SELECT 1, 1").as_deref(),
            Some(
                "SELECT 1 AS \"?column?1\", 2 AS \"?column?2\" UNION ALL \
                 SELECT 1 AS \"?column?3\", 1 AS \"?column?4\""
            )
        );
        // Casts at any depth, and a cast column next to a wildcard.
        // Calls that differ only in casts are told apart inside the aggregate too, the same
        // way wherever they appear (aliased or not); the one without a cast keeps its name,
        // and a cast literal stays as it is.
        assert_eq!(
            rewritten(
                "SELECT max(d) AS a, max(d::FLOAT8) + 1 AS b FROM t \
                 HAVING max(D::float8) > '1'::FLOAT8"
            )
            .as_deref(),
            Some(
                "SELECT max(d) AS a, max(__timefusion_same(d::FLOAT8, 1)) + 1 AS b FROM t \
                 HAVING max(__timefusion_same(D::FLOAT8, 1)) > '1'::FLOAT8"
            )
        );
        assert_eq!(rewritten("SELECT max(d), min(d::FLOAT8) FROM t"), None);
        assert_eq!(
            rewritten("SELECT max(d), max(d::FLOAT8) FROM t").as_deref(),
            Some(
                "SELECT max(d) AS \"?column?1\", max(__timefusion_same(d::FLOAT8, 1)) \
                 AS \"?column?2\" FROM t"
            )
        );
        assert_eq!(
            rewritten(
                "SELECT sum(d::INT4), sum(d), sum(d::FLOAT8) FROM t HAVING sum(d::FLOAT8) > 1 \
                 ORDER BY sum(d::INT4)"
            )
            .as_deref(),
            Some(
                "SELECT sum(__timefusion_same(d::INT4, 1)) AS \"?column?1\", sum(d) AS \
                 \"?column?2\", sum(__timefusion_same(d::FLOAT8, 2)) AS \"?column?3\" FROM t \
                 HAVING sum(__timefusion_same(d::FLOAT8, 2)) > 1 \
                 ORDER BY sum(__timefusion_same(d::INT4, 1))"
            )
        );
        assert_eq!(
            rewritten("SELECT *, ts::DATE, count(*) FROM t").as_deref(),
            Some("SELECT *, ts::DATE AS \"?column?1\", count(*) FROM t")
        );
        // The client still sees PostgreSQL's names, from the statement as written.
        assert_eq!(names("SELECT ts, ts::DATE FROM t"), ["ts", "ts"]);
    }

    #[test]
    fn names_line_items_up_around_a_wildcard() {
        let count = Item::Named("count".into());
        let items = [
            count.clone(),
            Item::Wildcard,
            Item::Named("c".into()),
            count.clone(),
        ];
        assert_eq!(
            names_for(5, &items),
            [Some("count"), None, None, Some("c"), Some("count")]
        );
        // Without a wildcard the counts must agree, or nothing is renamed.
        assert_eq!(names_for(2, std::slice::from_ref(&count)), [None, None]);
        // More items around a wildcard than columns: nothing is renamed.
        assert_eq!(names_for(1, &items), [None]);
    }
}
