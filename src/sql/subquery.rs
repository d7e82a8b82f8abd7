//! Scalar subqueries planned as written.
//!
//! datafusion-pg-catalog's compatibility parser (which parses every statement for
//! datafusion-postgres) ends with `RemoveSubqueryFromProjection`: a subquery it judges
//! correlated — one naming a table alias its own `FROM` does not define (a derived table's, an
//! outer query's) or holding a `$n` parameter — becomes `NULL`, and every other gets `LIMIT 1`.
//! `SELECT (SELECT max(q.v) FROM (SELECT …) q)` answered NULL, and a subquery returning two
//! rows answered the first instead of PostgreSQL's 21000. Its rule list is private, so
//! [`restore`] finds the statement datafusion-postgres was given among the client's own
//! statements (parsed and rewritten the way that parser does) and rewrites that one with every
//! rule but that one's effect on the client's subqueries: a subquery the `'…'::regclass`
//! rule emits keeps its `LIMIT 1` (`regproc` names overloaded functions).
//!
//! DataFusion decorrelates a correlated scalar subquery only when it aggregates, over equality
//! predicates. An analyzer rule ([`register`]) makes one without an aggregate take its one row
//! through `first_value` (and drops a `LIMIT` over an aggregate's one row); what DataFusion
//! still cannot run fails, except in a statement over the catalog alone
//! ([`reads_only_catalog`]): there each such subquery is NULL ([`null_correlated`], chosen by
//! the rewrite hook in `pgwire::hooks`), as the admin tools' screens had it.
//!
//! A scalar subquery with no row is NULL, whatever its column: DataFusion 55 gives the
//! subquery expression its column's nullability (`ExprSchemable::nullable`), so over a column
//! declared `NOT NULL` (`id`) `(SELECT id … WHERE false) IS NULL` folded to false, and a
//! subquery finding nothing failed ("declared as non-nullable but contains null values").
//! [`register`] adds an analyzer rule that passes such a subquery's value through
//! `subquery_value`, an identity whose result may be NULL.
//!
//! Tests: the unit tests below, `tests/slt/subquery.slt`.

use std::ops::ControlFlow;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Column, Result, exec_err};
use datafusion::functions_aggregate::first_last::first_value_udaf;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr as DfExpr, FetchType, LogicalPlan, LogicalPlanBuilder, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, SkipType, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Expr, ObjectNamePart, Query, SelectItem, SetExpr, Statement, Visit, VisitMut, Visitor,
    VisitorMut, visit_relations,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer};
use datafusion_postgres::datafusion_pg_catalog::sql::rules::{
    AliasDuplicatedProjectionRewrite, CurrentUserVariableToSessionUserFunctionCall,
    FixArrayLiteral, FixVersionColumnName, PrependUnqualifiedPgTableName,
    RemoveSubqueryFromProjection, ResolveUnqualifiedIdentifier, RewriteArrayAnyAllOperation,
    RewritePgCatalogOperator, RewriteRegCastToSubquery, SqlStatementRewriteRule,
    StripCallableQualifier, StripCollate,
};

/// Adds the analyzer rules: correlated subqueries that do not aggregate take their row
/// through `first_value`, and every scalar subquery's value is nullable.
pub fn register(context: &SessionContext) {
    context.add_analyzer_rule(Arc::new(SingleRowSubqueries));
    context.add_analyzer_rule(Arc::new(NullableSubqueries));
}

type Rule = Arc<dyn SqlStatementRewriteRule>;

/// datafusion-pg-catalog 0.19's rules (`PostgresCompatibilityParser::new`), in its order, cut
/// around `RemoveSubqueryFromProjection`: those before the `'…'::regclass` rewrite, that
/// rewrite, the subquery rule, and those after it. `same_as_upstream` below checks the
/// sequence against the parser itself.
struct Rules {
    before: Vec<Rule>,
    reg_cast: Rule,
    subquery: Rule,
    after: Vec<Rule>,
}

