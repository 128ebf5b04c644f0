//! The fault suite: handoff under deliberate abuse, one test per way it was
//! broken (issue 7) and per way it held. Each test starts the real binary,
//! injects one fault, and asserts what the design promises: no failed
//! request where it promises none, no zombie, no leaked fd, nothing holding
//! a port after `stop`, and the supervisor still answering `status`.
//!
//! Like the integration tests: own temp dir and ports per test, waits with
//! deadlines, never a sleep to synchronise. The heavier soak cases (storms,
//! hundreds of restarts) are a target of their own, `tests/soak/`.

#[allow(dead_code)]
#[path = "../integration/activator.rs"]
mod activator;
#[allow(dead_code)]
#[path = "../integration/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../integration/load.rs"]
mod load;
mod run_true;

mod busy_loop;
mod config_reader;
mod config_sources;
mod configs;
mod control;
mod env;
mod groups;
mod handover;
mod held;
mod output;
mod pid1;
mod protocol_config;
mod readiness;
mod runtime_dir;
mod signals;
mod sockets;
mod systemd_env;
