//! Whole-row references: a relation's name used as a value, `row_to_json(t)`,
//! `json_agg(t ORDER BY …)`, `to_jsonb(t)`, the way PostgreSQL applications turn rows into
//! JSON. PostgreSQL reads the name as the row of that relation (a composite value with its
//! columns' names); DataFusion looks for a column and fails ("No field named t"). A function
//! argument that is a bare name of one of its `FROM` relations (by alias, else by table name),
//! where none of those relations has a column of that name (a column wins, as in PostgreSQL),
//! becomes `named_struct('a', t.a, 'b', t.b, …)` over the relation's columns, which the JSON
//! functions render as PostgreSQL renders the row. The columns come from planning
//! `SELECT * FROM <that relation>`, so derived tables, views and `VALUES` lists work too.
//!
//! Tried only after the statement failed to plan as written (`pgwire::hooks`); tests:
//! `tests/slt/whole_row.slt`.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectNamePart, Query, Select, SelectItem, SetExpr, Statement, TableFactor, Value, Visit,
    VisitMut, Visitor, VisitorMut, visit_expressions_mut,
};

/// Whether `statement` passes a bare name of one of its relations to a function: the cheap
/// test before a statement that failed to plan is tried again with whole rows.
pub fn may_refer(statement: &Statement) -> bool {
    let mut found = Candidates::default();
    let _ = Visit::visit(statement, &mut found);
    !found.found.is_empty()
}

/// `statement` with each whole-row reference replaced by a `named_struct` of the relation's
/// columns; `None` when it has none that `context` can resolve.
pub async fn rewrite(statement: &Statement, context: &SessionContext) -> Option<Statement> {
    let mut found = Candidates::default();
    let _ = Visit::visit(statement, &mut found);
    let mut rows: HashMap<(usize, String), Vec<String>> = HashMap::new();
    for candidate in found.found {
        let Some(columns) = columns_of(&candidate.relation, context).await else {
            continue;
        };
        // A column of that name in any relation of the same FROM is what the name means.
        let name = &candidate.name;
        let mut shadowed = columns.iter().any(|c| c.eq_ignore_ascii_case(name));
        for sibling in &candidate.siblings {
            if let Some(others) = columns_of(sibling, context).await {
                shadowed |= others.iter().any(|c| c.eq_ignore_ascii_case(name));
            }
        }
        if !shadowed {
            rows.insert((candidate.select, candidate.name), columns);
        }
    }
    if rows.is_empty() {
        return None;
    }
    let mut rewritten = statement.clone();
    let _ = VisitMut::visit(
        &mut rewritten,
        &mut Replace {
            rows: &rows,
            selects: 0,
        },
    );
    Some(rewritten)
}

/// The column names of `relation`, as `SELECT * FROM relation` plans them.
async fn columns_of(relation: &TableFactor, context: &SessionContext) -> Option<Vec<String>> {
    if matches!(relation, TableFactor::Derived { lateral: true, .. }) {
        return None;
    }
    let text = format!("SELECT * FROM {relation}");
    let query = crate::sql::srf::parse_query(&text).ok()?;
    let plan = context
        .state()
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            Statement::Query(query),
        )))
        .await
        .ok()?;
    Some(
        plan.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
    )
}

/// The name a relation of a `FROM` answers to: its alias, else its table name's last part.
fn relation_name(relation: &TableFactor) -> Option<String> {
    let alias = match relation {
        TableFactor::Table { alias, .. }
        | TableFactor::Derived { alias, .. }
        | TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. } => alias.as_ref(),
        _ => return None,
    };
    match (alias, relation) {
        (Some(alias), _) => Some(alias.name.value.to_lowercase()),
        (None, TableFactor::Table { name, .. }) => name
            .0
            .last()
            .and_then(ObjectNamePart::as_ident)
            .map(|ident| ident.value.to_lowercase()),
        _ => None,
    }
}

fn relations(select: &Select) -> Vec<TableFactor> {
    select
        .from
        .iter()
        .flat_map(|from| {
            std::iter::once(from.relation.clone())
                .chain(from.joins.iter().map(|join| join.relation.clone()))
        })
        .collect()
}

