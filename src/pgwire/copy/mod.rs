//! `COPY table [(columns)] FROM STDIN` in PostgreSQL's text, CSV and binary formats: the bulk
//! path of the Postgres protocol.
//!
//! [`CopyIn`] takes the client's `CopyData` bytes as they arrive and keeps an incomplete row
//! until the rest comes. Text and CSV are cut into whole rows (a CSV field in quotes may span
//! lines) and each slice becomes an Arrow batch of one `Utf8` column per target column, which
//! [`crate::engine::ingest::coerce`] casts to the table's types — the same casts, errors and SQLSTATEs
//! as `INSERT`; list columns take PostgreSQL array literals (`{a,b,"c d"}`). The binary
//! format (`FORMAT binary`, what drivers' binary copy writers send) is decoded by
//! `copy::binary` straight into arrays of the table's types, which `coerce` takes without a
//! cast; it only adds the left-out columns and checks constraints. Parsed batches of every
//! format are held until the `COPY` ends and then written with one
//! [`crate::engine::ingest::Ingest::write`], so a `COPY` of up to `TIMEFUSION_COPY_ATOMIC_MB` of
//! parsed rows ([`MAX_HELD_BYTES`] by default) is all-or-nothing; a longer one is written in
//! pieces of that size as it arrives (each piece durable before the next is read), and an
//! error stops it with the earlier pieces kept, like a series of `INSERT`s. A text or CSV row,
//! like a binary one, may not exceed 64 MiB.
//!
//! `COPY (query) TO STDOUT` and `COPY table [(columns)] TO STDOUT` go the other way:
//! [`CopyOut`] renders each result row in the text, CSV or binary format, one `CopyData` per
//! row (the CSV header line or the binary header travels with the first row).
//!
//! This module only parses and renders; it never touches the WAL or the buffer itself.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};

use crate::engine::schema::{Catalog, TableSchema};
use crate::error::SqlState;

mod binary;
pub mod handler;

/// Parsed rows are written once this many bytes of them are held, unless
/// [`CopyIn::with_max_held`] says otherwise.
pub const MAX_HELD_BYTES: usize = 64 << 20;

/// Received bytes are parsed in slices of about this size, one batch each.
const SLICE_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("relation \"{0}\" does not exist")]
    UnknownTable(String),
    #[error("column \"{column}\" of relation \"{table}\" does not exist")]
    UnknownColumn { table: String, column: String },
    #[error("COPY {0} is not supported; use COPY … FROM STDIN (text, CSV or binary)")]
    Unsupported(String),
    #[error("COPY line {line}: {message}")]
    BadData { line: usize, message: String },
    /// The header of a binary stream.
    #[error("COPY: {0}")]
    BadHeader(String),
    /// A binary value that is not one of its column's type (the line is the tuple's number).
    #[error("COPY line {line}, column \"{column}\": {message}")]
    BadField {
        line: usize,
        column: String,
        message: String,
        /// PostgreSQL's SQLSTATE for it: `22P03` (bad binary form), `22003` (out of range),
        /// `22008`, `22021`, `42804` or `0A000`.
        code: SqlState,
    },
    #[error("COPY: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A query result value the binary format cannot carry (arrow-pg's words).
    #[error("COPY: {0}")]
    Encode(String),
}

impl Error {
    /// The SQLSTATE PostgreSQL uses for this error.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            Error::UnknownTable(_) => SqlState::UNDEFINED_TABLE,
            Error::UnknownColumn { .. } => SqlState::UNDEFINED_COLUMN,
            Error::Unsupported(_) => SqlState::FEATURE_NOT_SUPPORTED,
            Error::BadData { .. } | Error::BadHeader(_) => SqlState::BAD_COPY_FILE_FORMAT,
            Error::BadField { code, .. } => *code,
            Error::Arrow(_) => SqlState::INVALID_TEXT_REPRESENTATION,
            Error::Encode(_) => SqlState::DATA_EXCEPTION,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The wire format of text rows (binary rows go to `binary::Decoder`).
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// PostgreSQL's text format: `delimiter`-separated (tab by default), backslash escapes,
    /// `null` (`\N` by default) for NULL.
    Text { delimiter: u8, null: String },
    /// CSV: `delimiter` (`,`), `quote` (`"`), `escape` (the quote), unquoted `null` (empty) for
    /// NULL, an optional header line to skip.
    Csv {
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: String,
        header: bool,
    },
}

/// The table a `COPY … FROM` names and the columns it fills: the ones listed, all of the
/// table's otherwise. Unknown tables and columns are errors.
fn target_columns(
    source: &CopySource,
    catalog: &Catalog,
) -> Result<(Arc<TableSchema>, Vec<String>)> {
    let CopySource::Table {
        table_name,
        columns,
    } = source
    else {
        return Err(Error::Unsupported("FROM a query".into()));
    };
    let table = crate::sql::resolve_table(catalog, table_name)
        .ok_or_else(|| Error::UnknownTable(table_name.to_string()))?
        .clone();
    let columns: Vec<String> = if columns.is_empty() {
        table
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    } else {
        columns.iter().map(crate::sql::normalize_ident).collect()
    };
    if let Some(column) = columns.iter().find(|c| table.index_of(c).is_none()) {
        return Err(Error::UnknownColumn {
            table: table.name.clone(),
            column: column.clone(),
        });
    }
    Ok((table, columns))
}

/// The options of a `COPY … FROM`, in either syntax (`WITH (FORMAT csv, …)` or the legacy
/// `CSV HEADER …`), before defaults apply.
#[derive(Debug, Default)]
struct Options {
    csv: bool,
    binary: bool,
    delimiter: Option<u8>,
    null: Option<String>,
    quote: Option<u8>,
    escape: Option<u8>,
    header: bool,
}

