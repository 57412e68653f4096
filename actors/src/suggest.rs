//! "Did you mean": the accepted words nearest to a mistyped one, for error messages (config
//! keys, silence matcher keys, metric names, alert signal names).

/// Edit distance (insertions, deletions, substitutions, and swaps of neighbours) between `a`
/// and `b`, by characters.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Up to `max` of `candidates` near `word`, nearest first: those containing it (or contained
/// in it, for dotted metric names: a segment), or within an edit distance of a third of its
/// length (at least 2).
pub fn nearest<'a>(word: &str, candidates: &[&'a str], max: usize) -> Vec<&'a str> {
    let lower = word.to_lowercase();
    let limit = (lower.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .iter()
        .filter_map(|c| {
            let cl = c.to_lowercase();
            let d = distance(&lower, &cl);
            let segment = cl
                .split(['.', '_'])
                .any(|s| distance(&lower, s) <= limit / 2);
            if d <= limit {
                Some((d, *c))
            } else if cl.contains(&lower) || segment {
                Some((limit + 1 + d, *c))
            } else {
                None
            }
        })
        .collect();
    scored.sort();
    scored.dedup();
    scored.into_iter().take(max).map(|(_, c)| c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A swapped pair of letters is one edit; metric names are found from a segment.
    #[test]
    fn suggests_the_nearest() {
        assert_eq!(distance("deamon", "daemon"), 1);
        let keys = ["rule", "daemon", "project", "severity", "metric", "source"];
        assert_eq!(nearest("deamon", &keys, 3), ["daemon"]);
        assert!(nearest("zzzzzzzz", &keys, 3).is_empty());
        let metrics = [
            "process.cpu.utilization_ratio",
            "system.cpu.utilization_ratio",
            "process.memory.usage_bytes",
        ];
        assert_eq!(
            nearest("cpu", &metrics, 5),
            [
                "system.cpu.utilization_ratio",
                "process.cpu.utilization_ratio"
            ]
        );
    }
}
