//! Rewrites of a query's text before any parser sees it, for statements the parsers get
//! wrong: sqlparser has no `RESET TIME ZONE`, and datafusion-pg-catalog's compatibility
//! parser replaces Grafana's search-path subquery by `''` (a "blacklist" entry written
//! before `current_setting` existed), so Grafana's column picker found no column of a table
//! named without its schema.
//!
//! Patterns match whatever the whitespace and letter case (the tools' text is fixed, its
//! indentation is not); each costs a case-insensitive substring check of its marker on queries
//! that cannot match.

use std::borrow::Cow;

use crate::error::{SqlError, SqlState};

struct Rewrite {
    /// A word the query must contain for the pattern to be tried.
    marker: &'static str,
    /// The text to find, compared without whitespace and ASCII case.
    pattern: &'static str,
    replacement: &'static str,
    /// Whether the pattern is a whole statement: it matches only at the start of the text or
    /// after a `;` (so never inside a string literal such as `'reset time zone'`).
    statement: bool,
}

const REWRITES: &[Rewrite] = &[
    Rewrite {
        marker: "reset",
        pattern: "RESET TIME ZONE",
        replacement: "RESET timezone",
        statement: true,
    },
    // Grafana (`postgresMetaQuery.ts`: `showTables` and `getSchema` without a schema): "is in
    // the search path", as a subquery over the path with `"$user"` mapped to the user.
    // `current_schemas(false)` is the path's schemas that exist, which is what the subquery
    // computes, and `= ANY` of it plans in an `ORDER BY` too, where a subquery does not.
    Rewrite {
        marker: "search_path",
        pattern: r#"IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"#,
        replacement: "= ANY(current_schemas(false))",
        statement: false,
    },
];

/// `query` with every known-bad statement text replaced; borrowed when nothing matched.
pub fn rewrite(query: &str) -> Cow<'_, str> {
    // Data statements carry the client's values, which no pattern may touch.
    let head = query.trim_start().get(..6).unwrap_or_default();
    if head.eq_ignore_ascii_case("insert")
        || head
            .get(..4)
            .is_some_and(|h| h.eq_ignore_ascii_case("copy"))
    {
        return Cow::Borrowed(query);
    }
    let mut query = Cow::Borrowed(query);
    for rewrite in REWRITES {
        if !contains_ignore_ascii_case(&query, rewrite.marker) {
            continue;
        }
        if let Some(rewritten) = replace_all(&query, rewrite) {
            query = Cow::Owned(rewritten);
        }
    }
    query
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

