//! PostgreSQL's set-returning functions, which DataFusion cannot plan where PostgreSQL allows
//! them: `jsonb_array_elements(json)` and `json_array_elements`, their `_text` forms,
//! `jsonb_object_keys` / `json_object_keys`, `json_each` / `jsonb_each` and their `_text`
//! forms (columns `key`, `value`), `regexp_matches`, `regexp_split_to_table`,
//! `string_to_table`, and `generate_subscripts(array, dim)` (which SQLAlchemy's and so
//! Superset's index and primary-key reflection send). In `FROM`, any of them and `unnest`
//! take `WITH ORDINALITY` (a last column `ordinality`, counting from 1). `generate_series`
//! as a select item (PostgreSQL's set, DataFusion's list) is `unnest`ed; in `FROM` it is
//! DataFusion's table function.
//!
//! Each call is rewritten in the syntax tree to `unnest` of a scalar function that returns the
//! whole set as a list, which DataFusion plans in a select list like PostgreSQL 10+ plans an
//! SRF there (several in one select list run in lockstep). In `FROM`, the call becomes a derived
//! table with PostgreSQL's column name (`value`, or the function's name); arguments over the
//! columns of the relation before it are [`crate::sql::lateral`]'s (DataFusion has no lateral
//! table functions). Only queries are rewritten
//! (not `INSERT … SELECT`). The list functions are also
//! callable on their own: `json_array_elements_list`, `json_array_elements_text_list` and
//! `json_object_keys_list`.
//!
//! The same hook resolves `CAST(expr AS regclass)` of a non-literal `expr` (Metabase's field
//! sync casts `format('%I.%I', schema, table)`) and `to_regclass(expr)` to the relation's oid
//! through a correlated lookup in `pg_class`, NULL for a name that is no relation (PostgreSQL
//! raises an error for the cast; `to_regclass` gives NULL). An unqualified constant name is
//! looked up in `pg_catalog`, then `current_schema()`, as PostgreSQL's search path does; a name
//! computed per row only in `current_schema()` (so the lookup stays a join DataFusion
//! decorrelates). Literal operands of the cast stay datafusion-pg-catalog's.
//!
//! Elements come back as JSON text in PostgreSQL's `jsonb` output form (`{"a": 1, "b": [1, 2]}`,
//! keys shorter-first as `jsonb` stores them), because TimeFusion keeps JSON as text.

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::error::{SqlError, SqlState};
use arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field};
use datafusion::common::exec_err;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    self, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    ObjectNamePart, Query, SelectItem, SetExpr, Statement, TableAlias, TableFactor, Visit,
    VisitMut, Visitor, VisitorMut, visit_expressions,
};
use serde_json::Value;

use crate::sql::reg_names;

/// The fields of an `aclexplode` row, PostgreSQL's.
const ACL_FIELDS: [&str; 4] = ["grantor", "grantee", "privilege_type", "is_grantable"];

/// Registers the list functions the rewrite calls.
pub fn register(context: &SessionContext) {
    context.register_udf(acl_explode_list());
    for kind in [
        Kind::Elements,
        Kind::ElementsText,
        Kind::ObjectKeys,
        Kind::Each,
        Kind::EachText,
    ] {
        context.register_udf(ScalarUDF::from(JsonList::new(kind)));
    }
}

/// `aclexplode_list(acl)`: the entries of an ACL as (grantor, grantee, privilege_type,
/// is_grantable) records. TimeFusion grants no privileges (every `datacl`, `nspacl`, `relacl`
/// and `attacl` is NULL, meaning the owner's defaults), so a NULL or empty ACL gives no rows, as
/// in PostgreSQL; an ACL with entries cannot come from this server's catalog and is refused.
fn acl_explode_list() -> ScalarUDF {
    let fields = arrow::datatypes::Fields::from(vec![
        Field::new(ACL_FIELDS[0], DataType::Int32, true),
        Field::new(ACL_FIELDS[1], DataType::Int32, true),
        Field::new(ACL_FIELDS[2], DataType::Utf8, true),
        Field::new(ACL_FIELDS[3], DataType::Boolean, true),
    ]);
    let item = Arc::new(Field::new_list_field(
        DataType::Struct(fields.clone()),
        true,
    ));
    ScalarUDF::from(
        datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
            "aclexplode_list",
            Signature::any(1, Volatility::Immutable),
            DataType::List(item.clone()),
            Arc::new(move |args: &[ColumnarValue]| {
                let acls = args[0].to_array(1)?;
                let rows = match &args[0] {
                    ColumnarValue::Scalar(_) => 1,
                    ColumnarValue::Array(a) => a.len(),
                };
                let granted = |row: usize| match acls.data_type() {
                    DataType::List(_) => acls.as_list::<i32>().value_length(row) > 0,
                    DataType::Utf8 => !matches!(acls.as_string::<i32>().value(row), "" | "{}"),
                    _ => true,
                };
                let null = |row: usize| acls.data_type() == &DataType::Null || acls.is_null(row);
                if (0..rows).any(|row| !null(row) && granted(row)) {
                    return Err(SqlError::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    "aclexplode: TimeFusion grants no privileges; an ACL with entries is not supported",
                )
                .into());
                }
                let list = arrow::array::ListArray::try_new(
                    item.clone(),
                    arrow::buffer::OffsetBuffer::new_zeroed(rows),
                    arrow::array::new_empty_array(&DataType::Struct(fields.clone())),
                    None,
                )?;
                crate::sql::functions::shaped(args, Arc::new(list))
            }),
        ),
    )
}