static RULES: LazyLock<Rules> = LazyLock::new(|| Rules {
    before: vec![
        Arc::new(AliasDuplicatedProjectionRewrite),
        Arc::new(ResolveUnqualifiedIdentifier),
        Arc::new(RewriteArrayAnyAllOperation),
        Arc::new(PrependUnqualifiedPgTableName),
        Arc::new(StripCallableQualifier),
        Arc::new(FixArrayLiteral),
        Arc::new(CurrentUserVariableToSessionUserFunctionCall),
        Arc::new(StripCollate),
        Arc::new(RewritePgCatalogOperator),
    ],
    reg_cast: Arc::new(RewriteRegCastToSubquery::new()),
    subquery: Arc::new(RemoveSubqueryFromProjection),
    after: vec![Arc::new(FixVersionColumnName)],
});

/// The statement in `text` that datafusion-postgres parsed as `received`, with the scalar
/// subqueries the client wrote in its select lists as written; `None` when `text` has no
/// subquery that the compatibility parser changed there, or none of its statements is
/// `received` (a statement its token "blacklist" replaced).
pub fn restore(received: &Statement, text: &str) -> Option<Statement> {
    if !matches!(received, Statement::Query(_)) || !may_nest_select(text) {
        return None;
    }
    let rules = &*RULES;
    parse_as_upstream(text)?
        .into_iter()
        .filter(|statement| matches!(statement, Statement::Query(_)))
        .find_map(|statement| {
            let before = apply(&rules.before, statement);
            if apply_rest(rules, before.clone()) != *received {
                return None;
            }
            let mut shielded = before;
            let _ = VisitMut::visit(&mut shielded, &mut Shield::Wrap);
            let mut restored = apply_rest(rules, shielded);
            let _ = VisitMut::visit(&mut restored, &mut Shield::Unwrap);
            (restored != *received).then_some(restored)
        })
}

/// Whether every relation `statement` reads is PostgreSQL's catalog (`pg_catalog`,
/// `information_schema`, a `pg_` name) or a `WITH` query it defines. A statement with no
/// relation reads no data either.
pub fn reads_only_catalog(statement: &Statement) -> bool {
    let mut ctes = Vec::new();
    let _ = statement.visit(&mut CteNames(&mut ctes));
    let outcome = visit_relations(statement, |name| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(ObjectNamePart::as_ident)
            .map(|ident| ident.value.to_ascii_lowercase())
            .collect();
        let catalog = match parts.as_slice() {
            [schema, _] | [_, schema, _] => {
                schema == "pg_catalog" || schema == "information_schema"
            }
            [relation] => relation.starts_with("pg_") || ctes.contains(relation),
            _ => false,
        };
        if catalog {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    });
    outcome.is_continue()
}

/// How many scalar subqueries of `statement` name a relation they do not read themselves
/// (correlated ones, at any depth), numbered as [`null_correlated`] numbers them.
pub fn correlated_count(statement: &Statement) -> usize {
    let mut counted = statement.clone();
    let mut visitor = NullCorrelated {
        seen: 0,
        null: &|_| false,
    };
    let _ = VisitMut::visit(&mut counted, &mut visitor);
    visitor.seen
}

/// `statement` with each correlated scalar subquery whose number (in the order of a
/// depth-first walk, inner ones first) `null` picks replaced by NULL: what the compatibility
/// parser does to select items, for the subqueries of a statement over the catalog alone that
/// DataFusion cannot run (SQLAlchemy 2.1's `get_columns` computes a column's identity options
/// from the outer row inside one; pgAdmin's table list limits one).
pub fn null_correlated(statement: &Statement, null: &dyn Fn(usize) -> bool) -> Statement {
    let mut nulled = statement.clone();
    let _ = VisitMut::visit(&mut nulled, &mut NullCorrelated { seen: 0, null });
    nulled
}

struct NullCorrelated<'a> {
    seen: usize,
    null: &'a dyn Fn(usize) -> bool,
}

