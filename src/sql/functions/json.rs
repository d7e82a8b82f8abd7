//! JSON over JSON text, as PostgreSQL's `json`/`jsonb` operators read it: `->`, `->>`,
//! `#>`, `#>>`, `@>` and friends, planned by [`PgJsonPlanner`].

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::kernels::cast::cast;
use arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::logical_expr::{Expr, ExprSchemable};

use crate::sql::functions::{is_text, shaped};

/// Plans PostgreSQL's JSON operators on text columns.
#[derive(Debug)]
pub(crate) struct PgJsonPlanner;

impl PgJsonPlanner {
    /// `'{a,0,b}'` (a PostgreSQL text-array path) → `'a', 0, 'b'`; anything else unchanged.
    fn path_args(path: Expr) -> Vec<Expr> {
        let text = match &path {
            Expr::Literal(ScalarValue::Utf8(Some(t)) | ScalarValue::Utf8View(Some(t)), _) => t,
            _ => return vec![path],
        };
        let Some(inner) = text
            .trim()
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
        else {
            return vec![path];
        };
        inner
            .split(',')
            .map(|part| {
                let part = part.trim().trim_matches('"');
                match part.parse::<i64>() {
                    Ok(index) => datafusion::prelude::lit(index),
                    Err(_) => datafusion::prelude::lit(part.to_string()),
                }
            })
            .collect()
    }
}

pub(crate) fn is_text_type(t: &DataType) -> bool {
    is_text(t) || matches!(t, DataType::Dictionary(_, v) if is_text(v))
}

/// Whether `left op right` is a `jsonb` operation, as PostgreSQL's operator resolution would
/// pick it: `||` with a `jsonb` side (a `::jsonb` cast, a `jsonb_*` function's result) and on
/// the other another, or a literal that reads as JSON (PostgreSQL's untyped literal becomes
/// `jsonb`); `json || json`, `json || jsonb` and `jsonb || text` stay text concatenation, as
/// there. `-` with JSON text on the left (DataFusion has no `-` for text at all).
fn json_side(
    left: &Expr,
    right: &Expr,
    op: &datafusion::sql::sqlparser::ast::BinaryOperator,
    schema: &DFSchema,
) -> bool {
    use datafusion::sql::sqlparser::ast::BinaryOperator as Op;
    let json = |e: &Expr| {
        e.to_field(schema)
            .is_ok_and(|(_, field)| super::json_build::is_json_field(&field))
    };
    let json_literal = |e: &Expr| {
        matches!(e, Expr::Literal(ScalarValue::Utf8(Some(t)) | ScalarValue::Utf8View(Some(t)), _)
            if serde_json::from_str::<serde_json::Value>(t).is_ok())
    };
    // By its making and by its field: `jsonb_typeof` and `jsonb_extract_path_text` are
    // `jsonb_` functions that give plain text.
    let made_jsonb = |e: &Expr| is_jsonb(e) && json(e);
    let jsonb = |e: &Expr| made_jsonb(e) || json_literal(e);
    match op {
        Op::StringConcat => {
            (made_jsonb(left) && jsonb(right)) || (made_jsonb(right) && jsonb(left))
        }
        _ => json(left),
    }
}

/// Whether `expr` is a `jsonb` value by its making: a `::jsonb` cast (`jsonb_in`) or a
/// `jsonb_*` / `to_jsonb` function's result.
fn is_jsonb(expr: &Expr) -> bool {
    let name = match expr {
        Expr::Alias(alias) => return is_jsonb(&alias.expr),
        Expr::ScalarFunction(call) => call.func.name(),
        Expr::AggregateFunction(call) => call.func.name(),
        _ => return false,
    };
    name.starts_with("jsonb_") || name == "to_jsonb"
}

/// The operators whose result is the same over JSON text as over its `jsonb` form: those
/// giving text or a boolean. (`->` and `#>` give JSON, which must be in `jsonb`'s form after
/// a `::jsonb`; and a scalar `->>` of a repeated key differs, the first value here and the
/// last in `jsonb`.)
fn is_json_operator(op: &datafusion::sql::sqlparser::ast::BinaryOperator) -> bool {
    use datafusion::sql::sqlparser::ast::BinaryOperator as Op;
    matches!(
        op,
        Op::LongArrow
            | Op::HashLongArrow
            | Op::AtArrow
            | Op::Question
            | Op::QuestionPipe
            | Op::QuestionAnd
    )
}

