//! The values of a bound portal's parameters, for an `INSERT` on the fast path
//! ([`crate::sql::values`]): each decoded from its text or binary form by the type the client
//! declared at `Parse` or, when it declared none, the type the statement gave it. Values keep
//! the type they arrived as (an `int2`, a `timestamptz`, text); the ingest path then casts them
//! to their columns with the same errors as any other write. Text stays text, so PostgreSQL's
//! text forms (a timestamp with a zone, an array literal `{a,"b c"}`) are read where every
//! text value is read.
//! Tests: `tests/e2e/pipeline.rs`.

use arrow::datatypes::DataType;
use bytes::Bytes;
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::error::PgWireResult;

use crate::error::SqlState;
use crate::pgwire::errors::user_error;
use crate::sql::values::Parameter;

/// The portal's parameter values, `$1` first; `types` are the statement's parameter types.
pub(crate) fn decode<S>(
    portal: &Portal<S>,
    types: &[(DataType, Type)],
) -> PgWireResult<Vec<ScalarValue>> {
    Ok(decode_borrowed(portal, types)?
        .into_iter()
        .map(Parameter::into_value)
        .collect())
}

/// The portal's parameters as [`decode`] reads them, text left in the client's message: for
/// [`crate::sql::values::InsertTemplate::bind_row`], which copies it once, into its column.
pub(crate) fn decode_borrowed<'a, S>(
    portal: &'a Portal<S>,
    types: &[(DataType, Type)],
) -> PgWireResult<Vec<Parameter<'a>>> {
    if portal.parameters.len() != types.len() {
        return Err(user_error(
            SqlState::PROTOCOL_VIOLATION,
            format!(
                "bind message supplies {} parameters, but prepared statement requires {}",
                portal.parameters.len(),
                types.len()
            ),
        ));
    }
    portal
        .parameters
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let declared = portal
                .statement
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .filter(|t| *t != Type::UNKNOWN);
            let (data_type, wire) = &types[i];
            let wire = declared.as_ref().unwrap_or(wire);
            let Some(value) = value else {
                return Ok(Parameter::Value(
                    ScalarValue::try_from(data_type).unwrap_or(ScalarValue::Null),
                ));
            };
            let decoded = if binary(&portal.parameter_format, i) && !text_type(wire) {
                from_binary(wire, value).map(Parameter::Value)
            } else {
                // Text format, or the binary form of a text type, which is its text.
                std::str::from_utf8(value)
                    .map(Parameter::Text)
                    .map_err(|e| e.to_string())
            };
            decoded.map_err(|message| {
                user_error(
                    SqlState::INVALID_TEXT_REPRESENTATION,
                    format!(
                        "invalid input for parameter ${} of type {}: {message}",
                        i + 1,
                        wire.name()
                    ),
                )
            })
        })
        .collect()
}

/// Whether the binary form of `wire` is its text, as for `text` itself.
fn text_type(wire: &Type) -> bool {
    matches!(
        *wire,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON
    )
}

/// Whether parameter `i` is in binary format (a `Bind` with one format code applies it to
/// all; with none, all are text).
fn binary(format: &Format, i: usize) -> bool {
    match format {
        Format::UnifiedText => false,
        Format::UnifiedBinary => true,
        Format::Individual(codes) => codes.get(i).or(codes.first()).is_some_and(|c| *c == 1),
    }
}

/// A value in binary format, by its type's PostgreSQL binary encoding; not for a text type
/// ([`text_type`]), whose binary form [`decode_borrowed`] reads as text.
fn from_binary(wire: &Type, value: &Bytes) -> Result<ScalarValue, String> {
    use postgres_types::FromSql;
    let raw = value.as_ref();
    let err = |e: Box<dyn std::error::Error + Sync + Send>| e.to_string();
    Ok(match *wire {
        Type::BOOL => ScalarValue::Boolean(Some(bool::from_sql(wire, raw).map_err(err)?)),
        Type::INT2 => ScalarValue::Int16(Some(i16::from_sql(wire, raw).map_err(err)?)),
        Type::INT4 => ScalarValue::Int32(Some(i32::from_sql(wire, raw).map_err(err)?)),
        Type::INT8 => ScalarValue::Int64(Some(i64::from_sql(wire, raw).map_err(err)?)),
        Type::FLOAT4 => ScalarValue::Float32(Some(f32::from_sql(wire, raw).map_err(err)?)),
        Type::FLOAT8 => ScalarValue::Float64(Some(f64::from_sql(wire, raw).map_err(err)?)),
        Type::NUMERIC => ScalarValue::Utf8(Some(numeric_text(raw)?)),
        Type::TIMESTAMPTZ | Type::TIMESTAMP => {
            let micros = i64::from_sql(&Type::INT8, raw).map_err(err)?;
            let zone = (*wire == Type::TIMESTAMPTZ).then(|| "UTC".into());
            ScalarValue::TimestampMicrosecond(
                Some(micros.saturating_add(POSTGRES_EPOCH_MICROS)),
                zone,
            )
        }
        Type::DATE => {
            let days = i32::from_sql(&Type::INT4, raw).map_err(err)?;
            ScalarValue::Date32(Some(days.saturating_add(POSTGRES_EPOCH_DAYS)))
        }
        Type::JSONB => {
            let (version, text) = raw.split_first().ok_or("empty jsonb value")?;
            if *version != 1 {
                return Err(format!("unsupported jsonb version {version}"));
            }
            ScalarValue::Utf8(Some(
                std::str::from_utf8(text)
                    .map_err(|e| e.to_string())?
                    .to_string(),
            ))
        }
        Type::UUID => {
            let uuid: [u8; 16] = raw.try_into().map_err(|_| "a uuid takes 16 bytes")?;
            ScalarValue::Utf8(Some(uuid_text(&uuid)))
        }
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY | Type::NAME_ARRAY => {
            let items = Vec::<Option<String>>::from_sql(wire, raw).map_err(err)?;
            let items: Vec<ScalarValue> = items.into_iter().map(ScalarValue::Utf8).collect();
            ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Utf8))
        }
        _ => return Err("binary values of this type cannot be stored; send it as text".into()),
    })
}