impl VisitorMut for NullCorrelated<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Subquery(query) = expr
            && is_correlated(query)
        {
            if (self.null)(self.seen) {
                *expr = Expr::value(datafusion::sql::sqlparser::ast::Value::Null);
            }
            self.seen += 1;
        }
        ControlFlow::Continue(())
    }
}

/// Whether `query` qualifies a column with a name none of its own relations (at any depth)
/// has, as alias or as table name.
fn is_correlated(query: &Query) -> bool {
    struct Names {
        own: Vec<String>,
        qualifiers: Vec<String>,
    }
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_table_factor(
            &mut self,
            factor: &datafusion::sql::sqlparser::ast::TableFactor,
        ) -> ControlFlow<()> {
            use datafusion::sql::sqlparser::ast::TableFactor;
            if let TableFactor::Table { name, .. } = factor
                && let Some(last) = name.0.last().and_then(ObjectNamePart::as_ident)
            {
                self.own.push(last.value.to_ascii_lowercase());
            }
            let alias = match factor {
                TableFactor::Table { alias, .. }
                | TableFactor::Derived { alias, .. }
                | TableFactor::Function { alias, .. }
                | TableFactor::UNNEST { alias, .. } => alias.as_ref(),
                _ => None,
            };
            if let Some(alias) = alias {
                self.own.push(alias.name.value.to_ascii_lowercase());
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::CompoundIdentifier(parts) = expr
                && let [.., qualifier, _] = parts.as_slice()
            {
                self.qualifiers.push(qualifier.value.to_ascii_lowercase());
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names {
        own: Vec::new(),
        qualifiers: Vec::new(),
    };
    let _ = query.visit(&mut names);
    names.qualifiers.iter().any(|q| !names.own.contains(q))
}

/// A cheap test before any parsing: a nested `SELECT` needs the word twice.
pub fn may_nest_select(text: &str) -> bool {
    text.as_bytes()
        .windows(6)
        .filter(|w| w.eq_ignore_ascii_case(b"select"))
        .nth(1)
        .is_some()
}

/// `text`'s statements as `PostgresCompatibilityParser::parse` reads them before its rules:
/// tokens without whitespace and comments, with empty spans (the trees compare equal either
/// way; this keeps the two parses the same parse).
fn parse_as_upstream(text: &str) -> Option<Vec<Statement>> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, text).tokenize().ok()?;
    let tokens: Vec<TokenWithSpan> = tokens
        .into_iter()
        .filter(|token| !matches!(token, Token::Whitespace(_)))
        .map(|token| TokenWithSpan {
            token,
            span: Span::empty(),
        })
        .collect();
    Parser::new(&dialect)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .ok()
}

fn apply(rules: &[Rule], statement: Statement) -> Statement {
    rules
        .iter()
        .fold(statement, |statement, rule| rule.rewrite(statement))
}

fn apply_rest(rules: &Rules, statement: Statement) -> Statement {
    let statement = rules.reg_cast.rewrite(statement);
    let statement = rules.subquery.rewrite(statement);
    apply(&rules.after, statement)
}

/// Hides the client's select-list subqueries from `RemoveSubqueryFromProjection`, which looks
/// only at a select item that is a subquery (in a `SELECT` that is a query's whole body), by
/// putting each in parentheses; then takes the parentheses away again.
enum Shield {
    Wrap,
    Unwrap,
}

impl VisitorMut for Shield {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        for item in &mut select.projection {
            let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item
            else {
                continue;
            };
            match self {
                Shield::Wrap if matches!(expr, Expr::Subquery(_)) => {
                    let subquery = std::mem::replace(
                        expr,
                        Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
                    );
                    *expr = Expr::Nested(Box::new(subquery));
                }
                Shield::Unwrap => {
                    if let Expr::Nested(inner) = expr
                        && matches!(inner.as_ref(), Expr::Subquery(_))
                    {
                        let subquery = std::mem::replace(
                            inner.as_mut(),
                            Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
                        );
                        *expr = subquery;
                    }
                }
                Shield::Wrap => {}
            }
        }
        ControlFlow::Continue(())
    }
}

