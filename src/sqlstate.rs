//! Classification of errors into PostgreSQL SQLSTATEs, in one place.
//!
//! Ingest errors carry their own SQLSTATE; DataFusion, Arrow and SQL parser errors are
//! classified here: user mistakes get their specific class, anything unrecognised is XX000
//! (an internal error worth a bug report). The Postgres front end sends the code as is; the
//! Flight front end maps its class to a gRPC status with [`grpc_code`].

use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;

use crate::ingest;

/// PostgreSQL's code and words for a name that does not resolve: tools and people read
/// `relation "x" does not exist` and `column "y" does not exist`, not DataFusion's
/// `table 'postgres.public.x' not found` or `No field named y. Valid fields are …`.
fn postgres_message(error: &DataFusionError) -> Option<(&'static str, String)> {
    match error {
        DataFusionError::SchemaError(schema, _) => match schema.as_ref() {
            SchemaError::FieldNotFound { field, .. } => Some((
                "42703",
                match &field.relation {
                    Some(relation) => format!("column {relation}.{} does not exist", field.name),
                    None => format!("column \"{}\" does not exist", field.name),
                },
            )),
            _ => None,
        },
        DataFusionError::Plan(m) => {
            let name = m.strip_prefix("table '")?.strip_suffix("' not found")?;
            // Without the database and the default schema, which the planner added.
            let database = format!("{}.", crate::server::DATABASE);
            let name = name.strip_prefix(&database).unwrap_or(name);
            let name = name.strip_prefix("public.").unwrap_or(name);
            Some(("42P01", format!("relation \"{name}\" does not exist")))
        }
        _ => None,
    }
}

/// The SQLSTATE and message for an error raised while parsing, planning or running a
/// statement. User mistakes get their specific class; anything unrecognised is XX000.
pub fn sqlstate_of(error: &(dyn std::error::Error + 'static)) -> (&'static str, String) {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut fallback: Option<(&'static str, String)> = None;
    while let Some(e) = current {
        if let Some(ingest) = e.downcast_ref::<ingest::Error>() {
            return (ingest.sqlstate(), ingest.to_string());
        }
        if let Some(copy) = e.downcast_ref::<crate::copy::Error>() {
            return (copy.sqlstate(), copy.to_string());
        }
        if e.downcast_ref::<datafusion::sql::sqlparser::parser::ParserError>()
            .is_some()
        {
            return ("42601", e.to_string());
        }
        if let Some(df) = e.downcast_ref::<DataFusionError>() {
            if let Some(found) = postgres_message(df) {
                return found;
            }
            let message = df.to_string();
            let code = match df {
                DataFusionError::SQL(..) => Some("42601"),
                DataFusionError::NotImplemented(_) => Some("0A000"),
                DataFusionError::ResourcesExhausted(_) => Some("53200"),
                DataFusionError::SchemaError(..) if message.contains("No field named") => {
                    Some("42703")
                }
                DataFusionError::Plan(m) if m.contains("not found") && m.contains("table") => {
                    Some("42P01")
                }
                DataFusionError::Plan(m) if m.contains("Invalid function") => Some("42883"),
                DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => Some("42000"),
                _ => None,
            };
            if let Some(code) = code {
                return (code, message);
            }
            fallback.get_or_insert(("XX000", message));
        }
        if let Some(arrow) = e.downcast_ref::<arrow::error::ArrowError>() {
            use arrow::error::ArrowError as A;
            let message = arrow.to_string();
            let lower = message.to_lowercase();
            let code = match arrow {
                A::DivideByZero => Some("22012"),
                A::ArithmeticOverflow(_) => Some("22003"),
                A::CastError(_) | A::ParseError(_)
                    if lower.contains("timestamp")
                        || lower.contains("date")
                        || lower.contains("time") =>
                {
                    Some("22007")
                }
                A::CastError(_) | A::ParseError(_) => Some("22P02"),
                _ => None,
            };
            if let Some(code) = code {
                return (code, message);
            }
        }
        current = e.source();
    }
    fallback.unwrap_or_else(|| ("XX000", error.to_string()))
}

/// The gRPC status code for a SQLSTATE.
pub fn grpc_code(sqlstate: &str) -> tonic::Code {
    match sqlstate {
        "42P01" => tonic::Code::NotFound,
        "53200" | "53000" => tonic::Code::ResourceExhausted,
        "57P01" => tonic::Code::Unavailable,
        "0A000" => tonic::Code::Unimplemented,
        "58030" | "XX000" => tonic::Code::Internal,
        code if code.starts_with("22") || code.starts_with("23") || code.starts_with("42") => {
            tonic::Code::InvalidArgument
        }
        _ => tonic::Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_errors_keep_their_sqlstate_through_datafusion_wrapping() {
        let ingest = ingest::Error::NotNull {
            table: "t".into(),
            column: "id".into(),
        };
        let wrapped = DataFusionError::Context(
            "insert".into(),
            Box::new(DataFusionError::ArrowError(
                Box::new(arrow::error::ArrowError::ExternalError(Box::new(
                    DataFusionError::External(Box::new(ingest)),
                ))),
                None,
            )),
        );
        let (code, message) = sqlstate_of(&wrapped);
        assert_eq!(code, "23502");
        assert!(message.contains("\"id\""), "{message}");
    }

    #[test]
    fn planner_errors_map_to_their_classes() {
        let missing = DataFusionError::Plan("table 'postgres.public.nope' not found".into());
        assert_eq!(
            sqlstate_of(&missing),
            ("42P01", "relation \"nope\" does not exist".to_string())
        );
        let elsewhere = DataFusionError::Plan("table 'postgres.logs.nope' not found".into());
        assert_eq!(
            sqlstate_of(&elsewhere).1,
            "relation \"logs.nope\" does not exist"
        );
        let column = DataFusionError::SchemaError(
            Box::new(SchemaError::FieldNotFound {
                field: Box::new(datafusion::common::Column::new_unqualified("nope")),
                valid_fields: vec![],
            }),
            Box::new(None),
        );
        assert_eq!(
            sqlstate_of(&column),
            ("42703", "column \"nope\" does not exist".to_string())
        );
        let cast = DataFusionError::ArrowError(
            Box::new(arrow::error::ArrowError::CastError(
                "Cannot cast string 'x' to value of Int64 type".into(),
            )),
            None,
        );
        assert_eq!(sqlstate_of(&cast).0, "22P02");
        let internal = DataFusionError::Internal("bug".into());
        assert_eq!(sqlstate_of(&internal).0, "XX000");
    }

    #[test]
    fn sqlstate_classes_map_to_grpc_codes() {
        assert_eq!(grpc_code("23502"), tonic::Code::InvalidArgument);
        assert_eq!(grpc_code("42P01"), tonic::Code::NotFound);
        assert_eq!(grpc_code("53200"), tonic::Code::ResourceExhausted);
        assert_eq!(grpc_code("XX000"), tonic::Code::Internal);
    }
}
