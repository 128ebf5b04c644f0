//! The `status` answer: the supervisor, its sockets, its workers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::Supervisor;
use crate::core::ms_u64;
use crate::core::Core;
use crate::protocol::{GenerationSocket, SocketStatus, Status};
use crate::sockets::{BoundSocket, Mode};
use crate::template::FIRST_FD;

impl Supervisor {
    pub fn status(&mut self) -> Status {
        self.check_sockets();
        let core = &self.core;
        let holders = holders(core);
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
                    handover: if s.mode.is_steer() { "steer" } else { "shared" }.into(),
                    shared_because: match &s.mode {
                        Mode::Shared { why } => Some(why.clone()),
                        Mode::Steer => None,
                    },
                    generations: generation_sockets(core, s, &holders),
                    options: s.options(),
                })
                .collect(),
            workers: core.worker_rows(Instant::now(), SystemTime::now()),
            tcp_migrate_req: crate::steer::migrate_req(),
            watching: self
                .source
                .watch
                .as_ref()
                .map(|w| w.paths.iter().map(|p| p.display().to_string()).collect()),
        }
    }

    /// Revives the held listeners a child shut down (see
    /// `Effects::check_sockets`).
    pub fn check_sockets(&mut self) {
        self.core.check_sockets(&mut self.fx);
    }
}

/// The kernel sockets on `socket`'s address: its group's members for a
/// steered one, itself for a shared one; each with the generations that
/// have it, its queue, and its share of new connections.
fn generation_sockets(
    core: &Core,
    socket: &Arc<BoundSocket>,
    holders: &HashMap<*const BoundSocket, Vec<u64>>,
) -> Vec<GenerationSocket> {
    let members: Vec<Arc<BoundSocket>> = if socket.mode.is_steer() {
        core.steering().group_of(socket).cloned().collect()
    } else {
        vec![socket.clone()]
    };
    let shares = core.steering().shares(socket);
    members
        .iter()
        .enumerate()
        .map(|(index, member)| GenerationSocket {
            generations: holders
                .get(&Arc::as_ptr(member))
                .cloned()
                .unwrap_or_default(),
            queued: member.queued(),
            share: shares.as_ref().map(|shares| {
                shares
                    .iter()
                    .find(|(i, _)| usize::try_from(*i).ok() == Some(index))
                    .map_or(0, |(_, pct)| *pct)
            }),
        })
        .collect()
}

/// Which live generations have each socket, oldest first.
fn holders(core: &Core) -> HashMap<*const BoundSocket, Vec<u64>> {
    let mut holders: HashMap<*const BoundSocket, Vec<u64>> = HashMap::new();
    for g in core.live_generations() {
        for s in g.sockets.iter() {
            holders.entry(Arc::as_ptr(s)).or_default().push(g.number);
        }
    }
    holders
}
