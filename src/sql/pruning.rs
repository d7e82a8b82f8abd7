//! Pruning: what a scan's filters let it skip before reading a byte.
//!
//! `project_id = …`, `IN (…)` and `OR`s of them select buffer projects and become Delta
//! partition filters; a `timestamp` range selects buffer buckets and adds a `date` partition
//! filter for Delta. The tenant's equalities with string literals are applied exactly by both
//! sides ([`is_exact_tenant_filter`]); everything else is pruning only, and DataFusion applies
//! those filters again above the scan.

use std::collections::HashSet;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, col, lit};

use crate::engine::MICROS_PER_DAY;
use datafusion::logical_expr::utils::split_conjunction;

/// The most values of an `IN` list the Delta scan gets as they are; a longer list reaches it
/// as the range of its values (see [`for_delta`]).
pub const DELTA_MAX_LIST: usize = 1_000;

/// The most expression nodes of one filter the Delta scan gets (see [`for_delta`]).
const DELTA_MAX_NODES: usize = 2 * DELTA_MAX_LIST;

/// `filters` as the Delta scan should get them. delta-rs turns a filter into a kernel
/// predicate with one level of recursion per node of the `OR` of equalities it makes of an
/// `IN` list: a 100,000-value `IN` overflowed a 16 MiB stack (`tests/e2e/limits.rs`). So an
/// `IN` list longer than [`DELTA_MAX_LIST`] becomes `BETWEEN` its least and greatest value
/// (file skipping keeps working), and a conjunct larger than [`DELTA_MAX_NODES`] otherwise is
/// left out. Nothing is lost: a filter this changes or leaves out is inexact, so DataFusion
/// applies it above the scan; the exact ones ([`is_exact_tenant_filter`]) are bounded and
/// reach deltalake as they are.
pub fn for_delta(filters: &[Expr]) -> Vec<Expr> {
    let mut kept = Vec::new();
    for conjunct in filters.iter().flat_map(|f| split_conjunction(f)) {
        if let Expr::InList(in_list) = conjunct
            && in_list.list.len() > DELTA_MAX_LIST
        {
            kept.extend(value_range(in_list));
            continue;
        }
        if !too_large(conjunct) {
            kept.push(conjunct.clone());
        }
    }
    kept
}

/// `expr BETWEEN least AND greatest` of an `IN` list of literals; `None` when it is negated
/// or holds anything else.
fn value_range(in_list: &datafusion::logical_expr::expr::InList) -> Option<Expr> {
    if in_list.negated {
        return None;
    }
    let mut values = in_list.list.iter().map(|item| match item {
        Expr::Literal(value, _) if !value.is_null() => Some(value),
        _ => None,
    });
    let first = values.next()??;
    let (mut least, mut greatest) = (first, first);
    for value in values {
        let value = value?;
        // `None`: values of different types.
        let (to_least, to_greatest) = (value.partial_cmp(least)?, value.partial_cmp(greatest)?);
        if to_least.is_lt() {
            least = value;
        }
        if to_greatest.is_gt() {
            greatest = value;
        }
    }
    let expr = in_list.expr.as_ref().clone();
    Some(expr.between(lit(least.clone()), lit(greatest.clone())))
}

/// The lookups among `filters` that the buffer's id filters can answer: for each conjunct
/// that restricts one of `columns`, bare, to a set of strings (`column = 'text'` either way
/// round, `IN ('a', 'b', …)`, `OR`s of these: [`string_set`]), the column and those strings,
/// sorted.
/// Several conjuncts on one column are separate lookups (a chunk must pass each).
pub fn id_lookups(filters: &[Expr], columns: &[String]) -> Vec<(String, Vec<String>)> {
    filters
        .iter()
        .flat_map(|f| split_conjunction(f))
        .filter(|conjunct| !too_large(conjunct))
        .flat_map(|conjunct| {
            columns.iter().filter_map(move |column| {
                // The bare column: a bloom filter holds its values, not those of a cast of it.
                let bare = |e: &Expr| matches!(e, Expr::Column(c) if &c.name == column);
                let mut values: Vec<String> = string_set(conjunct, &bare)?.into_iter().collect();
                values.sort();
                Some((column.clone(), values))
            })
        })
        .collect()
}