impl Options {
    fn parse(options: &[CopyOption], legacy_options: &[CopyLegacyOption]) -> Result<Options> {
        let mut o = Options::default();
        for option in options {
            match option {
                CopyOption::Format(f) => match f.value.to_lowercase().as_str() {
                    "text" => (o.csv, o.binary) = (false, false),
                    "csv" => (o.csv, o.binary) = (true, false),
                    "binary" => (o.csv, o.binary) = (false, true),
                    other => return Err(Error::Unsupported(format!("FORMAT {other}"))),
                },
                CopyOption::Delimiter(c) => o.delimiter = Some(single_byte(*c, "delimiter")?),
                CopyOption::Null(s) => o.null = Some(s.clone()),
                CopyOption::Header(h) => o.header = *h,
                CopyOption::Quote(c) => o.quote = Some(single_byte(*c, "quote")?),
                CopyOption::Escape(c) => o.escape = Some(single_byte(*c, "escape")?),
                CopyOption::Freeze(_) => {}
                CopyOption::Encoding(e)
                    if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                other => return Err(Error::Unsupported(format!("with option {other}"))),
            }
        }
        for option in legacy_options {
            match option {
                CopyLegacyOption::Binary => o.binary = true,
                CopyLegacyOption::Csv(csv_options) => {
                    o.csv = true;
                    for option in csv_options {
                        match option {
                            CopyLegacyCsvOption::Header => o.header = true,
                            CopyLegacyCsvOption::Quote(c) => {
                                o.quote = Some(single_byte(*c, "quote")?)
                            }
                            CopyLegacyCsvOption::Escape(c) => {
                                o.escape = Some(single_byte(*c, "escape")?)
                            }
                            other => {
                                return Err(Error::Unsupported(format!("with option {other}")));
                            }
                        }
                    }
                }
                CopyLegacyOption::Delimiter(c) => o.delimiter = Some(single_byte(*c, "delimiter")?),
                CopyLegacyOption::Null(s) => o.null = Some(s.clone()),
                other => return Err(Error::Unsupported(format!("with option {other}"))),
            }
        }
        if o.binary {
            let text_options = [
                ("CSV", o.csv),
                ("DELIMITER", o.delimiter.is_some()),
                ("NULL", o.null.is_some()),
                ("HEADER", o.header),
                ("QUOTE", o.quote.is_some()),
                ("ESCAPE", o.escape.is_some()),
            ];
            if let Some((option, _)) = text_options.iter().find(|(_, given)| *given) {
                return Err(Error::Unsupported(format!("{option} in binary format")));
            }
        }
        Ok(o)
    }

    /// The text or CSV format the options describe, with PostgreSQL's defaults (unused for
    /// binary, which has no options).
    fn format(self) -> Result<Format> {
        let quote = self.quote.unwrap_or(b'"');
        if self.csv {
            return Ok(Format::Csv {
                delimiter: self.delimiter.unwrap_or(b','),
                quote,
                escape: self.escape.unwrap_or(quote),
                null: self.null.unwrap_or_default(),
                header: self.header,
            });
        }
        if self.header {
            return Err(Error::Unsupported("HEADER in text format".into()));
        }
        Ok(Format::Text {
            delimiter: self.delimiter.unwrap_or(b'\t'),
            null: self.null.unwrap_or_else(|| "\\N".into()),
        })
    }
}

fn single_byte(c: char, what: &str) -> Result<u8> {
    u8::try_from(c)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| Error::Unsupported(format!("with a non-ASCII {what}")))
}

/// A `COPY … FROM STDIN` in progress.
#[derive(Debug)]
pub struct CopyIn {
    pub table: Arc<TableSchema>,
    columns: Vec<String>,
    format: Format,
    /// Bytes received but not yet cut into whole rows.
    pending: Vec<u8>,
    skip_header: bool,
    /// Rows parsed so far (lines read, for error messages).
    line: usize,
    held: Vec<RecordBatch>,
    held_bytes: usize,
    /// Parsed bytes held before they are written (`TIMEFUSION_COPY_ATOMIC_MB`).
    max_held: usize,
    finished: bool,
    /// `FORMAT binary`: the decoder, which then takes the place of `format`, `pending`,
    /// `skip_header`, `line` and `finished`.
    binary: Option<binary::Decoder>,
}

