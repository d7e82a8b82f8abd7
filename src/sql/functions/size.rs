//! Sizes as PostgreSQL's admin functions report them, from what each table stores: the bytes
//! of the Parquet files its published Delta version references ([`Sizes`]); rows still in the
//! buffer count once they flush, and a table has no indexes (0).
//!
//! - `pg_relation_size(rel [, fork])`, `pg_table_size(rel)`, `pg_total_relation_size(rel)` and
//!   `pg_indexes_size(rel)` take a relation's oid (or `'name'::regclass`); `sql::pg_forms`
//!   rewrites each into [`RELATION_SIZE`] of the relation's `schema.name`, looked up in
//!   `pg_class`, since only the catalog knows its oids. A catalog relation is 0 bytes, an oid
//!   of no relation NULL, a fork other than `main` 0 (`fsm`, `vm`, `init`); another fork
//!   name is 22023.
//! - `pg_database_size(name)`: the sum over every table for this server's database, 3D000 for
//!   another name.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array};
use arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::engine::core::Sizes;
use crate::error::{SqlError, SqlState};
use crate::sql::functions::shaped;

/// The function `sql::pg_forms` calls with a relation's `schema.name` and the part to measure
/// (`main`, `total`, `indexes` or a fork name).
pub const RELATION_SIZE: &str = "timefusion_relation_size";

/// `pg_relation_size` and kin, by qualified name ([`RELATION_SIZE`]).
struct RelationSize {
    sizes: Arc<dyn Sizes>,
    signature: Signature,
}

impl std::fmt::Debug for RelationSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(RELATION_SIZE)
    }
}

impl PartialEq for RelationSize {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.sizes, &other.sizes)
    }
}

impl Eq for RelationSize {}

impl std::hash::Hash for RelationSize {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        RELATION_SIZE.hash(state);
    }
}

impl ScalarUDFImpl for RelationSize {
    fn name(&self) -> &str {
        RELATION_SIZE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let names = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let parts = arrow::compute::cast(&arrays[1], &DataType::Utf8)?;
        let (names, parts) = (names.as_string::<i32>(), parts.as_string::<i32>());
        let sizes = (0..names.len())
            .map(|row| {
                if names.is_null(row) || parts.is_null(row) {
                    return Ok(None);
                }
                let stored = match names.value(row).split_once('.') {
                    Some(("public", table)) => self.sizes.stored_bytes(table),
                    _ => None,
                };
                let bytes = stored.map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX));
                match parts.value(row) {
                    "main" | "total" => Ok(Some(bytes)),
                    "indexes" | "fsm" | "vm" | "init" => Ok(Some(0)),
                    other => Err(SqlError::new(
                        SqlState::INVALID_PARAMETER_VALUE,
                        format!("invalid fork name: \"{other}\""),
                    )),
                }
            })
            .collect::<Result<Int64Array, SqlError>>()?;
        shaped(&args.args, Arc::new(sizes))
    }
}

/// `pg_database_size(name)`: every table's stored bytes, for this server's database.
struct DatabaseSize {
    sizes: Arc<dyn Sizes>,
    tables: Vec<String>,
    database: String,
    signature: Signature,
}

impl std::fmt::Debug for DatabaseSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("pg_database_size")
    }
}

impl PartialEq for DatabaseSize {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.sizes, &other.sizes) && self.database == other.database
    }
}

impl Eq for DatabaseSize {}

impl std::hash::Hash for DatabaseSize {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.database.hash(state);
    }
}

impl ScalarUDFImpl for DatabaseSize {
    fn name(&self) -> &str {
        "pg_database_size"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let names = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let total: u64 = self
            .tables
            .iter()
            .filter_map(|t| self.sizes.stored_bytes(t))
            .sum();
        let sizes = (0..names.len())
            .map(|row| {
                if names.is_null(row) {
                    return Ok(None);
                }
                let name = names.value(row);
                if name != self.database {
                    return Err(SqlError::new(
                        SqlState::UNDEFINED_DATABASE,
                        format!("database \"{name}\" does not exist"),
                    ));
                }
                Ok(Some(i64::try_from(total).unwrap_or(i64::MAX)))
            })
            .collect::<Result<Int64Array, SqlError>>()?;
        shaped(&args.args, Arc::new(sizes))
    }
}

/// The size functions over `sizes`, for the `tables` of `database`.
pub(crate) fn functions(
    sizes: Arc<dyn Sizes>,
    tables: Vec<String>,
    database: &str,
) -> [ScalarUDF; 2] {
    let text = |n| Signature::string(n, Volatility::Volatile);
    [
        ScalarUDF::from(RelationSize {
            sizes: sizes.clone(),
            signature: text(2),
        }),
        ScalarUDF::from(DatabaseSize {
            sizes,
            tables,
            database: database.to_string(),
            signature: text(1),
        }),
    ]
}
