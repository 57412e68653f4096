//! Reading the parsed TOML tree with every value's place: typed getters that report a wrong
//! type or an unusable value as a [`Problem`] and carry on, so that one pass finds every
//! mistake; unknown keys are reported with the keys the table accepts.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use super::error::{Locator, Problem};
use crate::units::{parse_duration, parse_size, DURATION_FORMS, SIZE_FORMS};

/// What a name of a daemon, remote, rule or sink may be made of.
pub(super) const NAME_FORM: &str = "a name of letters, digits, '_', '.' and '-'";
/// Where problems are gathered while a document is read.
pub(super) struct Ctx<'s> {
    locator: Locator<'s>,
    pub(super) problems: Vec<Problem>,
    /// What is accepted but deserves a look.
    pub(super) warnings: Vec<Problem>,
    /// Places of the keys the checks against the machine report on, by key path.
    pub(super) places: Places,
}

/// Where keys are in the text (line, column), by key path (`daemon[0].cwd`), for problems
/// found after the text is read (the checks against the machine).
pub(super) type Places = BTreeMap<String, (usize, usize)>;

impl<'s> Ctx<'s> {
    pub(super) fn new(text: &'s str) -> Self {
        Ctx {
            locator: Locator::new(text),
            problems: Vec::new(),
            warnings: Vec::new(),
            places: Places::new(),
        }
    }

    fn problem(&self, path: &str, span: &Range<usize>, message: String) -> Problem {
        let (line, column) = self.locator.position(span);
        Problem {
            path: path.to_owned(),
            line,
            column,
            message,
        }
    }

    /// Records a problem at `span`.
    pub(super) fn report(&mut self, path: &str, span: &Range<usize>, message: impl Into<String>) {
        let p = self.problem(path, span, message.into());
        self.problems.push(p);
    }

    /// Records a warning at `span`: accepted, but worth a look.
    pub(super) fn warn(&mut self, path: &str, span: &Range<usize>, message: impl Into<String>) {
        let p = self.problem(path, span, message.into());
        self.warnings.push(p);
    }

    /// Remembers where `path` is (`span`), for problems found later.
    pub(super) fn place(&mut self, path: &str, span: &Range<usize>) {
        let at = self.locator.position(span);
        self.places.insert(path.to_owned(), at);
    }
}

/// A TOML value's type as the messages name it.
pub(super) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A short rendering of a value for messages (`"sometimes"`, `12`, `[...]`).
pub(super) fn show(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("{s:?}"),
        DeValue::Integer(i) if i.radix() == 10 => i.as_str().to_owned(),
        DeValue::Integer(i) => format!("{} (base {})", i.as_str(), i.radix()),
        DeValue::Float(f) => f.as_str().to_owned(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(_) => "[...]".into(),
        DeValue::Table(_) => "{...}".into(),
    }
}