/// What the filters of a query allow the scan to skip.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pruning {
    /// Only these projects can match (`None`: any).
    pub projects: Option<HashSet<String>>,
    /// Inclusive event-time bounds in microseconds, when the filters bound it.
    pub time_range: Option<(i64, i64)>,
}

impl Pruning {
    pub fn from_filters(filters: &[Expr], tenant: &str, time: &str) -> Self {
        let mut pruning = Pruning::default();
        let mut from = i64::MIN;
        let mut to = i64::MAX;
        for filter in filters {
            for conjunct in split_conjunction(filter) {
                if let Some(projects) = string_set(conjunct, &|e| is_column(e, tenant)) {
                    pruning.projects = Some(match pruning.projects.take() {
                        Some(prev) => prev.intersection(&projects).cloned().collect(),
                        None => projects,
                    });
                }
                if let Some((lo, hi)) = time_bound(conjunct, time) {
                    from = from.max(lo);
                    to = to.min(hi);
                }
            }
        }
        if from != i64::MIN || to != i64::MAX {
            pruning.time_range = Some((from, to));
        }
        pruning
    }

    /// The `date` partition filter implied by the time range.
    pub fn date_filter(&self, date_column: &str) -> Option<Expr> {
        let (from, to) = self.time_range?;
        let day = |micros: i64| micros.div_euclid(MICROS_PER_DAY) as i32;
        let mut parts = Vec::new();
        if from != i64::MIN {
            parts.push(col(date_column).gt_eq(lit(ScalarValue::Date32(Some(day(from))))));
        }
        if to != i64::MAX {
            parts.push(col(date_column).lt_eq(lit(ScalarValue::Date32(Some(day(to))))));
        }
        parts.into_iter().reduce(Expr::and)
    }
}

/// Whether `filter` selects rows by the tenant column in a way the buffer and Delta both apply
/// exactly, so DataFusion need not apply it again above the scan (where it would read the
/// column and compare every row of the tenant with its own name): an equality of the bare
/// column with a string literal, an `IN` list of them (at most [`DELTA_MAX_LIST`]), `OR`s of
/// these, and conjunctions of such conjuncts. The buffer keeps each project's rows apart
/// ([`Pruning::projects`]) and Delta's tenant is its first partition column, whose equalities
/// deltalake applies by choosing partitions (the caller checks that it says so too). A cast of
/// the column, a NULL, or a list [`for_delta`] would shorten to a range is left inexact.
pub fn is_exact_tenant_filter(filter: &Expr, tenant: &str) -> bool {
    // The forms `string_set` reads, each conjunct whole: what it cannot read selects every
    // project of the buffer.
    fn exact(expr: &Expr, tenant: &str) -> bool {
        let bare = |e: &Expr| matches!(e, Expr::Column(c) if c.name == tenant);
        let text = |e: &Expr| {
            matches!(
                e,
                Expr::Literal(
                    ScalarValue::Utf8(Some(_))
                        | ScalarValue::Utf8View(Some(_))
                        | ScalarValue::LargeUtf8(Some(_)),
                    _
                )
            )
        };
        match expr {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => (bare(left) && text(right)) || (text(left) && bare(right)),
            Expr::InList(list) => {
                !list.negated
                    && bare(&list.expr)
                    && list.list.len() <= DELTA_MAX_LIST
                    && list.list.iter().all(text)
            }
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Or,
                right,
            }) => exact(left, tenant) && exact(right, tenant),
            _ => false,
        }
    }
    // Each conjunct reaches deltalake whole (`for_delta` keeps it).
    split_conjunction(filter)
        .into_iter()
        .all(|c| !too_large(c) && exact(c, tenant))
}