/// A set-returning function this module rewrites, by its PostgreSQL name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Srf {
    Json(Kind),
    GenerateSubscripts,
    /// `regexp_matches(text, pattern [, flags])`: a row of captured groups per match.
    RegexpMatches,
    /// `regexp_split_to_table(text, pattern [, flags])`.
    RegexpSplit,
    /// `string_to_table(text, delimiter [, null_string])`.
    StringSplit,
    /// `aclexplode(acl)`: the privileges an ACL grants (pgAdmin's privilege screens).
    AclExplode,
}

impl Srf {
    fn of(name: &ObjectName) -> Option<Srf> {
        // `pg_catalog.generate_subscripts` as well as the bare name.
        let last = match name.0.last()? {
            ObjectNamePart::Identifier(ident) => ident.value.to_lowercase(),
            _ => return None,
        };
        if name.0.len() > 2 || (name.0.len() == 2 && name.0[0].to_string() != "pg_catalog") {
            return None;
        }
        Srf::of_name(&last)
    }

    /// The function named `name` (lower case), if it is one of these.
    pub(crate) fn of_name(name: &str) -> Option<Srf> {
        Some(match name {
            "json_array_elements" | "jsonb_array_elements" => Srf::Json(Kind::Elements),
            "json_array_elements_text" | "jsonb_array_elements_text" => {
                Srf::Json(Kind::ElementsText)
            }
            "json_object_keys" | "jsonb_object_keys" => Srf::Json(Kind::ObjectKeys),
            "json_each" | "jsonb_each" => Srf::Json(Kind::Each),
            "json_each_text" | "jsonb_each_text" => Srf::Json(Kind::EachText),
            "generate_subscripts" => Srf::GenerateSubscripts,
            "regexp_matches" => Srf::RegexpMatches,
            "regexp_split_to_table" => Srf::RegexpSplit,
            "string_to_table" => Srf::StringSplit,
            "aclexplode" => Srf::AclExplode,
            _ => return None,
        })
    }

    /// PostgreSQL's names of the columns a call in `FROM` produces.
    pub(crate) fn columns(self, function: &str) -> Vec<String> {
        match self {
            Srf::Json(Kind::Elements | Kind::ElementsText) => vec!["value".into()],
            _ => match self.fields() {
                Some(fields) => fields.iter().map(|f| f.to_string()).collect(),
                None => vec![function.to_lowercase()],
            },
        }
    }

    /// Whether `AS alias` alone names the only column, as in PostgreSQL for a function
    /// without an OUT parameter (`unnest(…) AS u`); `jsonb_array_elements`' column is its OUT
    /// parameter `value`, whatever the alias (`e.value`).
    pub(crate) fn named_by_alias(self) -> bool {
        !matches!(self, Srf::Json(Kind::Elements | Kind::ElementsText))
    }

