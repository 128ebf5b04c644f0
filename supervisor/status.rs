//! The `status` answer: the supervisor, its sockets, its workers.

use std::time::{Instant, SystemTime};

use crate::protocol::{SocketStatus, Status, WorkerStatus};
use crate::supervisor::{ms_u64, Supervisor};
use crate::template::FIRST_FD;
use crate::worker::Worker;

impl Supervisor {
    pub fn status(&self) -> Status {
        let now = Instant::now();
        let row = |w: &Worker, restarts: u32| WorkerStatus {
            slot: w.slot,
            pid: Some(w.pid),
            generation: w.generation.number,
            state: w.state.name().to_string(),
            since_unix_ms: unix_ms(w.since_wall),
            for_ms: ms_u64(now.duration_since(w.since)),
            restarts,
            status: w.status.clone(),
        };
        let mut workers = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(w) = &slot.active {
                workers.push(row(w, slot.restarts));
            }
            if let Some(r) = &slot.respawn {
                workers.push(WorkerStatus {
                    slot: i,
                    pid: None,
                    generation: r.generation.number,
                    state: "respawning".into(),
                    since_unix_ms: unix_ms(r.since_wall),
                    for_ms: ms_u64(now.duration_since(r.since)),
                    restarts: slot.restarts,
                    status: None,
                });
            }
            if let Some(w) = &slot.incoming {
                workers.push(row(w, 0));
            }
        }
        workers.extend(self.draining.iter().map(|w| row(w, 0)));
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_ms: ms_u64(self.started.elapsed()),
            generation: if self.serving_ready {
                self.serving.number
            } else {
                0
            },
            restarting: self.rollout.as_ref().map(|r| r.generation.number),
            shutting_down: self.is_shutting_down(),
            upgrades: self.upgrades,
            sockets: self
                .next_sockets
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
            workers,
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(ms_u64)
        .unwrap_or(0)
}
