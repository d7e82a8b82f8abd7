//! `oid` and `oid[]` in `Describe`, where the plan only has int4. Oids are Int32 in the
//! catalog (datafusion-pg-catalog marks an oid column with `pg.oid_alias` field metadata,
//! which arrow-pg reads for a column of its own, not for a list of them), so a parameter cast
//! to `oid[]` and an `array_agg` of an oid column were described as `int4[]`.
//!
//! That matters to asyncpg: it decodes `oid[]` and `text[]` without asking the server, and
//! any other array type by introspecting it with a query of its own that binds `$1::oid[]`
//! and returns `array_agg(atttypid)`. Described as `int4[]`, those needed the same
//! introspection again, without end (a RecursionError on the first array parameter or array
//! column of a session). Only the description changes: the values stay int4, whose text and
//! binary forms an oid's share (PostgreSQL's binary arrays name their element type, which
//! drivers read from the description instead).
//! Tests: `tests/e2e/external/asyncpg.rs`.

use arrow::datatypes::DataType;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::sql::sqlparser::ast::{
    self, ArrayElemTypeDef, DataType as SqlType, Value, visit_expressions,
};
use datafusion_postgres::arrow_pg::datatypes::into_pg_type;
use pgwire::api::Type;
use pgwire::api::results::FieldInfo;

use datafusion_postgres::arrow_pg::datatypes::PG_OID_ALIAS_KEY as OID_ALIAS_KEY;