/// A bare, unquoted name as a function argument (positional or named).
fn bare_argument(arg: &FunctionArg) -> Option<&Ident> {
    let expr = match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))
        | FunctionArg::Named {
            arg: FunctionArgExpr::Expr(expr),
            ..
        }
        | FunctionArg::ExprNamed {
            arg: FunctionArgExpr::Expr(expr),
            ..
        } => expr,
        _ => return None,
    };
    match expr {
        Expr::Identifier(ident) => Some(ident),
        _ => None,
    }
}

fn argument_list(expr: &Expr) -> Option<&FunctionArgumentList> {
    match expr {
        Expr::Function(function) => match &function.args {
            FunctionArguments::List(list) => Some(list),
            _ => None,
        },
        _ => None,
    }
}

/// A bare function argument that names a relation of the enclosing `SELECT`'s `FROM`.
struct Candidate {
    /// The `SELECT`'s number, in the order queries and their set operations' branches are
    /// visited.
    select: usize,
    name: String,
    relation: TableFactor,
    /// The `FROM`'s other relations.
    siblings: Vec<TableFactor>,
}

#[derive(Default)]
struct Candidates {
    found: Vec<Candidate>,
    selects: usize,
}

impl Visitor for Candidates {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        // Each branch of a UNION has its own FROM (pgAdmin's dashboard graphs).
        let mut selects = Vec::new();
        branches(query.body.as_ref(), &mut selects);
        for select in selects {
            self.in_select(select);
            self.selects += 1;
        }
        ControlFlow::Continue(())
    }
}

/// The `SELECT`s of a query body: itself, or each branch of a set operation.
fn branches<'a>(body: &'a SetExpr, selects: &mut Vec<&'a Select>) {
    match body {
        SetExpr::Select(select) => selects.push(select),
        SetExpr::SetOperation { left, right, .. } => {
            branches(left, selects);
            branches(right, selects);
        }
        _ => {}
    }
}

impl Candidates {
    fn in_select(&mut self, select: &Select) {
        let from = relations(select);
        if from.is_empty() {
            return;
        }
        let mut names = Vec::new();
        let mut arguments = |expr: &Expr| {
            let _ = datafusion::sql::sqlparser::ast::visit_expressions(expr, |e| {
                // Also inside a subquery, which may name an outer relation.
                if let Some(list) = argument_list(e) {
                    names.extend(
                        list.args
                            .iter()
                            .filter_map(bare_argument)
                            .filter(|ident| ident.quote_style.is_none())
                            .map(|ident| ident.value.to_lowercase()),
                    );
                }
                ControlFlow::<()>::Continue(())
            });
        };
        for item in &select.projection {
            if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item {
                arguments(expr);
            }
        }
        if let Some(having) = &select.having {
            arguments(having);
        }
        for name in names {
            if let Some(relation) = from
                .iter()
                .find(|relation| relation_name(relation).as_deref() == Some(name.as_str()))
            {
                self.found.push(Candidate {
                    select: self.selects,
                    name,
                    relation: relation.clone(),
                    siblings: from.iter().filter(|r| *r != relation).cloned().collect(),
                });
            }
        }
    }
}

/// Replaces each bare function argument of a `SELECT` named in the map by the row of those
/// columns, numbering the `SELECT`s as [`Candidates`] does.
struct Replace<'a> {
    rows: &'a HashMap<(usize, String), Vec<String>>,
    selects: usize,
}

impl VisitorMut for Replace<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let mut selects = Vec::new();
        branches_mut(query.body.as_mut(), &mut selects);
        for select in selects {
            let number = self.selects;
            self.selects += 1;
            let rows = self.rows;
            let replace = |expr: &mut Expr| {
                let _ = visit_expressions_mut(expr, |e| {
                    replace_arguments(e, |name| rows.get(&(number, name.to_string())));
                    ControlFlow::<()>::Continue(())
                });
            };
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item
                {
                    replace(expr);
                }
            }
            if let Some(having) = &mut select.having {
                replace(having);
            }
        }
        ControlFlow::Continue(())
    }
}

