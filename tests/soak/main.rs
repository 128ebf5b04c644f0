//! The soak suite: the heavier fault cases of issue 7, a target of its own
//! so that the quick fault suite (`tests/faults/`) stays quick. `cargo
//! test` runs it, so the README's test command and CI do too.
//!
//! Each case runs the real binary and the example server under load for
//! hundreds of restarts or a storm of signals and requests, and asserts what
//! the design promises: no failed request, no zombie, no leaked fd and no
//! growing memory, nothing holding the port after `stop`, the supervisor
//! still answering `status`. Each prints one summary line to stderr
//! (`--nocapture` shows it):
//!
//! `soak <case>: <restarts> restarts, <requests> requests, <failed> failed, <other figures>`
//!
//! Like the other suites: own temp dir and port per test, waits with
//! deadlines, never a sleep to synchronise.

#[allow(dead_code)]
#[path = "../integration/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../integration/load.rs"]
mod load;

mod procs;

mod parallel_restarts;
mod restarts;
mod signal_storm;
