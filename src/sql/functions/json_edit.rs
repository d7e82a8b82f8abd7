//! PostgreSQL's functions that take JSON apart or change it, over JSON text, with PostgreSQL
//! 15's answers (`tests/slt/json_build.slt`):
//!
//! - `jsonb_set(target, path, new_value [, create_if_missing])`: `new_value` at `path`
//!   (object keys and array positions, negative from the end), added when missing as the last
//!   key or past an array's end (or before its start);
//! - `json_strip_nulls` / `jsonb_strip_nulls`: object members whose value is `null` removed,
//!   at any depth (array elements stay);
//! - `jsonb_pretty`: indented four spaces a level, as PostgreSQL writes it;
//! - `jsonb_exists_any(j, keys)` / `jsonb_exists_all(j, keys)`, the `?|` and `?&` operators:
//!   whether any / all of the keys are top-level keys (or string elements of a top-level
//!   array);
//! - `json_object_of_pairs(pairs)` / `jsonb_object_of_pairs`, the end of the aggregates
//!   `json_object_agg(k, v)` / `jsonb_object_agg`, which [`crate::sql::pg_forms`] rewrites to
//!   `…_of_pairs(array_agg(json_object_pair(k, v)))` so `ORDER BY`, `FILTER` and grouping are
//!   `array_agg`'s.
//!
//! - `jsonb_concat(a, b)` and `jsonb_delete(j, key | keys | position)`, the `||` and `-`
//!   operators on `jsonb` values ([`super::json::PgJsonPlanner`] plans them when a side is
//!   JSON-marked text, as a `::jsonb` cast is);
//!
//! - `json_in(text)` / `jsonb_in(text)`, what `::json` / `::jsonb` casts in queries become
//!   ([`crate::sql::pg_forms`]): the text checked as PostgreSQL's input functions check it
//!   (22P02), and `jsonb` written in its normalized form (`{"a": 2, "b": 1}`: keys sorted, the
//!   last of a repeated key, `", "` / `": "`). A cast read by a JSON operator giving text or a
//!   boolean (`j::jsonb ->> 'k'`, `?`, `@>`) reads the text as it is
//!   ([`super::json::PgJsonPlanner`]).
//!
//! Results are JSON text marked as JSON, like the constructors' in [`super::json_build`].

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanBuilder, ListArray, StringBuilder};
use arrow::compute::kernels::cast::cast;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use super::json_build::{
    Bad, Convert, Flavor, Json, arrays, invalid, is_json_field, json_field, key_text, parse,
    write_json, write_json_object, write_jsonb, write_string,
};
use crate::error::{SqlError, SqlState};
use crate::sql::functions::shaped;

/// Which function a [`JsonEdit`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Edit {
    Set,
    StripNulls(Flavor),
    Pretty,
    ExistsAny,
    ExistsAll,
    ObjectOfPairs(Flavor),
    /// `json_object_pair(k, v)`: the pair `json_object_agg` collects, as a struct whose
    /// `value` field keeps the value's JSON marking through `array_agg`.
    Pair,
    /// `json_in(text)` / `jsonb_in(text)`, the `::json` / `::jsonb` casts: the text checked
    /// (22P02 when it is not JSON); `jsonb` in its normalized form.
    In(Flavor),
    /// `jsonb_concat(a, b)`, the `||` operator on `jsonb`.
    Concat,
    /// `jsonb_delete(j, key | keys | position)`, the `-` operator on `jsonb`.
    Delete,
}

/// The functions above.
pub(crate) fn functions() -> Vec<ScalarUDF> {
    [
        Edit::Set,
        Edit::StripNulls(Flavor::Json),
        Edit::StripNulls(Flavor::Jsonb),
        Edit::Pretty,
        Edit::ExistsAny,
        Edit::ExistsAll,
        Edit::ObjectOfPairs(Flavor::Json),
        Edit::ObjectOfPairs(Flavor::Jsonb),
        Edit::Pair,
        Edit::In(Flavor::Json),
        Edit::In(Flavor::Jsonb),
        Edit::Concat,
        Edit::Delete,
    ]
    .into_iter()
    .map(|edit| ScalarUDF::from(JsonEdit::new(edit)))
    .collect()
}

