//! The `status` answer: the supervisor, its sockets, its workers.

use std::time::{Instant, SystemTime};

use super::Supervisor;
use crate::core::ms_u64;
use crate::protocol::{SocketStatus, Status};
use crate::template::FIRST_FD;

impl Supervisor {
    pub fn status(&mut self) -> Status {
        self.check_sockets();
        let core = &self.core;
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_ms: ms_u64(self.started.elapsed()),
            generation: core.serving_generation(),
            restarting: core.restarting(),
            shutting_down: core.is_stopping(),
            upgrades: self.upgrades,
            sockets: core
                .next()
                .sockets
                .iter()
                .enumerate()
                .map(|(i, s)| SocketStatus {
                    name: s.spec.name.clone(),
                    listen: s.spec.listen.to_string(),
                    address: s.local.clone(),
                    fd: u32::try_from(FIRST_FD + i).unwrap_or(u32::MAX),
                    backlog: s.backlog(),
                    listening: s.is_listening(),
                    revived: s.revived(),
                })
                .collect(),
            workers: core.worker_rows(Instant::now(), SystemTime::now()),
        }
    }

    /// Revives the held listeners a child shut down (see
    /// `Effects::check_sockets`).
    pub fn check_sockets(&mut self) {
        self.core.check_sockets(&mut self.fx);
    }
}
