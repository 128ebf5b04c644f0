//! A generation: one version of the server (its program and the sockets it
//! serves on), started by boot, a restart or a reload.

use std::sync::Arc;

use crate::config::ProgramSpec;
use crate::sockets::SocketSet;

/// What one generation runs: its number, its program, its sockets. Workers
/// share it; a shared socket closes once no generation that has it is
/// left, a steered one (its own) when the generation is gone.
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
    /// Generation `number` of this program, on `sockets` (the next
    /// generation's, or new ones beside the steered ones:
    /// `core/handover.rs`).
    pub fn generation(&self, number: u64, sockets: SocketSet) -> Generation {
        Generation {
            number,
            spec: self.spec.clone(),
            sockets,
        }
    }
}
