//! Names made valid for Prometheus, in one place: the `/metrics` exposition, remote write
//! and the Alertmanager payload all go through these, so a label is spelled the same
//! wherever perfvisor sends it.
//!
//! The rule, for label names (`[a-zA-Z_][a-zA-Z0-9_]*`, [`label_name`]):
//! - every character outside `[A-Za-z0-9_]` becomes `_` (`ws 1` → `ws_1`, `é` → `_`);
//! - a name starting with a digit or with `__` gets an `l` in front (`9lives` → `l9lives`,
//!   `__name__` → `l__name__`): a letter makes it valid, and Prometheus reserves `__` for
//!   its own labels, so a pushed or configured label must not become `__name__` on a
//!   remote-write receiver (another `_` would not help). `l` is what `/metrics` and remote
//!   write have always written, so series already stored keep their labels;
//! - the empty name becomes `_` (an empty label name is invalid everywhere).
//!
//! Metric names ([`metric_name`]) follow the same character rule, get `_` before a leading
//! digit (as `/metrics` has always named them), keep `__`, and the empty name stays empty (a
//! sample always has a name).

/// `text` with every character outside `[A-Za-z0-9_]` replaced by `_`.
pub fn underscored(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A valid Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`, without colons, which are
/// for recording rules): [`underscored`], with `_` before a leading digit.
pub fn metric_name(metric: &str) -> String {
    let mut name = underscored(metric);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// A valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`) by the rule in the module
/// documentation: [`underscored`], then `l` before a leading digit or `__`, and `_` for
/// nothing.
pub fn label_name(key: &str) -> String {
    let mut name = underscored(key);
    if name.starts_with("__") || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, 'l');
    }
    if name.is_empty() {
        name.push('_');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule of the module documentation, with the cases the two former sanitisers
    /// (the exposition's and the Alertmanager payload's) were tested with.
    #[test]
    fn label_names_follow_the_documented_rule() {
        for (key, want) in [
            ("project", "project"),
            ("ws 1", "ws_1"),
            ("a.b-c/d", "a_b_c_d"),
            ("_x", "_x"),
            ("9x", "l9x"),
            ("9lives", "l9lives"),
            ("__name__", "l__name__"),
            ("__", "l__"),
            ("", "_"),
            ("é", "_"),
            ("..x", "l__x"),
            ("2xx", "l2xx"),
        ] {
            let got = label_name(key);
            assert_eq!(got, want, "{key:?}");
            assert!(
                got.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && got.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{got:?} is not a label name"
            );
        }
    }

    /// Metric names keep `__` and only gain `_` before a leading digit.
    #[test]
    fn metric_names_follow_the_documented_rule() {
        assert_eq!(
            metric_name("process.cpu.time_seconds"),
            "process_cpu_time_seconds"
        );
        assert_eq!(metric_name("1m.load"), "_1m_load");
        assert_eq!(metric_name("__x"), "__x");
        assert_eq!(underscored("a b"), "a_b");
    }
}
