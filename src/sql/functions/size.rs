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

/// `pg_relation_size` and kin by qualified name ([`RELATION_SIZE`]), and `pg_database_size`.
struct Size {
    name: &'static str,
    sizes: Arc<dyn Sizes>,
    /// The tables of [`Self::database`], which `pg_database_size` sums.
    tables: Vec<String>,
    database: String,
    signature: Signature,
}

impl std::fmt::Debug for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Size {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.sizes, &other.sizes)
    }
}

impl Eq for Size {}

impl std::hash::Hash for Size {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl Size {
    /// The size of the relation `qualified` (`schema.name`) that `part` measures.
    fn relation(&self, qualified: &str, part: &str) -> Result<i64, SqlError> {
        let stored = match qualified.split_once('.') {
            Some(("public", table)) => self.sizes.stored_bytes(table),
            _ => None,
        };
        let bytes = stored.map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX));
        match part {
            "main" | "total" => Ok(bytes),
            "indexes" | "fsm" | "vm" | "init" => Ok(0),
            other => Err(SqlError::new(
                SqlState::INVALID_PARAMETER_VALUE,
                format!("invalid fork name: \"{other}\""),
            )),
        }
    }

    /// The size of the database `name`: every table's, for this server's.
    fn database(&self, name: &str) -> Result<i64, SqlError> {
        if name != self.database {
            return Err(SqlError::new(
                SqlState::UNDEFINED_DATABASE,
                format!("database \"{name}\" does not exist"),
            ));
        }
        let total: u64 = self
            .tables
            .iter()
            .filter_map(|t| self.sizes.stored_bytes(t))
            .sum();
        Ok(i64::try_from(total).unwrap_or(i64::MAX))
    }
}

impl ScalarUDFImpl for Size {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?
            .iter()
            .map(|a| arrow::compute::cast(a, &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()?;
        let texts: Vec<_> = arrays.iter().map(|a| a.as_string::<i32>()).collect();
        let sizes = (0..args.number_rows)
            .map(|row| {
                if texts.iter().any(|t| t.is_null(row)) {
                    return Ok(None);
                }
                match texts.as_slice() {
                    [name, part] => self.relation(name.value(row), part.value(row)).map(Some),
                    [name] => self.database(name.value(row)).map(Some),
                    _ => Ok(None),
                }
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
    [(RELATION_SIZE, 2), ("pg_database_size", 1)].map(|(name, arguments)| {
        ScalarUDF::from(Size {
            name,
            sizes: sizes.clone(),
            tables: tables.clone(),
            database: database.to_string(),
            signature: Signature::string(arguments, Volatility::Volatile),
        })
    })
}
