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
    VisitMut, Visitor, VisitorMut,
};

/// Whether `statement` passes a bare name of one of its relations to a function: the cheap
/// test before a statement that failed to plan is tried again with whole rows.
pub fn may_refer(statement: &Statement) -> bool {
    let mut found = Candidates::default();
    let _ = Visit::visit(statement, &mut found);
    !found.0.is_empty()
}

/// `statement` with each whole-row reference replaced by a `named_struct` of the relation's
/// columns; `None` when it has none that `context` can resolve.
pub async fn rewrite(statement: &Statement, context: &SessionContext) -> Option<Statement> {
    let mut found = Candidates::default();
    let _ = Visit::visit(statement, &mut found);
    let mut rows: HashMap<String, Vec<String>> = HashMap::new();
    for (name, relation, siblings) in found.0 {
        let Some(columns) = columns_of(&relation, context).await else {
            continue;
        };
        // A column of that name in any relation of the same FROM is what the name means.
        let mut shadowed = columns.iter().any(|c| c.eq_ignore_ascii_case(&name));
        for sibling in &siblings {
            if let Some(others) = columns_of(sibling, context).await {
                shadowed |= others.iter().any(|c| c.eq_ignore_ascii_case(&name));
            }
        }
        if shadowed {
            continue;
        }
        // The same name for two different relations: which one a reference means depends
        // on scopes this rewrite does not follow.
        if rows.get(&name).is_some_and(|known| *known != columns) {
            return None;
        }
        rows.insert(name, columns);
    }
    if rows.is_empty() {
        return None;
    }
    let mut rewritten = statement.clone();
    let _ = VisitMut::visit(&mut rewritten, &mut Replace(&rows));
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

/// Each bare function argument that names a relation of the enclosing `SELECT`'s `FROM`: the
/// name, that relation, and the `FROM`'s other relations.
#[derive(Default)]
struct Candidates(Vec<(String, TableFactor, Vec<TableFactor>)>);

impl Visitor for Candidates {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_ref() else {
            return ControlFlow::Continue(());
        };
        let from = relations(select);
        if from.is_empty() {
            return ControlFlow::Continue(());
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
                let siblings = from.iter().filter(|r| *r != relation).cloned().collect();
                self.0.push((name, relation.clone(), siblings));
            }
        }
        ControlFlow::Continue(())
    }
}

/// Replaces each bare function argument named in the map by the row of those columns.
struct Replace<'a>(&'a HashMap<String, Vec<String>>);

impl VisitorMut for Replace<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        let FunctionArguments::List(list) = &mut function.args else {
            return ControlFlow::Continue(());
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
            let Some(columns) = self.0.get(&ident.value.to_lowercase()) else {
                continue;
            };
            *value = named_struct(ident, columns);
        }
        ControlFlow::Continue(())
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