    /// The fields of each element of a set of records (`json_each`'s `key`, `value`).
    pub(crate) fn fields(self) -> Option<&'static [&'static str]> {
        match self {
            Srf::Json(Kind::Each | Kind::EachText) => Some(&["key", "value"]),
            Srf::AclExplode => Some(&ACL_FIELDS),
            _ => None,
        }
    }

    /// The list expression whose `unnest` is this call, or an error for arguments PostgreSQL
    /// would not take either.
    pub(crate) fn list(self, args: Vec<Expr>) -> std::result::Result<Expr, String> {
        match (self, args.as_slice()) {
            (Srf::Json(kind), [_]) => Ok(call(kind.list_name(), args)),
            (Srf::GenerateSubscripts, [array, dim]) => Ok(call(
                "generate_series",
                vec![
                    Expr::value(ast::Value::Number("1".into(), false)),
                    call("array_length", vec![array.clone(), dim.clone()]),
                ],
            )),
            (Srf::GenerateSubscripts, _) => Err(
                "generate_subscripts takes (array, dimension); the reverse form is not supported"
                    .into(),
            ),
            (Srf::Json(kind), _) => Err(format!("{} takes one argument", kind.list_name())),
            (Srf::RegexpMatches, [_, _] | [_, _, _]) => Ok(call("regexp_matches_list", args)),
            (Srf::RegexpSplit, [_, _] | [_, _, _]) => Ok(call("regexp_split_to_array", args)),
            (Srf::StringSplit, [_, _] | [_, _, _]) => Ok(call("string_to_array", args)),
            (Srf::RegexpMatches | Srf::RegexpSplit | Srf::StringSplit, _) => {
                Err("takes (text, pattern [, flags])".into())
            }
            (Srf::AclExplode, [_]) => Ok(call("aclexplode_list", args)),
            (Srf::AclExplode, _) => Err("aclexplode takes one argument".into()),
        }
    }
}

pub(crate) fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// The plain positional arguments of a call, or `None` when it has anything else (named
/// arguments, `*`, `ORDER BY` …), which is left for DataFusion to reject.
pub(crate) fn plain_args(args: &FunctionArguments) -> Option<Vec<Expr>> {
    let FunctionArguments::List(list) = args else {
        return None;
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return None;
    }
    list.args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Rewrites the set-returning calls in a statement; counts what it rewrote.
#[derive(Default)]
struct Rewriter {
    rewritten: usize,
    /// Select-list items given a plan alias so far.
    aliases: usize,
}

impl Rewriter {
    /// `unnest(list)` for an SRF call, or a lookup for a `regclass` cast, in place.
    fn expression(&mut self, expr: &mut Expr) -> std::result::Result<(), String> {
        if let Some(lookup) = regclass_lookup(expr) {
            *expr = lookup;
            self.rewritten += 1;
            return Ok(());
        }
        let Expr::Function(function) = expr else {
            return Ok(());
        };
        let Some(srf) = Srf::of(&function.name) else {
            return Ok(());
        };
        if function.over.is_some() || function.filter.is_some() {
            return Ok(());
        }
        let Some(args) = plain_args(&function.args) else {
            return Ok(());
        };
        *expr = call("unnest", vec![srf.list(args)?]);
        self.rewritten += 1;
        Ok(())
    }

    /// A select-list item that is only an SRF call keeps PostgreSQL's column name: the
    /// function's.
    fn name_items(query: &mut Query, counter: &mut usize) {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return;
        };
        for item in &mut select.projection {
            // `c.oid::regclass` as a select item prints the name ([`reg_names`]); before the
            // regclass lookup below takes the cast for a name.
            if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item
                && let Some(name) =
                    reg_names::reg_cast(expr).and_then(|(o, k)| reg_names::name_of(o, k))
            {
                *expr = name;
                if let SelectItem::UnnamedExpr(expr) = item {
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias: Ident::new(format!("reg_name_{}", *counter)),
                    };
                }
                *counter += 1;
                continue;
            }
            // `generate_series(…)` as a select item is a set in PostgreSQL, a list in
            // DataFusion (whose table function serves it in `FROM`): its `unnest`.
            if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item
                && let Some(series) = series_item(expr)
            {
                let unnested = call("unnest", vec![series.clone()]);
                *series = unnested;
                if let SelectItem::UnnamedExpr(expr) = item {
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias: Ident::new("generate_series"),
                    };
                }
                *counter += 1;
                continue;
            }
            if let SelectItem::UnnamedExpr(Expr::Function(function)) = item
                && Srf::of(&function.name).is_some()
                && function.over.is_none()
            {
                let name = match function.name.0.last() {
                    Some(ObjectNamePart::Identifier(ident)) => ident.value.to_lowercase(),
                    _ => continue,
                };
                let expr = Expr::Function(function.clone());
                *item = SelectItem::ExprWithAlias {
                    expr,
                    alias: Ident::new(name),
                };
                continue;
            }
            // A `regclass` lookup becomes a scalar subquery, which DataFusion names
            // `(<subquery>)` whatever it holds: two in one select list would collide. The
            // plan's alias is not the client's column name (`colname` takes that from the
            // statement as written).
            if let SelectItem::UnnamedExpr(expr) = item {
                let lookup = visit_expressions(&*expr, |e| {
                    if regclass_operand(e).is_some() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                if lookup.is_break() {
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias: Ident::new(format!("regclass_{}", *counter)),
                    };
                    *counter += 1;
                }
            }
        }
    }

    /// A call in `FROM` as a derived table: `(SELECT unnest(list) AS value) AS alias`, with an
    /// `ordinality` column counting from 1 when asked `WITH ORDINALITY`.
    fn table(&mut self, table: &mut TableFactor) -> std::result::Result<(), String> {
        if let TableFactor::UNNEST {
            alias,
            array_exprs,
            with_ordinality: true,
            with_offset: false,
            ..
        } = table
        {
            let names = Self::names(alias.as_ref(), vec!["unnest".into(); array_exprs.len()]);
            let lists: Vec<Expr> = array_exprs.clone();
            let sql = derived_sql(&lists, &names, true, None);
            *table = derived(parse_query(&sql)?, alias.take(), "unnest");
            self.rewritten += 1;
            return Ok(());
        }
        let TableFactor::Table {
            name,
            alias,
            args: Some(args),
            with_ordinality,
            ..
        } = table
        else {
            return Ok(());
        };
        let Some(srf) = Srf::of(name) else {
            return Ok(());
        };
        let function = match name.0.last() {
            Some(ObjectNamePart::Identifier(ident)) => ident.value.clone(),
            _ => return Ok(()),
        };
        let args: Vec<Expr> = args
            .args
            .iter()
            .map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e.clone()),
                other => Err(format!("{function}: unsupported argument {other}")),
            })
            .collect::<std::result::Result<_, _>>()?;
        let aliased = alias
            .as_ref()
            .filter(|a| srf.named_by_alias() || !a.columns.is_empty());
        let names = Self::names(aliased, srf.columns(&function));
        let sql = derived_sql(&[srf.list(args)?], &names, *with_ordinality, srf.fields());
        *table = derived(parse_query(&sql)?, alias.take(), &function.to_lowercase());
        self.rewritten += 1;
        Ok(())
    }

    /// The columns of a set in `FROM`: `AS t(a, b)` names them in order (the rest keep
    /// PostgreSQL's names, `ordinality` last); `AS t` alone also names the only column of a
    /// one-column set, as in PostgreSQL.
    fn names(alias: Option<&TableAlias>, defaults: Vec<String>) -> Vec<Ident> {
        let mut names: Vec<Ident> = defaults.iter().map(Ident::new).collect();
        names.push(Ident::new("ordinality"));
        match alias {
            Some(TableAlias { columns, .. }) if !columns.is_empty() => {
                for (name, given) in names.iter_mut().zip(columns) {
                    *name = given.name.clone();
                }
            }
            Some(TableAlias { name, .. }) if defaults.len() == 1 => names[0] = name.clone(),
            _ => {}
        }
        names
    }
}

