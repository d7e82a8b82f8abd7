//! A literal `INSERT … VALUES` read straight from its text into Arrow columns, without
//! tokenizing or parsing it: the bulk insert applications and ORMs send over the simple
//! protocol, a thousand rows a statement.
//!
//! Tokenizing such a statement with sqlparser, parsing it into a syntax tree and turning each
//! value into a `ScalarValue` ([`values::literal_insert`]) took half of the server's CPU for
//! 1,000-row inserts with arrays (BENCHMARKS.md, "Literal inserts without a parser"). [`scan`]
//! reads the text once, appending each value to its column's builder. It accepts a strict
//! subset of what [`values::literal_insert`] accepts and builds the same batch (columns,
//! types, values, schema), so [`crate::engine::ingest`] casts it the same way:
//!
//! - `INSERT INTO name (col, …) VALUES (…), (…)`, names plain (`[A-Za-z_][A-Za-z0-9_]*`,
//!   case-folded) or double-quoted, the table optionally qualified;
//! - values: `'…'` strings (`''` for a quote; backslashes are plain, as with
//!   `standard_conforming_strings`), numbers (`-7`, `1.25`) where their text casts exactly,
//!   `NULL`, `DEFAULT`, `TRUE` / `FALSE`, `ARRAY['…', NULL, …]` for `text[]` columns,
//!   `now()` and its synonyms for timestamp columns; a string, unsigned number, `NULL`,
//!   boolean or `ARRAY` optionally cast once to a type that fits its column
//!   (`'…'::timestamptz`, `ARRAY[…]::text[]`).
//!
//! Anything else returns `None` and the statement takes the parsed path unchanged: a comment,
//! an `E'…'` or dollar-quoted string, a parameter, an expression, `CAST(…)`, a clause after the
//! rows, or a column whose rows mix kinds of value (text in one row, an `ARRAY` or `now()` in
//! another), which that path casts row by row. The unit tests require every generated
//! statement the scanner takes to build the parsed path's batch. Tests: below, and every
//! literal `INSERT` of `tests/`.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, ListBuilder, RecordBatch, RecordBatchOptions, StringBuilder,
    TimestampMicrosecondBuilder, new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::engine::schema::{Catalog, TableSchema};
use crate::sql::values;

/// The table and the batch of the literal `INSERT` `text`, with `now_micros` for `now()`, or
/// `None` when the statement is not one this scanner reads (see the module documentation).
pub fn scan(
    text: &str,
    catalog: &Catalog,
    now_micros: i64,
) -> Option<(Arc<TableSchema>, RecordBatch)> {
    let mut cursor = Cursor { text, at: 0 };
    if !(cursor.keyword("insert") && cursor.keyword("into")) {
        return None;
    }
    // Right after `INTO` the parser reads these words as keywords (`INSERT INTO TABLE t`).
    let start = cursor.at;
    if ["local", "directory", "table"]
        .iter()
        .any(|word| cursor.keyword(word))
    {
        return None;
    }
    cursor.at = start;
    let mut name = vec![cursor.ident()?];
    while name.len() < 3 && cursor.eat(b'.') {
        name.push(cursor.ident()?);
    }
    let name = ObjectName(name.into_iter().map(ObjectNamePart::Identifier).collect());
    let table = crate::sql::resolve_table(catalog, &name)?.clone();
    let mut names = Vec::new();
    if !cursor.eat(b'(') {
        return None;
    }
    // `(SELECT …` and `(WITH …` open a subquery for the parser, not a column list.
    let start = cursor.at;
    if cursor.keyword("select") || cursor.keyword("with") {
        return None;
    }
    cursor.at = start;
    loop {
        names.push(ObjectName(vec![ObjectNamePart::Identifier(
            cursor.ident()?,
        )]));
        if cursor.eat(b')') {
            break;
        }
        if !cursor.eat(b',') {
            return None;
        }
    }
    let fields = values::target_columns(&table, &names)?;
    if !cursor.keyword("values") {
        return None;
    }
    let mut columns: Vec<Column> = fields.iter().map(|_| Column::Nulls(0)).collect();
    let mut casts = CastTypes::default();
    let mut rows = 0usize;
    loop {
        if !cursor.eat(b'(') {
            return None;
        }
        for (j, (field, column)) in fields.iter().zip(columns.iter_mut()).enumerate() {
            if j > 0 && !cursor.eat(b',') {
                return None;
            }
            cursor.value(field.data_type(), column, now_micros, &mut casts)?;
        }
        if !cursor.eat(b')') {
            return None;
        }
        rows += 1;
        if !cursor.eat(b',') {
            break;
        }
    }
    cursor.eat(b';');
    cursor.skip_space();
    if cursor.at != text.len() {
        return None;
    }
    let arrays: Vec<ArrayRef> = fields
        .iter()
        .zip(columns)
        .map(|(field, column)| column.finish(field.data_type()))
        .collect();
    let schema = Schema::new(
        fields
            .iter()
            .zip(&arrays)
            .map(|(field, array)| values::batch_field(field, array))
            .collect::<Vec<Field>>(),
    );
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    let batch = RecordBatch::try_new_with_options(Arc::new(schema), arrays, &options).ok()?;
    Some((table, batch))
}

