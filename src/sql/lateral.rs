//! A set-returning function in `FROM` over the columns of the relation before it, which
//! PostgreSQL runs once per row of that relation (a function there is implicitly `LATERAL`):
//!
//! ```sql
//! SELECT t.id, h FROM otel_logs_and_spans t CROSS JOIN LATERAL unnest(t.hashes) AS h
//! SELECT t.id, e.value FROM otel_logs_and_spans t, jsonb_array_elements(t.events) e
//! ```
//!
//! DataFusion has no lateral table functions, but plans a set-returning call in a select list
//! as PostgreSQL does (a row per element, none for an empty or NULL set). So the relation and
//! the call become one derived table under the relation's name, its columns and the set's:
//! `(SELECT t.*, unnest(t.hashes) AS "h.h" FROM otel_logs_and_spans t) AS t`, and the query's
//! references to the set (`h`, `h.h`, `e.value`, or `value` alone) read the set's column there.
//! The set's columns get names no table has (`"alias.column"`); the client still sees
//! PostgreSQL's names, which [`crate::sql::colname`] takes from the statement as written. A
//! bare name of one of the set's columns (`value`) reads the set's, also where the relation
//! has a column of that name too (PostgreSQL calls that ambiguous), except in `ORDER BY`
//! where a select-list alias of that name comes first.
//!
//! Taken: `FROM rel, f(…)`, `FROM rel CROSS JOIN [LATERAL] f(…)`, `[INNER] JOIN [LATERAL]
//! f(…) ON true` and `LEFT JOIN [LATERAL] f(…) ON true` (a row of NULLs for an empty or NULL
//! set: the set's lists are given one NULL element there), where `rel` is one table or derived table and `f` is `unnest` (several arrays
//! in lockstep), `generate_series`, or one of [`crate::sql::srf`]'s functions, with or without
//! `WITH ORDINALITY` (not with `LEFT JOIN`). Left as they were (and so DataFusion's error):
//! several relations before the call, a `*` in the select list (it would show the set's
//! internal names), and lateral subqueries. Several sets after one relation are taken one
//! after the other, each over the derived table of the ones before it.
//! Tests: unit tests here, `tests/slt/pg_forms.slt`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, GroupByExpr, Ident, JoinConstraint, JoinOperator,
    ObjectNamePart, OrderByKind, Query, SelectItem, SetExpr, TableAlias, TableFactor,
    TableWithJoins, Value, VisitMut, VisitorMut, visit_expressions,
};

use crate::sql::srf::{self, Srf};

/// A set in `FROM`: the select-list calls that give its columns, under its alias.
struct Set {
    alias: String,
    /// PostgreSQL's names of its columns, `ordinality` last when asked.
    columns: Vec<String>,
    items: Items,
}

/// How a set's columns are computed in the derived table's select list.
enum Items {
    /// One expression per column, in order.
    Calls(Vec<String>),
    /// A set of records (`jsonb_each`): one `unnest` of them, then a column per field.
    Fields {
        records: String,
        fields: &'static [&'static str],
    },
}

impl Set {
    fn internal(&self, column: &str) -> Ident {
        Ident::with_quote('"', format!("{}.{column}", self.alias))
    }
}

/// Rewrites `query`'s `FROM rel, f(rel.col)` as described in the module's documentation,
/// set after set (`FROM t, unnest(t.a) x, unnest(t.b) y`). Whether it did.
pub(crate) fn rewrite(query: &mut Query) -> Result<bool, String> {
    // Each pass takes one set out of `FROM` and parses the relation before it again; past
    // this many, the rest are left to DataFusion's error rather than parsed over and over.
    const MAX_SETS: usize = 32;
    let mut rewritten = 0;
    while rewritten < MAX_SETS && rewrite_one(query)? {
        rewritten += 1;
    }
    Ok(rewritten > 0)
}

