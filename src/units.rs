//! Durations and sizes as people write them: `"250ms"`, `"1h30m"`, `"512MiB"`, `"2GB"`.
//!
//! Duration units: `ms`, `s`, `m`, `h`, `d`, `w`, combinable largest first (`"1h30m"`).
//! Size units: `B`; decimal `KB`, `MB`, `GB`, `TB` (powers of 1000); binary `KiB`, `MiB`,
//! `GiB`, `TiB` (powers of 1024). Both take whole numbers only, so the value written is
//! exactly the value used; only a rule's threshold on a `*_bytes` metric, a level rather
//! than an allocation, also takes a fraction (`"1.5GiB"`).

use std::time::Duration;

/// What a duration may look like, for error messages.
pub const DURATION_FORMS: &str =
    "a duration such as \"250ms\", \"30s\", \"5m\", \"1h30m\", \"7d\" (units ms, s, m, h, d, w)";

/// What a size may look like, for error messages.
pub const SIZE_FORMS: &str = "a size such as \"512B\", \"64KiB\", \"10MiB\", \"2GiB\", \"1GB\" \
     (units B, KB, MB, GB, TB = powers of 1000; KiB, MiB, GiB, TiB = powers of 1024)";

const DURATION_UNITS: [(&str, u64); 6] = [
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses `"1h30m"`-style text; `None` when it is not a duration (or overflows).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    // Units must come largest first, each at most once ("1h30m", not "30m1h").
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let rank = DURATION_UNITS.iter().position(|(u, _)| *u == unit)?;
        if last_rank != usize::MAX && rank <= last_rank {
            return None;
        }
        last_rank = rank;
        total_ms = total_ms.checked_add(number.checked_mul(DURATION_UNITS[rank].1)?)?;
    }
    Some(Duration::from_millis(total_ms))
}

/// Writes a duration the way the config reads it (`"1h30m"`, `"250ms"`, `"30d"`, `"0s"`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    // Weeks are read but not written: "30d" reads better than "4w2d".
    for (unit, size) in DURATION_UNITS.into_iter().skip(1) {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

const SIZE_UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Parses `"512MiB"`-style text (a space before the unit is allowed); `None` when it is not
/// a size (or overflows).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let number: u64 = text[..digits].parse().ok()?;
    let unit = text[digits..].trim_start();
    let (_, factor) = SIZE_UNITS.iter().find(|(u, _)| *u == unit)?;
    number.checked_mul(*factor)
}

/// Parses a size that may have a fraction (`"1.5 GiB"`, `"16MiB"`), for rule thresholds;
/// `None` when it is not a size.
pub fn parse_size_value(text: &str) -> Option<f64> {
    let text = text.trim();
    let digits = text
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let number = &text[..digits];
    if !number.starts_with(|c: char| c.is_ascii_digit()) || number.ends_with('.') {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let unit = text[digits..].trim_start();
    let (_, factor) = SIZE_UNITS.iter().find(|(u, _)| *u == unit)?;
    Some(number * *factor as f64)
}

/// Writes a size with the largest binary unit that divides it exactly (`"10MiB"`, `"1000B"`).
pub fn format_size(bytes: u64) -> String {
    for (unit, factor) in SIZE_UNITS.iter().rev().take(4) {
        if bytes >= *factor && bytes.is_multiple_of(*factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}