/// The longest type spelling a cast may have here (`character varying(255)[]` has 24 bytes):
/// a longer one, such as `text` followed by thousands of `[]`, is left to the parsed path.
const MAX_CAST_SPELLING: usize = 64;

/// The values of one target column so far: nulls only, or one kind of value with nulls.
enum Column {
    Nulls(usize),
    Text(StringBuilder),
    List(ListBuilder<StringBuilder>),
    Now(TimestampMicrosecondBuilder),
}

impl Column {
    fn push_null(&mut self) {
        match self {
            Column::Nulls(n) => *n += 1,
            Column::Text(b) => b.append_null(),
            Column::List(b) => b.append_null(),
            Column::Now(b) => b.append_null(),
        }
    }

    /// The text builder, made from the nulls so far; `None` when the column holds another kind.
    fn text(&mut self) -> Option<&mut StringBuilder> {
        if let Column::Nulls(n) = *self {
            let mut builder = StringBuilder::new();
            builder.append_nulls(n);
            *self = Column::Text(builder);
        }
        match self {
            Column::Text(b) => Some(b),
            _ => None,
        }
    }

    fn list(&mut self) -> Option<&mut ListBuilder<StringBuilder>> {
        if let Column::Nulls(n) = *self {
            let mut builder = ListBuilder::new(StringBuilder::new());
            for _ in 0..n {
                builder.append_null();
            }
            *self = Column::List(builder);
        }
        match self {
            Column::List(b) => Some(b),
            _ => None,
        }
    }

    fn now(&mut self) -> Option<&mut TimestampMicrosecondBuilder> {
        if let Column::Nulls(n) = *self {
            let mut builder = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            builder.append_nulls(n);
            *self = Column::Now(builder);
        }
        match self {
            Column::Now(b) => Some(b),
            _ => None,
        }
    }

    /// The column as [`values::literal_insert`] builds it: the values' own type, or the
    /// column's type when every value is null.
    fn finish(self, data_type: &DataType) -> ArrayRef {
        match self {
            Column::Nulls(n) => new_null_array(data_type, n),
            Column::Text(mut b) => Arc::new(b.finish()),
            Column::List(mut b) => Arc::new(b.finish()),
            Column::Now(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The Arrow types of the cast spellings seen in one statement (`timestamptz`, `text[]`), each
/// parsed once by sqlparser, so a cast means here what it means on the parsed path. A
/// statement with more than [`MAX_CAST_SPELLINGS`] of them is left to the parsed path, so
/// looking one up stays a short scan.
#[derive(Default)]
struct CastTypes<'a>(Vec<(&'a str, Option<DataType>)>);

/// The most distinct cast spellings one scanned statement may use.
const MAX_CAST_SPELLINGS: usize = 16;

impl<'a> CastTypes<'a> {
    fn get(&mut self, spelling: &'a str) -> Option<DataType> {
        if let Some((_, known)) = self.0.iter().find(|(s, _)| *s == spelling) {
            return known.clone();
        }
        if self.0.len() == MAX_CAST_SPELLINGS {
            return None;
        }
        let parsed = Self::parse(spelling);
        self.0.push((spelling, parsed.clone()));
        parsed
    }

    fn parse(spelling: &str) -> Option<DataType> {
        let mut parser = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(spelling)
            .ok()?;
        let data_type = parser.parse_data_type().ok()?;
        if parser.peek_token().token != Token::EOF {
            return None;
        }
        values::arrow_type(&data_type)
    }
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')) {
            self.at += 1;
        }
    }

