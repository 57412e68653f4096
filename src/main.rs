//! The `perfvisor` binary: parses arguments and calls the library.
fn main() -> std::process::ExitCode {
    eprintln!("perfvisor: the standalone daemon manager is not built yet; see the README for the embedding example (cargo run --release --example embed).");
    std::process::ExitCode::from(2)
}
