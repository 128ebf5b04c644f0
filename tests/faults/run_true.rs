//! Running handoff on a program that does nothing, for flags that must be
//! refused before anything starts.

use std::path::Path;

use crate::harness::client;

/// `handoff run --control DIR/control.sock --listen a=tcp://127.0.0.1:0
/// FLAGS -- /bin/true`.
pub fn run_true_with(dir: &Path, flags: &[&str]) -> (i32, String, String) {
    let control = dir.join("control.sock");
    let mut args = vec![
        "run",
        "--control",
        control.to_str().expect("utf-8 path"),
        "--listen",
        "a=tcp://127.0.0.1:0",
    ];
    args.extend(flags);
    args.extend(["--", "/bin/true"]);
    client(&args)
}
