//! A generation: one version of the server (its program and the sockets it
//! serves on), started by boot, a restart or a reload.

use std::sync::Arc;

use crate::config::ProgramSpec;
use crate::sockets::SocketSet;

/// What one generation runs: its number, its program, its sockets. Workers
/// share it; a socket closes once no generation that has it is left.
///
/// Where a generation gets sockets of its own (one listener per generation,
/// steered between them), they belong here: everything that starts, serves
/// or drains a generation already goes through this type.
#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    pub spec: Arc<ProgramSpec>,
    pub sockets: SocketSet,
}

/// What the next generation will run: changed by `reload` (both) and
/// `scale` (the worker count).
#[derive(Debug, Clone)]
pub struct Next {
    pub spec: Arc<ProgramSpec>,
    pub sockets: SocketSet,
}

impl Next {
    pub fn generation(&self, number: u64) -> Generation {
        Generation {
            number,
            spec: self.spec.clone(),
            sockets: self.sockets.clone(),
        }
    }
}