/// Takes the value of a correlated scalar subquery that does not aggregate
/// (`(SELECT c.name FROM t c WHERE c.id = o.parent_id)`, SQLAlchemy 2.1's column defaults and
/// collations) through `first_value`: DataFusion decorrelates such a subquery only when it
/// aggregates ("Correlated scalar subquery must be aggregated to return at most one row"), and
/// over the one row PostgreSQL requires it to have, or none, `first_value` is that row's value
/// or NULL. Where it has more, PostgreSQL raises 21000 and this answers one of them: the
/// decorrelated plan groups every inner row by the correlation keys, also rows no outer row
/// asks for, so an error there could fail a query PostgreSQL answers.
#[derive(Debug)]
struct SingleRowSubqueries;

impl AnalyzerRule for SingleRowSubqueries {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if !crate::sql::any_expression(&plan, |e| {
            matches!(e, DfExpr::ScalarSubquery(subquery)
                if !subquery.outer_ref_columns.is_empty()
                    && matches!(subquery.subquery.as_ref(),
                        LogicalPlan::Projection(_) | LogicalPlan::Limit(_)))
        })? {
            return Ok(plan);
        }
        rewrite_expressions(plan, first_of_one_row)
    }

    fn name(&self) -> &str {
        "single_row_scalar_subqueries"
    }
}

/// `plan` with `rewrite` applied to every expression, bottom up and inside subqueries, each
/// keeping its name; every schema is recomputed, since one above a rewritten subquery changes
/// with it (its value's type or nullability).
fn rewrite_expressions(
    plan: LogicalPlan,
    rewrite: fn(DfExpr) -> Result<Transformed<DfExpr>>,
) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let names = NamePreserver::new(&node);
        let node = node
            .map_expressions(|expr| {
                let name = names.save(&expr);
                expr.transform_up(rewrite)
                    .map(|t| t.update_data(|e| name.restore(e)))
            })?
            .data;
        node.recompute_schema().map(Transformed::yes)
    })
    .data()
}

/// The name of a rewritten subquery's value, which no relation's column has: decorrelation
/// pulls the inner side of the correlation (`c.id` for `c.id = o.parent_id`) up beside the
/// value, which must not have its name.
const SINGLE_VALUE: &str = "__timefusion_single_value";

fn first_of_one_row(expr: DfExpr) -> Result<Transformed<DfExpr>> {
    // `(SELECT count(1) … WHERE … = outer.x LIMIT 1)` (pgAdmin's table list): an aggregate
    // without GROUP BY is one row already, and DataFusion decorrelates no LIMIT.
    if let DfExpr::ScalarSubquery(subquery) = &expr
        && !subquery.outer_ref_columns.is_empty()
        && let LogicalPlan::Limit(limit) = subquery.subquery.as_ref()
        && matches!(limit.get_skip_type(), Ok(SkipType::Literal(0)))
        && matches!(limit.get_fetch_type(), Ok(FetchType::Literal(Some(n))) if n > 0)
        && one_aggregate_row(&limit.input)
    {
        return Ok(Transformed::yes(DfExpr::ScalarSubquery(
            subquery.with_plan(limit.input.clone()),
        )));
    }
    let Some((input, value)) = single_row_input(&expr) else {
        return Ok(Transformed::no(expr));
    };
    let DfExpr::ScalarSubquery(subquery) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let aggregated = LogicalPlanBuilder::from(input)
        .aggregate(
            Vec::<DfExpr>::new(),
            vec![first_value_udaf().call(vec![value])],
        )?
        .build()?;
    let column = DfExpr::Column(Column::from(aggregated.schema().qualified_field(0)));
    let plan = LogicalPlanBuilder::from(aggregated)
        .project(vec![column.alias(SINGLE_VALUE)])?
        .build()?;
    Ok(Transformed::yes(DfExpr::ScalarSubquery(
        subquery.with_plan(Arc::new(plan)),
    )))
}

