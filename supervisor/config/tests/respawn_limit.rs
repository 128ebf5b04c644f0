//! `respawn_limit` (issue 12): off by default, parsed into a count and a
//! window, and each mistake reported at its line.

use std::time::Duration;

use super::{errors, parse};
use crate::config::*;

fn with_limit(limit: &str) -> String {
    format!(
        "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\
         [program]\ncommand = [\"x\"]\n{limit}\n"
    )
}

#[test]
fn respawn_limit_is_off_by_default() {
    let c = parse(&with_limit("")).unwrap();
    assert_eq!(c.program.respawn_limit, None);
}

#[test]
fn respawn_limit_reads_a_count_and_a_window() {
    let c = parse(&with_limit(
        "respawn_limit = { count = 5, within = \"60s\" }",
    ))
    .unwrap();
    assert_eq!(
        c.program.respawn_limit,
        Some(RespawnLimit {
            count: 5,
            within: Duration::from_secs(60)
        })
    );
}

#[test]
fn a_zero_or_negative_count_names_its_line() {
    for count in ["0", "-1"] {
        let e = errors(&with_limit(&format!(
            "respawn_limit = {{ count = {count}, within = \"60s\" }}"
        )));
        assert!(e.contains("t.toml:6"), "{e}");
        assert!(e.contains("count must be a whole number above zero"), "{e}");
    }
}

#[test]
fn a_bad_window_names_its_line() {
    let e = errors(&with_limit(
        "respawn_limit = { count = 5, within = \"soon\" }",
    ));
    assert!(e.contains("t.toml:6"), "{e}");
    assert!(e.contains("respawn_limit: within"), "{e}");
    let e = errors(&with_limit(
        "respawn_limit = { count = 5, within = \"0s\" }",
    ));
    assert!(
        e.contains("t.toml:6") && e.contains("within must be above zero"),
        "{e}"
    );
}

#[test]
fn a_missing_or_unknown_field_is_an_error() {
    let e = errors(&with_limit("respawn_limit = { count = 5 }"));
    assert!(e.contains("t.toml:6") && e.contains("within"), "{e}");
    let e = errors(&with_limit(
        "respawn_limit = { count = 5, within = \"1m\", every = 1 }",
    ));
    assert!(e.contains("t.toml:6") && e.contains("every"), "{e}");
}