fn branches_mut<'a>(body: &'a mut SetExpr, selects: &mut Vec<&'a mut Select>) {
    match body {
        SetExpr::Select(select) => selects.push(select),
        SetExpr::SetOperation { left, right, .. } => {
            branches_mut(left, selects);
            branches_mut(right, selects);
        }
        _ => {}
    }
}

/// In a call, each bare unquoted argument `columns` knows becomes the row of those columns.
fn replace_arguments<'a>(expr: &mut Expr, columns: impl Fn(&str) -> Option<&'a Vec<String>>) {
    let Expr::Function(function) = expr else {
        return;
    };
    let FunctionArguments::List(list) = &mut function.args else {
        return;
    };
    for arg in &mut list.args {
        let (FunctionArg::Unnamed(FunctionArgExpr::Expr(value))
        | FunctionArg::Named {
            arg: FunctionArgExpr::Expr(value),
            ..
        }
        | FunctionArg::ExprNamed {
            arg: FunctionArgExpr::Expr(value),
            ..
        }) = arg
        else {
            continue;
        };
        let Expr::Identifier(ident) = value else {
            continue;
        };
        if ident.quote_style.is_some() {
            continue;
        }
        if let Some(columns) = columns(&ident.value.to_lowercase()) {
            *value = named_struct(ident, columns);
        }
    }
}

/// `named_struct('a', t.a, …)` for relation `t`'s columns.
fn named_struct(relation: &Ident, columns: &[String]) -> Expr {
    let args = columns
        .iter()
        .flat_map(|column| {
            [
                Expr::value(Value::SingleQuotedString(column.clone())),
                Expr::CompoundIdentifier(vec![relation.clone(), Ident::with_quote('"', column)]),
            ]
        })
        .collect();
    crate::sql::srf::call("named_struct", args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Statement {
        Statement::Query(crate::sql::srf::parse_query(text).expect("parses"))
    }

    #[tokio::test]
    async fn a_relation_as_a_value_becomes_its_row() {
        let context = SessionContext::new();
        let rewritten = rewrite(
            &parsed("SELECT row_to_json(t), json_agg(t) FROM (SELECT 1 AS a, 'x' AS \"B\") t"),
            &context,
        )
        .await
        .expect("rewritten");
        assert_eq!(
            rewritten.to_string(),
            "SELECT row_to_json(named_struct('a', t.\"a\", 'B', t.\"B\")), \
             json_agg(named_struct('a', t.\"a\", 'B', t.\"B\")) FROM (SELECT 1 AS a, 'x' AS \"B\") t"
        );
    }

    #[tokio::test]
    async fn each_union_branch_has_its_own_relations() {
        let context = SessionContext::new();
        let rewritten = rewrite(
            &parsed(
                "SELECT 'a', row_to_json(t) FROM (SELECT 1 AS x) t \
                 UNION ALL SELECT 'b', row_to_json(t) FROM (SELECT 2 AS y) t",
            ),
            &context,
        )
        .await
        .expect("rewritten");
        assert_eq!(
            rewritten.to_string(),
            "SELECT 'a', row_to_json(named_struct('x', t.\"x\")) FROM (SELECT 1 AS x) t \
             UNION ALL SELECT 'b', row_to_json(named_struct('y', t.\"y\")) FROM (SELECT 2 AS y) t"
        );
    }

    #[tokio::test]
    async fn a_column_of_that_name_wins() {
        let context = SessionContext::new();
        for text in [
            "SELECT upper(t) FROM (SELECT 'x' AS t) t",
            "SELECT upper(t) FROM (SELECT 1 AS a) t, (SELECT 'x' AS t) u",
            "SELECT upper(t) FROM (SELECT 1 AS a) u",
            "SELECT upper(\"t\") FROM (SELECT 1 AS a) t",
        ] {
            assert!(rewrite(&parsed(text), &context).await.is_none(), "{text}");
        }
    }
}