/// `types` with each parameter the statement casts to `oid` or `oid[]` (`$1::oid[]`) described
/// as PostgreSQL describes it.
pub(crate) fn parameters(tree: &ast::Statement, types: &mut [Type]) {
    let is_oid = |t: &SqlType| {
        matches!(t, SqlType::Custom(name, args)
            if args.is_empty()
                && name.0.last().and_then(|p| p.as_ident())
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("oid")))
    };
    let _ = visit_expressions(tree, |e| {
        if let ast::Expr::Cast {
            expr, data_type, ..
        } = e
            && let ast::Expr::Value(v) = expr.as_ref()
            && let Value::Placeholder(id) = &v.value
            && let Some(slot) = id
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| types.get_mut(i))
        {
            match data_type {
                SqlType::Array(
                    ArrayElemTypeDef::SquareBracket(item, _) | ArrayElemTypeDef::AngleBracket(item),
                ) if is_oid(item) && *slot == Type::INT4_ARRAY => *slot = Type::OID_ARRAY,
                t if is_oid(t) && *slot == Type::INT4 => *slot = Type::OID,
                _ => {}
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `fields` as PostgreSQL describes them where the plan loses or keeps oids wrongly: an
/// `int4[]` built with `array_agg` of an oid column (directly, through a scalar subquery or a
/// `CASE`) is `oid[]`; a column cast from an oid to another type (`typelem::regtype::text`)
/// is that type, where DataFusion's logical cast keeps the oid's field metadata and arrow-pg
/// described the text as `oid` (asyncpg then read its text as a 4-byte binary oid).
pub(crate) fn results(plan: &LogicalPlan, fields: &mut [FieldInfo]) {
    let schema = plan.schema();
    let mut oid_arrays = None;
    for (i, field) in fields.iter_mut().enumerate() {
        let Some(data_type) = schema.fields().get(i).map(|f| f.data_type()) else {
            break;
        };
        let described = if *field.datatype() == Type::INT4_ARRAY {
            let oids = oid_arrays.get_or_insert_with(|| self::oid_arrays(plan, 0));
            oids.get(i)
                .copied()
                .unwrap_or(false)
                .then_some(Type::OID_ARRAY)
        } else if is_oid_alias(field.datatype()) && *data_type != DataType::Int32 {
            into_pg_type(data_type).ok()
        } else {
            None
        };
        if let Some(described) = described {
            *field = FieldInfo::new(
                field.name().to_string(),
                field.table_id(),
                field.column_id(),
                described,
                field.format(),
            )
            .with_format_options(field.format_options().clone());
        }
    }
}

/// `oid` and its aliases (`regtype`, `regclass`, …), which arrow-pg gives Int32 columns that
/// carry their metadata.
fn is_oid_alias(t: &Type) -> bool {
    [
        Type::OID,
        Type::REGPROC,
        Type::REGPROCEDURE,
        Type::REGOPER,
        Type::REGOPERATOR,
        Type::REGCLASS,
        Type::REGTYPE,
        Type::REGNAMESPACE,
        Type::REGROLE,
        Type::REGCONFIG,
        Type::REGDICTIONARY,
        Type::REGCOLLATION,
    ]
    .contains(t)
}

/// Plans nested deeper than this are not followed (their columns stay `int4[]`): the walk is
/// recursive, and a plan's depth follows the client's text.
const MAX_DEPTH: usize = 64;

/// For each output column of `plan`, whether it is an array of oids.
fn oid_arrays(plan: &LogicalPlan, depth: usize) -> Vec<bool> {
    let width = plan.schema().fields().len();
    if depth > MAX_DEPTH {
        return vec![false; width];
    }
    let of_input = |input: &LogicalPlan| oid_arrays(input, depth + 1);
    let flags = match plan {
        LogicalPlan::Projection(p) => {
            let input = of_input(&p.input);
            p.expr
                .iter()
                .map(|e| is_oids(e, &p.input, &input, depth))
                .collect()
        }
        LogicalPlan::Aggregate(a) => {
            let input = of_input(&a.input);
            let exprs = a.group_expr.iter().chain(&a.aggr_expr);
            exprs.map(|e| is_oids(e, &a.input, &input, depth)).collect()
        }
        LogicalPlan::Union(u) => u.inputs.iter().fold(vec![false; width], |acc, input| {
            acc.iter()
                .zip(of_input(input))
                .map(|(a, b)| *a || b)
                .collect()
        }),
        LogicalPlan::RecursiveQuery(r) => of_input(&r.static_term),
        LogicalPlan::Join(j) => [of_input(&j.left), of_input(&j.right)].concat(),
        // Nodes whose output columns are their input's, in order (a window appends its own).
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Distinct(_)
        | LogicalPlan::Window(_)
        | LogicalPlan::Repartition(_) => match plan.inputs().as_slice() {
            [input] => of_input(input),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let mut flags = flags;
    flags.resize(width, false);
    flags
}

/// Whether `expr` (over `input`, whose columns' flags are `flags`) is an array of oids: one
/// of those columns, `array_agg` of an oid column, a scalar subquery giving one, or a `CASE`
/// with one in a branch.
fn is_oids(expr: &Expr, input: &LogicalPlan, flags: &[bool], depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match expr {
        Expr::Alias(alias) => is_oids(&alias.expr, input, flags, depth + 1),
        Expr::Column(c) => input
            .schema()
            .index_of_column(c)
            .ok()
            .and_then(|i| flags.get(i).copied())
            .unwrap_or(false),
        Expr::AggregateFunction(f) => {
            f.func.name() == "array_agg"
                && f.params.args.len() == 1
                && f.params.args[0]
                    .to_field(input.schema())
                    .is_ok_and(|(_, field)| field.metadata().contains_key(OID_ALIAS_KEY))
        }
        Expr::ScalarSubquery(s) => oid_arrays(&s.subquery, depth + 1).first() == Some(&true),
        Expr::Case(case) => case
            .when_then_expr
            .iter()
            .map(|(_, then)| then.as_ref())
            .chain(case.else_expr.as_deref())
            .any(|e| is_oids(e, input, flags, depth + 1)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn parameters_cast_to_oid_are_described_as_oids() {
        let tree = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT 1 WHERE 2 = ANY($1::oid[]) AND $2::oid = 3 AND $3::int4[] IS NULL AND $4::OID > 0",
        )
        .expect("parses")
        .remove(0);
        let mut types = vec![Type::INT4_ARRAY, Type::INT4, Type::INT4_ARRAY, Type::INT4];
        parameters(&tree, &mut types);
        assert_eq!(
            types,
            vec![Type::OID_ARRAY, Type::OID, Type::INT4_ARRAY, Type::OID]
        );
        // A parameter past the described ones is left alone.
        let mut short = vec![Type::INT4_ARRAY];
        parameters(&tree, &mut short);
        assert_eq!(short, vec![Type::OID_ARRAY]);
    }
}
