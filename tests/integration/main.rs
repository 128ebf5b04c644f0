//! Integration tests: the real `handoff` binary, real children (the example
//! server in examples/, gunicorn), real sockets on loopback.
//!
//! Every test gets its own temp dir and lets the kernel pick its ports
//! (port 0, read back from `status`). Nothing sleeps to synchronise: tests
//! wait for a log line, a status, or a process exit, each with a deadline.

mod activator;
mod harness;
mod load;

mod child_protocol;
mod cli;
mod config_errors;
mod containers;
mod dev_watch;
mod extras;
mod gunicorn;
mod preload;
mod process_controls;
mod protocol;
mod recipes;
mod reload;
mod restart;
mod signal;
mod sloppy;
mod socket_options;
mod steer;
mod supervise;
mod systemd;
mod tour;
mod units;
mod upgrade;
mod workers;
