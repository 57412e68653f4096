//! `perfvisor check-config`: the config's text (every problem at once, with its line), then
//! what it needs of this machine (programs, directories, users, the database, the API
//! address). Problems go to stderr and exit 2; warnings go to stderr and leave the exit
//! status 0.

use std::path::Path;

use perfvisor::config::{self, MachineCheck};

use super::CliError;

/// Checks `file`; with `machine`, against this machine too.
pub fn check_config(file: &Path, machine: bool) -> Result<(), CliError> {
    let failed = |e: config::ConfigError| CliError {
        message: format!("{} problem(s):\n{e}", e.problems.len()),
        code: 2,
    };
    let loaded = config::read(file).map_err(failed)?;
    let mut warnings = loaded.warnings.clone();
    if machine {
        match loaded.check_machine(MachineCheck::All) {
            Ok(w) => warnings.extend(w),
            Err(mut e) => {
                warnings.append(&mut e.warnings);
                warnings.sort_by_key(|p| (p.line, p.column));
                e.warnings = warnings;
                return Err(failed(e));
            }
        }
    }
    warnings.sort_by_key(|p| (p.line, p.column));
    if !warnings.is_empty() {
        eprintln!("{}", loaded.render_warnings(&warnings));
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