/// The select-list item counting the rows of `lists` unnested in lockstep from 1: `WITH
/// ORDINALITY`'s column.
pub(crate) fn ordinality_item(lists: &[Expr]) -> String {
    let lengths: Vec<String> = lists.iter().map(|l| format!("cardinality({l})")).collect();
    let count = match lengths.as_slice() {
        [one] => one.clone(),
        many => format!("greatest({})", many.join(", ")),
    };
    format!("unnest(generate_series(1, {count}))")
}

/// The derived table of a set in `FROM`: `unnest` of each list in lockstep, named `names`
/// (the last of them for the ordinality, when asked), or for a set of records (`fields`) the
/// fields of each element of its one list.
fn derived_sql(
    lists: &[Expr],
    names: &[Ident],
    ordinality: bool,
    fields: Option<&[&str]>,
) -> String {
    let mut items: Vec<String> = lists
        .iter()
        .map(|list| call("unnest", vec![list.clone()]).to_string())
        .collect();
    if ordinality {
        items.push(ordinality_item(lists));
    }
    let ordinal = names.last().filter(|_| ordinality);
    if let Some(fields) = fields {
        let mut outer: Vec<String> = fields
            .iter()
            .zip(names)
            .map(|(field, name)| format!("e['{field}'] AS {name}"))
            .collect();
        if let Some(name) = ordinal {
            outer.push(format!("o AS {name}"));
        }
        let inner: Vec<String> = items
            .iter()
            .zip(["e", "o"])
            .map(|(item, name)| format!("{item} AS {name}"))
            .collect();
        return format!(
            "SELECT {} FROM (SELECT {}) AS each_row",
            outer.join(", "),
            inner.join(", ")
        );
    }
    let columns = names[..lists.len()].iter().chain(ordinal);
    let named: Vec<String> = items
        .iter()
        .zip(columns)
        .map(|(item, name)| format!("{item} AS {name}"))
        .collect();
    format!("SELECT {}", named.join(", "))
}

