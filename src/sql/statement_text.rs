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
///
/// One pass over the text, as PostgreSQL's lexer reads it: a `;` inside a string (`'…'` with
/// `''`, `E'…'` with backslash escapes), a quoted name, a dollar-quoted string (`$$…$$`,
/// `$tag$…$tag$`), a `--` comment or a nested `/* */` comment ends nothing. An unterminated
/// string or comment runs to the end of the text, where the parser reports it.
pub fn statements(query: &str) -> Vec<&str> {
    let bytes = query.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut content = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let before = i.checked_sub(1).map(|j| bytes[j]);
        match b {
            b';' => {
                if content {
                    pieces.push(&query[start..i]);
                }
                start = i + 1;
                content = false;
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
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
                content = true;
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
                    let delimiter = &bytes[i..i + 2 + tag_len];
                    let body = i + delimiter.len();
                    i = bytes[body..]
                        .windows(delimiter.len())
                        .position(|w| w == delimiter)
                        .map_or(bytes.len(), |p| body + p + delimiter.len());
                } else {
                    i += 1;
                }
                content = true;
            }
            b if b.is_ascii_whitespace() => i += 1,
            _ => {
                content = true;
                i += 1;
            }
        }
    }
    if content {
        pieces.push(&query[start..]);
    }
    pieces
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