impl CopyIn {
    /// The copy a statement starts: `None` if it is not a `COPY … FROM STDIN`.
    pub fn from_statement(statement: &Statement, catalog: &Catalog) -> Option<Result<CopyIn>> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            values: _,
        } = statement
        else {
            return None;
        };
        if *to {
            return None;
        }
        Some(Self::start(
            source,
            target,
            options,
            legacy_options,
            catalog,
        ))
    }

    fn start(
        source: &CopySource,
        target: &CopyTarget,
        options: &[CopyOption],
        legacy_options: &[CopyLegacyOption],
        catalog: &Catalog,
    ) -> Result<CopyIn> {
        if *target != CopyTarget::Stdin {
            return Err(Error::Unsupported(format!("FROM {target}")));
        }
        let (table, columns) = target_columns(source, catalog)?;
        let options = Options::parse(options, legacy_options)?;
        let binary = options
            .binary
            .then(|| binary::Decoder::new(&table, &columns))
            .transpose()?;
        let skip_header = options.header;
        Ok(CopyIn {
            table,
            skip_header,
            columns,
            format: options.format()?,
            pending: Vec::new(),
            line: 0,
            held: Vec::new(),
            held_bytes: 0,
            max_held: MAX_HELD_BYTES,
            finished: false,
            binary,
        })
    }

    /// Number of columns each row carries.
    pub fn column_count(&self) -> usize {
        self.columns.len()
    }

    /// Whether the rows come in the binary format (the `CopyInResponse` says so).
    pub fn is_binary(&self) -> bool {
        self.binary.is_some()
    }

    /// Takes the next bytes of the stream. Returns batches to write now when the rows held
    /// passed [`MAX_HELD_BYTES`].
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<RecordBatch>> {
        if let Some(decoder) = &mut self.binary {
            if let Some(batch) = decoder.push(data)? {
                self.hold(batch);
            }
            return Ok(self.take_when_full());
        }
        if self.finished {
            return Ok(Vec::new());
        }
        self.pending.extend_from_slice(data);
        // Parse in slices of a few MiB so the raw bytes never pile up.
        if self.pending.len() < SLICE_BYTES {
            return Ok(Vec::new());
        }
        // Bytes without a line end cannot complete a row: skip rescanning a long one.
        let scanned_before = self.pending.len() - data.len() >= SLICE_BYTES;
        let cut = if scanned_before && !data.contains(&b'\n') {
            0
        } else {
            self.row_boundary()
        };
        if cut > 0 {
            let rest = self.pending.split_off(cut);
            let complete = std::mem::replace(&mut self.pending, rest);
            self.parse(&complete)?;
        } else if self.pending.len() > binary::MAX_ROW_BYTES {
            // A row that never ends would otherwise grow without limit.
            return Err(Error::BadData {
                line: self.line + 1,
                message: format!("row is longer than {} MiB", binary::MAX_ROW_BYTES >> 20),
            });
        }
        Ok(self.take_when_full())
    }

    /// Holds up to `bytes` of parsed rows before writing them (default [`MAX_HELD_BYTES`]).
    pub fn with_max_held(mut self, bytes: usize) -> Self {
        self.max_held = bytes;
        self
    }

    /// The end of the stream: every remaining row, to be written.
    pub fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        if let Some(decoder) = &mut self.binary {
            if let Some(batch) = decoder.finish()? {
                self.hold(batch);
            }
        } else {
            let rest = std::mem::take(&mut self.pending);
            if !rest.is_empty() {
                self.parse(&rest)?;
            }
        }
        self.held_bytes = 0;
        Ok(std::mem::take(&mut self.held))
    }

    fn hold(&mut self, batch: RecordBatch) {
        self.held_bytes += batch.get_array_memory_size();
        self.held.push(batch);
    }

    /// The held batches once they passed [`MAX_HELD_BYTES`], else nothing.
    fn take_when_full(&mut self) -> Vec<RecordBatch> {
        if self.held_bytes < self.max_held {
            return Vec::new();
        }
        self.held_bytes = 0;
        std::mem::take(&mut self.held)
    }

    /// The offset just after the last complete row in `pending` (0: none yet).
    fn row_boundary(&self) -> usize {
        match &self.format {
            Format::Text { .. } => self
                .pending
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1),
            Format::Csv { quote, escape, .. } => {
                let (mut in_quotes, mut last, mut i) = (false, 0, 0);
                let bytes = &self.pending;
                while i < bytes.len() {
                    let b = bytes[i];
                    if in_quotes {
                        if b == *escape && escape != quote && bytes.get(i + 1) == Some(quote) {
                            i += 1;
                        } else if b == *quote {
                            in_quotes = false;
                        }
                    } else if b == *quote {
                        in_quotes = true;
                    } else if b == b'\n' {
                        last = i + 1;
                    }
                    i += 1;
                }
                last
            }
        }
    }

    /// Parses whole rows into a held batch.
    fn parse(&mut self, bytes: &[u8]) -> Result<()> {
        let text = std::str::from_utf8(bytes).map_err(|e| Error::BadData {
            line: self.line + 1,
            message: format!("invalid UTF-8: {e}"),
        })?;
        let mut builders: Vec<StringBuilder> = self
            .columns
            .iter()
            .map(|_| StringBuilder::with_capacity(1024, bytes.len() / self.columns.len().max(1)))
            .collect();
        let mut rows = 0;
        let format = self.format.clone();
        let mut fields: Vec<Option<String>> = Vec::with_capacity(self.columns.len());
        let mut rest = text;
        while !rest.is_empty() && !self.finished {
            self.line += 1;
            fields.clear();
            rest = match &format {
                Format::Text { delimiter, null } => {
                    let (line, next) = match rest.find('\n') {
                        Some(i) => (&rest[..i], &rest[i + 1..]),
                        None => (rest, ""),
                    };
                    let line = line.strip_suffix('\r').unwrap_or(line);
                    if line == "\\." {
                        self.finished = true;
                        break;
                    }
                    split_text(line, *delimiter, null, &mut fields).map_err(|message| {
                        Error::BadData {
                            line: self.line,
                            message,
                        }
                    })?;
                    next
                }
                Format::Csv {
                    delimiter,
                    quote,
                    escape,
                    null,
                    ..
                } => {
                    if rest.starts_with("\\.\n") || rest == "\\." || rest.starts_with("\\.\r\n") {
                        self.finished = true;
                        break;
                    }
                    split_csv(rest, *delimiter, *quote, *escape, null, &mut fields).map_err(
                        |message| Error::BadData {
                            line: self.line,
                            message,
                        },
                    )?
                }
            };
            if self.skip_header {
                self.skip_header = false;
                continue;
            }
            if fields.len() < self.columns.len() {
                return Err(Error::BadData {
                    line: self.line,
                    message: format!("missing data for column \"{}\"", self.columns[fields.len()]),
                });
            }
            if fields.len() > self.columns.len() {
                return Err(Error::BadData {
                    line: self.line,
                    message: "extra data after last expected column".into(),
                });
            }
            for (builder, field) in builders.iter_mut().zip(&fields) {
                builder.append_option(field.as_deref());
            }
            rows += 1;
        }
        if rows == 0 {
            return Ok(());
        }
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        let mut schema_fields = Vec::with_capacity(self.columns.len());
        for (name, mut builder) in self.columns.iter().zip(builders) {
            let strings = builder.finish();
            let target = self
                .table
                .index_of(name)
                .map(|i| self.table.schema.field(i).data_type().clone());
            let array: ArrayRef = match target {
                Some(DataType::List(item)) if item.data_type() == &DataType::Utf8 => Arc::new(
                    crate::engine::batch::parse_array_literals(&strings).map_err(|message| {
                        Error::BadData {
                            line: self.line,
                            message,
                        }
                    })?,
                ),
                _ => Arc::new(strings),
            };
            schema_fields.push(Field::new(name, array.data_type().clone(), true));
            arrays.push(array);
        }
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(schema_fields)),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        self.hold(batch);
        Ok(())
    }
}