/// `subquery` in place of a set in `FROM`, under the set's alias (without its column names,
/// which the subquery gave) or the function's name.
fn derived(subquery: Box<Query>, alias: Option<TableAlias>, function: &str) -> TableFactor {
    let alias = alias.map(|mut a| {
        a.columns.clear();
        a
    });
    TableFactor::Derived {
        lateral: false,
        subquery,
        alias: Some(alias.unwrap_or(TableAlias {
            explicit: true,
            at: None,
            name: Ident::new(function),
            columns: vec![],
        })),
        sample: None,
    }
}

/// Whether `expr` is a `generate_series(…)` call (not a window), PostgreSQL's set-returning
/// form when it is a select item.
fn is_series(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(function)
        if function.over.is_none()
            && matches!(function.name.0.as_slice(),
                [ObjectNamePart::Identifier(i)] | [_, ObjectNamePart::Identifier(i)]
                    if i.value.eq_ignore_ascii_case("generate_series")))
}

/// The `generate_series(…)` call a select item is, or casts.
fn series_item(expr: &mut Expr) -> Option<&mut Expr> {
    let inner = match expr {
        Expr::Cast { expr, .. } => expr.as_mut(),
        other => other,
    };
    is_series(inner).then_some(inner)
}

impl VisitorMut for Rewriter {
    type Break = String;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<String> {
        match crate::sql::lateral::rewrite(query) {
            Ok(true) => self.rewritten += 1,
            Ok(false) => {}
            Err(e) => return ControlFlow::Break(e),
        }
        let before = self.aliases;
        Self::name_items(query, &mut self.aliases);
        self.rewritten += self.aliases - before;
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, table: &mut TableFactor) -> ControlFlow<String> {
        match self.table(table) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }

    /// `c.oid::regclass::text` is the name ([`reg_names`]): seen before its inner cast, which
    /// the regclass lookup would take for a name.
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<String> {
        if let Some(name) = reg_names::reg_text(expr).and_then(|(o, k)| reg_names::name_of(o, k)) {
            *expr = name;
            self.rewritten += 1;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<String> {
        match self.expression(expr) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// `CAST(name AS regclass)` of an expression that is not a literal (Metabase casts
/// `format('%I.%I', schema, table)`): the oid of the relation it names, as a scalar subquery
/// over `pg_class` (NULL when there is none). datafusion-pg-catalog resolves literal operands
/// itself and plans any other operand as an integer cast, which fails on a name.
fn regclass_lookup(expr: &Expr) -> Option<Expr> {
    let operand = regclass_operand(expr)?;
    let parts = format!("parse_ident(CAST({operand} AS TEXT))");
    if matches!(operand, Expr::Value(_)) {
        // A constant name: PostgreSQL's search path, `pg_catalog` first, then the current
        // schema (a lookup that is not correlated can order and limit).
        let sql = format!(
            "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
             ON c.relnamespace = n.oid \
             WHERE (CASE WHEN array_length({parts}, 1) = 2 THEN n.nspname = {parts}[1] \
             ELSE n.nspname IN ('pg_catalog', current_schema()) END) \
             AND c.relname = (CASE WHEN array_length({parts}, 1) = 2 THEN {parts}[2] \
             WHEN array_length({parts}, 1) = 1 THEN {parts}[1] END) \
             ORDER BY n.nspname = 'pg_catalog' DESC LIMIT 1"
        );
        return parse_query(&sql).ok().map(Expr::Subquery);
    }
    // Equalities between the relation's columns and expressions of the outer row only, so
    // DataFusion decorrelates the subquery into a join.
    let sql = format!(
        "SELECT max(c.oid) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
         ON c.relnamespace = n.oid \
         WHERE n.nspname = (CASE WHEN array_length({parts}, 1) = 2 THEN {parts}[1] \
         ELSE current_schema() END) \
         AND c.relname = (CASE WHEN array_length({parts}, 1) = 2 THEN {parts}[2] \
         WHEN array_length({parts}, 1) = 1 THEN {parts}[1] END)"
    );
    let lookup = Expr::Subquery(parse_query(&sql).ok()?);
    if !matches!(expr, Expr::Cast { .. }) {
        return Some(lookup);
    }
    // A cast also reads digits as the oid itself, as PostgreSQL's `regclass` input does: an
    // oid column cast to `regclass` (`WHERE attrelid = c.oid::regclass`) keeps its value.
    let digits =
        crate::sql::pg_forms::parse_expr(&format!("TRY_CAST(CAST({operand} AS TEXT) AS INT)"))?;
    Some(call("coalesce", vec![lookup, digits]))
}

/// A query this module builds as text, parsed with PostgreSQL's dialect.
pub(crate) fn parse_query(sql: &str) -> std::result::Result<Box<Query>, String> {
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_query())
        .map_err(|e| e.to_string())
}

/// The operand of `CAST(operand AS regclass)` when it is not a literal, or of
/// `to_regclass(operand)` (NULL for a name that is no relation in PostgreSQL too).
fn regclass_operand(expr: &Expr) -> Option<&Expr> {
    if let Expr::Function(function) = expr
        && matches!(function.name.0.as_slice(),
            [ObjectNamePart::Identifier(i)] | [_, ObjectNamePart::Identifier(i)]
                if i.value.eq_ignore_ascii_case("to_regclass"))
        && function.over.is_none()
        && let FunctionArguments::List(list) = &function.args
        && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(operand))] = list.args.as_slice()
    {
        return Some(operand);
    }
    match reg_names::any_reg_cast(expr)? {
        (operand, "regclass") if !matches!(operand, Expr::Value(_)) => Some(operand),
        _ => None,
    }
}

/// Finds whether a statement has anything [`Rewriter`] rewrites, without copying it.
struct Finder;

impl Visitor for Finder {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        let found = match expr {
            Expr::Function(function) => {
                Srf::of(&function.name).is_some() || regclass_operand(expr).is_some()
            }
            cast => regclass_operand(cast).is_some() || reg_names::reg_cast(cast).is_some(),
        };
        if found {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_ref() else {
            return ControlFlow::Continue(());
        };
        let series = select.projection.iter().any(|item| match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => match expr {
                Expr::Cast { expr, .. } => is_series(expr),
                other => is_series(other),
            },
            _ => false,
        });
        if series {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn pre_visit_table_factor(&mut self, table: &TableFactor) -> ControlFlow<()> {
        match table {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } if Srf::of(name).is_some() => ControlFlow::Break(()),
            // A set over the columns of the relation before it ([`crate::sql::lateral`]).
            TableFactor::UNNEST { .. } | TableFactor::Function { .. } => ControlFlow::Break(()),
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } if matches!(name.0.last(), Some(ObjectNamePart::Identifier(i))
                if ["unnest", "generate_series"].iter().any(|f| i.value.eq_ignore_ascii_case(f))) =>
            {
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

/// `statement` with its set-returning calls rewritten, or `None` when it has none; planned
/// and run by the front ends. A call this cannot rewrite is a [`SqlError`] (42883).
pub fn rewrite(statement: &Statement) -> Option<Result<Statement, SqlError>> {
    // Queries only: never pay for a large INSERT's text.
    if !matches!(statement, Statement::Query(_)) {
        return None;
    }
    // Most queries call none of the functions: look before copying the tree.
    if Visit::visit(statement, &mut Finder).is_continue() {
        return None;
    }
    let mut rewritten = statement.clone();
    let mut rewriter = Rewriter::default();
    if let ControlFlow::Break(message) = VisitMut::visit(&mut rewritten, &mut rewriter) {
        return Some(Err(SqlError::new(SqlState::UNDEFINED_FUNCTION, message)));
    }
    (rewriter.rewritten > 0).then_some(Ok(rewritten))
}

/// Which set a JSON list function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// The elements of an array, as JSON text.
    Elements,
    /// The elements of an array as text: strings unquoted, `null` as NULL.
    ElementsText,
    /// The keys of an object.
    ObjectKeys,
    /// The members of an object: its keys, and its values as JSON text.
    Each,
    /// The same with values as text: strings unquoted, `null` as NULL.
    EachText,
}

impl Kind {
    fn list_name(self) -> &'static str {
        match self {
            Kind::Elements => "json_array_elements_list",
            Kind::ElementsText => "json_array_elements_text_list",
            Kind::ObjectKeys => "json_object_keys_list",
            Kind::Each => "json_each_list",
            Kind::EachText => "json_each_text_list",
        }
    }

    /// The type of one element of the list.
    fn element(self) -> DataType {
        match self {
            Kind::Each | Kind::EachText => DataType::Struct(member_fields()),
            _ => DataType::Utf8,
        }
    }
}

/// The fields of a `json_each` member: `key`, `value`.
fn member_fields() -> arrow::datatypes::Fields {
    arrow::datatypes::Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ])
}