/// The first set after the first relation, as one derived table with it.
fn rewrite_one(query: &mut Query) -> Result<bool, String> {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Ok(false);
    };
    let wildcard = select.projection.iter().any(|item| {
        matches!(
            item,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    if wildcard {
        return Ok(false);
    }
    // The relation, the set, whether the set keeps empty rows, and what follows the set:
    // the joins after it, and (in a comma list) the relations after it.
    let (left, set_factor, keep_empty, rest) = match select.from.as_slice() {
        [first, second, ..] if first.joins.is_empty() => {
            (&first.relation, &second.relation, false, Some(1))
        }
        [first, ..] => match first.joins.first() {
            Some(join) => match join_kind(&join.join_operator) {
                Some(keep_empty) => (&first.relation, &join.relation, keep_empty, None),
                None => return Ok(false),
            },
            None => return Ok(false),
        },
        _ => return Ok(false),
    };
    let Some(qualified) = qualifier(left) else {
        return Ok(false);
    };
    let Some(set) = set_of(set_factor, keep_empty)? else {
        return Ok(false);
    };
    let named = |items: Vec<String>| -> String {
        let named: Vec<String> = items
            .iter()
            .zip(&set.columns)
            .map(|(item, column)| format!("{item} AS {}", set.internal(column)))
            .collect();
        named.join(", ")
    };
    let sql = match &set.items {
        Items::Calls(calls) => {
            format!("SELECT {qualified}.*, {} FROM {left}", named(calls.clone()))
        }
        Items::Fields { records, fields } => {
            let record = set.internal("record");
            let reads = fields
                .iter()
                .map(|field| format!("{qualified}.{record}['{field}']"))
                .collect();
            format!(
                "SELECT {qualified}.*, {} FROM (SELECT {qualified}.*, {records} AS {record} FROM {left}) AS {qualified}",
                named(reads)
            )
        }
    };
    let subquery = srf::parse_query(&sql)?;
    let derived = TableFactor::Derived {
        lateral: false,
        subquery,
        alias: Some(TableAlias {
            explicit: true,
            at: None,
            name: qualified.clone(),
            columns: vec![],
        }),
        sample: None,
    };
    match rest {
        // `FROM rel, f(…) [JOIN …], more`: the set's own joins stay on the derived table.
        Some(set_at) => {
            let set = select.from.remove(set_at);
            select.from[0] = TableWithJoins {
                relation: derived,
                joins: set.joins,
            };
        }
        // `FROM rel JOIN f(…) ON true [JOIN …]`: the later joins stay.
        None => {
            let first = &mut select.from[0];
            first.joins.remove(0);
            first.relation = derived;
        }
    }
    let mut references = References {
        set: &set,
        qualifier: &qualified,
        depth: 0,
        outputs: Vec::new(),
    };
    // The joins after the set read it in their conditions.
    for join in &mut select.from[0].joins {
        if let Some(JoinConstraint::On(on)) = join_constraint(&mut join.join_operator) {
            let _ = on.visit(&mut references);
        }
    }
    for item in &mut select.projection {
        if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item {
            let _ = expr.visit(&mut references);
        }
    }
    if let Some(selection) = &mut select.selection {
        let _ = selection.visit(&mut references);
    }
    if let GroupByExpr::Expressions(exprs, _) = &mut select.group_by {
        for expr in exprs {
            let _ = expr.visit(&mut references);
        }
    }
    if let Some(having) = &mut select.having {
        let _ = having.visit(&mut references);
    }
    if let Some(order_by) = &mut query.order_by
        && let OrderByKind::Expressions(exprs) = &mut order_by.kind
    {
        // A bare name there is the select list's output column of that name first.
        references.outputs = select
            .projection
            .iter()
            .filter_map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                _ => None,
            })
            .collect();
        for order in exprs {
            let _ = order.expr.visit(&mut references);
        }
    }
    Ok(true)
}

/// The condition of a join that has one.
fn join_constraint(operator: &mut JoinOperator) -> Option<&mut JoinConstraint> {
    match operator {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c) => Some(c),
        _ => None,
    }
}

/// How a join pairs each left row with its set: `Some(false)` with every row of it (`CROSS
/// JOIN`, an inner join `ON true`), `Some(true)` also once with NULLs when it is empty (`LEFT
/// JOIN … ON true`); `None` for any other join.
fn join_kind(operator: &JoinOperator) -> Option<bool> {
    let on_true = |c: &JoinConstraint| match c {
        JoinConstraint::On(Expr::Value(v)) => v.value == Value::Boolean(true),
        _ => false,
    };
    match operator {
        JoinOperator::CrossJoin(JoinConstraint::None) => Some(false),
        JoinOperator::Inner(c) | JoinOperator::Join(c) if on_true(c) => Some(false),
        JoinOperator::Left(c) | JoinOperator::LeftOuter(c) if on_true(c) => Some(true),
        _ => None,
    }
}

/// The name the relation's columns are qualified with: its alias, or its table's name.
fn qualifier(relation: &TableFactor) -> Option<Ident> {
    match relation {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => match alias {
            Some(alias) if alias.columns.is_empty() => Some(alias.name.clone()),
            Some(_) => None,
            None => match name.0.last()? {
                ObjectNamePart::Identifier(ident) => Some(ident.clone()),
                _ => None,
            },
        },
        TableFactor::Derived {
            alias: Some(alias),
            lateral: false,
            ..
        } => Some(alias.name.clone()),
        _ => None,
    }
}

