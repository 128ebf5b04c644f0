//! Unit tests of the core: each drives a [`super::Core`] through a scenario
//! over a fake [`super::Effects`] (`tests/fake.rs`), with no process and no
//! real clock, and asserts the exact effects it asked for, in order, and
//! the answers its askers read.

pub(crate) mod fake;

mod boot;
mod handover;
mod report;
mod requests;
mod restart;
mod rolling;
mod signal;
mod snapshot;
mod stop;
mod upgrade;
mod workers;