/// Splits one text-format line into fields, undoing backslash escapes.
fn split_text(
    line: &str,
    delimiter: u8,
    null: &str,
    out: &mut Vec<Option<String>>,
) -> std::result::Result<(), String> {
    for raw in line.split(delimiter as char) {
        if raw == null {
            out.push(None);
            continue;
        }
        if !raw.contains('\\') {
            out.push(Some(raw.to_string()));
            continue;
        }
        let mut value = String::with_capacity(raw.len());
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\\' {
                value.push(c);
                continue;
            }
            match chars.next() {
                Some('b') => value.push('\u{8}'),
                Some('f') => value.push('\u{c}'),
                Some('n') => value.push('\n'),
                Some('r') => value.push('\r'),
                Some('t') => value.push('\t'),
                Some('v') => value.push('\u{b}'),
                Some('x') => {
                    let mut code = 0u32;
                    let mut digits = 0;
                    while digits < 2 && chars.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
                        code = code * 16 + chars.next().and_then(|d| d.to_digit(16)).unwrap_or(0);
                        digits += 1;
                    }
                    if digits == 0 {
                        value.push('x');
                    } else {
                        value.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                }
                Some(d) if ('0'..='7').contains(&d) => {
                    let mut code = d.to_digit(8).unwrap_or(0);
                    let mut digits = 1;
                    while digits < 3 && chars.peek().is_some_and(|d| ('0'..='7').contains(d)) {
                        code = code * 8 + chars.next().and_then(|d| d.to_digit(8)).unwrap_or(0);
                        digits += 1;
                    }
                    value.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                Some(other) => value.push(other),
                None => return Err("a backslash at the end of a line".into()),
            }
        }
        out.push(Some(value));
    }
    Ok(())
}

/// Splits the first CSV record of `text` into fields; returns the text after it.
fn split_csv<'a>(
    text: &'a str,
    delimiter: u8,
    quote: u8,
    escape: u8,
    null: &str,
    out: &mut Vec<Option<String>>,
) -> std::result::Result<&'a str, String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    loop {
        // One field.
        if bytes.get(i) == Some(&quote) {
            let mut value = Vec::new();
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err("unterminated CSV quoted field".into()),
                    Some(&b) if b == escape && bytes.get(i + 1) == Some(&quote) => {
                        value.push(quote);
                        i += 2;
                    }
                    Some(&b) if b == quote => {
                        i += 1;
                        break;
                    }
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
            // A quoted value is never NULL, even when it equals the NULL string.
            out.push(Some(
                String::from_utf8(value).map_err(|e| format!("invalid UTF-8: {e}"))?,
            ));
        } else {
            let start = i;
            while i < bytes.len() && bytes[i] != delimiter && bytes[i] != b'\n' {
                i += 1;
            }
            let raw = &text[start..i];
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            out.push(if raw == null {
                None
            } else {
                Some(raw.to_string())
            });
        }
        match bytes.get(i) {
            Some(&b) if b == delimiter => i += 1,
            Some(b'\n') => return Ok(&text[i + 1..]),
            Some(b'\r') if bytes.get(i + 1) == Some(&b'\n') => return Ok(&text[i + 2..]),
            None => return Ok(""),
            Some(_) => return Err("unexpected characters after a quoted CSV field".into()),
        }
    }
}

/// A `COPY … TO STDOUT`: the query to run and how to render its rows.
#[derive(Debug)]
pub struct CopyOut {
    pub sql: String,
    csv: bool,
    binary: bool,
    header: bool,
    delimiter: u8,
    /// What goes before the first row (the CSV header line, the binary header) until a row
    /// or [`CopyOut::finish`] takes it.
    head: Option<Vec<u8>>,
}

impl CopyOut {
    /// The copy a statement starts: `None` if it is not a `COPY … TO STDOUT`.
    pub fn from_statement(statement: &Statement) -> Option<Result<CopyOut>> {
        let Statement::Copy {
            source,
            to: true,
            target,
            options,
            legacy_options,
            values: _,
        } = statement
        else {
            return None;
        };
        Some(Self::start(source, target, options, legacy_options))
    }

