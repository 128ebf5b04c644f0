//! Waiting for a condition that no log line announces.

use std::time::{Duration, Instant};

/// Waits until `cond` holds, checking again each time it does not (no
/// fixed sleep: a short yield between checks), and panics naming `what`
/// after the harness's `DEADLINE`. For conditions no log line announces (a port
/// refused, a process gone).
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + crate::harness::DEADLINE;
    let mut pause = Duration::from_millis(1);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {:?}",
            crate::harness::DEADLINE
        );
        // A back-off between checks, not a synchronisation: the condition
        // decides, the pause only keeps the check from spinning.
        std::thread::park_timeout(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