    /// Past `byte` (after whitespace) when it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// The next word, `[A-Za-z_][A-Za-z0-9_]*`; `None` (and nothing consumed but whitespace)
    /// when something else comes next, or the word runs on into characters PostgreSQL also
    /// takes in names (`$`, non-ASCII), which the parsed path should judge.
    fn word(&mut self) -> Option<&'a str> {
        self.skip_space();
        let bytes = self.bytes();
        let start = self.at;
        if !matches!(bytes.get(start), Some(b) if b.is_ascii_alphabetic() || *b == b'_') {
            return None;
        }
        let mut end = start + 1;
        while matches!(bytes.get(end), Some(b) if b.is_ascii_alphanumeric() || *b == b'_') {
            end += 1;
        }
        if matches!(bytes.get(end), Some(b) if *b == b'$' || !b.is_ascii()) {
            return None;
        }
        self.at = end;
        Some(&self.text[start..end])
    }

    /// Past the word `keyword` (any case) when it comes next.
    fn keyword(&mut self, keyword: &str) -> bool {
        let start = self.at;
        match self.word() {
            Some(word) if word.eq_ignore_ascii_case(keyword) => true,
            _ => {
                self.at = start;
                false
            }
        }
    }

    /// A plain or double-quoted name.
    fn ident(&mut self) -> Option<Ident> {
        if self.eat(b'"') {
            let mut value = String::new();
            loop {
                let close = self.at + self.text[self.at..].find('"')?;
                value.push_str(&self.text[self.at..close]);
                self.at = close + 1;
                if self.peek() == Some(b'"') {
                    value.push('"');
                    self.at += 1;
                } else {
                    break;
                }
            }
            return (!value.is_empty()).then(|| Ident::with_quote('"', value));
        }
        self.word().map(Ident::new)
    }

    /// A single-quoted string whose opening quote has been read, `''` read as one quote.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let text = self.text;
        let mut piece = self.at;
        let mut value: Option<String> = None;
        loop {
            let close = self.at + text[self.at..].find('\'')?;
            self.at = close + 1;
            if self.peek() == Some(b'\'') {
                value
                    .get_or_insert_with(String::new)
                    .push_str(&text[piece..=close]);
                self.at += 1;
                piece = self.at;
            } else {
                return Some(match value {
                    None => Cow::Borrowed(&text[piece..close]),
                    Some(mut value) => {
                        value.push_str(&text[piece..close]);
                        Cow::Owned(value)
                    }
                });
            }
        }
    }

    /// A number, `-`? digits (`.` digits)?, that casts exactly to `target` as its text.
    fn number(&mut self, target: &DataType) -> Option<&'a str> {
        let bytes = self.bytes();
        let start = self.at;
        let negative = bytes.get(start) == Some(&b'-');
        let digits = |from: usize| {
            let mut end = from;
            while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
            end
        };
        let first = start + usize::from(negative);
        let mut end = digits(first);
        if end == first {
            return None;
        }
        if bytes.get(end) == Some(&b'.') {
            let fraction = digits(end + 1);
            if fraction == end + 1 {
                return None;
            }
            end = fraction;
        }
        // `1e5`, `1_000`, `0x1F`, `1.2.3`: the parsed path's tokenizer decides those.
        let runs_on = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'$');
        if bytes.get(end).is_some_and(|b| runs_on(b) || !b.is_ascii()) {
            return None;
        }
        if !values::number_casts_exactly(&self.text[first..end], target) {
            return None;
        }
        self.at = end;
        Some(&self.text[start..end])
    }

    /// One value of a row for a column of type `target`, appended to `column`, and its cast if
    /// it has one; `None` for anything the parsed path should have.
    fn value(
        &mut self,
        target: &DataType,
        column: &mut Column,
        now_micros: i64,
        casts: &mut CastTypes<'a>,
    ) -> Option<()> {
        self.skip_space();
        let castable = match self.peek()? {
            b'\'' => {
                self.at += 1;
                let text = self.string()?;
                column.text()?.append_value(text);
                true
            }
            b'-' | b'0'..=b'9' => {
                let negative = self.peek() == Some(b'-');
                let number = self.number(target)?;
                column.text()?.append_value(number);
                // `-5::int` is `-(5::int)`, which the parsed path leaves to DataFusion.
                !negative
            }
            _ => {
                // The word in lower case, without allocating for every value: none of the
                // words taken here is longer than the buffer.
                let word = self.word()?;
                let mut buffer = [0u8; 24];
                let lower = buffer.get_mut(..word.len())?;
                lower.copy_from_slice(word.as_bytes());
                lower.make_ascii_lowercase();
                match &*lower {
                    b"null" => {
                        column.push_null();
                        true
                    }
                    b"default" => {
                        column.push_null();
                        false
                    }
                    b"true" | b"false" if matches!(target, DataType::Boolean | DataType::Utf8) => {
                        let text = if &*lower == b"true" { "true" } else { "false" };
                        column.text()?.append_value(text);
                        true
                    }
                    b"array" => {
                        self.array(target, column)?;
                        true
                    }
                    name @ (b"now"
                    | b"current_timestamp"
                    | b"transaction_timestamp"
                    | b"statement_timestamp")
                        if matches!(target, DataType::Timestamp(..)) =>
                    {
                        let called = self.eat(b'(');
                        if called && !self.eat(b')') || !called && name != b"current_timestamp" {
                            return None;
                        }
                        column.now()?.append_value(now_micros);
                        false
                    }
                    _ => return None,
                }
            }
        };
        self.skip_space();
        if self.text[self.at..].starts_with("::") {
            self.at += 2;
            if !castable {
                return None;
            }
            let cast = casts.get(self.cast_spelling()?)?;
            if !values::fits(&cast, target) {
                return None;
            }
        }
        Some(())
    }

    /// `[…]` after `ARRAY`: strings and `NULL`s, for a `text[]` column.
    fn array(&mut self, target: &DataType, column: &mut Column) -> Option<()> {
        let DataType::List(item) = target else {
            return None;
        };
        if item.data_type() != &DataType::Utf8 || !self.eat(b'[') {
            return None;
        }
        let builder = column.list()?;
        if !self.eat(b']') {
            loop {
                self.skip_space();
                if self.peek() == Some(b'\'') {
                    self.at += 1;
                    let text = self.string()?;
                    builder.values().append_value(text);
                } else if self.keyword("null") {
                    builder.values().append_null();
                } else {
                    return None;
                }
                if self.eat(b']') {
                    break;
                }
                if !self.eat(b',') {
                    return None;
                }
            }
        }
        builder.append(true);
        Some(())
    }

    /// The type after `::`, up to the `,` or `)` that ends the value: names, spaces, `(n)`
    /// and `[]`, at most [`MAX_CAST_SPELLING`] bytes; `None` on anything else (a second cast,
    /// a quote, a comment).
    fn cast_spelling(&mut self) -> Option<&'a str> {
        let bytes = self.bytes();
        let start = self.at;
        let mut depth = 0usize;
        while let Some(&b) = bytes.get(self.at) {
            if self.at - start > MAX_CAST_SPELLING {
                return None;
            }
            match b {
                b',' if depth == 0 => break,
                b')' if depth == 0 => break,
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth = depth.checked_sub(1)?,
                b if b.is_ascii_alphanumeric() || b == b'_' || b.is_ascii_whitespace() => {}
                _ => return None,
            }
            self.at += 1;
        }
        let spelling = self.text[start..self.at].trim();
        (depth == 0 && !spelling.is_empty()).then_some(spelling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::Statement;

    const NOW: i64 = 1_765_000_000_123_456;

    fn catalog() -> Catalog {
        Catalog::load(None).expect("schemas")
    }

    /// The batch the parsed path builds for `sql`, when it takes the statement.
    fn parsed(sql: &str, catalog: &Catalog) -> Option<RecordBatch> {
        let statements: Vec<Statement> = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
        let [statement] = statements.as_slice() else {
            return None;
        };
        let template = values::template(statement, catalog)?;
        if !template.parameter_types().is_empty() {
            return None;
        }
        Some(template.bind(&[], NOW).expect("the parsed path binds"))
    }

    /// `sql` through both paths: when the scanner takes it, the parsed path takes it too and
    /// builds the same batch. Returns whether the scanner took it.
    fn same_as_parsed(sql: &str, catalog: &Catalog) -> bool {
        let Some((table, batch)) = scan(sql, catalog, NOW) else {
            return false;
        };
        let expected = parsed(sql, catalog)
            .unwrap_or_else(|| panic!("the scanner took what the parsed path refuses: {sql}"));
        assert_eq!(table.name, "otel_logs_and_spans");
        assert_eq!(batch.schema(), expected.schema(), "{sql}");
        assert_eq!(batch, expected, "{sql}");
        true
    }

    const COLUMNS: &str = "project_id, timestamp, id, hashes, duration, name, observed_timestamp, \
                           context___is_remote, body";

    #[test]
    fn the_bulk_insert_of_an_application_is_scanned_as_it_is_parsed() {
        let catalog = catalog();
        let sql = format!(
            "INSERT INTO otel_logs_and_spans ({COLUMNS}) VALUES\n\
             ('bench-1', '2026-12-06 07:17:39.913071+00'::timestamptz, 'a', ARRAY['err','db']::text[], 42, 'GET /api', now(), true, '{{\"k\": \"it''s\"}}'),\n\
             ('bench-2', '2026-12-06 07:17:40+00'::timestamptz, 'b', ARRAY[]::text[], -7, NULL, NOW( ), FALSE, NULL),\n\
             ('bench-3', '2026-12-06T07:17:41Z', 'c''d', ARRAY['x', NULL], 1234567890123, DEFAULT, current_timestamp, NULL, '\\n')"
        );
        assert!(same_as_parsed(&sql, &catalog));
        let (_, batch) = scan(&sql, &catalog, NOW).expect("scanned");
        use arrow::array::AsArray;
        let text = |c: usize, r: usize| batch.column(c).as_string::<i32>().value(r).to_string();
        assert_eq!(text(2, 2), "c'd");
        assert_eq!(text(4, 1), "-7");
        assert_eq!(text(7, 0), "true");
        assert_eq!(text(8, 0), "{\"k\": \"it's\"}");
        assert_eq!(text(8, 2), "\\n", "backslashes are plain");
        assert_eq!(batch.column(3).as_list::<i32>().value(2).null_count(), 1);
        assert_eq!(
            batch
                .column(6)
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .value(2),
            NOW
        );
        let table = catalog.get("otel_logs_and_spans").expect("table");
        crate::engine::ingest::coerce(table, &batch).expect("coerces to the table's types");
    }

    #[test]
    fn names_are_read_as_the_parser_reads_them() {
        let catalog = catalog();
        for sql in [
            "insert into OTEL_LOGS_AND_SPANS (PROJECT_ID, \"timestamp\", Id) values ('p', '2026-01-01', 'i')",
            "INSERT INTO public.otel_logs_and_spans (project_id, timestamp, id) VALUES ('p', '2026-01-01', 'i');",
            "INSERT INTO \"otel_logs_and_spans\" ( project_id , timestamp , id ) VALUES ( 'p' , '2026-01-01' , 'i' ) ; ",
        ] {
            assert!(same_as_parsed(sql, &catalog), "{sql}");
        }
        for sql in [
            // A quoted name keeps its case: no such table or column.
            "INSERT INTO \"OTEL_LOGS_AND_SPANS\" (project_id) VALUES ('p')",
            "INSERT INTO otel_logs_and_spans (\"PROJECT_ID\") VALUES ('p')",
            "INSERT INTO otel_logs_and_spans (project_id, project_id) VALUES ('p', 'q')",
            "INSERT INTO otel_logs_and_spans VALUES ('p')",
            "INSERT INTO other.otel_logs_and_spans (project_id) VALUES ('p')",
        ] {
            assert!(scan(sql, &catalog, NOW).is_none(), "{sql}");
        }
    }

    #[test]
    fn what_needs_the_parser_is_left_to_it() {
        let catalog = catalog();
        let row = |values: &str| {
            format!(
                "INSERT INTO otel_logs_and_spans (project_id, duration, hashes, timestamp) VALUES ('p', 1, NULL, NULL), ({values})"
            )
        };
        for values in [
            "'p', 1, NULL, NULL -- a comment",
            "'p', 1, NULL, NULL /* a comment */",
            "E'p', 1, NULL, NULL",
            "$$p$$, 1, NULL, NULL",
            "$1, 1, NULL, NULL",
            "'p', 1 + 1, NULL, NULL",
            "'p', 1.5, NULL, NULL",
            "'p', 1e3, NULL, NULL",
            "'p', 1_000, NULL, NULL",
            "'p', -5::bigint, NULL, NULL",
            "'p', - 5, NULL, NULL",
            "'p', 1, ARRAY['a'::text], NULL",
            "'p', 1, ARRAY[1], NULL",
            "'p', 1, NULL, '2026-01-01'::int",
            "'p', 1, NULL, '2026-01-01'::text::timestamptz",
            "'p', 1, NULL, CAST('2026-01-01' AS timestamptz)",
            "'p', 1, NULL, now()::timestamptz",
            "'p', 1, NULL, now",
            "'p', 1, NULL, current_timestamp(3)",
            "'p', 1, NULL, localtimestamp",
            "lower('p'), 1, NULL, NULL",
            "'p' 'q', 1, NULL, NULL",
            "'p', 1, NULL",
            "'p', 1, NULL, NULL, NULL",
            "'p', 1, NULL, 'unterminated",
            "'p', 1, '{a}'::text[][][][][][][][][][][][][][][][][][][][][][][][][][][][][][][][][], NULL",
            "'p', 1, NULL, '2026-01-01'::varchar(1)::timestamptz",
        ] {
            let sql = row(values);
            assert!(scan(&sql, &catalog, NOW).is_none(), "{sql}");
        }
        for trailer in [
            " ON CONFLICT DO NOTHING",
            " RETURNING id",
            "; SELECT 1",
            ",",
        ] {
            let sql = format!("{}{trailer}", row("'p', 1, NULL, NULL"));
            assert!(scan(&sql, &catalog, NOW).is_none(), "{sql}");
        }
        // At most MAX_CAST_SPELLINGS distinct casts a statement.
        let casts = |n: usize| {
            let rows: Vec<String> = (1..=n)
                .map(|i| format!("('p', 'x'::varchar({i}))"))
                .collect();
            format!(
                "INSERT INTO otel_logs_and_spans (project_id, name) VALUES {}",
                rows.join(", ")
            )
        };
        assert!(same_as_parsed(&casts(MAX_CAST_SPELLINGS), &catalog));
        assert!(scan(&casts(MAX_CAST_SPELLINGS + 1), &catalog, NOW).is_none());
        // A column whose rows mix text and `now()` is cast row by row on the parsed path.
        let sql = "INSERT INTO otel_logs_and_spans (project_id, timestamp) VALUES ('p', now()), ('p', '2026-01-01')";
        assert!(scan(sql, &catalog, NOW).is_none());
        assert!(parsed(sql, &catalog).is_some());
    }

    #[test]
    fn names_the_parser_reads_as_keywords_are_left_to_it() {
        // A user's table named `local`: right after INTO the parser reads it as a keyword.
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = include_str!("../../schemas/otel_metrics.yaml")
            .replace("name: otel_metrics", "name: local");
        std::fs::write(dir.path().join("local.yaml"), yaml).expect("schema");
        let catalog = Catalog::load(Some(dir.path())).expect("catalog");
        let quoted = "INSERT INTO \"local\" (project_id, timestamp) VALUES ('p', '2026-01-01')";
        assert!(scan(quoted, &catalog, NOW).is_some());
        let unquoted = "INSERT INTO local (project_id, timestamp) VALUES ('p', '2026-01-01')";
        assert!(scan(unquoted, &catalog, NOW).is_none());
    }

    /// A small deterministic generator (xorshift), so the test needs no extra crate.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    #[test]
    fn generated_statements_build_the_same_batch_on_both_paths() {
        let catalog = catalog();
        // Values for each column, valid and not, in the spellings clients write.
        let text = [
            "'x'",
            "''",
            "'it''s'",
            "'''q'''",
            "'a\nb'",
            "'é ✓'",
            "'\\'",
            "NULL",
            "DEFAULT",
            "'x'::text",
            "'x'::varchar(10)",
            "'x' :: character varying",
            "'{}'::jsonb",
            "42",
            "-42",
            "4.25",
            "TRUE",
            "false",
            "NULL::text",
            "'x'::int",
            "E'x'",
            "'x'::text[]",
            "ARRAY['x']",
            "now()",
        ];
        let time = [
            "'2026-01-01 00:00:00+00'::timestamptz",
            "'2026-01-01'::timestamp",
            "'2026-01-01'::timestamp with time zone",
            "'2026-01-01' ::TIMESTAMPTZ",
            "'2026-01-01T00:00:00Z'",
            "now()",
            "NOW ()",
            "CURRENT_TIMESTAMP",
            "statement_timestamp()",
            "transaction_timestamp( )",
            "NULL",
            "DEFAULT",
            "'2026-01-01'::date",
            "now",
            "1",
            "NULL::timestamptz",
        ];
        let number = [
            "0",
            "7",
            "-7",
            "9223372036854775807",
            "'12'",
            "12::bigint",
            "12::int",
            "12::smallint",
            "1.0",
            "NULL",
            "DEFAULT",
            "'x'",
            "12::text",
            "true",
            "- 7",
        ];
        let list = [
            "ARRAY['a','b']",
            "ARRAY[ 'a' , NULL ]",
            "ARRAY[]::text[]",
            "ARRAY['a']::varchar[]",
            "ARRAY['a']::text[]",
            "'{a,b}'",
            "'{a,b}'::text[]",
            "NULL",
            "DEFAULT",
            "ARRAY[NULL]",
            "array['A''s']",
            "ARRAY['a']::int[]",
            "ARRAY[1]",
            "ARRAY['a'",
            "NULL::text[]",
        ];
        let boolean = [
            "true",
            "FALSE",
            "'t'",
            "NULL",
            "DEFAULT",
            "1",
            "'true'::boolean",
            "true::bool",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut scanned = 0;
        for _ in 0..3000 {
            let rows = 1 + rng.below(3);
            let mut sql = String::from(
                "INSERT INTO otel_logs_and_spans (project_id, timestamp, duration, hashes, context___is_remote, name) VALUES ",
            );
            // Most statements keep to one spelling per column kind, so that columns do not
            // mostly mix kinds and fall back.
            let uniform = rng.below(2) == 0;
            let first = [
                rng.pick(&text),
                rng.pick(&time),
                rng.pick(&number),
                rng.pick(&list),
                rng.pick(&boolean),
            ];
            for r in 0..rows {
                if r > 0 {
                    sql.push_str(if rng.below(2) == 0 { ", " } else { ",\n" });
                }
                let value = |k: usize, rng: &mut Rng| -> String {
                    if uniform && rng.below(4) > 0 {
                        return first[k].to_string();
                    }
                    rng.pick(match k {
                        0 => &text,
                        1 => &time,
                        2 => &number,
                        3 => &list,
                        _ => &boolean,
                    })
                    .to_string()
                };
                let cells = [
                    "'p'".to_string(),
                    value(1, &mut rng),
                    value(2, &mut rng),
                    value(3, &mut rng),
                    value(4, &mut rng),
                    value(0, &mut rng),
                ];
                sql.push('(');
                sql.push_str(&cells.join(", "));
                sql.push(')');
            }
            if same_as_parsed(&sql, &catalog) {
                scanned += 1;
            }
        }
        // The scanner must take a good share of what it is meant to take, or this test would
        // pass by refusing everything.
        assert!(scanned > 300, "only {scanned} of 3000 statements scanned");
    }
}
