//! The CLI alone, for trying it before the `berth` binary dispatches to it.

fn main() {
    std::process::exit(berth_cli::run(std::env::args_os().collect()));
}