    fn start(
        source: &CopySource,
        target: &CopyTarget,
        options: &[CopyOption],
        legacy_options: &[CopyLegacyOption],
    ) -> Result<CopyOut> {
        if *target != CopyTarget::Stdout {
            return Err(Error::Unsupported(format!("TO {target}")));
        }
        let sql = match source {
            CopySource::Query(query) => query.to_string(),
            CopySource::Table {
                table_name,
                columns,
            } if columns.is_empty() => format!("SELECT * FROM {table_name}"),
            CopySource::Table {
                table_name,
                columns,
            } => format!(
                "SELECT {} FROM {table_name}",
                columns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let (mut csv, mut binary, mut header, mut delimiter) = (false, false, false, None);
        for option in options {
            match option {
                CopyOption::Format(f) => match f.value.to_lowercase().as_str() {
                    "text" => (csv, binary) = (false, false),
                    "csv" => (csv, binary) = (true, false),
                    "binary" => (csv, binary) = (false, true),
                    other => return Err(Error::Unsupported(format!("FORMAT {other}"))),
                },
                CopyOption::Header(h) => header = *h,
                CopyOption::Delimiter(c) => delimiter = Some(single_byte(*c, "delimiter")?),
                other => return Err(Error::Unsupported(format!("TO STDOUT with option {other}"))),
            }
        }
        for option in legacy_options {
            match option {
                CopyLegacyOption::Csv(csv_options) if csv_options.is_empty() => csv = true,
                CopyLegacyOption::Csv(csv_options)
                    if csv_options
                        .iter()
                        .all(|o| matches!(o, CopyLegacyCsvOption::Header)) =>
                {
                    csv = true;
                    header = true;
                }
                CopyLegacyOption::Binary => binary = true,
                CopyLegacyOption::Delimiter(c) => delimiter = Some(single_byte(*c, "delimiter")?),
                other => return Err(Error::Unsupported(format!("TO STDOUT with option {other}"))),
            }
        }
        if binary && (csv || header || delimiter.is_some()) {
            return Err(Error::Unsupported(
                "TO STDOUT in binary format with CSV, HEADER or DELIMITER".into(),
            ));
        }
        if header && !csv {
            return Err(Error::Unsupported("HEADER in text format".into()));
        }
        Ok(CopyOut {
            sql,
            csv,
            binary,
            header,
            delimiter: delimiter.unwrap_or(if csv { b',' } else { b'\t' }),
            head: None,
        })
    }

    /// The overall format code of the `CopyOutResponse`: 1 for binary, 0 for text and CSV.
    pub fn format_code(&self) -> i8 {
        i8::from(self.binary)
    }

    /// Prepares the output for rows of `schema`: the binary format checks that every column
    /// can be sent (0A000 otherwise, before any row).
    pub fn begin(&mut self, schema: &Schema) -> Result<()> {
        if self.binary {
            binary::check_sendable(schema)?;
            self.head = Some(binary::header());
        } else if self.header {
            let mut line = Vec::new();
            for (i, field) in schema.fields().iter().enumerate() {
                if i > 0 {
                    line.push(self.delimiter);
                }
                self.push_value(&mut line, Some(field.name()));
            }
            line.push(b'\n');
            self.head = Some(line);
        }
        Ok(())
    }

    /// What is left to send after the last row: the head, if no row took it.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.head.take()
    }

    /// Each row of `batch` in the output format, one `CopyData` each; the first row of the
    /// output carries the head, so the rows sent are the rows counted.
    pub fn render(&mut self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let mut lines = if self.binary {
            binary::encode(batch)?
        } else {
            self.render_text(batch)?
        };
        if let Some(first) = lines.first_mut()
            && let Some(mut head) = self.head.take()
        {
            head.append(first);
            *first = head;
        }
        Ok(lines)
    }

    fn render_text(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        use arrow::util::display::{ArrayFormatter, FormatOptions};
        let options = FormatOptions::new().with_null("");
        // Dates, times, timestamps and intervals as PostgreSQL's COPY writes them
        // (`2026-11-23 10:00:00.5+00`, `1 day 02:00:00`), not in Arrow's display form.
        let texts = batch
            .columns()
            .iter()
            .map(|c| match crate::sql::text_cast::postgres_text(c) {
                Some(text) => text
                    .map(|t| Arc::new(t) as ArrayRef)
                    .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)).into()),
                None => Ok(postgres_arrays(c)?.unwrap_or_else(|| c.clone())),
            })
            .collect::<Result<Vec<_>>>()?;
        let formatters = texts
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        // Floats as PostgreSQL writes them (`7`, `1e+20`, `Infinity`), not as Rust does.
        let float_fixed_below: Vec<Option<i32>> = texts
            .iter()
            .map(|c| match c.data_type() {
                DataType::Float64 => Some(crate::pgwire::wire_text::FLOAT8_FIXED_BELOW),
                DataType::Float32 | DataType::Float16 => {
                    Some(crate::pgwire::wire_text::FLOAT4_FIXED_BELOW)
                }
                _ => None,
            })
            .collect();
        let mut lines = Vec::with_capacity(batch.num_rows());
        let mut value = String::new();
        for row in 0..batch.num_rows() {
            let mut line = Vec::new();
            for (i, (formatter, column)) in formatters.iter().zip(&texts).enumerate() {
                if i > 0 {
                    line.push(self.delimiter);
                }
                if column.is_null(row) {
                    self.push_value(&mut line, None);
                } else {
                    value.clear();
                    use std::fmt::Write;
                    write!(value, "{}", formatter.value(row)).map_err(|e| Error::BadData {
                        line: row + 1,
                        message: format!("cannot render a value: {e}"),
                    })?;
                    if let Some(fixed_below) = float_fixed_below[i]
                        && crate::pgwire::wire_text::float_needs(value.as_bytes(), fixed_below)
                        && let Some(float) =
                            crate::pgwire::wire_text::postgres_float(value.as_bytes(), fixed_below)
                    {
                        value = String::from_utf8_lossy(&float).into_owned();
                    }
                    self.push_value(&mut line, Some(&value));
                }
            }
            line.push(b'\n');
            lines.push(line);
        }
        Ok(lines)
    }

    fn push_value(&self, line: &mut Vec<u8>, value: Option<&str>) {
        match (value, self.csv) {
            (None, false) => line.extend_from_slice(b"\\N"),
            (None, true) => {}
            (Some(v), false) => {
                for b in v.bytes() {
                    match b {
                        b'\\' => line.extend_from_slice(b"\\\\"),
                        b'\n' => line.extend_from_slice(b"\\n"),
                        b'\r' => line.extend_from_slice(b"\\r"),
                        b'\t' => line.extend_from_slice(b"\\t"),
                        b if b == self.delimiter => {
                            line.push(b'\\');
                            line.push(b);
                        }
                        b => line.push(b),
                    }
                }
            }
            (Some(v), true) => {
                let quote = v.is_empty()
                    || v.bytes()
                        .any(|b| b == self.delimiter || b == b'"' || b == b'\n' || b == b'\r');
                if quote {
                    line.push(b'"');
                    for b in v.bytes() {
                        if b == b'"' {
                            line.push(b'"');
                        }
                        line.push(b);
                    }
                    line.push(b'"');
                } else {
                    line.extend_from_slice(v.as_bytes());
                }
            }
        }
    }
}

/// A list column as PostgreSQL's array text (`{a,"b c",NULL}`, nested `{{1,2},{3}}`), as
/// its COPY writes and reads back; `None` for any other column. Arrow's display form
/// (`[a, b c]`) is not an array to PostgreSQL.
fn postgres_arrays(column: &ArrayRef) -> Result<Option<ArrayRef>> {
    use arrow::array::AsArray;
    let texts = match column.data_type() {
        DataType::List(_) => array_texts(column.as_list::<i32>())?,
        DataType::LargeList(_) => array_texts(column.as_list::<i64>())?,
        _ => return Ok(None),
    };
    Ok(Some(Arc::new(texts)))
}

