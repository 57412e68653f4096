//! Config errors: every problem found in one file, each with its place (line, column and
//! key path) and a message saying what is wrong and what would be accepted.

use std::fmt::Write as _;
use std::ops::Range;

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where in the document, as a key path (`daemon[2].restart`, `supervisor.retention.raw`);
    /// empty for a problem with the file as a whole (unreadable, TOML syntax).
    pub path: String,
    /// 1-based line; 0 when the problem has no place in the text (the file cannot be read).
    pub line: usize,
    /// 1-based column, in characters; 0 with `line`.
    pub column: usize,
    /// What is wrong and what would be accepted.
    pub message: String,
}

/// Everything wrong with a config file. Displays one problem per line as
/// `FILE:LINE:COL: PATH: MESSAGE`, then the warnings as `FILE:LINE:COL: PATH: warning:
/// MESSAGE`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_all(.file, .problems, .warnings))]
pub struct ConfigError {
    /// The file name the problems refer to (as given to [`super::parse`] or [`super::load`]).
    pub file: String,
    /// Every problem found, in file order.
    pub problems: Vec<Problem>,
    /// What was accepted but deserves a look (a metric name perfvisor does not produce), in
    /// file order; never a reason to refuse the file.
    pub warnings: Vec<Problem>,
}

fn render_all(file: &str, problems: &[Problem], warnings: &[Problem]) -> String {
    let mut out = render(file, problems, "");
    if !warnings.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&render(file, warnings, "warning: "));
    }
    out
}

/// One line per problem, `FILE:LINE:COL: PATH: {tag}MESSAGE`.
pub(super) fn render(file: &str, problems: &[Problem], tag: &str) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = write!(out, "{file}");
        if p.line > 0 {
            let _ = write!(out, ":{}:{}", p.line, p.column);
        }
        out.push_str(": ");
        if !p.path.is_empty() {
            let _ = write!(out, "{}: ", p.path);
        }
        out.push_str(tag);
        // One problem per line, whatever the message (regex errors span several lines).
        let mut words = p.message.split_whitespace();
        if let Some(first) = words.next() {
            out.push_str(first);
            for w in words {
                out.push(' ');
                out.push_str(w);
            }
        }
    }
    out
}

/// Turns byte offsets into 1-based line and column numbers.
pub(super) struct Locator<'s> {
    text: &'s str,
    line_starts: Vec<usize>,
}

impl<'s> Locator<'s> {
    pub(super) fn new(text: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Locator { text, line_starts }
    }

    /// Line and column of the start of `span` (clamped to the text).
    pub(super) fn position(&self, span: &Range<usize>) -> (usize, usize) {
        let offset = span.start.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, column)
    }
}