/// `jsonb_concat` and `jsonb_delete`, which `||` and `-` on `jsonb` plan to.
pub(crate) fn concat_and_delete() -> (ScalarUDF, ScalarUDF) {
    (
        ScalarUDF::from(JsonEdit::new(Edit::Concat)),
        ScalarUDF::from(JsonEdit::new(Edit::Delete)),
    )
}

/// `jsonb_exists_any` (`any`) or `jsonb_exists_all`, which the `?|` / `?&` operators plan to.
pub(crate) fn key_test(any: bool) -> ScalarUDF {
    ScalarUDF::from(JsonEdit::new(if any {
        Edit::ExistsAny
    } else {
        Edit::ExistsAll
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonEdit {
    edit: Edit,
    signature: Signature,
}

impl JsonEdit {
    fn new(edit: Edit) -> Self {
        let signature = match edit {
            Edit::Set => Signature::one_of(
                vec![TypeSignature::Any(3), TypeSignature::Any(4)],
                Volatility::Immutable,
            ),
            Edit::StripNulls(_) | Edit::Pretty | Edit::ObjectOfPairs(_) | Edit::In(_) => {
                Signature::any(1, Volatility::Immutable)
            }
            Edit::ExistsAny | Edit::ExistsAll | Edit::Pair | Edit::Concat | Edit::Delete => {
                Signature::any(2, Volatility::Immutable)
            }
        };
        JsonEdit { edit, signature }
    }
}

impl ScalarUDFImpl for JsonEdit {
    fn name(&self) -> &str {
        match self.edit {
            Edit::Set => "jsonb_set",
            Edit::StripNulls(Flavor::Json) => "json_strip_nulls",
            Edit::StripNulls(Flavor::Jsonb) => "jsonb_strip_nulls",
            Edit::Pretty => "jsonb_pretty",
            Edit::ExistsAny => "jsonb_exists_any",
            Edit::ExistsAll => "jsonb_exists_all",
            Edit::ObjectOfPairs(Flavor::Json) => "json_object_of_pairs",
            Edit::ObjectOfPairs(Flavor::Jsonb) => "jsonb_object_of_pairs",
            Edit::Pair => "json_object_pair",
            Edit::In(Flavor::Json) => "json_in",
            Edit::In(Flavor::Jsonb) => "jsonb_in",
            Edit::Concat => "jsonb_concat",
            Edit::Delete => "jsonb_delete",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(match self.edit {
            Edit::ExistsAny | Edit::ExistsAll => DataType::Boolean,
            Edit::Pair => DataType::Struct(pair_fields(
                &Field::new("key", args[0].clone(), true),
                &Field::new("value", args[1].clone(), true),
            )),
            _ => DataType::Utf8,
        })
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(match self.edit {
            Edit::Pair => {
                let fields = pair_fields(&args.arg_fields[0], &args.arg_fields[1]);
                Arc::new(Field::new(self.name(), DataType::Struct(fields), true))
            }
            Edit::ExistsAny | Edit::ExistsAll => {
                Arc::new(Field::new(self.name(), DataType::Boolean, true))
            }
            // `jsonb_pretty` is text in PostgreSQL, not JSON to embed.
            Edit::Pretty => Arc::new(Field::new(self.name(), DataType::Utf8, true)),
            _ => json_field(self.name()),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, rows) = arrays(&args)?;
        let result: ArrayRef = match self.edit {
            Edit::ExistsAny | Edit::ExistsAll => {
                let keys = text_lists(&arrays[1])?;
                let mut out = BooleanBuilder::with_capacity(rows);
                for row in 0..rows {
                    match (texts(&arrays[0], row)?, keys.is_null(row)) {
                        (Some(text), false) => {
                            let value = read(&text, Flavor::Jsonb)?;
                            let keys = keys.value(row);
                            let keys = keys.as_string::<i32>();
                            let mut has = keys.iter().flatten().map(|k| has_key(&value, k));
                            out.append_value(if self.edit == Edit::ExistsAny {
                                has.any(|h| h)
                            } else {
                                has.all(|h| h)
                            });
                        }
                        _ => out.append_null(),
                    }
                }
                Arc::new(out.finish())
            }
            Edit::ObjectOfPairs(flavor) => object_of_pairs(&arrays[0], flavor)?,
            Edit::Pair => {
                let DataType::Struct(fields) = args.return_field.data_type() else {
                    return Err(invalid("json_object_pair: expected a struct result"));
                };
                Arc::new(arrow::array::StructArray::try_new(
                    fields.clone(),
                    arrays[..2].to_vec(),
                    None,
                )?)
            }
            _ => {
                let paths = match self.edit {
                    Edit::Set => Some(text_lists(&arrays[1])?),
                    _ => None,
                };
                let mut out = StringBuilder::with_capacity(rows, rows * 32);
                for row in 0..rows {
                    match self.one(&arrays, paths.as_ref(), &args.arg_fields, row)? {
                        Some(text) => out.append_value(text),
                        None => out.append_null(),
                    }
                }
                Arc::new(out.finish())
            }
        };
        shaped(&args.args, result)
    }
}

impl JsonEdit {
    /// Row `row` of a function returning text; `None` for NULL (every function here is
    /// strict: a NULL argument gives NULL).
    fn one(
        &self,
        arrays: &[ArrayRef],
        paths: Option<&ListArray>,
        fields: &[FieldRef],
        row: usize,
    ) -> Result<Option<String>> {
        let Some(text) = texts(&arrays[0], row)? else {
            return Ok(None);
        };
        let mut out = String::new();
        match self.edit {
            Edit::StripNulls(flavor) => {
                let value = strip_nulls(read(&text, flavor)?);
                match flavor {
                    Flavor::Json => write_json(&mut out, &value, ","),
                    Flavor::Jsonb => write_jsonb(&mut out, &value),
                }
            }
            Edit::Pretty => write_pretty(&mut out, &read(&text, Flavor::Jsonb)?, 0),
            Edit::In(Flavor::Json) => {
                read(&text, Flavor::Json)?;
                out = text;
            }
            Edit::In(Flavor::Jsonb) => write_jsonb(&mut out, &read(&text, Flavor::Jsonb)?),
            Edit::Concat => {
                let Some(right) = texts(&arrays[1], row)? else {
                    return Ok(None);
                };
                let joined = concat(read(&text, Flavor::Jsonb)?, read(&right, Flavor::Jsonb)?);
                write_jsonb(&mut out, &joined);
            }
            Edit::Delete => {
                if is_null(&arrays[1], row) {
                    return Ok(None);
                }
                let target = read(&text, Flavor::Jsonb)?;
                let what = match arrays[1].data_type() {
                    t if t.is_integer() => Removal::Position(
                        cast(&arrays[1].slice(row, 1), &DataType::Int64)?
                            .as_primitive::<arrow::datatypes::Int64Type>()
                            .value(0),
                    ),
                    DataType::List(_) | DataType::LargeList(_) => {
                        let keys = text_lists(&arrays[1].slice(row, 1))?;
                        let keys = keys.value(0);
                        Removal::Keys(
                            keys.as_string::<i32>()
                                .iter()
                                .flatten()
                                .map(String::from)
                                .collect(),
                        )
                    }
                    _ => Removal::Keys(texts(&arrays[1], row)?.into_iter().collect()),
                };
                write_jsonb(&mut out, &delete(target, &what)?);
            }
            Edit::Set => {
                let Some(paths) = paths.filter(|p| !p.is_null(row)) else {
                    return Ok(None);
                };
                if is_null(&arrays[2], row) {
                    return Ok(None);
                }
                let new = match arrays[2].data_type() {
                    // Text given as the new value is JSON text, as PostgreSQL reads `'9'`.
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                        let new = texts(&arrays[2], row)?.unwrap_or_default();
                        read(&new, Flavor::Jsonb)?
                    }
                    _ => Convert {
                        flavor: Flavor::Jsonb,
                    }
                    .value(
                        arrays[2].as_ref(),
                        is_json_field(&fields[2]),
                        row,
                    )?,
                };
                let create = match arrays.get(3) {
                    Some(flag) if is_null(flag, row) => return Ok(None),
                    Some(flag) => cast(flag, &DataType::Boolean)?.as_boolean().value(row),
                    None => true,
                };
                let path = paths.value(row);
                let path: Vec<Option<&str>> = path.as_string::<i32>().iter().collect();
                let mut target = read(&text, Flavor::Jsonb)?;
                if !matches!(target, Json::Array(_) | Json::Object(_)) {
                    return Err(invalid("cannot set path in scalar"));
                }
                set(&mut target, &path, 0, new, create)?;
                write_jsonb(&mut out, &target);
            }
            Edit::ExistsAny | Edit::ExistsAll | Edit::ObjectOfPairs(_) | Edit::Pair => {}
        }
        Ok(Some(out))
    }
}

/// The fields of a `json_object_pair`: `key`, and `value` with the value's metadata (its
/// JSON marking).
fn pair_fields(key: &Field, value: &Field) -> arrow::datatypes::Fields {
    arrow::datatypes::Fields::from(vec![
        Field::new("key", key.data_type().clone(), true),
        Field::new("value", value.data_type().clone(), true)
            .with_metadata(value.metadata().clone()),
    ])
}

/// Whether row `row` of `array` is NULL, also in an array of type `Null` (a bare `NULL`
/// argument), which has no validity buffer.
fn is_null(array: &ArrayRef, row: usize) -> bool {
    array.data_type() == &DataType::Null || array.is_null(row)
}

/// Row `row` of a text-like array as text; `None` for NULL.
fn texts(array: &ArrayRef, row: usize) -> Result<Option<String>> {
    if is_null(array, row) {
        return Ok(None);
    }
    let one = cast(&array.slice(row, 1), &DataType::Utf8)?;
    Ok(Some(one.as_string::<i32>().value(0).to_string()))
}

/// JSON text read as `flavor` reads it; 22P02 for text that is not JSON.
fn read(text: &str, flavor: Flavor) -> Result<Json> {
    parse(text, flavor).map_err(|bad| match bad {
        Bad::NotJson => SqlError::new(
            SqlState::INVALID_TEXT_REPRESENTATION,
            "invalid input syntax for type json",
        )
        .into(),
        Bad::Error(e) => e,
    })
}

/// A `text[]` argument as lists of text: a list, or text in PostgreSQL's array form
/// (`'{a,-1}'`, which PostgreSQL reads as `text[]` for these functions).
fn text_lists(array: &ArrayRef) -> Result<ListArray> {
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(array, &DataType::Utf8)?;
            crate::engine::batch::parse_array_literals(text.as_string::<i32>().iter())
                .map_err(|m| SqlError::new(SqlState::INVALID_TEXT_REPRESENTATION, m).into())
        }
        DataType::Null => Ok(ListArray::new_null(
            Arc::new(Field::new_list_field(DataType::Utf8, true)),
            array.len(),
        )),
        _ => {
            let list = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
            Ok(cast(array, &list)?.as_list::<i32>().clone())
        }
    }
}

/// PostgreSQL's `jsonb || jsonb`: two objects merge (the right's value for a key in both),
/// anything else concatenates as arrays, a non-array side as one element.
fn concat(left: Json, right: Json) -> Json {
    match (left, right) {
        (Json::Object(mut members), Json::Object(more)) => {
            members.extend(more);
            Json::Object(members)
        }
        (left, right) => {
            let items = |value: Json| match value {
                Json::Array(items) => items,
                other => vec![other],
            };
            let mut all = items(left);
            all.extend(items(right));
            Json::Array(all)
        }
    }
}

/// What `jsonb - x` removes.
enum Removal {
    /// A key of an object, or string elements equal to it in an array (`- 'k'`, `- '{a,b}'`).
    Keys(Vec<String>),
    /// An array element, negative from the end (`- 1`).
    Position(i64),
}

/// PostgreSQL's `jsonb - x`.
fn delete(target: Json, what: &Removal) -> Result<Json> {
    match (target, what) {
        (Json::Object(members), Removal::Keys(keys)) => Ok(Json::Object(
            members
                .into_iter()
                .filter(|(k, _)| !keys.contains(k))
                .collect(),
        )),
        (Json::Array(items), Removal::Keys(keys)) => Ok(Json::Array(
            items
                .into_iter()
                .filter(|item| !matches!(item, Json::String(s) if keys.contains(s)))
                .collect(),
        )),
        (Json::Array(mut items), Removal::Position(at)) => {
            let len = items.len() as i64;
            let at = if *at < 0 { at + len } else { *at };
            if (0..len).contains(&at) {
                items.remove(at as usize);
            }
            Ok(Json::Array(items))
        }
        (Json::Object(_), Removal::Position(_)) => {
            Err(invalid("cannot delete from object using integer index"))
        }
        _ => Err(invalid("cannot delete from scalar")),
    }
}

/// Whether `key` is a top-level key of `value`, or a string element of a top-level array.
fn has_key(value: &Json, key: &str) -> bool {
    match value {
        Json::Object(members) => members.iter().any(|(k, _)| k == key),
        Json::Array(items) => items
            .iter()
            .any(|item| matches!(item, Json::String(s) if s == key)),
        Json::String(s) => s == key,
        _ => false,
    }
}

fn strip_nulls(value: Json) -> Json {
    match value {
        Json::Object(members) => Json::Object(
            members
                .into_iter()
                .filter(|(_, v)| *v != Json::Null)
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// `new` at `path[at..]` inside `target`, as PostgreSQL's `setPath` puts it.
fn set(target: &mut Json, path: &[Option<&str>], at: usize, new: Json, create: bool) -> Result<()> {
    let Some(step) = path.get(at) else {
        return Ok(());
    };
    let Some(step) = step else {
        return Err(invalid(format!(
            "path element at position {} is null",
            at + 1
        )));
    };
    let last = at + 1 == path.len();
    match target {
        Json::Object(members) => {
            // The last of a repeated key is the one `jsonb` keeps.
            match members.iter_mut().rev().find(|(k, _)| k == step) {
                Some((_, value)) if last => *value = new,
                Some((_, value)) => set(value, path, at + 1, new, create)?,
                None if last && create => members.push((step.to_string(), new)),
                None => {}
            }
        }
        Json::Array(items) => {
            let index: i64 = step.trim().parse().map_err(|_| {
                invalid(format!(
                    "path element at position {} is not an integer: \"{step}\"",
                    at + 1
                ))
            })?;
            let len = items.len() as i64;
            let position = if index < 0 { index + len } else { index };
            if (0..len).contains(&position) {
                let item = &mut items[position as usize];
                if last {
                    *item = new;
                } else {
                    set(item, path, at + 1, new, create)?;
                }
            } else if last && create {
                if position < 0 {
                    items.insert(0, new);
                } else {
                    items.push(new);
                }
            }
        }
        // A scalar on the way: nothing to set below it.
        _ => {}
    }
    Ok(())
}

/// `jsonb_pretty`'s form: each element and member on its own line, four spaces a level; an
/// empty array or object as its brackets on two lines.
fn write_pretty(out: &mut String, value: &Json, level: usize) {
    let indent = |out: &mut String, level: usize| out.extend(std::iter::repeat_n(' ', level * 4));
    match value {
        Json::Array(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(out, level + 1);
                write_pretty(out, item, level + 1);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            indent(out, level);
            out.push(']');
        }
        Json::Object(members) => {
            out.push_str("{\n");
            let members = super::json_build::jsonb_members(members);
            for (i, (key, item)) in members.iter().enumerate() {
                indent(out, level + 1);
                write_string(out, key);
                out.push_str(": ");
                write_pretty(out, item, level + 1);
                out.push_str(if i + 1 < members.len() { ",\n" } else { "\n" });
            }
            indent(out, level);
            out.push('}');
        }
        scalar => write_jsonb(out, scalar),
    }
}

/// `json_object_of_pairs(list of (key, value))`: each row's pairs as one object; NULL for a
/// NULL list (an aggregate over no rows).
fn object_of_pairs(lists: &ArrayRef, flavor: Flavor) -> Result<ArrayRef> {
    let Some(lists) = lists.as_list_opt::<i32>() else {
        return Err(invalid("json_object_agg: expected (key, value) pairs"));
    };
    let DataType::Struct(fields) = lists.value_type() else {
        return Err(invalid("json_object_agg: expected (key, value) pairs"));
    };
    let value_is_json = fields.get(1).is_some_and(|f| is_json_field(f));
    let convert = Convert { flavor };
    let mut out = StringBuilder::with_capacity(lists.len(), lists.len() * 32);
    for row in 0..lists.len() {
        if lists.is_null(row) {
            out.append_null();
            continue;
        }
        let pairs = lists.value(row);
        let pairs = pairs.as_struct();
        let [keys, values] = pairs.columns() else {
            return Err(invalid("json_object_agg: expected (key, value) pairs"));
        };
        let mut members = Vec::with_capacity(pairs.len());
        for i in 0..pairs.len() {
            let key = Convert {
                flavor: Flavor::Json,
            }
            .value(keys.as_ref(), false, i)?;
            let Some(key) = key_text(key) else {
                return Err(invalid("field name must not be null"));
            };
            members.push((key, convert.value(values.as_ref(), value_is_json, i)?));
        }
        let mut text = String::new();
        match flavor {
            // `json_object_agg`'s own spacing: `{ "a" : 1, "b" : 2 }`.
            Flavor::Json => write_json_object(&mut text, &members, " "),
            Flavor::Jsonb => write_jsonb(&mut text, &Json::Object(members)),
        }
        out.append_value(text);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jsonb(text: &str) -> Json {
        read(text, Flavor::Jsonb).expect("json")
    }

    fn show(value: &Json) -> String {
        let mut out = String::new();
        write_jsonb(&mut out, value);
        out
    }

    fn set_path(target: &str, path: &[&str], new: &str, create: bool) -> Result<String> {
        let mut target = jsonb(target);
        let path: Vec<Option<&str>> = path.iter().map(|p| Some(*p)).collect();
        set(&mut target, &path, 0, jsonb(new), create)?;
        Ok(show(&target))
    }

    // PostgreSQL 15's answers.
    #[test]
    fn set_follows_postgresql() {
        let at = |path: &[&str], create| set_path(r#"{"a":[1,2,3]}"#, path, "9", create).ok();
        assert_eq!(
            at(&["a", "-1"], true).as_deref(),
            Some(r#"{"a": [1, 2, 9]}"#)
        );
        assert_eq!(
            at(&["a", "10"], true).as_deref(),
            Some(r#"{"a": [1, 2, 3, 9]}"#)
        );
        assert_eq!(
            at(&["a", "-10"], true).as_deref(),
            Some(r#"{"a": [9, 1, 2, 3]}"#)
        );
        assert_eq!(
            at(&["b", "c"], true).as_deref(),
            Some(r#"{"a": [1, 2, 3]}"#)
        );
        assert_eq!(at(&["b"], false).as_deref(), Some(r#"{"a": [1, 2, 3]}"#));
        assert_eq!(
            at(&["b"], true).as_deref(),
            Some(r#"{"a": [1, 2, 3], "b": 9}"#)
        );
        assert!(
            set_path(r#"{"a":[1]}"#, &["a", "x"], "9", true)
                .is_err_and(|e| e.to_string().contains("is not an integer: \"x\""))
        );
    }

    #[test]
    fn pretty_and_strip_follow_postgresql() {
        let mut out = String::new();
        write_pretty(&mut out, &jsonb(r#"{"a":[1,{"x":[]}],"b":{}}"#), 0);
        assert_eq!(
            out,
            "{\n    \"a\": [\n        1,\n        {\n            \"x\": [\n            ]\n        }\n    ],\n    \"b\": {\n    }\n}"
        );
        let stripped =
            strip_nulls(read(r#"[{"f1":1, "f2":null}, 2, null, 3]"#, Flavor::Json).expect("json"));
        let mut out = String::new();
        write_json(&mut out, &stripped, ",");
        assert_eq!(out, r#"[{"f1":1},2,null,3]"#);
    }

    #[test]
    fn keys_exist_at_the_top_level() {
        let value = jsonb(r#"{"a":1,"b":{"c":2}}"#);
        assert!(has_key(&value, "a") && !has_key(&value, "c"));
        assert!(has_key(&jsonb(r#"["a","b"]"#), "a"));
        assert!(!has_key(&jsonb("[1]"), "1"));
    }
}
