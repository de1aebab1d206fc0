//! Test-only stand-in for `berth shim`: the berth binary is not built by this crate's tests.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match args.first().map(String::as_str) {
        Some("shim") => args[1..].to_vec(),
        _ => args,
    };
    std::process::exit(berth_runtime::shim::main(args));
}
