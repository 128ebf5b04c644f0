//! What the core tells others about itself: the workers' rows of `status`,
//! and the one-line status for the service manager.

use std::time::{Instant, SystemTime};

use super::phase::Phase;
use super::{ms_u64, Core, Worker};
use crate::protocol::WorkerStatus;

/// The service manager's view: STATUS= text, whether the service serves
/// (READY=1), and whether nothing is in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerReport {
    pub status: String,
    pub serving: bool,
    pub settled: bool,
}

impl Core {
    /// The newest generation that became ready (0: none yet).
    pub fn serving_generation(&self) -> u64 {
        if self.serving_ready {
            self.serving.number
        } else {
            0
        }
    }

    /// The generation a restart in progress is starting.
    pub fn restarting(&self) -> Option<u64> {
        match &self.phase {
            Phase::Rolling { rollout, .. } => Some(rollout.generation.number),
            _ => None,
        }
    }

    /// One row per worker and per pending respawn, slot by slot, then the
    /// draining ones.
    pub fn worker_rows(&self, now: Instant, wall: SystemTime) -> Vec<WorkerStatus> {
        let unix_ms = |t: Instant| {
            wall.checked_sub(now.duration_since(t))
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(ms_u64)
                .unwrap_or(0)
        };
        let row = |w: &Worker, restarts: u32| WorkerStatus {
            slot: w.slot,
            pid: Some(w.pid),
            generation: w.generation.number,
            state: w.state.name().to_string(),
            since_unix_ms: unix_ms(w.since),
            for_ms: ms_u64(now.duration_since(w.since)),
            restarts,
            status: w.status.clone(),
        };
        let mut rows = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(w) = slot.active() {
                rows.push(row(w, slot.crashes.restarts));
            }
            if let Some(r) = slot.respawn() {
                rows.push(WorkerStatus {
                    slot: i,
                    pid: None,
                    generation: r.generation.number,
                    state: "respawning".into(),
                    since_unix_ms: unix_ms(r.since),
                    for_ms: ms_u64(now.duration_since(r.since)),
                    restarts: slot.crashes.restarts,
                    status: None,
                });
            }
            if let Some(w) = slot.incoming() {
                rows.push(row(w, 0));
            }
        }
        rows.extend(self.draining.iter().map(|w| row(w, 0)));
        rows
    }

    /// Where things stand, for the service manager (None while stopping:
    /// it was told STOPPING=1).
    pub fn manager_report(&self) -> Option<ManagerReport> {
        let rolling = match &self.phase {
            Phase::Stopping { .. } => return None,
            Phase::Rolling { rollout, queued } => Some((rollout, queued)),
            Phase::Steady | Phase::Upgrading { .. } => None,
        };
        let n = self.slots.len();
        let ready = self
            .slots
            .iter()
            .filter(|s| s.active().is_some_and(|w| w.is_ready()))
            .count();
        let mut status = format!(
            "generation {}: {ready}/{n} workers ready",
            self.serving.number
        );
        if let Some((r, _)) = rolling {
            status += &format!(", starting generation {}", r.generation.number);
        } else if let Some(failure) = &self.last_failure {
            status += &format!(" ({failure})");
        }
        Some(ManagerReport {
            status,
            serving: self.serving_ready,
            settled: rolling.is_none(),
        })
    }
}