/// Whether `expr` reads a column (so the set depends on the row before it).
fn reads_columns(expr: &Expr) -> bool {
    visit_expressions(expr, |e| match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// The set a table factor is, when it is a set-returning call over columns.
/// `keep_empty`: an empty or NULL set gives one row of NULLs (a `LEFT JOIN`).
fn set_of(factor: &TableFactor, keep_empty: bool) -> Result<Option<Set>, String> {
    let (name, args, alias, ordinality) = match factor {
        TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset: false,
            with_ordinality,
            ..
        } => (
            "unnest".to_string(),
            array_exprs.clone(),
            alias,
            *with_ordinality,
        ),
        TableFactor::Table {
            name,
            alias,
            args: Some(args),
            with_ordinality,
            ..
        } => match plain(&args.args) {
            Some(list) => (last(name)?, list, alias, *with_ordinality),
            None => return Ok(None),
        },
        TableFactor::Function {
            name,
            args,
            alias,
            with_ordinality,
            ..
        } => match plain(args) {
            Some(list) => (last(name)?, list, alias, *with_ordinality),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    if !args.iter().any(reads_columns) {
        return Ok(None);
    }
    let function = name.to_lowercase();
    let (lists, defaults, fields, named_by_alias): (
        Vec<Expr>,
        Vec<String>,
        Option<&'static [&'static str]>,
        bool,
    ) = match function.as_str() {
        "unnest" => (args.clone(), vec!["unnest".into(); args.len()], None, true),
        "generate_series" => (
            vec![srf::call("generate_series", args)],
            vec!["generate_series".into()],
            None,
            true,
        ),
        _ => {
            let Some(srf) = Srf::of_name(&function) else {
                return Ok(None);
            };
            let list = srf.list(args)?;
            (
                vec![list],
                srf.columns(&function),
                srf.fields(),
                srf.named_by_alias(),
            )
        }
    };
    if lists.is_empty() {
        return Ok(None);
    }
    let alias_name = alias
        .as_ref()
        .map_or(function.clone(), |a| a.name.value.clone());
    let mut columns = defaults.clone();
    if ordinality {
        columns.push("ordinality".into());
    }
    match alias {
        Some(TableAlias { columns: named, .. }) if !named.is_empty() => {
            for (column, given) in columns.iter_mut().zip(named) {
                *column = given.name.value.clone();
            }
        }
        // `unnest(…) AS u` names its column; `jsonb_array_elements(…) AS e` keeps `value`
        // (its OUT parameter's name, [`Srf::named_by_alias`]), which `e` alone also reads.
        Some(TableAlias { name, .. }) if defaults.len() == 1 && named_by_alias => {
            columns[0] = name.value.clone()
        }
        _ => {}
    }
    if ordinality && (fields.is_some() || keep_empty) {
        return Ok(None);
    }
    let mut calls: Vec<String> = lists
        .iter()
        .map(|list| match keep_empty {
            // One NULL element where the set is empty, as the LEFT JOIN's row of NULLs.
            true => format!(
                "unnest(CASE WHEN coalesce(cardinality({list}), 0) = 0 THEN make_array(NULL) ELSE {list} END)"
            ),
            false => srf::call("unnest", vec![list.clone()]).to_string(),
        })
        .collect();
    if ordinality {
        calls.push(srf::ordinality_item(&lists));
    }
    let items = match fields {
        Some(fields) => Items::Fields {
            records: calls.remove(0),
            fields,
        },
        None => Items::Calls(calls),
    };
    Ok(Some(Set {
        alias: alias_name,
        columns,
        items,
    }))
}

fn last(name: &datafusion::sql::sqlparser::ast::ObjectName) -> Result<String, String> {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => Ok(ident.value.clone()),
        _ => Err(format!("{name}: not a function name")),
    }
}

fn plain(args: &[FunctionArg]) -> Option<Vec<Expr>> {
    args.iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Points the query's references to the set at its columns in the derived table (not inside
/// subqueries, whose names are their own).
struct References<'a> {
    set: &'a Set,
    qualifier: &'a Ident,
    depth: usize,
    /// Bare names that stay as they are (in `ORDER BY`, the select list's aliases).
    outputs: Vec<String>,
}

impl References<'_> {
    fn column(&self, name: &Ident) -> Option<&String> {
        self.set.columns.iter().find(|c| {
            name.quote_style.is_none() && c.eq_ignore_ascii_case(&name.value) || **c == name.value
        })
    }

    fn is_alias(&self, ident: &Ident) -> bool {
        ident.value == self.set.alias
            || (ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case(&self.set.alias))
    }
}

