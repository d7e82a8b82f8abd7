//! The names PostgreSQL prints for oids cast to `regtype`, `regclass`, `regnamespace`,
//! `regrole` and `regproc`. The catalog keeps oids as int4 (datafusion-pg-catalog plans the
//! casts as int4 identities), so `a.atttypid::regtype` printed `23` and
//! `c.oid::regclass::text` `'1259'`, where PostgreSQL prints `integer` and `pg_class`. Two
//! places print: a select item that is such a cast, and a cast of one to text; both become
//! the name ([`name_of`]): `format_type(oid, NULL)` for a type (what `regtype`'s output
//! function prints), the relation's name (qualified by its schema unless that is
//! `pg_catalog` or the current schema, the search path here) for a class, the schema's,
//! role's or function's name for the others: the oid's digits where nothing has it, as in
//! PostgreSQL. Comparisons (`WHERE atttypid = 'int4'::regtype`) keep the oids.
//!
//! Only a column or a number is taken as the operand: the name reads it several times.
//! [`crate::sql::srf`]'s rewrite applies it, before its own lookup of a relation by name,
//! which now also reads digits as the oid (`WHERE attrelid = c.oid::regclass`).
//! Tests: unit tests here, `tests/slt/activity.slt`.

use datafusion::sql::sqlparser::ast::{DataType, Expr, ObjectNamePart, Value};

use crate::sql::pg_forms::parse_expr;

/// The oid alias type `data_type` is (`regclass`, `pg_catalog.regtype` …), by its lower-case
/// name.
pub(crate) fn reg_kind(data_type: &DataType) -> Option<&'static str> {
    let name = match data_type {
        DataType::Regclass => return Some("regclass"),
        DataType::Custom(name, args) if args.is_empty() => match name.0.as_slice() {
            [ObjectNamePart::Identifier(i)] => i,
            [ObjectNamePart::Identifier(s), ObjectNamePart::Identifier(i)]
                if s.value.eq_ignore_ascii_case("pg_catalog") =>
            {
                i
            }
            _ => return None,
        },
        _ => return None,
    };
    ["regtype", "regclass", "regnamespace", "regrole", "regproc"]
        .into_iter()
        .find(|kind| name.value.eq_ignore_ascii_case(kind))
}

/// `operand` and its kind, when `expr` casts anything to an oid alias type.
pub(crate) fn any_reg_cast(expr: &Expr) -> Option<(&Expr, &'static str)> {
    let Expr::Cast {
        expr: operand,
        data_type,
        ..
    } = expr
    else {
        return None;
    };
    Some((operand.as_ref(), reg_kind(data_type)?))
}

/// `operand` and its kind, when `expr` casts a column or a number to an oid alias type.
pub(crate) fn reg_cast(expr: &Expr) -> Option<(&Expr, &'static str)> {
    let (operand, kind) = any_reg_cast(expr)?;
    let plain = match operand {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => true,
        Expr::Value(v) => matches!(v.value, Value::Number(..)),
        _ => false,
    };
    plain.then_some((operand, kind))
}

/// `operand` cast to an oid alias type, cast again to text (`c.oid::regclass::text`).
pub(crate) fn reg_text(expr: &Expr) -> Option<(&Expr, &'static str)> {
    let Expr::Cast {
        expr: inner,
        data_type,
        ..
    } = expr
    else {
        return None;
    };
    let text = match data_type {
        DataType::Text | DataType::Varchar(None) | DataType::String(None) => true,
        DataType::Custom(name, args) if args.is_empty() => {
            matches!(name.0.last(), Some(ObjectNamePart::Identifier(i)) if i.value.eq_ignore_ascii_case("text"))
        }
        _ => false,
    };
    if text { reg_cast(inner) } else { None }
}

/// The text PostgreSQL prints for `operand` as a `kind`.
pub(crate) fn name_of(operand: &Expr, kind: &str) -> Option<Expr> {
    // Correlated scalar subqueries are aggregated: DataFusion decorrelates those into a join.
    let (name, from, key) = match kind {
        "regtype" => return parse_expr(&format!("format_type({operand}, NULL)")),
        // Aliases no query of a client's uses, so `c.oid` of the outer query stays its own.
        "regclass" => (
            "CASE WHEN reg_n.nspname IN ('pg_catalog', current_schema()) THEN reg_c.relname \
             ELSE reg_n.nspname || '.' || reg_c.relname END",
            "pg_catalog.pg_class reg_c JOIN pg_catalog.pg_namespace reg_n \
             ON reg_c.relnamespace = reg_n.oid",
            "reg_c.oid",
        ),
        "regnamespace" => (
            "reg_n.nspname",
            "pg_catalog.pg_namespace reg_n",
            "reg_n.oid",
        ),
        "regrole" => ("reg_r.rolname", "pg_catalog.pg_roles reg_r", "reg_r.oid"),
        "regproc" => ("reg_p.proname", "pg_catalog.pg_proc reg_p", "reg_p.oid"),
        _ => return None,
    };
    // The operand may also be a name (`table_name::regclass`): it then matches no oid and
    // prints as it is.
    parse_expr(&format!(
        "coalesce((SELECT max({name}) FROM {from} \
         WHERE {key} = TRY_CAST(CAST({operand} AS TEXT) AS INT)), CAST({operand} AS TEXT))"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(sql: &str) -> Expr {
        parse_expr(sql).expect("parses")
    }

    #[test]
    fn casts_to_oid_aliases_are_found_with_their_operand() {
        let cast = expr("a.atttypid::regtype");
        assert_eq!(
            reg_cast(&cast).map(|(o, k)| (o.to_string(), k)),
            Some(("a.atttypid".into(), "regtype"))
        );
        let qualified = expr("c.oid::pg_catalog.regclass::text");
        assert_eq!(
            reg_text(&qualified).map(|(o, k)| (o.to_string(), k)),
            Some(("c.oid".into(), "regclass"))
        );
        // A computed operand, another type, or not text: left alone.
        assert!(reg_cast(&expr("(a + 1)::regtype")).is_none());
        assert!(reg_cast(&expr("a::int4")).is_none());
        assert!(reg_text(&expr("a::regtype::int4")).is_none());
    }

    #[test]
    fn names_read_the_catalog() {
        assert_eq!(
            name_of(&expr("a.atttypid"), "regtype").map(|e| e.to_string()),
            Some("format_type(a.atttypid, NULL)".into())
        );
        let role = name_of(&expr("10"), "regrole").expect("a name").to_string();
        assert_eq!(
            role,
            "coalesce((SELECT max(reg_r.rolname) FROM pg_catalog.pg_roles reg_r WHERE reg_r.oid = TRY_CAST(CAST(10 AS TEXT) AS INT)), CAST(10 AS TEXT))"
        );
        assert!(name_of(&expr("1"), "regoper").is_none());
    }
}
