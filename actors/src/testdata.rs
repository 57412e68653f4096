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

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]` as UTC into epoch milliseconds (replay's parser).
pub(crate) fn parse_nab_ts(s: &str) -> Result<i64, String> {
    crate::replay::parse_timestamp(s)
        .ok_or_else(|| format!("bad timestamp {s:?} (expected YYYY-MM-DD HH:MM:SS[.ffffff])"))
}

/// The rows of one NAB CSV (`timestamp,value` with a header), in file order (replay's
/// parser).
pub(crate) fn read_nab_csv(path: &Path) -> Result<Vec<(i64, f64)>, String> {
    let csv = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::replay::parse_csv(&path.display().to_string(), &csv).map_err(|e| e.to_string())
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
