//! Pure planning over sets of specs: validation (every problem at once), start order by
//! `depends_on` with cycles reported by name, and the reload diff. No processes here.

use std::collections::{BTreeMap, BTreeSet};

use super::process::lookup_user;
use super::spec::{CheckKind, ManagedSpec, ManagerDiff, ManagerError};

/// Check each spec on its own and the set as a whole (unique names, known dependencies,
/// no cycle); on success return the names in start order (dependencies first).
pub(crate) fn validate(specs: &[ManagedSpec]) -> Result<Vec<String>, ManagerError> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for s in specs {
        if !seen.insert(s.name.as_str()) {
            problems.push(format!("daemon {:?} is declared more than once", s.name));
        }
        problems.extend(spec_problems(s));
    }
    if !problems.is_empty() {
        return Err(ManagerError::Invalid { problems });
    }
    start_order(specs)
}

fn spec_problems(s: &ManagedSpec) -> Vec<String> {
    let mut p = Vec::new();
    let n = &s.name;
    if n.is_empty() || n.contains('/') || n.starts_with('.') {
        p.push(format!(
            "daemon name {n:?} is not usable as a log file name; use letters, digits, '-', '_' or '.' (not first)"
        ));
    }
    match s.command.first() {
        None => p.push(format!(
            "daemon {n:?} has an empty command; give the program and its arguments"
        )),
        Some(prog) if prog.is_empty() => p.push(format!("daemon {n:?} has an empty program name")),
        Some(_) => {}
    }
    if let Some(user) = &s.user {
        if let Err(e) = lookup_user(user) {
            p.push(format!("daemon {n:?}: {e}"));
        }
    }
    if !(s.backoff_factor >= 1.0 && s.backoff_factor.is_finite()) {
        p.push(format!(
            "daemon {n:?} has backoff_factor {}; use a finite number ≥ 1",
            s.backoff_factor
        ));
    }
    if !(0.0..=1.0).contains(&s.jitter) {
        p.push(format!(
            "daemon {n:?} has jitter {}; use a fraction between 0 and 1",
            s.jitter
        ));
    }
    if s.backoff_initial > s.backoff_max {
        p.push(format!(
            "daemon {n:?} has backoff_initial {:?} above backoff_max {:?}",
            s.backoff_initial, s.backoff_max
        ));
    }
    if s.stop_signal <= 0 || s.stop_signal >= 65 {
        p.push(format!(
            "daemon {n:?} has stop_signal {}; use a signal number 1..64",
            s.stop_signal
        ));
    }
    if s.slow_retry.is_some_and(|d| d.is_zero()) {
        p.push(format!(
            "daemon {n:?} has slow_retry 0s; use a positive interval or none"
        ));
    }
    if s.logs.max_size == 0 {
        p.push(format!(
            "daemon {n:?} has logs.max_size 0; use a positive size in bytes"
        ));
    }
    if s.depends_on.iter().any(|d| d == n) {
        p.push(format!("daemon {n:?} depends on itself"));
    }
    for (i, c) in s.checks.iter().enumerate() {
        if c.interval.is_zero() || c.timeout.is_zero() {
            p.push(format!(
                "daemon {n:?} check {i} needs a positive interval and timeout"
            ));
        }
        if c.failures == 0 {
            p.push(format!(
                "daemon {n:?} check {i} has failures 0; use at least 1"
            ));
        }
        match &c.kind {
            CheckKind::Http { url } if !url.starts_with("http://") => p.push(format!(
                "daemon {n:?} check {i} has URL {url:?}; only http:// URLs are supported"
            )),
            CheckKind::Tcp { address } if !address.contains(':') => p.push(format!(
                "daemon {n:?} check {i} has address {address:?}; use host:port"
            )),
            CheckKind::Command { argv } if argv.is_empty() => {
                p.push(format!("daemon {n:?} check {i} has an empty command"))
            }
            _ => {}
        }
    }
    p
}