/// `text` with each occurrence of the rewrite's pattern (ignoring whitespace and ASCII case)
/// that starts and ends at a word boundary replaced, or `None` when there is none.
fn replace_all(text: &str, rewrite: &Rewrite) -> Option<String> {
    let word = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
    let squeeze = |s: &str| -> Vec<(usize, u8)> {
        s.bytes()
            .enumerate()
            .filter(|(_, b)| !b.is_ascii_whitespace())
            .map(|(i, b)| (i, b.to_ascii_lowercase()))
            .collect()
    };
    let wanted: Vec<u8> = squeeze(rewrite.pattern)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    let have = squeeze(text);
    let bytes = text.as_bytes();
    // The match `have[from..to]` neither splits a word nor, for a statement, follows one.
    let bounded = |from: usize, to: usize| {
        let (start, end) = (have[from].0, have[to - 1].0 + 1);
        let before = start.checked_sub(1).map(|i| &bytes[i]);
        let after = bytes.get(end);
        // A `;` inside a string literal ends no statement: an even count of quotes before
        // the match puts it outside every literal.
        let outside_literals = bytes[..start].iter().filter(|b| **b == b'\'').count() % 2 == 0;
        let statement_start = (from == 0 || have[from - 1].1 == b';') && outside_literals;
        let splits_word_before = word(before) && word(bytes.get(start));
        let splits_word_after = word(after) && word(bytes.get(end - 1));
        let misplaced = rewrite.statement && !statement_start;
        !(splits_word_before || splits_word_after || misplaced)
    };
    let mut out = String::new();
    let mut copied = 0; // bytes of `text` already in `out`
    let mut at = 0; // position in `have`
    while at + wanted.len() <= have.len() {
        if have[at..at + wanted.len()]
            .iter()
            .zip(&wanted)
            .all(|((_, b), w)| b == w)
            && bounded(at, at + wanted.len())
        {
            let start = have[at].0;
            let end = have[at + wanted.len() - 1].0 + 1;
            out.push_str(&text[copied..start]);
            out.push_str(rewrite.replacement);
            copied = end;
            at += wanted.len();
        } else {
            at += 1;
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// The statements of a simple query, in order, each without its `;`; pieces with nothing but
/// whitespace and comments are left out. PostgreSQL runs the statements of one simple query
/// one after another: each sees the transaction state the previous one left (`BEGIN; SET
/// LOCAL …; SELECT …`), has its own `statement_timeout`, and a failed one ends the query.
pub fn statements(query: &str) -> Vec<&str> {
    let bytes = query.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut content = false;
    lex(query, |lexeme| match lexeme {
        Lexeme::Code(i) if bytes[i] == b';' => {
            if content {
                pieces.push(&query[start..i]);
            }
            start = i + 1;
            content = false;
        }
        Lexeme::Code(i) if bytes[i].is_ascii_whitespace() => {}
        Lexeme::Code(_) | Lexeme::Quoted(_) => content = true,
        Lexeme::Comment(_) => {}
    });
    if content {
        pieces.push(&query[start..]);
    }
    pieces
}

/// The deepest parentheses and brackets may nest in a statement. The parsers stop at 50
/// levels of their own recursion (sqlparser's default, which datafusion-postgres does not
/// change), and past it sqlparser's error path retries alternatives at every level and does
/// not finish (`ARRAY[ARRAY[…]]` 45 deep).
pub const MAX_NESTING: usize = 32;

/// The deepest function calls, arrays and subqueries may nest in one another, a subquery in
/// an expression counting twice. sqlparser parses each such level twice (a function argument
/// is first tried as a named argument `name => value`), so parsing takes time exponential in
/// this nesting. Measured on a debug build: 16 nested calls parse in 0.2 s of one thread, 20
/// in 2.9 s; 8 nested scalar subqueries in 0.02 s, 16 in 3.9 s. Derived tables (`FROM
/// (SELECT …)`) are parsed once and do not count.
pub const MAX_CALL_NESTING: usize = 16;

/// The most parts a dotted name may have (`catalog.schema.table.column` has four). sqlparser
/// backtracks once per part of an unfinished one (`r.a.b.….`), in time exponential in its
/// length: 16 parts took 0.08 s, 18 parts 0.24 s, and a 40-part one, found by the fuzz target
/// `sql_plan`, never finished.
pub const MAX_NAME_PARTS: usize = 8;

/// Refuses a statement whose expressions are deeper than the parsers and planners can take
/// (SQLSTATE 54001, as PostgreSQL's "stack depth limit exceeded"), from its text, before any
/// parser builds a syntax tree of it:
///
/// - `max_depth` bounds the levels of parentheses and brackets plus the operators chained at
///   each level (`1+1+…+1` is a tree as deep as it has terms; planning it takes time
///   quadratic in that depth, and dropping, copying or printing it recurses once a level).
///   Lists do not add depth: an `IN` list of 100,000 values or a 10,000-row `VALUES` is as
///   shallow as one of its items. What counts, per level, since its last `,`: each operator
///   character (`+`, `::` is two) and each operator keyword (`AND`, `OR`, `NOT`, `IS`,
///   `LIKE`, `BETWEEN`, `IN`, `CASE`, …): an upper bound of the depth the parsers give it.
/// - [`MAX_NESTING`], [`MAX_CALL_NESTING`] and [`MAX_NAME_PARTS`] bound nesting and names
///   where the parser slows down or gives up.
pub fn check_depth(query: &str, max_depth: usize) -> Result<(), SqlError> {
    let mut scan = DepthScan {
        bytes: query.as_bytes(),
        levels: vec![Level::default()],
        depth: 1,
        deepest: 1,
        calls: 0,
        deepest_calls: 0,
        widest: 1,
        word_start: None,
        after: After::Other,
        dots: 0,
        most_dots: 0,
        dims: 0,
        most_dims: 0,
        max_depth,
    };
    lex(query, |lexeme| scan.visit(lexeme));
    scan.end_word(query.len());
    let too_complex =
        |message: String| Err(SqlError::new(SqlState::STATEMENT_TOO_COMPLEX, message));
    if scan.widest > MAX_NESTING + 1 {
        return too_complex(format!(
            "statement nested too deeply: parentheses and brackets nest more than \
             {MAX_NESTING} levels"
        ));
    }
    if scan.deepest_calls > MAX_CALL_NESTING {
        return too_complex(format!(
            "statement nested too deeply: function calls, subqueries and arrays nest more \
             than {MAX_CALL_NESTING} levels"
        ));
    }
    if scan.most_dims > MAX_NESTING {
        return too_complex(format!(
            "statement too complex: a type with more than {MAX_NESTING} array dimensions ([])"
        ));
    }
    if scan.most_dots >= MAX_NAME_PARTS {
        return too_complex(format!(
            "statement too complex: a dotted name of more than {MAX_NAME_PARTS} parts"
        ));
    }
    if scan.deepest > max_depth {
        return too_complex(format!(
            "statement too complex: an expression nests or chains operators more than \
             {max_depth} deep (TIMEFUSION_MAX_EXPRESSION_DEPTH); write a long OR of \
             equalities as IN (…) or = ANY($1)"
        ));
    }
    Ok(())
}

/// One open level of parentheses or brackets in [`DepthScan`].
#[derive(Default)]
struct Level {
    /// Operators chained at this level since its last `,`.
    chained: usize,
    /// What it counts towards [`MAX_CALL_NESTING`]: 1 for a function call or array, 2 for a
    /// subquery in an expression, 0 otherwise.
    calls: usize,
    /// Whether anything but whitespace and comments followed its opening yet.
    started: bool,
    /// Whether it follows `FROM` or `JOIN`: a derived table.
    derived: bool,
    /// Whether `[` opened it.
    bracket: bool,
    /// The run of `[…]` groups it continues (`text[2][3]`, see [`DepthScan::dims`]).
    dims: usize,
}

/// The kind of token [`DepthScan`] read last.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Name,
    From,
    Other,
}

/// The state of [`check_depth`]'s pass.
struct DepthScan<'a> {
    bytes: &'a [u8],
    /// The open levels, outermost (the statement) first.
    levels: Vec<Level>,
    /// The bound at this point: one per open level plus every operator chained on them.
    depth: usize,
    deepest: usize,
    /// Open levels that are calls, and the most at once.
    calls: usize,
    deepest_calls: usize,
    /// The most levels open at once.
    widest: usize,
    /// Where the word being read started.
    word_start: Option<usize>,
    /// What the last token was: a `(` after a name opens a call, after `FROM` or `JOIN` a
    /// derived table (parsed once).
    after: After,
    /// Dots in the run of words and dots being read, and the most in one run.
    dots: usize,
    most_dots: usize,
    /// `[…]` groups in a row, empty or not (`text[][4]`: a type's array dimensions, one
    /// nested type each in the parser), and the most.
    dims: usize,
    most_dims: usize,
    max_depth: usize,
}

impl DepthScan<'_> {
    fn refused(&self) -> bool {
        self.deepest > self.max_depth
            || self.widest > MAX_NESTING + 1
            || self.deepest_calls > MAX_CALL_NESTING
            || self.most_dots >= MAX_NAME_PARTS
            || self.most_dims > MAX_NESTING
    }

    fn visit(&mut self, lexeme: Lexeme) {
        if self.refused() {
            return;
        }
        let i = match lexeme {
            Lexeme::Code(i) => i,
            Lexeme::Comment(start) => return self.end_word(start),
            Lexeme::Quoted(start) => {
                self.end_word(start);
                self.token(After::Other);
                return;
            }
        };
        let b = self.bytes[i];
        let word = b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
        if word {
            if self.word_start.is_none() {
                self.word_start = Some(i);
            }
            return;
        }
        self.end_word(i);
        // A dotted name is words and dots (and quoted names); anything else ends it.
        if b == b'.' {
            self.dots += 1;
            self.most_dots = self.most_dots.max(self.dots);
        } else if !b.is_ascii_whitespace() {
            self.dots = 0;
        }
        match b {
            b'(' | b'[' => {
                let calls = usize::from(b == b'[' || self.after == After::Name);
                let derived = self.after == After::From;
                let dims = self.dims;
                self.token(After::Other);
                if b == b'[' {
                    self.dims = dims;
                }
                self.levels.push(Level {
                    calls,
                    derived,
                    bracket: b == b'[',
                    dims: self.dims,
                    ..Level::default()
                });
                self.depth += 1;
                self.widest = self.widest.max(self.levels.len());
                self.open_call(calls);
            }
            b')' | b']' if self.levels.len() > 1 => {
                let level = self.levels.pop().unwrap_or_default();
                self.depth -= level.chained + 1;
                self.calls -= level.calls;
                self.token(After::Other);
                if b == b']' && level.bracket {
                    self.dims = level.dims + 1;
                    self.most_dims = self.most_dims.max(self.dims);
                }
            }
            b',' | b';' => {
                let level = self.levels.last_mut().expect("level 0 is never closed");
                self.depth -= level.chained;
                level.chained = 0;
                self.token(After::Other);
            }
            b'+' | b'-' | b'*' | b'/' | b'<' | b'>' | b'=' | b'~' | b'!' | b'@' | b'#' | b'%'
            | b'^' | b'&' | b'|' | b'?' | b':' => {
                self.chain();
                self.token(After::Other);
            }
            b if b.is_ascii_whitespace() => {}
            _ => self.token(After::Other),
        }
    }

    /// The word being read, if any, ends before `end`.
    fn end_word(&mut self, end: usize) {
        let Some(start) = self.word_start.take() else {
            return;
        };
        let word = &self.bytes[start..end];
        let nested = self.levels.len() > 1;
        let level = self.levels.last_mut().expect("level 0 is never closed");
        // `(SELECT …)` in an expression: a subquery, parsed twice as a call is, and each
        // time slower than one.
        if nested && !level.started && !level.derived && is_query_keyword(word) {
            let more = 2usize.saturating_sub(level.calls);
            level.calls += more;
            self.open_call(more);
        }
        let operator = is_operator_keyword(word);
        if operator {
            self.chain();
        }
        // `abs(`, `ARRAY(`, `IN (`, `VALUES (`: a call, or a list no deeper than one; not a
        // parenthesized expression after `AND` or `WHERE`.
        self.token(
            if word.eq_ignore_ascii_case(b"from") || word.eq_ignore_ascii_case(b"join") {
                After::From
            } else if operator || is_clause_keyword(word) {
                After::Other
            } else {
                After::Name
            },
        );
    }

    /// A token other than whitespace or a comment was read (it ends a run of `[]`).
    fn token(&mut self, after: After) {
        self.dims = 0;
        self.levels
            .last_mut()
            .expect("level 0 is never closed")
            .started = true;
        self.after = after;
    }

    fn open_call(&mut self, calls: usize) {
        self.calls += calls;
        self.deepest_calls = self.deepest_calls.max(self.calls);
    }

    fn chain(&mut self) {
        self.levels
            .last_mut()
            .expect("level 0 is never closed")
            .chained += 1;
        self.depth += 1;
        self.deepest = self.deepest.max(self.depth);
    }
}