impl VisitorMut for References<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        let column = match expr {
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [table, name] if self.is_alias(table) => self.column(name).cloned(),
                _ => None,
            },
            Expr::Identifier(ident) if self.outputs.contains(&ident.value) => None,
            Expr::Identifier(ident) if self.is_alias(ident) && self.set.columns.len() == 1 => {
                Some(self.set.columns[0].clone())
            }
            Expr::Identifier(ident) => self.column(ident).cloned(),
            _ => None,
        };
        if let Some(column) = column {
            *expr =
                Expr::CompoundIdentifier(vec![self.qualifier.clone(), self.set.internal(&column)]);
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> Option<String> {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0);
        let Statement::Query(query) = &mut statement else {
            panic!("a query");
        };
        rewrite(query)
            .expect("rewrites")
            .then(|| statement.to_string())
    }

    #[test]
    fn a_set_over_the_row_before_it_is_a_select_list_call() {
        assert_eq!(
            rewritten("SELECT t.id, h FROM spans t CROSS JOIN LATERAL unnest(t.hashes) AS h WHERE h <> 'x' ORDER BY h").as_deref(),
            Some(
                "SELECT t.id, t.\"h.h\" FROM (SELECT t.*, unnest(t.hashes) AS \"h.h\" FROM spans t) AS t \
                 WHERE t.\"h.h\" <> 'x' ORDER BY t.\"h.h\""
            )
        );
        // A comma, a function's own column name (`value`), with and without its alias.
        assert_eq!(
            rewritten("SELECT e.value, value FROM spans, jsonb_array_elements(spans.events) e")
                .as_deref(),
            Some(
                "SELECT spans.\"e.value\", spans.\"e.value\" FROM (SELECT spans.*, \
                 unnest(json_array_elements_list(spans.events)) AS \"e.value\" FROM spans) AS spans"
            )
        );
        // Records: one unnest, then their fields.
        let each = rewritten("SELECT k FROM t JOIN LATERAL jsonb_each(t.j) AS e(k, v) ON true")
            .expect("rewritten");
        assert!(
            each.contains(
                "FROM (SELECT t.*, unnest(json_each_list(t.j)) AS \"e.record\" FROM t) AS t"
            ),
            "{each}"
        );
        assert!(each.contains("t.\"e.record\"['key'] AS \"e.k\""), "{each}");
        assert!(each.starts_with("SELECT t.\"e.k\" FROM"), "{each}");
        // A later join's condition reads the set; ORDER BY a select alias keeps the alias.
        let joined =
            rewritten("SELECT t.a AS h FROM t, unnest(t.arr) h JOIN s ON s.k = h ORDER BY h")
                .expect("rewritten");
        assert!(joined.contains("JOIN s ON s.k = t.\"h.h\""), "{joined}");
        assert!(joined.ends_with("ORDER BY h"), "{joined}");
        // LEFT JOIN: an empty set is one NULL element.
        let left = rewritten("SELECT t.a, u FROM t LEFT JOIN LATERAL unnest(t.arr) u ON true")
            .expect("rewritten");
        assert!(
            left.contains("unnest(CASE WHEN coalesce(cardinality(t.arr), 0) = 0 THEN make_array(NULL) ELSE t.arr END) AS \"u.u\""),
            "{left}"
        );
    }

    #[test]
    fn other_forms_are_left_as_they_are() {
        for sql in [
            // Constant arguments: the set does not depend on the row (srf's derived table).
            "SELECT * FROM t, unnest(ARRAY[1, 2]) u",
            "SELECT t.a, u FROM t, unnest(ARRAY[1, 2]) u",
            // A LEFT JOIN on anything but true; with ORDINALITY (PostgreSQL's is NULL there).
            "SELECT t.a, u FROM t LEFT JOIN LATERAL unnest(t.arr) u ON u > 1",
            "SELECT t.a, u FROM t LEFT JOIN LATERAL unnest(t.arr) WITH ORDINALITY u ON true",
            // Several relations before it; a wildcard; a lateral subquery.
            "SELECT a.x, u FROM a, b, unnest(b.arr) u",
            "SELECT * FROM t, unnest(t.arr) u",
            "SELECT t.a, l.y FROM t, LATERAL (SELECT t.a * 2 AS y) l",
        ] {
            assert_eq!(rewritten(sql), None, "{sql}");
        }
    }
}
