//! `perfvisor check-config`: the config's text, every problem at once with its line.
//! Problems go to stderr and exit 2; warnings go to stderr and leave the exit status 0.

use std::path::Path;

use perfvisor::config;

use super::CliError;

/// Checks `file`.
pub fn check_config(file: &Path) -> Result<(), CliError> {
    let failed = |e: config::ConfigError| CliError {
        message: format!("{} problem(s):\n{e}", e.problems.len()),
        code: 2,
    };
    let loaded = config::read(file).map_err(failed)?;
    let warnings = &loaded.warnings;
    if !warnings.is_empty() {
        eprintln!("{}", loaded.render_warnings(warnings));
    }
    let c = &loaded.config;
    let warned = match warnings.len() {
        0 => String::new(),
        n => format!(", {n} warning(s)"),
    };
    println!(
        "{}: ok ({} managed daemons, {} attached, {} rules, {} sinks, {} silences{warned})",
        file.display(),
        c.daemons.len(),
        c.attached.len(),
        c.alert_rules.len(),
        c.alert_sinks.len(),
        c.silence_specs.len()
    );
    Ok(())
}