/// Keywords after which a parenthesis opens an expression, not a call.
fn is_clause_keyword(word: &[u8]) -> bool {
    const KEYWORDS: &[&[u8]] = &[
        b"select",
        b"where",
        b"having",
        b"on",
        b"when",
        b"then",
        b"else",
        b"by",
        b"from",
        b"join",
        b"distinct",
        b"return",
        b"set",
    ];
    word.len() <= 8 && KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// Keywords that start a query.
fn is_query_keyword(word: &[u8]) -> bool {
    [b"select".as_slice(), b"with", b"values"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(word))
}

/// Keywords that apply an operator to the expression before or after them.
fn is_operator_keyword(word: &[u8]) -> bool {
    const KEYWORDS: &[&[u8]] = &[
        b"and",
        b"or",
        b"not",
        b"is",
        b"like",
        b"ilike",
        b"similar",
        b"between",
        b"in",
        b"case",
        b"collate",
        b"at",
        b"overlaps",
        b"xor",
        b"any",
        b"all",
        b"some",
    ];
    word.len() <= 8 && KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// What [`lex`] hands its visitor.
#[derive(Clone, Copy)]
enum Lexeme {
    /// The byte at this offset, outside string literals, quoted names and comments.
    Code(usize),
    /// A string literal, a quoted name or a dollar-quoted string, whole, starting here.
    Quoted(usize),
    /// A comment, whole, starting here.
    Comment(usize),
}

/// One pass over `query` as PostgreSQL's lexer reads it: a string (`'…'` with `''`, `E'…'`
/// with backslash escapes), a quoted name, a dollar-quoted string (`$$…$$`, `$tag$…$tag$`),
/// a `--` comment or a nested `/* */` comment is one piece, whatever it holds. An unterminated string or comment runs to the end of the text, where the parser
/// reports it.
fn lex(query: &str, mut visit: impl FnMut(Lexeme)) {
    let bytes = query.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let before = i.checked_sub(1).map(|j| bytes[j]);
        match b {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                visit(Lexeme::Comment(i));
                i = bytes[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                visit(Lexeme::Comment(i));
                let mut depth = 0usize;
                while i < bytes.len() {
                    if bytes[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if bytes[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' | b'"' => {
                let start = i;
                // `E'…'` takes backslash escapes, unless the E ends a longer word.
                let escapes = b == b'\''
                    && matches!(before, Some(b'E' | b'e'))
                    && !i.checked_sub(2).is_some_and(|j| word(bytes[j]));
                i += 1;
                while i < bytes.len() {
                    if escapes && bytes[i] == b'\\' {
                        i += 2;
                    } else if bytes[i] == b {
                        if bytes.get(i + 1) == Some(&b) {
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                visit(Lexeme::Quoted(start));
            }
            b'$' if !before.is_some_and(word) => {
                // `$tag$` with an empty or identifier tag opens a dollar-quoted string;
                // `$1` is a parameter.
                let tag_len = bytes[i + 1..]
                    .iter()
                    .position(|&c| !word(c))
                    .unwrap_or(bytes.len() - i - 1);
                let opens = bytes.get(i + 1 + tag_len) == Some(&b'$')
                    && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
                if opens {
                    let start = i;
                    let delimiter = &bytes[i..i + 2 + tag_len];
                    let body = i + delimiter.len();
                    i = bytes[body..]
                        .windows(delimiter.len())
                        .position(|w| w == delimiter)
                        .map_or(bytes.len(), |p| body + p + delimiter.len());
                    visit(Lexeme::Quoted(start));
                } else {
                    visit(Lexeme::Code(i));
                    i += 1;
                }
            }
            _ => {
                visit(Lexeme::Code(i));
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simple_query_splits_at_semicolons_outside_literals_and_comments() {
        assert_eq!(statements("SELECT 1"), ["SELECT 1"]);
        assert_eq!(statements("SELECT 1;\n "), ["SELECT 1"]);
        assert_eq!(
            statements("BEGIN; SET LOCAL statement_timeout = '1s';SELECT 2;"),
            ["BEGIN", " SET LOCAL statement_timeout = '1s'", "SELECT 2"]
        );
        assert_eq!(
            statements("SELECT 'a;b', \"c;d\" -- e;f\n FROM t; /* g; /* h; */ */ SELECT $$h;$$; ;"),
            [
                "SELECT 'a;b', \"c;d\" -- e;f\n FROM t",
                " /* g; /* h; */ */ SELECT $$h;$$"
            ]
        );
        assert_eq!(
            statements("SELECT 'it''s;', E'\\';', $fn$ a; $$ b; $fn$, $1; SELECT 2"),
            [
                "SELECT 'it''s;', E'\\';', $fn$ a; $$ b; $fn$, $1",
                " SELECT 2"
            ]
        );
        // Multi-byte text around the cuts.
        assert_eq!(
            statements("SELECT 'é';\nSELECT 'ü'; SELECT 3"),
            ["SELECT 'é'", "\nSELECT 'ü'", " SELECT 3"]
        );
        // Comments alone are not statements (PostgreSQL sends no EmptyQueryResponse for them).
        assert_eq!(statements("SELECT 1; -- done"), ["SELECT 1"]);
        assert_eq!(
            statements("SELECT 1; /* x */; SELECT 2"),
            ["SELECT 1", " SELECT 2"]
        );
        assert!(statements("-- nothing").is_empty());
        // An unterminated string runs to the end, for the parser's error.
        assert_eq!(
            statements("SELECT 'open; SELECT 2"),
            ["SELECT 'open; SELECT 2"]
        );
        // A word ending in E before a quote does not make an escape string.
        assert_eq!(
            statements("SELECT some'\\'; SELECT 2"),
            ["SELECT some'\\'", " SELECT 2"]
        );
    }

    #[test]
    fn depth_counts_nesting_and_chained_operators_but_not_lists() {
        let deep = |sql: &str, max: usize| check_depth(sql, max).map_err(|e| e.state);
        let chain = |n: usize| format!("SELECT {}", vec!["1"; n].join("+"));
        assert!(deep(&chain(500), 1000).is_ok());
        assert_eq!(
            deep(&chain(2000), 1000),
            Err(SqlState::STATEMENT_TOO_COMPLEX)
        );
        let ors = |n: usize| {
            let terms: Vec<String> = (0..n).map(|i| format!("id = {i}")).collect();
            format!("SELECT 1 FROM t WHERE {}", terms.join(" OR "))
        };
        assert!(deep(&ors(100), 1000).is_ok());
        assert!(deep(&ors(1000), 1000).is_err());
        // Keywords count whatever their case, also when a comment follows at once.
        assert!(deep(&ors(600).replace(" OR ", " or--x\n"), 1000).is_err());
        // Lists are as deep as one item.
        let list: Vec<String> = (0..100_000).map(|i| format!("'p{i}'")).collect();
        let in_list = format!("SELECT 1 FROM t WHERE p IN ({})", list.join(","));
        assert!(deep(&in_list, 1000).is_ok());
        let rows: Vec<String> = (0..10_000)
            .map(|i| format!("({i}, -{i}, 'a'::text)"))
            .collect();
        assert!(deep(&format!("INSERT INTO t VALUES {}", rows.join(",")), 1000).is_ok());
        // Nesting past what the parsers take, whatever the budget.
        let nested = |open: &str, n: usize, close: &str| {
            format!("SELECT {}1{}", open.repeat(n), close.repeat(n))
        };
        assert!(deep(&nested("(", MAX_NESTING, ")"), usize::MAX).is_ok());
        let refused = check_depth(&nested("(", MAX_NESTING + 1, ")"), usize::MAX).unwrap_err();
        assert_eq!(refused.state, SqlState::STATEMENT_TOO_COMPLEX);
        assert!(refused.message.contains("32 levels"), "{}", refused.message);
        // A type's `[]` dimensions in a row: the parser nests one type per pair, and what
        // walks the type recursed until a few hundred thousand of them overflowed the stack.
        let dims = |n: usize| format!("SELECT '{{a}}'::text{}, ARRAY[] [ ]", "[ ]".repeat(n));
        assert!(deep(&dims(MAX_NESTING), usize::MAX).is_ok());
        let refused = check_depth(&dims(MAX_NESTING + 1), usize::MAX).unwrap_err();
        assert_eq!(refused.state, SqlState::STATEMENT_TOO_COMPLEX);
        assert!(
            refused.message.contains("array dimensions"),
            "{}",
            refused.message
        );
        assert!(deep(&format!("SELECT {}", "x[1]".repeat(1000)), usize::MAX).is_ok());
        // Sizes and subscripts count too: the parser nests `text[1][1]` as it nests `text[][]`.
        let sized = |n: usize| format!("SELECT '{{a}}'::text{}", "[1] ".repeat(n));
        assert!(deep(&sized(MAX_NESTING), usize::MAX).is_ok());
        assert!(deep(&sized(MAX_NESTING + 1), usize::MAX).is_err());
        assert!(deep(&format!("SELECT a{}", "[1][]".repeat(100)), usize::MAX).is_err());
        // Nested and listed arrays are not a run.
        let listed: Vec<String> = (0..1000).map(|i| format!("[{i}]")).collect();
        assert!(deep(&format!("SELECT ARRAY[{}]", listed.join(",")), usize::MAX).is_ok());
        assert!(
            deep(
                &format!("SELECT {}1{}", "ARRAY[".repeat(10), "]".repeat(10)),
                usize::MAX
            )
            .is_ok()
        );
        // Calls, subqueries and arrays nest less, each kind and mixed.
        let calls = [
            ("abs(", ")", 16),
            ("ARRAY[", "]", 16),
            ("f (", ")", 16),
            ("(SELECT ", ")", 8),
            ("EXISTS (SELECT ", ")", 8),
        ];
        for (open, close, most) in calls {
            assert!(deep(&nested(open, most, close), usize::MAX).is_ok());
            let refused = check_depth(&nested(open, most + 1, close), usize::MAX);
            assert!(refused.unwrap_err().message.contains("16 levels"), "{open}");
        }
        let mixed = nested("(abs((SELECT ARRAY[", 4, "])))");
        assert!(deep(&mixed, usize::MAX).is_ok());
        assert!(deep(&nested("(abs((SELECT ARRAY[", 5, "])))"), usize::MAX).is_err());
        // Dotted names: four parts are usual, an unfinished 40-part one hung the parser.
        assert!(deep("SELECT postgres.public.t.c, 1.5, \"a\".\"b\" FROM t", 1000).is_ok());
        let name =
            |parts: usize| format!("SELECT (SELECT 1 WHERE r{} = 1)", ".p".repeat(parts - 1));
        assert!(deep(&name(MAX_NAME_PARTS), 1000).is_ok());
        let refused = check_depth(&name(MAX_NAME_PARTS + 1), 1000).unwrap_err();
        assert!(refused.message.contains("8 parts"), "{}", refused.message);
        // Derived tables are parsed once.
        let derived = format!(
            "SELECT * FROM {}t{}",
            "(SELECT * FROM ".repeat(30),
            ") x".repeat(30)
        );
        assert!(deep(&derived, usize::MAX).is_ok());
        let conditions = format!("SELECT 1 WHERE {}a{}", "(b AND ".repeat(20), ")".repeat(20));
        assert!(deep(&conditions, usize::MAX).is_ok());
        // A statement's own SELECT, lists and parenthesized expressions are no calls.
        let plain = format!("SELECT {}1{} FROM t", "((".repeat(15), "))".repeat(15));
        assert!(deep(&plain, usize::MAX).is_ok());
        // Nothing inside literals, quoted names or comments counts.
        let quoted = format!(
            "SELECT '{0}', \"{0}\", $${0}$$ /* {0} */ -- {0}",
            "(+".repeat(5000)
        );
        assert!(deep(&quoted, 10).is_ok());
        // A level closed gives its depth back.
        let siblings = format!("SELECT {}", vec!["((1+1))"; 5000].join(","));
        assert!(deep(&siblings, 10).is_ok());
    }

    #[test]
    fn reset_time_zone_becomes_reset_timezone_in_any_spacing_and_case() {
        assert_eq!(rewrite("RESET TIME ZONE"), "RESET timezone");
        assert_eq!(rewrite("reset  time\n zone;"), "RESET timezone;");
        assert_eq!(
            rewrite("SET TIME ZONE 'UTC'; reset time zone; SELECT 1"),
            "SET TIME ZONE 'UTC'; RESET timezone; SELECT 1"
        );
        assert!(matches!(rewrite("SELECT 'reset'"), Cow::Borrowed(_)));
        // Never inside a literal or another word.
        assert!(matches!(
            rewrite("SELECT 'reset time zone'"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(rewrite("PRESET TIME ZONE"), Cow::Borrowed(_)));
        assert!(matches!(
            rewrite("SELECT 'a; reset time zone'"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            rewrite("INSERT INTO t VALUES ('x'); reset time zone"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(rewrite("RESET TIME ZONES"), Cow::Borrowed(_)));
    }

    #[test]
    fn grafanas_search_path_subquery_becomes_current_schemas() {
        // As Grafana 11 sends it (tests/introspection/grafana.sql), re-indented.
        let query = "SELECT quote_ident(column_name) AS \"column\" FROM information_schema.columns \
            WHERE quote_ident(table_schema) IN ( SELECT CASE WHEN trim(s[i]) = '\"$user\"' \
            THEN user ELSE trim(s[i]) END FROM generate_series( \
            array_lower(string_to_array(current_setting('search_path'),','),1), \
            array_upper(string_to_array(current_setting('search_path'),','),1) ) as i, \
            string_to_array(current_setting('search_path'),',') s )";
        assert_eq!(
            rewrite(query),
            "SELECT quote_ident(column_name) AS \"column\" FROM information_schema.columns \
            WHERE quote_ident(table_schema) = ANY(current_schemas(false))"
        );
        let other = "SELECT current_setting('search_path')";
        assert!(matches!(rewrite(other), Cow::Borrowed(_)));
    }
}