/// Names in an order where every daemon follows its dependencies; ties keep input order.
pub(crate) fn start_order(specs: &[ManagedSpec]) -> Result<Vec<String>, ManagerError> {
    let by_name: BTreeMap<&str, &ManagedSpec> =
        specs.iter().map(|s| (s.name.as_str(), s)).collect();
    for s in specs {
        for d in &s.depends_on {
            if !by_name.contains_key(d.as_str()) {
                return Err(ManagerError::UnknownDependency {
                    name: s.name.clone(),
                    missing: d.clone(),
                    known: by_name.keys().copied().collect::<Vec<_>>().join(", "),
                });
            }
        }
    }
    // Depth-first search; `on_path` finds the cycle to name it.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = by_name.keys().map(|k| (*k, Mark::New)).collect();
    let mut order = Vec::with_capacity(specs.len());
    let mut path: Vec<&str> = Vec::new();
    fn visit<'a>(
        name: &'a str,
        by_name: &BTreeMap<&'a str, &'a ManagedSpec>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
        order: &mut Vec<String>,
    ) -> Result<(), ManagerError> {
        match marks.get(name).copied() {
            Some(Mark::Done) | None => return Ok(()),
            Some(Mark::OnPath) => {
                let from = path.iter().position(|p| *p == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                cycle.push(name.to_string());
                return Err(ManagerError::Cycle { cycle });
            }
            Some(Mark::New) => {}
        }
        marks.insert(name, Mark::OnPath);
        path.push(name);
        if let Some(spec) = by_name.get(name) {
            for d in &spec.depends_on {
                visit(d.as_str(), by_name, marks, path, order)?;
            }
        }
        path.pop();
        marks.insert(name, Mark::Done);
        order.push(name.to_string());
        Ok(())
    }
    for s in specs {
        visit(s.name.as_str(), &by_name, &mut marks, &mut path, &mut order)?;
    }
    Ok(order)
}

/// Compare the managed specs with a new declaration, by name.
pub(crate) fn diff(old: &BTreeMap<String, ManagedSpec>, new: &[ManagedSpec]) -> ManagerDiff {
    let mut d = ManagerDiff::default();
    let new_names: BTreeSet<&str> = new.iter().map(|s| s.name.as_str()).collect();
    for s in new {
        match old.get(&s.name) {
            None => d.added.push(s.name.clone()),
            Some(o) if o != s => d.changed.push(s.name.clone()),
            Some(_) => d.unchanged.push(s.name.clone()),
        }
    }
    d.removed = old
        .keys()
        .filter(|k| !new_names.contains(k.as_str()))
        .cloned()
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, deps: &[&str]) -> ManagedSpec {
        let mut s = ManagedSpec::new(name, vec!["true".into()], "/tmp");
        s.depends_on = deps.iter().map(|d| d.to_string()).collect();
        s
    }

    /// Dependencies come first whatever the declaration order.
    #[test]
    fn order_follows_dependencies() {
        let order = validate(&[s("c", &["b"]), s("b", &["a"]), s("a", &[]), s("d", &[])]).unwrap();
        assert_eq!(order, vec!["a", "b", "c", "d"]);
    }

    /// A cycle is refused and named.
    #[test]
    fn cycle_is_named() {
        let err =
            validate(&[s("a", &["b"]), s("b", &["c"]), s("c", &["a"]), s("x", &[])]).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
    }

    /// An undeclared dependency is refused with the declared names.
    #[test]
    fn unknown_dependency_is_named() {
        let err = validate(&[s("a", &["ghost"])]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("\"ghost\"") && msg.contains("declared daemons: a"),
            "{msg}"
        );
    }

    /// Every invalid field is reported at once, with the bad value.
    #[test]
    fn all_problems_reported() {
        let mut bad = s("a", &[]);
        bad.command.clear();
        bad.jitter = 2.0;
        bad.user = Some("no-such-user-perfvisor".into());
        let err = validate(&[bad, s("a", &[])]).unwrap_err();
        let ManagerError::Invalid { problems } = err else {
            panic!("{err}")
        };
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.contains("no-such-user-perfvisor")));
    }

    /// The diff sorts names into added, removed, changed and unchanged.
    #[test]
    fn diff_by_name() {
        let old: BTreeMap<String, ManagedSpec> = [s("a", &[]), s("b", &[]), s("c", &[])]
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let mut b2 = s("b", &[]);
        b2.env.insert("X".into(), "1".into());
        let d = diff(&old, &[s("a", &[]), b2, s("d", &[])]);
        assert_eq!(d.added, vec!["d"]);
        assert_eq!(d.removed, vec!["c"]);
        assert_eq!(d.changed, vec!["b"]);
        assert_eq!(d.unchanged, vec!["a"]);
    }
}