impl ExprPlanner for PgJsonPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        use datafusion::sql::sqlparser::ast::BinaryOperator as Op;
        let RawBinaryExpr { op, left, right } = expr;
        // `j::jsonb ->> 'k'` and the other operators giving text or a boolean read the JSON
        // text as it is: its normalized form (`jsonb_in`, what `::jsonb` became) would only
        // cost a rewrite of every row's document.
        let left = match left {
            Expr::ScalarFunction(call)
                if matches!(call.func.name(), "json_in" | "jsonb_in")
                    && call.args.len() == 1
                    && is_json_operator(&op) =>
            {
                call.args
                    .into_iter()
                    .next()
                    .unwrap_or(Expr::Literal(ScalarValue::Null, None))
            }
            other => other,
        };
        // The SQL parser binds `=` (and the other comparisons) tighter than the JSON operators,
        // the reverse of PostgreSQL: `j ->> 'k' = 'v'` arrives as `j ->> ('k' = 'v')`. A JSON key
        // is never a boolean, so rotate it back into `(j ->> 'k') = 'v'`.
        if matches!(
            op,
            Op::Arrow | Op::LongArrow | Op::HashArrow | Op::HashLongArrow
        ) && let Expr::BinaryExpr(comparison) = &right
            && comparison.op.supports_propagation()
            && matches!(comparison.left.as_ref(), Expr::Literal(..))
        {
            let datafusion::logical_expr::BinaryExpr {
                left: key,
                op: compare,
                right: value,
            } = comparison.clone();
            let access = self.plan_binary_op(
                RawBinaryExpr {
                    op,
                    left,
                    right: *key,
                },
                schema,
            )?;
            let PlannerResult::Planned(access) = access else {
                return plan_err!("cannot plan the JSON operator");
            };
            return Ok(PlannerResult::Planned(Expr::BinaryExpr(
                datafusion::logical_expr::BinaryExpr::new(Box::new(access), compare, value),
            )));
        }
        let call = |udf: Arc<ScalarUDF>, args: Vec<Expr>| {
            Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
                udf, args,
            ))
        };
        // A chain `j -> 'a' -> 'b'` arrives with the inner access aliased: name the outer one
        // after the inner's name, not its display, which holds the name again (the text
        // doubled with each link: a chain of 60 `->` and `>` took a GiB and never planned).
        let access = matches!(
            op,
            Op::Arrow | Op::HashArrow | Op::LongArrow | Op::HashLongArrow
        );
        // Names from `schema_name`, which shows an alias by its name alone.
        let (left, name) = match left {
            Expr::Alias(alias) if access => {
                let name = format!("{} {op} {}", alias.name, right.schema_name());
                (*alias.expr, name)
            }
            other if access => {
                let name = format!("{} {op} {}", other.schema_name(), right.schema_name());
                (other, name)
            }
            other => (other, String::new()),
        };
        let planned = match &op {
            Op::Arrow | Op::HashArrow => {
                let mut args = vec![left];
                args.extend(if op == Op::HashArrow {
                    Self::path_args(right)
                } else {
                    vec![right]
                });
                call(datafusion_functions_json::udfs::json_get_json_udf(), args).alias(name)
            }
            Op::LongArrow | Op::HashLongArrow => {
                let mut args = vec![left];
                args.extend(if op == Op::HashLongArrow {
                    Self::path_args(right)
                } else {
                    vec![right]
                });
                call(datafusion_functions_json::udfs::json_as_text_udf(), args).alias(name)
            }
            Op::AtArrow | Op::ArrowAt
                if is_text_type(&left.get_type(schema)?)
                    && is_text_type(&right.get_type(schema)?) =>
            {
                let (outer, inner) = if op == Op::AtArrow {
                    (left, right)
                } else {
                    (right, left)
                };
                call(
                    Arc::new(ScalarUDF::from(JsonbContains::new())),
                    vec![outer, inner],
                )
            }
            // `j ?| keys`, `j ?& keys`: whether any / all of the keys are in `j`.
            Op::QuestionPipe | Op::QuestionAnd => call(
                Arc::new(super::json_edit::key_test(op == Op::QuestionPipe)),
                vec![left, right],
            ),
            // `a || b` and `a - k` on `jsonb`: when a side is JSON-marked text (a `::jsonb`
            // cast, a JSON function's result); `||` of plain text stays concatenation.
            Op::StringConcat | Op::Minus if json_side(&left, &right, &op, schema) => {
                let (concat, delete) = super::json_edit::concat_and_delete();
                let udf = if op == Op::StringConcat {
                    concat
                } else {
                    delete
                };
                call(Arc::new(udf), vec![left, right])
            }
            // `a && b`, PostgreSQL's array overlap: whether the arrays share an element.
            Op::PGOverlap => call(
                datafusion::functions_nested::array_has::array_has_any_udf(),
                vec![left, right],
            ),
            _ => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        Ok(PlannerResult::Planned(planned))
    }
}

/// `jsonb_contains(a, b)`, the `@>` operator: whether JSON `a` contains JSON `b` (PostgreSQL's
/// jsonb containment: objects by key recursively, arrays as sets, scalars by equality).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonbContains {
    signature: Signature,
}