/// A JSON value as text: strings unquoted, `null` as NULL, anything else in `jsonb`'s form.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(jsonb_text(other)),
    }
}

/// `json_array_elements_list(json)` and its siblings: the set of a JSON-text value as a list
/// of text; NULL for NULL input.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonList {
    kind: Kind,
    signature: Signature,
}

impl JsonList {
    fn new(kind: Kind) -> Self {
        JsonList {
            kind,
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JsonList {
    fn name(&self) -> &str {
        self.kind.list_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(
            self.kind.element(),
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [input] = args.args.as_slice() else {
            return exec_err!("{} takes one argument", self.name());
        };
        let rows = input.to_array(args.number_rows)?;
        let rows = arrow::compute::cast(&rows, &DataType::Utf8)?;
        let rows = rows.as_any().downcast_ref::<arrow::array::StringArray>();
        let Some(rows) = rows else {
            return exec_err!("{}: expected text", self.name());
        };
        if matches!(self.kind, Kind::Each | Kind::EachText) {
            return members(rows, self.kind).map(ColumnarValue::Array);
        }
        let mut out = ListBuilder::new(StringBuilder::new());
        for row in rows.iter() {
            let Some(text) = row else {
                out.append_null();
                continue;
            };
            let value: Value = serde_json::from_str(text).map_err(|e| {
                DataFusionError::Execution(format!("invalid input syntax for type json: {e}"))
            })?;
            match (self.kind, value) {
                (Kind::Elements, Value::Array(items)) => {
                    for item in &items {
                        out.values().append_value(jsonb_text(item));
                    }
                }
                (Kind::ElementsText, Value::Array(items)) => {
                    for item in &items {
                        out.values().append_option(as_text(item));
                    }
                }
                (Kind::ObjectKeys, Value::Object(map)) => {
                    for key in sorted_keys(&map) {
                        out.values().append_value(key);
                    }
                }
                (Kind::ObjectKeys, other) => {
                    return exec_err!("cannot call json_object_keys on {}", kind_of(&other));
                }
                (_, other) => {
                    return exec_err!("cannot extract elements from {}", kind_of(&other));
                }
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// `json_each_list` / `json_each_text_list` of each row: a list of (key, value) structs, keys
/// in `jsonb`'s order.
fn members(rows: &arrow::array::StringArray, kind: Kind) -> Result<ArrayRef> {
    let mut keys = StringBuilder::new();
    let mut values = StringBuilder::new();
    let mut offsets = vec![0i32];
    let mut valid = Vec::with_capacity(rows.len());
    for row in rows.iter() {
        valid.push(row.is_some());
        if let Some(text) = row {
            let value: Value = serde_json::from_str(text).map_err(|e| {
                DataFusionError::Execution(format!("invalid input syntax for type json: {e}"))
            })?;
            let Value::Object(map) = value else {
                return exec_err!("cannot deconstruct {}", kind_of(&value));
            };
            for key in sorted_keys(&map) {
                keys.append_value(key);
                match kind {
                    Kind::EachText => values.append_option(as_text(&map[key])),
                    _ => values.append_value(jsonb_text(&map[key])),
                }
            }
        }
        let count = i32::try_from(arrow::array::ArrayBuilder::len(&keys)).map_err(|_| {
            DataFusionError::Execution("json_each: more members than a list holds".into())
        })?;
        offsets.push(count);
    }
    let members = arrow::array::StructArray::try_new(
        member_fields(),
        vec![Arc::new(keys.finish()), Arc::new(values.finish())],
        None,
    )?;
    let list = arrow::array::ListArray::try_new(
        Arc::new(Field::new_list_field(kind.element(), true)),
        arrow::buffer::OffsetBuffer::new(offsets.into()),
        Arc::new(members),
        Some(arrow::buffer::NullBuffer::from(valid)),
    )?;
    Ok(Arc::new(list))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
        _ => "a scalar",
    }
}

/// Object keys in `jsonb`'s order: shorter keys first, then bytewise.
fn sorted_keys(map: &serde_json::Map<String, Value>) -> Vec<&String> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    keys
}

/// A JSON value as PostgreSQL prints `jsonb`: `", "` between items, `": "` after keys.
fn jsonb_text(value: &Value) -> String {
    let mut out = String::new();
    write_jsonb(value, &mut out);
    out
}

fn write_jsonb(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, key) in sorted_keys(map).into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_jsonb(&map[key], out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> Option<String> {
        let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
        let statement = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, sql)
            .expect("parse")
            .remove(0);
        rewrite(&statement).map(|r| r.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()))
    }

    #[test]
    fn select_list_calls_become_unnest_of_a_list_named_like_postgres() {
        assert_eq!(
            rewritten("SELECT jsonb_array_elements(attributes) FROM t").as_deref(),
            Some(
                "SELECT unnest(json_array_elements_list(attributes)) AS jsonb_array_elements FROM t"
            )
        );
        assert_eq!(
            rewritten("SELECT x, json_array_elements_text(a -> 'b') AS e FROM t").as_deref(),
            Some("SELECT x, unnest(json_array_elements_text_list(a -> 'b')) AS e FROM t")
        );
        assert_eq!(
            rewritten("SELECT generate_subscripts(k, 1::INTEGER) AS ord FROM pg_index").as_deref(),
            Some(
                "SELECT unnest(generate_series(1, array_length(k, 1::INTEGER))) AS ord FROM pg_index"
            )
        );
        assert_eq!(
            rewritten("SELECT * FROM jsonb_array_elements('[1, 2]') AS e").as_deref(),
            Some("SELECT * FROM (SELECT unnest(json_array_elements_list('[1, 2]')) AS value) AS e")
        );
        // A function without an OUT parameter: the alias names its column.
        assert_eq!(
            rewritten("SELECT * FROM jsonb_object_keys('{\"a\": 1}') AS k").as_deref(),
            Some("SELECT * FROM (SELECT unnest(json_object_keys_list('{\"a\": 1}')) AS k) AS k")
        );
        assert!(
            rewritten("SELECT CAST(format('%I.%I', s, t) AS REGCLASS) FROM c").is_some_and(
                |sql| sql.contains("pg_catalog.pg_class") && sql.contains("parse_ident")
            )
        );
        assert_eq!(rewritten("SELECT CAST('t' AS REGCLASS)"), None);
        assert_eq!(rewritten("SELECT array_elements FROM t"), None);
        assert_eq!(rewritten("SELECT 1"), None);
        assert!(
            rewritten("SELECT generate_subscripts(k, 1, true) FROM t")
                .is_some_and(|e| e.contains("reverse"))
        );
    }

    #[test]
    fn json_lists_follow_postgres() {
        let run = |kind: Kind, json: Option<&str>| -> Result<Option<Vec<Option<String>>>> {
            let input = ColumnarValue::Array(Arc::new(arrow::array::StringArray::from(vec![json])));
            let udf = JsonList::new(kind);
            let args = ScalarFunctionArgs {
                args: vec![input],
                arg_fields: vec![Arc::new(Field::new("j", DataType::Utf8, true))],
                number_rows: 1,
                return_field: Arc::new(Field::new("r", udf.return_type(&[])?, true)),
                config_options: Arc::new(Default::default()),
            };
            let out = udf.invoke_with_args(args)?.to_array(1)?;
            let list = out
                .as_any()
                .downcast_ref::<arrow::array::ListArray>()
                .cloned();
            Ok(list.and_then(|l| {
                (!l.is_null(0)).then(|| {
                    let values = l.value(0);
                    let strings = values
                        .as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .cloned();
                    strings
                        .map(|s| s.iter().map(|v| v.map(str::to_string)).collect())
                        .unwrap_or_default()
                })
            }))
        };
        let some =
            |items: &[Option<&str>]| Some(items.iter().map(|s| s.map(str::to_string)).collect());
        assert_eq!(
            run(
                Kind::Elements,
                Some(r#"[1,"a",{"bb":2,"a":[true,null]},null]"#)
            )
            .ok(),
            Some(some(&[
                Some("1"),
                Some("\"a\""),
                Some(r#"{"a": [true, null], "bb": 2}"#),
                Some("null")
            ]))
        );
        assert_eq!(
            run(Kind::ElementsText, Some(r#"["x",2,null]"#)).ok(),
            Some(some(&[Some("x"), Some("2"), None]))
        );
        assert_eq!(
            run(Kind::ObjectKeys, Some(r#"{"service":1,"a":2,"ab":3}"#)).ok(),
            Some(some(&[Some("a"), Some("ab"), Some("service")]))
        );
        assert_eq!(run(Kind::Elements, Some("[]")).ok(), Some(some(&[])));
        assert_eq!(run(Kind::Elements, None).ok(), Some(None));
        assert!(
            run(Kind::Elements, Some(r#"{"a":1}"#))
                .is_err_and(|e| e.to_string().contains("an object"))
        );
        assert!(
            run(Kind::Elements, Some("[1,"))
                .is_err_and(|e| e.to_string().contains("invalid input syntax"))
        );
        assert!(run(Kind::ObjectKeys, Some("[1]")).is_err());
    }
}