/// Whether `expr` has more than [`DELTA_MAX_NODES`] nodes.
fn too_large(expr: &Expr) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut nodes = 0usize;
    let _ = expr.apply(|_| {
        nodes += 1;
        Ok(if nodes > DELTA_MAX_NODES {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    nodes > DELTA_MAX_NODES
}

fn is_column(expr: &Expr, name: &str) -> bool {
    match expr {
        Expr::Column(c) => c.name == name,
        Expr::Cast(c) => is_column(&c.expr, name),
        Expr::TryCast(c) => is_column(&c.expr, name),
        _ => false,
    }
}

/// The time column, or a cast of it that keeps every microsecond: a cast to seconds or
/// milliseconds truncates, so `CAST(ts AS timestamp(0)) = X` holds for rows up to a second
/// after `X`, and reading it as `ts = X` would drop them.
fn is_time_column(expr: &Expr, name: &str) -> bool {
    use arrow::datatypes::{DataType, TimeUnit};
    let exact = |t: &DataType| {
        matches!(
            t,
            DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _)
        )
    };
    match expr {
        Expr::Column(c) => c.name == name,
        Expr::Cast(c) => exact(c.field.data_type()) && is_time_column(&c.expr, name),
        Expr::TryCast(c) => exact(c.field.data_type()) && is_time_column(&c.expr, name),
        _ => false,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        Expr::Cast(c) => literal(&c.expr),
        _ => None,
    }
}

fn string_literal(expr: &Expr) -> Option<String> {
    match literal(expr)? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The strings a predicate restricts the column `is_column` matches to, if it does: the
/// projects of a tenant filter, the ids of a lookup.
fn string_set(expr: &Expr, is_column: &dyn Fn(&Expr) -> bool) -> Option<HashSet<String>> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            if is_column(left) {
                string_literal(right).map(|s| [s].into())
            } else if is_column(right) {
                string_literal(left).map(|s| [s].into())
            } else {
                None
            }
        }
        Expr::InList(list) if !list.negated && is_column(&list.expr) => {
            list.list.iter().map(string_literal).collect()
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let mut l = string_set(left, is_column)?;
            l.extend(string_set(right, is_column)?);
            Some(l)
        }
        _ => None,
    }
}

fn timestamp_micros(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000)),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        _ => None,
    }
}