impl Default for JsonbContains {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonbContains {
    pub fn new() -> Self {
        JsonbContains {
            signature: Signature::coercible(
                vec![
                    datafusion::logical_expr::Coercion::new_exact(
                        datafusion::logical_expr::TypeSignatureClass::Native(
                            datafusion::common::types::logical_string(),
                        ),
                    ),
                    datafusion::logical_expr::Coercion::new_exact(
                        datafusion::logical_expr::TypeSignatureClass::Native(
                            datafusion::common::types::logical_string(),
                        ),
                    ),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

/// PostgreSQL's jsonb containment.
pub(crate) fn json_contains(outer: &serde_json::Value, inner: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (outer, inner) {
        (Value::Object(o), Value::Object(i)) => i
            .iter()
            .all(|(k, v)| o.get(k).is_some_and(|ov| json_contains(ov, v))),
        (Value::Array(o), Value::Array(i)) => {
            i.iter().all(|v| o.iter().any(|ov| json_contains(ov, v)))
        }
        // An array contains a primitive it has as an element.
        (Value::Array(o), v) if !v.is_object() && !v.is_array() => o.iter().any(|ov| ov == v),
        (o, i) => o == i,
    }
}

impl ScalarUDFImpl for JsonbContains {
    fn name(&self) -> &str {
        "jsonb_contains"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?
            .iter()
            .map(|a| Ok(cast(a, &DataType::Utf8)?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let (outer, inner) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        // A constant right side (the usual `col @> '{"k": 1}'`) is parsed once.
        let constant = match &args.args[1] {
            ColumnarValue::Scalar(_) if !inner.is_null(0) => {
                serde_json::from_str(inner.value(0)).ok()
            }
            _ => None,
        };
        let result: arrow::array::BooleanArray = (0..rows)
            .map(|i| {
                if outer.is_null(i) || inner.is_null(i) {
                    return None;
                }
                let o: serde_json::Value = serde_json::from_str(outer.value(i)).ok()?;
                match &constant {
                    Some(c) => Some(json_contains(&o, c)),
                    None => {
                        let v: serde_json::Value = serde_json::from_str(inner.value(i)).ok()?;
                        Some(json_contains(&o, &v))
                    }
                }
            })
            .collect();
        shaped(&args.args, Arc::new(result))
    }
}

/// `json_array_length` / `jsonb_array_length(json)` (the element count, `int4`; 22023 for an
/// object or a scalar, as PostgreSQL) and `json_typeof` / `jsonb_typeof(json)` (`object`,
/// `array`, `string`, `number`, `boolean` or `null`), over JSON text; NULL for NULL.
pub(crate) fn inspection() -> Vec<ScalarUDF> {
    let udf = |name: &str, returns: DataType, f: fn(&serde_json::Value) -> Result<ScalarValue>| {
        datafusion::logical_expr::create_udf(
            name,
            vec![DataType::Utf8],
            returns.clone(),
            Volatility::Immutable,
            Arc::new(move |args: &[ColumnarValue]| per_value(args, &returns, f)),
        )
    };
    vec![
        udf("json_array_length", DataType::Int32, array_length),
        udf("jsonb_array_length", DataType::Int32, array_length),
        udf("json_typeof", DataType::Utf8, type_of),
        udf("jsonb_typeof", DataType::Utf8, type_of),
    ]
}

fn array_length(value: &serde_json::Value) -> Result<ScalarValue> {
    match value {
        serde_json::Value::Array(items) => Ok(ScalarValue::Int32(Some(
            i32::try_from(items.len()).unwrap_or(i32::MAX),
        ))),
        serde_json::Value::Object(_) => exec_err!("cannot get array length of a non-array"),
        _ => exec_err!("cannot get array length of a scalar"),
    }
}

fn type_of(value: &serde_json::Value) -> Result<ScalarValue> {
    let name = match value {
        serde_json::Value::Object(_) => "object",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Null => "null",
    };
    Ok(ScalarValue::Utf8(Some(name.to_string())))
}

/// `f` of each non-null JSON text in the one argument, NULL where it is NULL; 22P02 for text
/// that is not JSON.
fn per_value(
    args: &[ColumnarValue],
    returns: &DataType,
    f: impl Fn(&serde_json::Value) -> Result<ScalarValue>,
) -> Result<ColumnarValue> {
    let [arg] = args else {
        return exec_err!("takes one argument");
    };
    let scalar = matches!(arg, ColumnarValue::Scalar(_));
    let texts = cast(&arg.to_array(1)?, &DataType::Utf8)?;
    let values = texts
        .as_string::<i32>()
        .iter()
        .map(|text| match text {
            None => Ok(None),
            Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(value) => f(&value).map(Some),
                Err(e) => exec_err!("invalid input syntax for type json: {e}"),
            },
        })
        .collect::<Result<Vec<_>>>()?;
    let null = ScalarValue::try_from(returns)?;
    let values: Vec<ScalarValue> = values
        .into_iter()
        .map(|v| v.unwrap_or_else(|| null.clone()))
        .collect();
    if scalar {
        return Ok(ColumnarValue::Scalar(
            values.into_iter().next().unwrap_or(null),
        ));
    }
    Ok(ColumnarValue::Array(ScalarValue::iter_to_array(values)?))
}
