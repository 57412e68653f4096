//! Recommendations: what to do about each kind of bottleneck. The texts are data, kept in
//! `recommendations.txt` (one line per recommendation, most effective first) and read here
//! at compile time; this module only joins a row to the bottleneck it answers.

use super::judge::{AutoAction, Bottleneck, DaemonView, Recommendation};

/// The table: `kind | action | expected effect | marks`, `#` lines are comments.
const TABLE: &str = include_str!("recommendations.txt");

/// One row of the table.
struct Row {
    kind: &'static str,
    action: &'static str,
    effect: &'static str,
    /// The rationale names the daemon's slowest operation.
    slowest: bool,
    /// Auto-actionable: the daemon manager may restart the daemon.
    restart: bool,
}

/// Every well-formed row of the table, in its order.
fn rows() -> impl Iterator<Item = Row> {
    TABLE
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut cols = line.split(" | ").map(str::trim);
            let (kind, action, effect) = (cols.next()?, cols.next()?, cols.next()?);
            let marks = cols.next().unwrap_or("");
            Some(Row {
                kind,
                action,
                effect,
                slowest: marks.split_whitespace().any(|m| m == "slowest"),
                restart: marks.split_whitespace().any(|m| m == "restart"),
            })
        })
}

/// The recommendations for one bottleneck, most effective first.
pub fn recommend(b: &Bottleneck, view: &DaemonView) -> Vec<Recommendation> {
    let slowest = view
        .latency
        .iter()
        .filter_map(|(n, m)| m.stats.as_ref().map(|s| (n, s.p95)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, p)| format!(" (slowest operation: {n}, p95 {p:.3})"))
        .unwrap_or_default();
    rows()
        .filter(|row| row.kind == b.kind.as_str())
        .map(|row| Recommendation {
            cause: b.kind,
            action: row.action.to_string(),
            rationale: if row.slowest {
                format!("{}{slowest}", b.summary)
            } else {
                b.summary.clone()
            },
            expected_effect: row.effect.to_string(),
            auto_action: row.restart.then_some(AutoAction::RestartDaemon),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::judge::BottleneckKind;

    /// Every line of the table parses, names a bottleneck kind and carries only known
    /// marks; every kind has at least two recommendations.
    #[test]
    fn table_is_well_formed() {
        let lines = TABLE
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
        for line in lines {
            let cols: Vec<&str> = line.split(" | ").collect();
            assert!((3..=4).contains(&cols.len()), "{line}");
            assert!(
                BottleneckKind::ALL.iter().any(|k| k.as_str() == cols[0]),
                "unknown kind in {line}"
            );
            for mark in cols.get(3).map_or("", |m| *m).split_whitespace() {
                assert!(["slowest", "restart"].contains(&mark), "{line}");
            }
        }
        for kind in BottleneckKind::ALL {
            assert!(
                rows().filter(|r| r.kind == kind.as_str()).count() >= 2,
                "{kind:?}"
            );
        }
    }
}
