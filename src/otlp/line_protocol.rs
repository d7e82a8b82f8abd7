//! InfluxDB line protocol (what Telegraf and the Influx client libraries write): one point per
//! line, `measurement[,tag=value…] field=value[,field=value…] [timestamp]`, with its escapes
//! (`\,` `\ ` `\=` in names and tags, `\"` `\\` in string fields), integer (`1i`), unsigned
//! (`1u`), float, boolean and string fields, and `#` comment lines.
//! [`super::metrics::Metrics::lines`] stores them in `otel_metrics`.

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Text(String),
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, Field)>,
    /// Nanoseconds since the epoch, `None` when the line has no timestamp.
    pub time_nanos: Option<i64>,
}

/// The unit of the lines' timestamps (the `precision` query parameter).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Precision {
    Nanos,
    Micros,
    Millis,
    Seconds,
}

impl Precision {
    /// InfluxDB's names: v2's `ns`, `us`, `ms`, `s` and v1's `n`, `u`, `ms`, `s`.
    pub fn parse(text: &str) -> Option<Precision> {
        Some(match text {
            "ns" | "n" => Precision::Nanos,
            "us" | "u" | "µs" => Precision::Micros,
            "ms" => Precision::Millis,
            "s" => Precision::Seconds,
            _ => return None,
        })
    }

    fn nanos(self, value: i64) -> Option<i64> {
        value.checked_mul(match self {
            Precision::Nanos => 1,
            Precision::Micros => 1_000,
            Precision::Millis => 1_000_000,
            Precision::Seconds => 1_000_000_000,
        })
    }
}

/// Parses every line of `text`, or says which line is wrong and why.
pub fn parse(text: &str, precision: Precision) -> Result<Vec<Line>, String> {
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = parse_line(line, precision)
            .map_err(|why| format!("line {}: {why}: {:.100}", number + 1, line))?;
        lines.push(parsed);
    }
    Ok(lines)
}

fn parse_line(line: &str, precision: Precision) -> Result<Line, String> {
    let mut rest = line;
    let (series, after) = split_unescaped(rest, ' ', false);
    rest = after.ok_or("no fields")?;
    let mut parts = split_all(series, ',');
    let measurement = unescape(parts.remove(0));
    if measurement.is_empty() {
        return Err("no measurement".into());
    }
    let mut tags = Vec::with_capacity(parts.len());
    for tag in parts {
        let (key, value) = split_unescaped(tag, '=', false);
        let value = value.ok_or("a tag without `=`")?;
        if key.is_empty() || value.is_empty() {
            return Err("an empty tag key or value".into());
        }
        tags.push((unescape(key), unescape(value)));
    }
    let (field_set, after) = split_unescaped(rest.trim_start(), ' ', true);
    let mut fields = Vec::new();
    for field in split_all_quoted(field_set) {
        let (key, value) = split_unescaped(field, '=', false);
        let value = value.ok_or("a field without `=`")?;
        if key.is_empty() {
            return Err("an empty field key".into());
        }
        fields.push((unescape(key), field_value(value)?));
    }
    if fields.is_empty() {
        return Err("no fields".into());
    }
    let time_nanos = match after.map(str::trim) {
        None | Some("") => None,
        Some(time) => {
            let value: i64 = time
                .parse()
                .map_err(|_| format!("the timestamp {time:?} is not an integer"))?;
            Some(
                precision
                    .nanos(value)
                    .ok_or_else(|| format!("the timestamp {time} is out of range"))?,
            )
        }
    };
    Ok(Line {
        measurement,
        tags,
        fields,
        time_nanos,
    })
}

fn field_value(text: &str) -> Result<Field, String> {
    if let Some(quoted) = text.strip_prefix('"') {
        let inner = quoted
            .strip_suffix('"')
            .ok_or("a string field without its closing quote")?;
        return Ok(Field::Text(
            inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        ));
    }
    let bad = || format!("the field value {text:?} is not a number, boolean or string");
    if let Some(int) = text.strip_suffix('i') {
        return int.parse().map(Field::Int).map_err(|_| bad());
    }
    if let Some(uint) = text.strip_suffix('u') {
        return uint.parse().map(Field::UInt).map_err(|_| bad());
    }
    match text {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(Field::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(Field::Bool(false)),
        _ => {}
    }
    // Rust's float syntax also takes "inf" and "NaN" (signed too), which line protocol does
    // not.
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Field::Float(value)),
        _ => Err(bad()),
    }
}

/// `text` up to the first `separator` not escaped by a backslash (nor, with `quotes`, inside
/// a double-quoted string), and what follows it.
fn split_unescaped(text: &str, separator: char, quotes: bool) -> (&str, Option<&str>) {
    let mut escaped = false;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if quotes && c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            return (&text[..i], Some(&text[i + 1..]));
        }
    }
    (text, None)
}

fn split_all(mut text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    loop {
        let (part, rest) = split_unescaped(text, separator, false);
        parts.push(part);
        match rest {
            Some(rest) => text = rest,
            None => return parts,
        }
    }
}

fn split_all_quoted(mut text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    loop {
        let (part, rest) = split_unescaped(text, ',', true);
        parts.push(part);
        match rest {
            Some(rest) => text = rest,
            None => return parts,
        }
    }
}

/// A name or tag with its backslash escapes resolved.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ (',' | ' ' | '=' | '\\' | '"')) => out.push(next),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_every_field_type_escapes_and_precision() {
        let text = "# comment\n\
                    cpu,host=a\\ b,region=eu\\,west usage=0.5,count=3i,big=7u,up=t,note=\"say \\\"hi\\\", ok\" 1700000000\n\
                    \n\
                    mem\\ used free=1e3";
        let lines = parse(text, Precision::Seconds).expect("parsed");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].measurement, "cpu");
        assert_eq!(
            lines[0].tags,
            [
                ("host".into(), "a b".into()),
                ("region".into(), "eu,west".into())
            ]
        );
        assert_eq!(
            lines[0].fields,
            [
                ("usage".into(), Field::Float(0.5)),
                ("count".into(), Field::Int(3)),
                ("big".into(), Field::UInt(7)),
                ("up".into(), Field::Bool(true)),
                ("note".into(), Field::Text("say \"hi\", ok".into())),
            ]
        );
        assert_eq!(lines[0].time_nanos, Some(1_700_000_000_000_000_000));
        assert_eq!(lines[1].measurement, "mem used");
        assert_eq!(lines[1].fields, [("free".into(), Field::Float(1000.0))]);
        assert_eq!(lines[1].time_nanos, None);
    }

    #[test]
    fn bad_lines_name_their_number_and_fault() {
        for (text, fault) in [
            ("cpu", "line 1: no fields"),
            ("cpu usage", "a field without `=`"),
            ("cpu,host usage=1", "a tag without `=`"),
            ("cpu usage=abc", "is not a number"),
            ("cpu usage=inf", "is not a number"),
            ("cpu usage=-inf", "is not a number"),
            ("cpu usage=+NaN", "is not a number"),
            ("cpu usage=\"open", "closing quote"),
            ("ok v=1\ncpu usage=1 12x", "line 2: the timestamp \"12x\""),
            ("cpu usage=1 9223372036854775807", "out of range"),
        ] {
            let why = parse(text, Precision::Millis).expect_err(text);
            assert!(why.contains(fault), "{text:?}: {why}");
        }
    }
}
