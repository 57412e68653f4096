//! `perfvisor-loadgen`: the load generator used as a watched daemon by the tests, the
//! examples and the demo (see `perfvisor::loadgen` for its arguments).

fn main() -> std::process::ExitCode {
    perfvisor::loadgen::run(std::env::args().skip(1).collect())
}