/// Whether `plan` is an aggregate without `GROUP BY` (under projections): exactly one row.
fn one_aggregate_row(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(projection) => one_aggregate_row(&projection.input),
        LogicalPlan::Aggregate(aggregate) => aggregate.group_expr.is_empty(),
        _ => false,
    }
}

/// For a correlated scalar subquery `Projection [value] (input)` (or that under `LIMIT 1`)
/// that does not aggregate: its input and its value without alias.
fn single_row_input(expr: &DfExpr) -> Option<(LogicalPlan, DfExpr)> {
    let DfExpr::ScalarSubquery(subquery) = expr else {
        return None;
    };
    if subquery.outer_ref_columns.is_empty() {
        return None;
    }
    let projection = match subquery.subquery.as_ref() {
        LogicalPlan::Projection(projection) => projection,
        LogicalPlan::Limit(limit)
            if matches!(limit.get_skip_type(), Ok(SkipType::Literal(0)))
                && matches!(limit.get_fetch_type(), Ok(FetchType::Literal(Some(1)))) =>
        {
            match limit.input.as_ref() {
                LogicalPlan::Projection(projection) => projection,
                _ => return None,
            }
        }
        _ => return None,
    };
    let [value] = projection.expr.as_slice() else {
        return None;
    };
    let input = projection.input.as_ref();
    let rows_as_they_are = matches!(
        input,
        LogicalPlan::Filter(_)
            | LogicalPlan::TableScan(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Join(_)
    );
    if !rows_as_they_are || value.contains_outer() {
        return None;
    }
    Some((input.clone(), value.clone().unalias()))
}

/// Whether `plan` (optimized) still holds a correlated subquery: one DataFusion could not
/// decorrelate into a join, which it has no physical plan for.
pub fn has_correlated(plan: &LogicalPlan) -> bool {
    crate::sql::any_expression(plan, |e| match e {
        DfExpr::ScalarSubquery(subquery) => !subquery.outer_ref_columns.is_empty(),
        DfExpr::Exists(_) | DfExpr::InSubquery(_) | DfExpr::SetComparison(_) => true,
        _ => false,
    })
    .unwrap_or(true)
}

/// Passes the value of each scalar subquery whose column is declared `NOT NULL` through
/// [`SubqueryValue`], keeping the expression's name, and recomputes the schemas above it.
#[derive(Debug)]
struct NullableSubqueries;

fn is_not_null_subquery(expr: &DfExpr) -> bool {
    matches!(expr, DfExpr::ScalarSubquery(subquery)
        if subquery.subquery.schema().fields().first().is_some_and(|f| !f.is_nullable()))
}

impl AnalyzerRule for NullableSubqueries {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if !crate::sql::any_expression(&plan, is_not_null_subquery)? {
            return Ok(plan);
        }
        rewrite_expressions(plan, nullable)
    }

    fn name(&self) -> &str {
        "nullable_scalar_subqueries"
    }
}

fn nullable(expr: DfExpr) -> Result<Transformed<DfExpr>> {
    if !is_not_null_subquery(&expr) {
        return Ok(Transformed::no(expr));
    }
    let DfExpr::ScalarSubquery(subquery) = expr else {
        return Ok(Transformed::no(expr));
    };
    let (qualifier, field) = subquery.subquery.schema().qualified_field(0);
    let value = DfExpr::ScalarFunction(ScalarFunction::new_udf(
        SUBQUERY_VALUE.clone(),
        vec![DfExpr::Column(Column::new(
            qualifier.cloned(),
            field.name(),
        ))],
    ))
    .alias_qualified(qualifier.cloned(), field.name());
    let plan = LogicalPlanBuilder::from(subquery.subquery.as_ref().clone())
        .project(vec![value])?
        .build()?;
    Ok(Transformed::yes(DfExpr::ScalarSubquery(
        subquery.with_plan(Arc::new(plan)),
    )))
}

