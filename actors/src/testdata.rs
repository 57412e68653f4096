//! Test data shared by the engine's unit tests: the NAB series vendored in the repository at
//! `testdata/nab` (see its README for where they come from), their timestamps, and their CSVs.

use std::path::{Path, PathBuf};

/// The NAB directory of the repository (`testdata/nab`). Panics (fails the test) when it
/// is missing, which means the checkout is incomplete.
pub(crate) fn nab_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/nab"));
    assert!(
        dir.join("labels.json").is_file(),
        "NAB data not found at {dir:?}: the repository's testdata/nab is missing"
    );
    dir
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]` as UTC into epoch milliseconds.
pub(crate) fn parse_nab_ts(s: &str) -> Result<i64, String> {
    let bad = || format!("bad timestamp {s:?} (expected YYYY-MM-DD HH:MM:SS[.ffffff])");
    let (date, time) = s.trim().split_once(' ').ok_or_else(bad)?;
    let num = |t: &str| t.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let (time, frac) = time.split_once('.').unwrap_or((time, ""));
    let t: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || t.len() != 3 {
        return Err(bad());
    }
    let millis = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        num(&digits)?
    };
    let days = days_from_civil(num(d[0])?, num(d[1])?, num(d[2])?);
    Ok(((days * 24 + num(t[0])?) * 60 + num(t[1])?) * 60_000 + num(t[2])? * 1000 + millis)
}

/// The rows of one NAB CSV (`timestamp,value` with a header), in file order.
pub(crate) fn read_nab_csv(path: &Path) -> Result<Vec<(i64, f64)>, String> {
    let csv = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.display();
    let mut rows = Vec::new();
    for (n, line) in csv.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let (ts, value) = line
            .split_once(',')
            .ok_or_else(|| format!("{name}:{}: expected timestamp,value", n + 1))?;
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("{name}:{}: bad value {value:?}", n + 1))?;
        rows.push((parse_nab_ts(ts)?, value));
    }
    Ok(rows)
}

/// Every NAB CSV below `dir`, recursively.
fn csv_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{dir:?}: {e}"))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{dir:?}: {e}"))?.path();
        if path.is_dir() {
            csv_files(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "csv") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every NAB series as (path below the NAB directory, samples sorted by time). Fails when
/// there is none.
pub(crate) fn nab_series() -> Vec<(String, Vec<(i64, f64)>)> {
    let dir = nab_dir();
    let mut files = Vec::new();
    csv_files(&dir, &mut files).unwrap_or_else(|e| panic!("reading the NAB data: {e}"));
    files.sort();
    assert!(!files.is_empty(), "no NAB CSV files under {dir:?}");
    files
        .iter()
        .map(|path| {
            let mut samples = read_nab_csv(path).unwrap_or_else(|e| panic!("{e}"));
            samples.sort_by_key(|s| s.0);
            assert!(!samples.is_empty(), "{path:?} has no samples");
            let name = path
                .strip_prefix(&dir)
                .unwrap_or(path)
                .display()
                .to_string();
            (name, samples)
        })
        .collect()
}