/// 2000-01-01, PostgreSQL's epoch for binary timestamps and dates, from 1970-01-01.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
const POSTGRES_EPOCH_DAYS: i32 = 10_957;

/// A binary `numeric` as its decimal text: digits in base 10,000 with a weight, a sign and
/// a display scale.
fn numeric_text(raw: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<i16, String> {
        raw.get(i..i + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric value".to_string())
    };
    let digits = usize::try_from(word(0)?).map_err(|_| "negative numeric digit count")?;
    let weight = i32::from(word(2)?);
    let sign = word(4)? as u16;
    let scale = usize::try_from(word(6)?).map_err(|_| "negative numeric scale")?;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        0 | 0x4000 => {}
        other => return Err(format!("invalid numeric sign {other:#x}")),
    }
    let groups = (0..digits)
        .map(|k| word(8 + 2 * k))
        .collect::<Result<Vec<_>, _>>()?;
    // The integer part: groups at weights `weight` down to 0.
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for w in 0..=weight {
            let group = groups.get(w as usize).copied().unwrap_or(0);
            if w == 0 {
                text.push_str(&group.to_string());
            } else {
                text.push_str(&format!("{group:04}"));
            }
        }
    }
    if scale > 0 {
        let mut fraction = String::new();
        let mut w = weight + 1;
        while fraction.len() < scale {
            let group = usize::try_from(w)
                .ok()
                .and_then(|w| groups.get(w).copied())
                .unwrap_or(0);
            fraction.push_str(&format!("{group:04}"));
            w += 1;
        }
        fraction.truncate(scale);
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

/// A UUID's 16 bytes in its hyphenated text form.
fn uuid_text(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The wire type a parameter of `data_type` is described with.
pub(crate) fn wire_type(data_type: &DataType, json: bool) -> Type {
    match data_type {
        DataType::Utf8 if json => Type::JSONB,
        DataType::Utf8 => Type::TEXT,
        DataType::Int16 => Type::INT2,
        DataType::Int32 => Type::INT4,
        DataType::Int64 => Type::INT8,
        DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Boolean => Type::BOOL,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Date32 => Type::DATE,
        DataType::List(_) => Type::TEXT_ARRAY,
        _ => Type::TEXT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(digits: &[i16], weight: i16, sign: u16, scale: i16) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend((digits.len() as i16).to_be_bytes());
        raw.extend(weight.to_be_bytes());
        raw.extend(sign.to_be_bytes());
        raw.extend(scale.to_be_bytes());
        for d in digits {
            raw.extend(d.to_be_bytes());
        }
        raw
    }

    #[test]
    fn binary_numerics_read_as_postgresql_prints_them() {
        assert_eq!(
            numeric_text(&numeric(&[1, 2345], 1, 0, 0)).expect("n"),
            "12345"
        );
        assert_eq!(
            numeric_text(&numeric(&[12, 5000], 0, 0x4000, 2)).expect("n"),
            "-12.50"
        );
        assert_eq!(numeric_text(&numeric(&[50], -1, 0, 3)).expect("n"), "0.005");
        assert_eq!(numeric_text(&numeric(&[], 0, 0, 0)).expect("n"), "0");
        assert!(numeric_text(&[0, 1]).is_err(), "truncated");
    }

    #[test]
    fn binary_values_keep_their_types() {
        let timestamp = from_binary(
            &Type::TIMESTAMPTZ,
            &Bytes::from(0i64.to_be_bytes().to_vec()),
        )
        .expect("ts");
        assert_eq!(
            timestamp,
            ScalarValue::TimestampMicrosecond(Some(POSTGRES_EPOCH_MICROS), Some("UTC".into()))
        );
        let jsonb =
            from_binary(&Type::JSONB, &Bytes::from_static(b"\x01{\"a\":1}")).expect("jsonb");
        assert_eq!(jsonb, ScalarValue::Utf8(Some("{\"a\":1}".into())));
        let uuid =
            from_binary(&Type::UUID, &Bytes::from((0u8..16).collect::<Vec<_>>())).expect("uuid");
        assert_eq!(
            uuid,
            ScalarValue::Utf8(Some("00010203-0405-0607-0809-0a0b0c0d0e0f".into()))
        );
        assert!(from_binary(&Type::INT4, &Bytes::from_static(b"\x00")).is_err());
        assert!(from_binary(&Type::POINT, &Bytes::from_static(b"\x00")).is_err());
    }

    #[test]
    fn parameter_types_describe_as_postgresql_types() {
        assert_eq!(wire_type(&DataType::Utf8, true), Type::JSONB);
        assert_eq!(
            wire_type(&DataType::new_list(DataType::Utf8, true), false),
            Type::TEXT_ARRAY
        );
    }
}