fn array_texts<O: arrow::array::OffsetSizeTrait>(
    lists: &arrow::array::GenericListArray<O>,
) -> Result<arrow::array::StringArray> {
    use arrow::array::Array;
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let values = lists.values();
    // Elements as text: nested arrays as arrays (never quoted), times as PostgreSQL's.
    let (elements, nested) = match postgres_arrays(values)? {
        Some(inner) => (inner, true),
        None => match crate::sql::text_cast::postgres_text(values) {
            Some(text) => (
                Arc::new(text.map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?)
                    as ArrayRef,
                false,
            ),
            None => (values.clone(), false),
        },
    };
    let formatter = ArrayFormatter::try_new(elements.as_ref(), &FormatOptions::new())?;
    let mut out = StringBuilder::new();
    let mut text = String::new();
    let mut element = String::new();
    for row in 0..lists.len() {
        if lists.is_null(row) {
            out.append_null();
            continue;
        }
        text.clear();
        text.push('{');
        let range =
            lists.value_offsets()[row].as_usize()..lists.value_offsets()[row + 1].as_usize();
        for (n, i) in range.enumerate() {
            if n > 0 {
                text.push(',');
            }
            if elements.is_null(i) {
                text.push_str("NULL");
                continue;
            }
            element.clear();
            use std::fmt::Write;
            let _ = write!(element, "{}", formatter.value(i));
            if nested || !needs_quotes(&element) {
                text.push_str(&element);
            } else {
                text.push('"');
                for c in element.chars() {
                    if c == '"' || c == '\\' {
                        text.push('\\');
                    }
                    text.push(c);
                }
                text.push('"');
            }
        }
        text.push('}');
        out.append_value(&text);
    }
    Ok(out.finish())
}

