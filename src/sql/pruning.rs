//! Pruning: what a scan's filters let it skip before reading a byte.
//!
//! `project_id = …`, `IN (…)` and `OR`s of them select buffer projects and become Delta
//! partition filters; a `timestamp` range selects buffer buckets and adds a `date` partition
//! filter for Delta. All pruning is inexact: DataFusion still applies the filters.

use std::collections::HashSet;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, col, lit};

use crate::engine::MICROS_PER_DAY;
use datafusion::logical_expr::utils::split_conjunction;

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
                if let Some(projects) = project_set(conjunct, tenant) {
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

fn is_column(expr: &Expr, name: &str) -> bool {
    match expr {
        Expr::Column(c) => c.name == name,
        Expr::Cast(c) => is_column(&c.expr, name),
        Expr::TryCast(c) => is_column(&c.expr, name),
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

/// The projects a predicate restricts `tenant` to, if it does.
fn project_set(expr: &Expr, tenant: &str) -> Option<HashSet<String>> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            if is_column(left, tenant) {
                string_literal(right).map(|s| [s].into())
            } else if is_column(right, tenant) {
                string_literal(left).map(|s| [s].into())
            } else {
                None
            }
        }
        Expr::InList(list) if !list.negated && is_column(&list.expr, tenant) => {
            list.list.iter().map(string_literal).collect()
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let mut l = project_set(left, tenant)?;
            l.extend(project_set(right, tenant)?);
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
            let (op, value) = if is_column(left, time) {
                (*op, timestamp_micros(literal(right)?)?)
            } else if is_column(right, time) {
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
        Expr::Between(between) if !between.negated && is_column(&between.expr, time) => Some((
            timestamp_micros(literal(&between.low)?)?,
            timestamp_micros(literal(&between.high)?)?,
        )),
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