static SUBQUERY_VALUE: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| Arc::new(ScalarUDF::from(SubqueryValue::new())));

/// `subquery_value(x)`: `x`, typed as a value that may be NULL. Not registered by name.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SubqueryValue {
    signature: Signature,
}

impl SubqueryValue {
    fn new() -> Self {
        SubqueryValue {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for SubqueryValue {
    fn name(&self) -> &str {
        "subquery_value"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [data_type] => Ok(data_type.clone()),
            _ => exec_err!("subquery_value takes one argument"),
        }
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        match args.arg_fields {
            [field] => Ok(Arc::new(field.as_ref().clone().with_nullable(true))),
            _ => exec_err!("subquery_value takes one argument"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match args.args.into_iter().next() {
            Some(value) => Ok(value),
            None => exec_err!("subquery_value takes one argument"),
        }
    }

    /// A constant (what decorrelation evaluates over no rows, `count(*)`'s 0) stays one.
    fn simplify(&self, args: Vec<DfExpr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        match <[DfExpr; 1]>::try_from(args) {
            Ok([literal @ DfExpr::Literal(..)]) => Ok(ExprSimplifyResult::Simplified(literal)),
            Ok([other]) => Ok(ExprSimplifyResult::Original(vec![other])),
            Err(args) => Ok(ExprSimplifyResult::Original(args)),
        }
    }
}

/// The names `WITH` clauses define, lower-cased.
struct CteNames<'a>(&'a mut Vec<String>);

impl Visitor for CteNames<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.0.extend(
                with.cte_tables
                    .iter()
                    .map(|cte| cte.alias.name.value.to_ascii_lowercase()),
            );
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    use super::*;

    /// The statement datafusion-postgres hands the hooks for `text`, and its restored form.
    fn received_and_restored(text: &str) -> (Statement, Option<Statement>) {
        let received = PostgresCompatibilityParser::new()
            .parse(text)
            .expect("parses")
            .remove(0);
        let restored = restore(&received, text);
        (received, restored)
    }

    #[test]
    fn same_as_upstream() {
        // The rules in `RULES` rewrite as the parser does, so `restore` recognizes the
        // statement: a statement whose subquery the parser changes is restored, every other
        // one compares equal and is left alone.
        for text in [
            "SELECT 1",
            "SELECT c.relname, 'pg_class'::regclass FROM pg_class c WHERE c.relname = 'x'",
            "SELECT version(), current_user, ARRAY['a'] && ARRAY['b'] FROM pg_namespace",
            "SELECT a.x FROM (SELECT 1 AS x) a WHERE 2 = ANY(ARRAY[1, 2]) -- a comment",
            "SELECT t.x, t.x FROM (SELECT 1 AS x) t ORDER BY 1",
        ] {
            let received = PostgresCompatibilityParser::new()
                .parse(text)
                .expect("parses")
                .remove(0);
            let rules = &*RULES;
            let ours = parse_as_upstream(text).expect("parses").remove(0);
            assert_eq!(
                apply_rest(rules, apply(&rules.before, ours)),
                received,
                "{text}"
            );
            assert_eq!(restore(&received, text), None, "{text}");
        }
    }

    #[test]
    fn restores_what_the_parser_replaced() {
        // A derived table's alias, an outer reference and a parameter: each became NULL.
        for (text, expected) in [
            (
                "SELECT (SELECT max(q.v) FROM (SELECT 1 AS v) q)",
                "SELECT (SELECT max(q.v) FROM (SELECT 1 AS v) q)",
            ),
            (
                "SELECT c.oid, (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid) AS n FROM pg_class c",
                "SELECT c.oid, (SELECT count(*) FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid) AS n FROM pg_catalog.pg_class c",
            ),
            ("SELECT (SELECT $1 + 1)", "SELECT (SELECT $1 + 1)"),
            // No LIMIT 1 on the client's subquery: two rows are PostgreSQL's error.
            (
                "SELECT (SELECT v FROM generate_series(1, 2) AS t(v))",
                "SELECT (SELECT v FROM generate_series(1, 2) AS t (v))",
            ),
        ] {
            let (received, restored) = received_and_restored(text);
            let restored = restored.unwrap_or_else(|| panic!("{text} restored"));
            assert_ne!(restored, received);
            assert_eq!(restored.to_string(), expected);
        }
    }

    #[test]
    fn regclass_subqueries_keep_their_limit() {
        let text = "SELECT 'pg_class'::regclass, (SELECT max(q.v) FROM (SELECT 1 AS v) q)";
        let (_, restored) = received_and_restored(text);
        let restored = restored.expect("restored").to_string();
        assert!(restored.contains("LIMIT 1"), "{restored}");
        assert!(
            restored.ends_with("(SELECT max(q.v) FROM (SELECT 1 AS v) q)"),
            "{restored}"
        );
    }

    #[test]
    fn finds_its_statement_among_several() {
        let text = "SELECT 1; SELECT (SELECT max(q.v) FROM (SELECT 2 AS v) q)";
        let received = PostgresCompatibilityParser::new()
            .parse(text)
            .expect("parses")
            .remove(1);
        let restored = restore(&received, text).expect("restored");
        assert_eq!(
            restored.to_string(),
            "SELECT (SELECT max(q.v) FROM (SELECT 2 AS v) q)"
        );
    }

    #[test]
    fn leaves_other_statements() {
        let text = "SELECT (SELECT max(q.v) FROM (SELECT 2 AS v) q)";
        let other = PostgresCompatibilityParser::new()
            .parse("SELECT 2")
            .expect("parses")
            .remove(0);
        assert_eq!(restore(&other, text), None);
    }

    #[test]
    fn nulls_correlated_subqueries_at_any_depth() {
        let statement = parse_as_upstream(
            "SELECT a.attname, CASE WHEN a.atthasdef THEN (SELECT d.adbin FROM pg_attrdef d WHERE d.adrelid = a.attrelid) END, \
             (SELECT count(*) FROM pg_catalog.pg_type WHERE pg_catalog.pg_type.oid = 1), \
             (SELECT max(x.v) FROM (SELECT 1 AS v) x) FROM pg_attribute a",
        )
        .expect("parses")
        .remove(0);
        assert_eq!(correlated_count(&statement), 1);
        let nulled = null_correlated(&statement, &|_| true).to_string();
        assert_eq!(
            nulled,
            "SELECT a.attname, CASE WHEN a.atthasdef THEN NULL END, \
             (SELECT count(*) FROM pg_catalog.pg_type WHERE pg_catalog.pg_type.oid = 1), \
             (SELECT max(x.v) FROM (SELECT 1 AS v) x) FROM pg_attribute a"
        );
        assert_eq!(null_correlated(&statement, &|_| false), statement);
        let none = parse_as_upstream("SELECT 1").expect("parses").remove(0);
        assert_eq!(correlated_count(&none), 0);
    }

    #[test]
    fn catalog_only() {
        let read = |text: &str| {
            reads_only_catalog(
                &PostgresCompatibilityParser::new()
                    .parse(text)
                    .expect("parses")
                    .remove(0),
            )
        };
        assert!(read("SELECT 1"));
        assert!(read(
            "SELECT c.oid FROM pg_class c JOIN information_schema.tables t ON true"
        ));
        assert!(read(
            "WITH x AS (SELECT oid FROM pg_catalog.pg_type) SELECT * FROM x"
        ));
        assert!(!read("SELECT * FROM otel_logs_and_spans"));
        assert!(!read(
            "SELECT (SELECT count(*) FROM public.t) FROM pg_class"
        ));
        assert!(!read("SELECT * FROM generate_series(1, 3)"));
    }
}