/// Whether PostgreSQL's `array_out` quotes an element: empty, `NULL` in any case, or holding
/// a brace, comma, quote, backslash or white space.
fn needs_quotes(element: &str) -> bool {
    element.is_empty()
        || element.eq_ignore_ascii_case("null")
        || element
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn copy(sql: &str) -> Result<CopyIn> {
        let catalog = Catalog::load(None).expect("built-in schemas");
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0);
        CopyIn::from_statement(&statement, &catalog).expect("a COPY FROM STDIN")
    }

    fn strings(batch: &RecordBatch, column: usize) -> Vec<Option<String>> {
        batch
            .column(column)
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn text_format_with_escapes_nulls_and_end_marker() {
        let mut copy =
            copy("COPY otel_logs_and_spans (project_id, id, name) FROM STDIN").expect("copy");
        assert_eq!(copy.column_count(), 3);
        assert!(copy.push(b"p1\ta\tline\\none\n").expect("push").is_empty());
        copy.push(b"p1\tb\t\\N\r\np1\tc\ttab\\there\n\\.\nignored\n")
            .expect("push");
        let batches = copy.finish().expect("finish");
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].num_rows(), 3);
        assert_eq!(
            strings(&batches[0], 2),
            vec![
                Some("line\none".to_string()),
                None,
                Some("tab\there".to_string())
            ]
        );
    }

    #[test]
    fn csv_with_header_quotes_and_multiline_fields() {
        let mut copy = copy(
            "COPY otel_logs_and_spans (project_id, id, body) FROM STDIN WITH (FORMAT csv, HEADER true)",
        )
        .expect("copy");
        copy.push(b"project_id,id,body\np1,a,\"{\"\"k\"\": 1}\"\np1,b,\np1,c,\"two\nlines\"\n")
            .expect("push");
        let batches = copy.finish().expect("finish");
        assert_eq!(batches[0].num_rows(), 3);
        assert_eq!(
            strings(&batches[0], 2),
            vec![
                Some("{\"k\": 1}".to_string()),
                None,
                Some("two\nlines".to_string())
            ]
        );
    }

    #[test]
    fn row_boundaries_respect_csv_quotes() {
        let mut copy = copy("COPY otel_logs_and_spans (project_id, id) FROM STDIN (FORMAT csv)")
            .expect("copy");
        copy.pending = b"p1,\"a\nb\"\np1,\"c\nd".to_vec();
        assert_eq!(copy.row_boundary(), 9);
    }

    #[test]
    fn wrong_column_counts_name_the_line() {
        let mut copy = copy("COPY otel_logs_and_spans (project_id, id) FROM STDIN").expect("copy");
        copy.push(b"p1\ta\np1\n").expect("push");
        let error = copy.finish().expect_err("missing column");
        assert_eq!(error.sqlstate(), SqlState::BAD_COPY_FILE_FORMAT);
        assert!(error.to_string().contains("line 2"), "{error}");
        let mut copy = copy_cols();
        copy.push(b"p1\ta\tb\n").expect("push");
        assert!(
            copy.finish()
                .expect_err("extra")
                .to_string()
                .contains("extra data")
        );
    }

    fn copy_cols() -> CopyIn {
        copy("COPY otel_logs_and_spans (project_id, id) FROM STDIN").expect("copy")
    }

    #[test]
    fn unknown_tables_columns_and_targets_are_rejected() {
        assert_eq!(
            copy("COPY nope FROM STDIN").expect_err("table").sqlstate(),
            SqlState::UNDEFINED_TABLE
        );
        assert_eq!(
            copy("COPY otel_logs_and_spans (nope) FROM STDIN")
                .expect_err("column")
                .sqlstate(),
            SqlState::UNDEFINED_COLUMN
        );
        assert_eq!(
            copy("COPY otel_logs_and_spans FROM '/etc/passwd'")
                .expect_err("file")
                .sqlstate(),
            SqlState::FEATURE_NOT_SUPPORTED
        );
    }

    fn rendered(out: &mut CopyOut, batch: &RecordBatch) -> Vec<String> {
        out.render(batch)
            .expect("render")
            .into_iter()
            .map(|l| String::from_utf8(l).expect("utf8"))
            .collect()
    }

    #[test]
    fn copy_out_renders_text_and_csv() {
        use arrow::array::{Int64Array, StringArray};
        let parse = |sql: &str| {
            let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .expect("parse")
                .remove(0);
            CopyOut::from_statement(&statement)
                .expect("a COPY TO")
                .expect("valid")
        };
        let batch = RecordBatch::try_from_iter([
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a\tb"), None, Some("x,\"y\"")])) as ArrayRef,
            ),
            ("n", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        ])
        .expect("batch");
        let mut text = parse("COPY (SELECT s, n FROM t) TO STDOUT");
        assert_eq!(text.sql, "SELECT s, n FROM t");
        text.begin(&batch.schema()).expect("begin");
        assert_eq!(
            rendered(&mut text, &batch),
            vec!["a\\tb\t1\n", "\\N\t2\n", "x,\"y\"\t3\n"]
        );
        assert_eq!(text.finish(), None);
        let mut csv =
            parse("COPY otel_logs_and_spans (id, name) TO STDOUT WITH (FORMAT csv, HEADER true)");
        assert_eq!(csv.sql, "SELECT id, name FROM otel_logs_and_spans");
        csv.begin(&batch.schema()).expect("begin");
        assert_eq!(
            rendered(&mut csv, &batch),
            vec!["s,n\na\tb,1\n", ",2\n", "\"x,\"\"y\"\"\",3\n"],
            "the header line goes out with the first row"
        );
        assert_eq!(rendered(&mut csv, &batch)[0], "a\tb,1\n", "and only once");
        let mut empty =
            parse("COPY otel_logs_and_spans (id, name) TO STDOUT WITH (FORMAT csv, HEADER true)");
        empty.begin(&batch.schema()).expect("begin");
        assert_eq!(
            empty.finish().map(|h| String::from_utf8(h).expect("utf8")),
            Some("s,n\n".to_string()),
            "an empty result still gets its header"
        );
    }

    /// Arrays go out as PostgreSQL's array text, quoted where `array_out` quotes, and the
    /// COPY parser reads them back as they were.
    #[test]
    fn copy_out_writes_arrays_as_postgresql_does_and_copy_in_reads_them_back() {
        use arrow::array::{Int64Builder, ListBuilder, StringBuilder};
        let mut hashes = ListBuilder::new(StringBuilder::new());
        hashes.append_value([Some("h1"), Some("h2")]);
        hashes.append_value(Vec::<Option<&str>>::new());
        hashes.append_null();
        hashes.append_value([
            Some("a b"),
            Some(""),
            Some("NULL"),
            Some("q\"x"),
            Some("back\\slash"),
            None,
            Some("{braces},"),
        ]);
        let hashes = Arc::new(hashes.finish()) as ArrayRef;
        let mut matrix = ListBuilder::new(ListBuilder::new(Int64Builder::new()));
        for rows in [
            vec![vec![1, 2], vec![3]],
            vec![],
            vec![vec![]],
            vec![vec![4]],
        ] {
            for row in rows {
                matrix.values().append_value(row.into_iter().map(Some));
            }
            matrix.append(true);
        }
        let batch = RecordBatch::try_from_iter([
            ("hashes", hashes.clone()),
            ("matrix", Arc::new(matrix.finish()) as ArrayRef),
        ])
        .expect("batch");
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, "COPY t TO STDOUT")
            .expect("parse")
            .remove(0);
        let mut out = CopyOut::from_statement(&statement)
            .expect("a COPY TO")
            .expect("valid");
        out.begin(&batch.schema()).expect("begin");
        let lines = rendered(&mut out, &batch);
        assert_eq!(
            lines,
            [
                "{h1,h2}\t{{1,2},{3}}\n",
                "{}\t{}\n",
                "\\N\t{{}}\n",
                "{\"a b\",\"\",\"NULL\",\"q\\\\\"x\",\"back\\\\\\\\slash\",NULL,\"{braces},\"}\t{{4}}\n",
            ]
        );

        // Read back into the table's `hashes` (text[]): the same values.
        let catalog = crate::engine::schema::Catalog::load(None).expect("catalog");
        let statement = Parser::parse_sql(
            &PostgreSqlDialect {},
            "COPY otel_logs_and_spans (project_id, timestamp, id, hashes) FROM STDIN",
        )
        .expect("parse")
        .remove(0);
        let mut copy = CopyIn::from_statement(&statement, &catalog)
            .expect("a COPY")
            .expect("valid");
        let mut input = String::new();
        for (i, line) in lines.iter().enumerate() {
            let array = line.split('\t').next().expect("first column");
            input.push_str(&format!("p1\t2026-01-01 00:00:00+00\tid{i}\t{array}\n"));
        }
        let mut batches = copy.push(input.as_bytes()).expect("parse");
        batches.extend(copy.finish().expect("finish"));
        let read = &batches[0];
        let read = read.column_by_name("hashes").expect("hashes");
        let read = read
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .expect("list");
        let written = hashes
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .expect("list");
        assert_eq!(read, written);
    }

    /// A binary COPY stream of `batch`, as a driver would send it.
    fn binary_stream(batch: &RecordBatch) -> Vec<u8> {
        let mut bytes = binary::header();
        for row in binary::encode(batch).expect("encode") {
            bytes.extend(row);
        }
        bytes.extend_from_slice(&(-1i16).to_be_bytes());
        bytes
    }

    #[test]
    fn binary_copy_yields_typed_batches_that_coerce_takes_as_they_are() {
        use arrow::array::{Int32Array, StringArray, TimestampMicrosecondArray};
        let mut binary_copy = copy(
            "COPY otel_logs_and_spans (project_id, timestamp, id, duration) FROM STDIN (FORMAT binary)",
        )
        .expect("copy");
        assert!(binary_copy.is_binary());
        let micros = 1_710_064_800_000_000; // 2024-03-10T10:00:00Z
        let batch = RecordBatch::try_from_iter([
            (
                "p",
                Arc::new(StringArray::from(vec!["p1", "p1"])) as ArrayRef,
            ),
            (
                "t",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![micros, micros + 1]).with_timezone("UTC"),
                ) as ArrayRef,
            ),
            ("i", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef),
            // int4 on the wire, for the Int64 column.
            (
                "d",
                Arc::new(Int32Array::from(vec![Some(5), None])) as ArrayRef,
            ),
        ])
        .expect("batch");
        let bytes = binary_stream(&batch);
        let (head, tail) = bytes.split_at(30);
        assert!(binary_copy.push(head).expect("push").is_empty());
        assert!(binary_copy.push(tail).expect("push").is_empty());
        let batches = binary_copy.finish().expect("finish");
        assert_eq!(batches.len(), 1);
        let held = &batches[0];
        assert_eq!(held.column(3).data_type(), &DataType::Int64);
        let coerced = crate::engine::ingest::coerce(&binary_copy.table, held).expect("coerce");
        let table = &binary_copy.table;
        let column = |name: &str| {
            coerced
                .column(table.index_of(name).expect("column"))
                .clone()
        };
        assert_eq!(
            column("duration")
                .as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .collect::<Vec<_>>(),
            [Some(5), None]
        );
        // Typed columns pass through coerce without a cast: the same memory.
        let values = |array: &ArrayRef, buffer: usize| array.to_data().buffers()[buffer].as_ptr();
        assert_eq!(values(&column("id"), 1), values(held.column(2), 1));
        assert_eq!(values(&column("timestamp"), 0), values(held.column(1), 0));
        assert_eq!(
            column("date")
                .as_primitive::<arrow::datatypes::Date32Type>()
                .value(0),
            19792,
            "date derived from the binary timestamp"
        );

        // NOT NULL and the tenant are checked by coerce, as for text.
        let mut no_time =
            copy("COPY otel_logs_and_spans (project_id, id) FROM STDIN (FORMAT binary)")
                .expect("copy");
        let batch = RecordBatch::try_from_iter([
            ("p", Arc::new(StringArray::from(vec!["p1"])) as ArrayRef),
            ("i", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
        ])
        .expect("batch");
        no_time.push(&binary_stream(&batch)).expect("push");
        let held = no_time.finish().expect("finish");
        let error =
            crate::engine::ingest::coerce(&no_time.table, &held[0]).expect_err("no timestamp");
        assert_eq!(error.sqlstate(), SqlState::NOT_NULL_VIOLATION);
    }

    #[test]
    fn binary_options_are_checked() {
        assert!(
            copy("COPY otel_logs_and_spans (project_id, id) FROM STDIN BINARY")
                .expect("legacy syntax")
                .is_binary()
        );
        assert!(
            !copy("COPY otel_logs_and_spans (project_id, id) FROM STDIN (FORMAT text)")
                .expect("text")
                .is_binary()
        );
        for (sql, option) in [
            ("(FORMAT binary, DELIMITER ',')", "DELIMITER"),
            ("(FORMAT binary, NULL 'x')", "NULL"),
            ("(FORMAT binary, HEADER true)", "HEADER"),
        ] {
            let error = copy(&format!(
                "COPY otel_logs_and_spans (project_id, id) FROM STDIN {sql}"
            ))
            .expect_err(sql);
            assert_eq!(error.sqlstate(), SqlState::FEATURE_NOT_SUPPORTED);
            assert!(
                error
                    .to_string()
                    .contains(&format!("{option} in binary format")),
                "{error}"
            );
        }
        let mut copy = copy("COPY otel_logs_and_spans (project_id, id) FROM STDIN (FORMAT binary)")
            .expect("copy");
        let error = copy.push(b"p1\ta\n").expect_err("text data");
        assert_eq!(error.sqlstate(), SqlState::BAD_COPY_FILE_FORMAT);
    }

    #[test]
    fn copy_out_binary_puts_the_header_on_the_first_row() {
        use arrow::array::Int64Array;
        let statement = Parser::parse_sql(
            &PostgreSqlDialect {},
            "COPY (SELECT n FROM t) TO STDOUT (FORMAT binary)",
        )
        .expect("parse")
        .remove(0);
        let mut out = CopyOut::from_statement(&statement)
            .expect("a COPY TO")
            .expect("valid");
        assert_eq!(out.format_code(), 1);
        let batch =
            RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)])
                .expect("batch");
        out.begin(&batch.schema()).expect("begin");
        let rows = out.render(&batch).expect("render");
        let mut tuple = vec![0, 1, 0, 0, 0, 8];
        tuple.extend_from_slice(&1i64.to_be_bytes());
        assert_eq!(rows[0], [binary::header(), tuple].concat());
        assert_eq!(rows[1][..2], [0, 1]);
        assert_eq!(out.finish(), None, "the header went out with the first row");

        let nested = DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)));
        let lists = Schema::new(vec![Field::new_list(
            "d",
            Field::new_list_field(nested, true),
            true,
        )]);
        let error = out.begin(&lists).expect_err("a list of lists");
        assert_eq!(error.sqlstate(), SqlState::FEATURE_NOT_SUPPORTED);
        assert!(error.to_string().contains("column \"d\""), "{error}");
        let statement = Parser::parse_sql(
            &PostgreSqlDialect {},
            "COPY (SELECT n FROM t) TO STDOUT (FORMAT binary, HEADER true)",
        )
        .expect("parse")
        .remove(0);
        assert!(
            CopyOut::from_statement(&statement)
                .expect("COPY TO")
                .is_err()
        );
    }

    #[test]
    fn array_literals_become_lists() {
        let mut copy =
            copy("COPY otel_logs_and_spans (project_id, id, hashes) FROM STDIN").expect("copy");
        copy.push(b"p1\ta\t{x,\"y z\",NULL}\np1\tb\t{}\n")
            .expect("push");
        let batches = copy.finish().expect("finish");
        let lists = batches[0].column(2).as_list::<i32>();
        assert_eq!(lists.value(0).len(), 3);
        assert!(lists.value(0).is_null(2));
        assert_eq!(lists.value(0).as_string::<i32>().value(1), "y z");
        assert_eq!(lists.value(1).len(), 0);
    }
}