/// Joins accepted words as `"a", "b" or "c"`.
pub(super) fn quoted_list(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

pub(super) use perfvisor_actors::suggest::distance;

/// One table of the document, with its key path and place.
pub(super) struct Table<'a, 'i> {
    pub(super) path: String,
    pub(super) span: Range<usize>,
    pub(super) table: &'a DeTable<'i>,
}

impl<'a, 'i> Table<'a, 'i> {
    /// Wraps a table and reports every key not in `accepted`.
    pub(super) fn new(
        ctx: &mut Ctx<'_>,
        path: String,
        span: Range<usize>,
        table: &'a DeTable<'i>,
        accepted: &[&str],
    ) -> Self {
        let t = Table { path, span, table };
        for (key, _) in table.iter() {
            let name = key.get_ref().as_ref();
            if !accepted.contains(&name) {
                let hint = accepted
                    .iter()
                    .map(|a| (distance(name, a), a))
                    .filter(|(d, _)| *d <= 2)
                    .min()
                    .map(|(_, a)| format!(" (did you mean {a:?}?)"))
                    .unwrap_or_default();
                let place = if t.path.is_empty() {
                    "at the top level".to_owned()
                } else {
                    format!("in [{}]", t.path)
                };
                ctx.report(
                    &t.key_path(name),
                    &key.span(),
                    format!(
                        "unknown key {name:?}{hint}; accepted keys {place}: {}",
                        accepted.join(", ")
                    ),
                );
            }
        }
        t
    }

    /// `path.key` (or `key` at the top level).
    pub(super) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The raw value of `key`.
    pub(super) fn get(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.table.get(key)
    }

    /// The place of `key` (its name in the text), or of the table when it is absent.
    pub(super) fn key_span(&self, key: &str) -> Range<usize> {
        self.table
            .get_key_value(key)
            .map_or_else(|| self.span.clone(), |(k, _)| k.span())
    }

    /// Remembers where `key` is (its value, or the table when it is absent), for problems
    /// found after the text is read.
    pub(super) fn remember(&self, ctx: &mut Ctx<'_>, key: &str) {
        let span = self
            .get(key)
            .map_or_else(|| self.span.clone(), |v| v.span());
        ctx.place(&self.key_path(key), &span);
    }

    /// True when `key` is present.
    pub(super) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// Reports `message` about `key`'s value.
    pub(super) fn bad(&self, ctx: &mut Ctx<'_>, key: &str, message: impl Into<String>) {
        let span = self
            .get(key)
            .map_or_else(|| self.span.clone(), |v| v.span());
        ctx.report(&self.key_path(key), &span, message);
    }

    /// Reports that a required key is missing, at the table's place.
    pub(super) fn missing(&self, ctx: &mut Ctx<'_>, key: &str, expected: &str) {
        let place = if self.path.is_empty() {
            "at the top level".to_owned()
        } else {
            format!("in [{}]", self.path)
        };
        ctx.report(
            &self.key_path(key),
            &self.span,
            format!("missing key {key:?} {place}; expected {expected}"),
        );
    }

    fn wrong_type(&self, ctx: &mut Ctx<'_>, key: &str, v: &DeValue<'_>, expected: &str) {
        self.bad(
            ctx,
            key,
            format!("expected {expected}, found {} ({})", type_name(v), show(v)),
        );
    }

    /// A string value; `expected` describes what is accepted.
    pub(super) fn string(&self, ctx: &mut Ctx<'_>, key: &str, expected: &str) -> Option<String> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.wrong_type(ctx, key, other, expected);
                None
            }
        }
    }

    /// A non-empty string.
    pub(super) fn nonempty(&self, ctx: &mut Ctx<'_>, key: &str, expected: &str) -> Option<String> {
        let s = self.string(ctx, key, expected)?;
        if s.trim().is_empty() {
            self.bad(ctx, key, format!("the value is empty; expected {expected}"));
            return None;
        }
        Some(s)
    }

    /// A required non-empty string; reports it missing.
    pub(super) fn required(&self, ctx: &mut Ctx<'_>, key: &str, expected: &str) -> Option<String> {
        if !self.has(key) {
            self.missing(ctx, key, expected);
            return None;
        }
        self.nonempty(ctx, key, expected)
    }

    /// A required name of letters, digits, `_`, `.` and `-` ([`NAME_FORM`]); `None`, with
    /// the problem reported, when it is missing or has other characters.
    pub(super) fn required_name(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<String> {
        let name = self.required(ctx, key, NAME_FORM)?;
        if name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            Some(name)
        } else {
            self.bad(
                ctx,
                key,
                format!("{name:?} is not accepted; expected {NAME_FORM}"),
            );
            None
        }
    }

    /// A path (a non-empty string).
    pub(super) fn path(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<PathBuf> {
        self.nonempty(ctx, key, "a file path (a non-empty string)")
            .map(PathBuf::from)
    }

    /// One of `words`.
    pub(super) fn choice(&self, ctx: &mut Ctx<'_>, key: &str, words: &[&str]) -> Option<String> {
        let expected = format!("one of {}", quoted_list(words));
        let s = self.string(ctx, key, &expected)?;
        if words.contains(&s.as_str()) {
            Some(s)
        } else {
            self.bad(
                ctx,
                key,
                format!("{s:?} is not accepted; expected {expected}"),
            );
            None
        }
    }

    /// A boolean.
    pub(super) fn bool(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<bool> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.wrong_type(ctx, key, other, "true or false");
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub(super) fn integer(&self, ctx: &mut Ctx<'_>, key: &str, min: i64, max: i64) -> Option<i64> {
        let v = self.get(key)?;
        let expected = format!("an integer from {min} to {max}");
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if (min..=max).contains(&n) => Some(n),
                _ => {
                    self.bad(
                        ctx,
                        key,
                        format!("{} is out of range; expected {expected}", show(v.get_ref())),
                    );
                    None
                }
            },
            other => {
                self.wrong_type(ctx, key, other, &expected);
                None
            }
        }
    }

    /// A finite number (integer or float).
    pub(super) fn number(&self, ctx: &mut Ctx<'_>, key: &str, expected: &str) -> Option<f64> {
        let v = self.get(key)?;
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            other => {
                self.wrong_type(ctx, key, other, expected);
                return None;
            }
        };
        match n {
            Some(n) if n.is_finite() => Some(n),
            _ => {
                self.bad(
                    ctx,
                    key,
                    format!("{} is not accepted; expected {expected}", show(v.get_ref())),
                );
                None
            }
        }
    }

    /// A number in `min..=max`.
    pub(super) fn ranged(&self, ctx: &mut Ctx<'_>, key: &str, min: f64, max: f64) -> Option<f64> {
        let expected = format!("a number from {min} to {max}");
        let n = self.number(ctx, key, &expected)?;
        if (min..=max).contains(&n) {
            Some(n)
        } else {
            self.bad(
                ctx,
                key,
                format!("{n} is out of range; expected {expected}"),
            );
            None
        }
    }

    /// A duration string within `min..=max`.
    pub(super) fn duration(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let s = self.string(ctx, key, DURATION_FORMS)?;
        let Some(d) = parse_duration(&s) else {
            self.bad(
                ctx,
                key,
                format!("{s:?} is not a duration; expected {DURATION_FORMS}"),
            );
            return None;
        };
        if d < min || d > max {
            self.bad(
                ctx,
                key,
                format!(
                    "{s:?} is out of range; expected a duration from {} to {}",
                    crate::units::format_duration(min),
                    crate::units::format_duration(max)
                ),
            );
            return None;
        }
        Some(d)
    }

    /// A size string (or a plain integer of bytes) of at least `min` bytes.
    pub(super) fn size(&self, ctx: &mut Ctx<'_>, key: &str, min: u64) -> Option<u64> {
        let v = self.get(key)?;
        let bytes = match v.get_ref() {
            DeValue::String(s) => match parse_size(s) {
                Some(b) => b,
                None => {
                    self.bad(
                        ctx,
                        key,
                        format!("{s:?} is not a size; expected {SIZE_FORMS}"),
                    );
                    return None;
                }
            },
            DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
                Ok(b) => b,
                Err(_) => {
                    self.bad(
                        ctx,
                        key,
                        format!("{} is not a size; expected {SIZE_FORMS}", i.as_str()),
                    );
                    return None;
                }
            },
            other => {
                self.wrong_type(ctx, key, other, SIZE_FORMS);
                return None;
            }
        };
        if bytes < min {
            self.bad(
                ctx,
                key,
                format!(
                    "{} is too small; expected at least {}",
                    show(v.get_ref()),
                    crate::units::format_size(min)
                ),
            );
            return None;
        }
        Some(bytes)
    }

    /// An array of strings, each with its place; `None` when absent or not one.
    pub(super) fn strings(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        expected: &str,
    ) -> Option<Vec<(String, Range<usize>)>> {
        let v = self.get(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(ctx, key, v.get_ref(), expected);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(s) => out.push((s.to_string(), item.span())),
                other => {
                    ok = false;
                    ctx.report(
                        &format!("{}[{i}]", self.key_path(key)),
                        &item.span(),
                        format!(
                            "expected a string, found {} ({}); {key} is {expected}",
                            type_name(other),
                            show(other)
                        ),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    /// A command line: a non-empty array of strings whose first element (the program) is
    /// not empty.
    pub(super) fn argv(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<Vec<String>> {
        const EXPECTED: &str =
            "a non-empty array of strings, program first (no shell), e.g. [\"/usr/bin/app\", \"--flag\"]";
        let argv: Vec<String> = self
            .strings(ctx, key, EXPECTED)?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        match argv.first() {
            None => {
                self.bad(
                    ctx,
                    key,
                    format!("the command is empty; expected {EXPECTED}"),
                );
                None
            }
            Some(p) if p.trim().is_empty() => {
                self.bad(
                    ctx,
                    key,
                    format!("the program (first element) is empty; expected {EXPECTED}"),
                );
                None
            }
            Some(_) => Some(argv),
        }
    }

    /// `key` as a table of HTTP headers: names are HTTP tokens, values hold no control
    /// characters, and none is one of `reserved` (set by the protocol; compared without
    /// case). Each bad header is reported; all are returned.
    pub(super) fn headers(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        reserved: &[&str],
    ) -> BTreeMap<String, String> {
        let headers = self.string_map(ctx, key).unwrap_or_default();
        for (k, v) in &headers {
            let name_ok = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let value_ok = v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
            let is_reserved = reserved.iter().any(|r| r.eq_ignore_ascii_case(k));
            if !name_ok || !value_ok || is_reserved {
                let none_of = if reserved.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", and none of {} (set by the protocol)",
                        reserved.join(", ")
                    )
                };
                ctx.report(
                    &format!("{}.{k}", self.key_path(key)),
                    &self.key_span(key),
                    format!(
                        "header {k:?} is not accepted; expected a name of letters, digits and \
                         -, a value without control characters{none_of}"
                    ),
                );
            }
        }
        headers
    }

    /// A table of string values (`labels`, `env`, `headers`).
    pub(super) fn string_map(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
    ) -> Option<BTreeMap<String, String>> {
        let v = self.get(key)?;
        let DeValue::Table(t) = v.get_ref() else {
            self.wrong_type(
                ctx,
                key,
                v.get_ref(),
                "a table of strings, e.g. { team = \"search\" }",
            );
            return None;
        };
        let mut out = BTreeMap::new();
        for (k, val) in t.iter() {
            let name = k.get_ref().as_ref();
            match val.get_ref() {
                DeValue::String(s) => {
                    out.insert(name.to_owned(), s.to_string());
                }
                other => ctx.report(
                    &format!("{}.{name}", self.key_path(key)),
                    &val.span(),
                    format!(
                        "expected a string, found {} ({}); {key} is a table of strings",
                        type_name(other),
                        show(other)
                    ),
                ),
            }
        }
        Some(out)
    }

    /// A sub-table, wrapped (its unknown keys reported).
    pub(super) fn table(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        accepted: &[&str],
    ) -> Option<Table<'a, 'i>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(Table::new(ctx, self.key_path(key), v.span(), t, accepted)),
            other => {
                self.wrong_type(
                    ctx,
                    key,
                    other,
                    &format!("a table with keys {}", accepted.join(", ")),
                );
                None
            }
        }
    }

    /// The entries of an array of tables (`[[daemon]]`), each wrapped as `key[i]`.
    pub(super) fn tables(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        accepted: &[&str],
    ) -> Vec<Table<'a, 'i>> {
        let Some(v) = self.get(key) else {
            return Vec::new();
        };
        let items: &'a DeArray<'i> = match v.get_ref() {
            DeValue::Array(a) => a,
            other => {
                self.wrong_type(
                    ctx,
                    key,
                    other,
                    &format!("an array of tables ([[{}]])", self.key_path(key)),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", self.key_path(key));
            match item.get_ref() {
                DeValue::Table(t) => out.push(Table::new(ctx, path, item.span(), t, accepted)),
                other => ctx.report(
                    &path,
                    &item.span(),
                    format!(
                        "expected a table, found {} ({})",
                        type_name(other),
                        show(other)
                    ),
                ),
            }
        }
        out
    }
}
