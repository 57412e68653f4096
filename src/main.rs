//! The `perfvisor` binary: parses the command line (clap) and runs the command. `run` starts
//! a supervisor from a config file; the other commands talk to a running one over its HTTP API.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perfvisor: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