/// Inclusive (from, to) microsecond bounds a predicate puts on `time`, if it does.
fn time_bound(expr: &Expr, time: &str) -> Option<(i64, i64)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, value) = if is_time_column(left, time) {
                (*op, timestamp_micros(literal(right)?)?)
            } else if is_time_column(right, time) {
                (op.swap()?, timestamp_micros(literal(left)?)?)
            } else {
                return None;
            };
            match op {
                Operator::Eq => Some((value, value)),
                Operator::Gt | Operator::GtEq => Some((value, i64::MAX)),
                Operator::Lt | Operator::LtEq => Some((i64::MIN, value)),
                _ => None,
            }
        }
        Expr::Between(between) if !between.negated && is_time_column(&between.expr, time) => {
            Some((
                timestamp_micros(literal(&between.low)?)?,
                timestamp_micros(literal(&between.high)?)?,
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::in_list;

    fn ts(micros: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(micros),
            Some("UTC".into()),
        ))
    }

    fn prune(filters: &[Expr]) -> Pruning {
        Pruning::from_filters(filters, "project_id", "timestamp")
    }

    #[test]
    fn id_lookups_are_equalities_and_lists_of_strings_on_id_columns() {
        let ids = ["trace".to_string(), "id".to_string()];
        let filters = [
            col("trace").eq(lit("t1")).and(lit("i1").eq(col("id"))),
            in_list(col("trace"), vec![lit("t2"), lit("t3")], false),
            // DataFusion's form of a short IN list.
            col("id").eq(lit("a")).or(lit("b").eq(col("id"))),
            // Not lookups: another column, a negated list, a non-string, an OR over two
            // columns, a cast.
            col("name").eq(lit("n")),
            in_list(col("id"), vec![lit("x")], true),
            col("id").eq(lit(7)),
            col("id").eq(lit("a")).or(col("trace").eq(lit("b"))),
            datafusion::logical_expr::cast(col("id"), arrow::datatypes::DataType::Utf8View)
                .eq(lit("c")),
            // A cast column equal to a cast string: many ids cast to one date.
            datafusion::logical_expr::cast(col("id"), arrow::datatypes::DataType::Date32).eq(
                datafusion::logical_expr::cast(
                    lit("2020-01-01"),
                    arrow::datatypes::DataType::Date32,
                ),
            ),
            in_list(col("id"), vec![lit("y"), col("trace")], false),
        ];
        assert_eq!(
            id_lookups(&filters, &ids),
            vec![
                ("trace".to_string(), vec!["t1".to_string()]),
                ("id".to_string(), vec!["i1".to_string()]),
                (
                    "trace".to_string(),
                    vec!["t2".to_string(), "t3".to_string()]
                ),
                ("id".to_string(), vec!["a".to_string(), "b".to_string()]),
            ]
        );
    }

    #[test]
    fn delta_gets_long_in_lists_as_ranges_and_no_huge_filters() {
        let short = in_list(col("project_id"), vec![lit("b"), lit("a")], false);
        assert_eq!(
            for_delta(std::slice::from_ref(&short)),
            std::slice::from_ref(&short)
        );
        let values: Vec<Expr> = (0..5_000)
            .map(|i| lit(format!("p{:05}", 4_999 - i)))
            .collect();
        let long = in_list(col("project_id"), values.clone(), false);
        let time = col("timestamp").gt(ts(0));
        assert_eq!(
            for_delta(&[long.clone().and(time.clone())]),
            [
                col("project_id").between(lit("p00000"), lit("p04999")),
                time.clone()
            ]
        );
        // Negated or mixed lists, and other huge filters, are left to DataFusion.
        let negated = in_list(col("project_id"), values.clone(), true);
        let mut mixed = values.clone();
        mixed.push(lit(1));
        let mixed = in_list(col("project_id"), mixed, false);
        let huge_or = long.or(col("level").eq(lit("ERROR")));
        let kept = for_delta(&[negated, mixed, huge_or, time.clone()]);
        assert!(kept == [time], "{} filters kept", kept.len());
    }

    #[test]
    fn a_cast_of_the_time_column_to_whole_seconds_bounds_nothing() {
        use arrow::datatypes::{DataType, TimeUnit};
        use datafusion::prelude::cast;
        let seconds = || {
            cast(
                col("timestamp"),
                DataType::Timestamp(TimeUnit::Second, None),
            )
        };
        let at = ScalarValue::TimestampSecond(Some(1_700_000_000), None);
        // Rows up to a second after `at` match: no bound may exclude them.
        assert_eq!(prune(&[seconds().eq(lit(at.clone()))]).time_range, None);
        assert_eq!(prune(&[seconds().lt_eq(lit(at))]).time_range, None);
        // A cast that keeps every microsecond still bounds.
        let micros = cast(
            col("timestamp"),
            DataType::Timestamp(TimeUnit::Microsecond, None),
        );
        assert_eq!(prune(&[micros.eq(ts(5))]).time_range, Some((5, 5)));
    }

    #[test]
    fn only_what_both_sides_apply_exactly_is_an_exact_tenant_filter() {
        use arrow::datatypes::DataType;
        use datafusion::prelude::cast;
        let exact = |e: &Expr| is_exact_tenant_filter(e, "project_id");
        let p = || col("project_id");
        assert!(exact(&p().eq(lit("a"))));
        assert!(exact(&lit("a").eq(p())));
        assert!(exact(&in_list(p(), vec![lit("a"), lit("b")], false)));
        assert!(exact(&p().eq(lit("a")).or(in_list(
            p(),
            vec![lit("b")],
            false
        ))));
        assert!(exact(&p().eq(lit("a")).and(p().eq(lit("b")))));
        // What the buffer's project selection does not read, or reads only as a bound.
        assert!(!exact(&p().not_eq(lit("a"))));
        assert!(!exact(&in_list(p(), vec![lit("a")], true)));
        assert!(!exact(&in_list(
            p(),
            vec![lit("a"), lit(ScalarValue::Utf8(None))],
            false
        )));
        assert!(!exact(
            &p().eq(lit("a")).and(p().eq(lit("b"))).or(p().eq(lit("c")))
        ));
        assert!(!exact(&p().eq(lit("a")).or(col("level").eq(lit("a")))));
        assert!(!exact(&p().eq(lit("a")).and(col("level").eq(lit("a")))));
        assert!(!exact(&cast(p(), DataType::Utf8View).eq(lit("a"))));
        assert!(!exact(&p().eq(lit(1))));
        assert!(!exact(&p().like(lit("a%"))));
        // Lists deltalake would get as a range, OR chains `for_delta` would leave out.
        let many: Vec<Expr> = (0..=DELTA_MAX_LIST).map(|i| lit(format!("p{i}"))).collect();
        assert!(!exact(&in_list(p(), many.clone(), false)));
        assert!(exact(&in_list(p(), many[1..].to_vec(), false)));
        let chain = many.into_iter().map(|v| p().eq(v)).reduce(Expr::or);
        assert!(!exact(&chain.expect("values")));
    }

    #[test]
    fn project_equality_in_list_and_or_prune() {
        let p = prune(&[col("project_id").eq(lit("a"))]);
        assert_eq!(p.projects, Some(["a".to_string()].into()));
        let p = prune(&[in_list(col("project_id"), vec![lit("a"), lit("b")], false)]);
        assert_eq!(p.projects, Some(["a".to_string(), "b".to_string()].into()));
        let p = prune(&[lit("c")
            .eq(col("project_id"))
            .or(col("project_id").eq(lit("d")))]);
        assert_eq!(p.projects, Some(["c".to_string(), "d".to_string()].into()));
        let p = prune(&[
            col("project_id").eq(lit("a")),
            in_list(col("project_id"), vec![lit("a"), lit("b")], false),
        ]);
        assert_eq!(
            p.projects,
            Some(["a".to_string()].into()),
            "conjuncts intersect"
        );
    }

    #[test]
    fn filters_that_do_not_bound_the_tenant_do_not_prune() {
        assert_eq!(
            prune(&[in_list(col("project_id"), vec![lit("a")], true)]).projects,
            None
        );
        assert_eq!(
            prune(&[col("project_id").eq(lit("a")).or(col("name").eq(lit("x")))]).projects,
            None
        );
        assert_eq!(prune(&[col("name").eq(lit("a"))]), Pruning::default());
    }

    #[test]
    fn timestamp_ranges_become_date_filters() {
        let day = MICROS_PER_DAY;
        let p = prune(&[col("timestamp")
            .gt_eq(ts(day * 2 + 5))
            .and(col("timestamp").lt(ts(day * 4)))]);
        assert_eq!(p.time_range, Some((day * 2 + 5, day * 4)));
        let date = p.date_filter("date").expect("date filter");
        let expected = col("date")
            .gt_eq(lit(ScalarValue::Date32(Some(2))))
            .and(col("date").lt_eq(lit(ScalarValue::Date32(Some(4)))));
        assert_eq!(date, expected);
        // Reversed operands and nanosecond literals.
        let p = prune(&[ts(day).lt(col("timestamp"))]);
        assert_eq!(p.time_range, Some((day, i64::MAX)));
        let nanos = lit(ScalarValue::TimestampNanosecond(Some(day * 1000), None));
        assert_eq!(
            prune(&[col("timestamp").lt_eq(nanos)]).time_range,
            Some((i64::MIN, day))
        );
        assert_eq!(prune(&[col("timestamp").not_eq(ts(1))]).time_range, None);
    }
}
