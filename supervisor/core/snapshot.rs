//! The core's state as data: what an upgrading supervisor hands to the new
//! binary, and what every supervisor is built from. Boot builds the
//! snapshot of a supervisor that has started nothing yet
//! ([`CoreSnapshot::first`]); an upgrade's new binary reads the old one's.
//! Both go through [`Core::restore`], the one constructor.
//!
//! Sockets are named by their index in a list the caller keeps (the
//! upgrade state's `sockets`), so that two generations that share a socket
//! still share it after the upgrade.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::phase::Phase;
use super::slot::{Crashes, Occupant, Slot, SlotState};
use super::{Core, Effects, Generation, Ids, Next, Steering, Timer, Worker, WorkerState};
use crate::config::ProgramSpec;
use crate::sockets::{BoundSocket, SocketSet};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoreSnapshot {
    /// Every generation some worker, respawn, or the serving state names.
    pub generations: Vec<GenerationSnapshot>,
    pub next: NextSnapshot,
    pub serving: u64,
    pub serving_ready: bool,
    pub last_generation: u64,
    pub next_worker: u64,
    pub slots: Vec<SlotSnapshot>,
    pub draining: Vec<WorkerSnapshot>,
    pub last_failure: Option<String>,
    /// Each SO_REUSEPORT group of steered sockets, its members in the
    /// kernel's order (the sockets travel by fd, so the order holds).
    #[serde(default)]
    pub steering: Vec<Vec<usize>>,
    /// The respawns `respawn_limit` counts, each as how long before the
    /// snapshot it was (oldest first), so that an upgrade in a crash loop
    /// does not start the count over.
    #[serde(default)]
    pub respawns_ago_ms: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationSnapshot {
    pub number: u64,
    pub spec: ProgramSpec,
    pub sockets: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NextSnapshot {
    pub spec: ProgramSpec,
    pub sockets: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotSnapshot {
    pub active: Option<WorkerSnapshot>,
    /// A respawn was pending, of this generation.
    pub respawn: Option<u64>,
    pub restarts: u32,
    pub backoff: Option<Duration>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSnapshot {
    pub id: u64,
    pub pid: u32,
    pub slot: usize,
    pub generation: u64,
    pub state: StateSnapshot,
    pub started_ago: Duration,
    pub since_ago: Duration,
    pub status: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StateSnapshot {
    Starting,
    Ready { ready_in: Duration },
    Draining { deadline_in: Duration },
    Killed { reason: String },
}

/// A snapshot that does not hold together.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the state names generation {0} but does not describe it")]
    UnknownGeneration(u64),
    #[error("the state names socket {index} of {count}")]
    UnknownSocket { index: usize, count: usize },
    #[error("slot {0} has neither a worker nor a pending respawn")]
    EmptySlot(usize),
    #[error("worker {id} is in slot {slot} but says slot {says}")]
    WrongSlot { id: u64, slot: usize, says: usize },
    #[error("worker {0} appears twice")]
    DuplicateWorker(u64),
    #[error("worker {id} has id {id}, not below the next id {next}")]
    WorkerIdAhead { id: u64, next: u64 },
}

impl CoreSnapshot {
    /// A supervisor that has started nothing yet: generation 1 runs `spec`
    /// on sockets `0..sockets`, and no slot exists until [`Core::start`].
    pub fn first(spec: ProgramSpec, sockets: usize) -> CoreSnapshot {
        let sockets: Vec<usize> = (0..sockets).collect();
        CoreSnapshot {
            generations: vec![GenerationSnapshot {
                number: 1,
                spec: spec.clone(),
                sockets: sockets.clone(),
            }],
            next: NextSnapshot { spec, sockets },
            serving: 1,
            serving_ready: false,
            last_generation: 1,
            next_worker: 1,
            slots: Vec::new(),
            draining: Vec::new(),
            last_failure: None,
            steering: Vec::new(),
            respawns_ago_ms: Vec::new(),
        }
    }

    /// Checks that everything the snapshot names is in it (`sockets`: how
    /// many sockets the caller has), without building anything.
    pub fn validate(&self, sockets: usize) -> Result<(), RestoreError> {
        let socket = |index: &usize| {
            if *index < sockets {
                Ok(())
            } else {
                Err(RestoreError::UnknownSocket {
                    index: *index,
                    count: sockets,
                })
            }
        };
        for g in &self.generations {
            g.sockets.iter().try_for_each(socket)?;
        }
        self.next.sockets.iter().try_for_each(socket)?;
        self.steering.iter().flatten().try_for_each(socket)?;
        let known = |n: u64| {
            if self.generations.iter().any(|g| g.number == n) {
                Ok(())
            } else {
                Err(RestoreError::UnknownGeneration(n))
            }
        };
        known(self.serving)?;
        let mut seen = Vec::new();
        let mut worker = |w: &WorkerSnapshot| {
            known(w.generation)?;
            if seen.contains(&w.id) {
                return Err(RestoreError::DuplicateWorker(w.id));
            }
            if w.id >= self.next_worker {
                return Err(RestoreError::WorkerIdAhead {
                    id: w.id,
                    next: self.next_worker,
                });
            }
            seen.push(w.id);
            Ok(())
        };
        for (i, s) in self.slots.iter().enumerate() {
            match (&s.active, s.respawn) {
                (Some(w), _) => {
                    if w.slot != i {
                        return Err(RestoreError::WrongSlot {
                            id: w.id,
                            slot: i,
                            says: w.slot,
                        });
                    }
                    worker(w)?;
                }
                (None, Some(g)) => known(g)?,
                (None, None) => return Err(RestoreError::EmptySlot(i)),
            }
        }
        self.draining.iter().try_for_each(worker)
    }
}

impl Core {
    /// Builds the core from a snapshot and the sockets its indices name.
    /// Nothing is started or armed: see [`Core::start`] (boot) and
    /// [`Core::resume`] (after an upgrade).
    pub fn restore(
        snapshot: &CoreSnapshot,
        sockets: &[Arc<BoundSocket>],
        now: Instant,
    ) -> Result<Core, RestoreError> {
        snapshot.validate(sockets.len())?;
        let set = |indices: &[usize]| -> SocketSet {
            indices.iter().map(|&i| sockets[i].clone()).collect()
        };
        let generations: BTreeMap<u64, Arc<Generation>> = snapshot
            .generations
            .iter()
            .map(|g| {
                let generation = Generation {
                    number: g.number,
                    spec: Arc::new(g.spec.clone()),
                    sockets: set(&g.sockets),
                };
                (g.number, Arc::new(generation))
            })
            .collect();
        let generation = |n: u64| generations[&n].clone();
        let ago = |d: Duration| now.checked_sub(d).unwrap_or(now);
        let worker = |w: &WorkerSnapshot| Worker {
            id: w.id,
            pid: w.pid,
            slot: w.slot,
            generation: generation(w.generation),
            state: match &w.state {
                StateSnapshot::Starting => WorkerState::Starting,
                StateSnapshot::Ready { ready_in } => WorkerState::Ready {
                    ready_in: *ready_in,
                },
                StateSnapshot::Draining { deadline_in } => WorkerState::Draining {
                    deadline: now + *deadline_in,
                },
                StateSnapshot::Killed { reason } => WorkerState::Killed {
                    reason: reason.clone(),
                },
            },
            started: ago(w.started_ago),
            since: ago(w.since_ago),
            status: w.status.clone(),
        };
        // The token 0 marks a respawn that `resume` has yet to arm.
        let slots = snapshot
            .slots
            .iter()
            .map(|s| Slot {
                state: SlotState::Settled(match (&s.active, s.respawn) {
                    (Some(w), _) => Occupant::Running(worker(w)),
                    (None, Some(g)) => Occupant::Respawning(super::Respawn {
                        token: 0,
                        since: now,
                        generation: generation(g),
                    }),
                    (None, None) => unreachable!("validated"),
                }),
                crashes: Crashes {
                    restarts: s.restarts,
                    backoff: s.backoff,
                },
            })
            .collect();
        Ok(Core {
            next: Next {
                spec: Arc::new(snapshot.next.spec.clone()),
                sockets: set(&snapshot.next.sockets),
            },
            serving: generation(snapshot.serving),
            serving_ready: snapshot.serving_ready,
            slots,
            draining: snapshot.draining.iter().map(worker).collect(),
            phase: Phase::Steady,
            drain_waits: Vec::new(),
            ids: Ids {
                last_generation: snapshot.last_generation,
                next_worker: snapshot.next_worker,
                next_token: 1,
            },
            last_failure: snapshot.last_failure.clone(),
            preload_hinted: false,
            respawns: snapshot
                .respawns_ago_ms
                .iter()
                .filter_map(|&ago| now.checked_sub(Duration::from_millis(ago)))
                .collect(),
            gave_up: None,
            steering: Steering::from_groups(
                snapshot
                    .steering
                    .iter()
                    .map(|g| g.iter().map(|&i| sockets[i].clone()).collect())
                    .collect(),
            ),
        })
    }

    /// After an upgrade: arms the deadlines of the workers taken over (what
    /// is left of them) and the respawns that were pending (after the
    /// initial delay, leaving each slot's backoff as it was).
    pub fn resume(&mut self, fx: &mut dyn Effects) {
        let now = fx.now();
        for w in self.workers() {
            match &w.state {
                WorkerState::Starting => {
                    let left = w
                        .generation
                        .spec
                        .ready_timeout
                        .saturating_sub(now.duration_since(w.started));
                    fx.timer(left, Timer::ReadyDeadline(w.id));
                }
                WorkerState::Draining { deadline } => fx.timer(
                    deadline.saturating_duration_since(now),
                    Timer::DrainDeadline(w.id),
                ),
                WorkerState::Ready { .. } | WorkerState::Killed { .. } => {}
            }
        }
        for slot in 0..self.slots.len() {
            let Some(r) = self.slots[slot].respawn() else {
                continue;
            };
            let generation = r.generation.clone();
            let delay = generation.spec.respawn_backoff;
            let respawn = self.arm_respawn(fx, slot, generation, delay);
            self.slots[slot].set_occupant(Occupant::Respawning(respawn));
        }
        // The programs are the kernel's and survived; attaching them again
        // is harmless, and makes sure they match the order handed on.
        self.steering.forget_programs();
        self.tidy_sockets(fx);
    }

    /// The state as data, for the new binary; `socket` gives each socket's
    /// index in the caller's list.
    pub fn snapshot(
        &self,
        now: Instant,
        socket: &mut dyn FnMut(&Arc<BoundSocket>) -> usize,
    ) -> CoreSnapshot {
        let mut generations: BTreeMap<u64, GenerationSnapshot> = BTreeMap::new();
        let mut note = |g: &Arc<Generation>, socket: &mut dyn FnMut(&Arc<BoundSocket>) -> usize| {
            generations
                .entry(g.number)
                .or_insert_with(|| GenerationSnapshot {
                    number: g.number,
                    spec: (*g.spec).clone(),
                    sockets: g.sockets.iter().map(socket).collect(),
                });
        };
        note(&self.serving, socket);
        for w in self.workers() {
            note(&w.generation, socket);
        }
        for s in &self.slots {
            if let Some(r) = s.respawn() {
                note(&r.generation, socket);
            }
        }
        let worker = |w: &Worker| WorkerSnapshot {
            id: w.id,
            pid: w.pid,
            slot: w.slot,
            generation: w.generation.number,
            state: match &w.state {
                WorkerState::Starting => StateSnapshot::Starting,
                WorkerState::Ready { ready_in } => StateSnapshot::Ready {
                    ready_in: *ready_in,
                },
                WorkerState::Draining { deadline } => StateSnapshot::Draining {
                    deadline_in: deadline.saturating_duration_since(now),
                },
                WorkerState::Killed { reason } => StateSnapshot::Killed {
                    reason: reason.clone(),
                },
            },
            started_ago: now.duration_since(w.started),
            since_ago: now.duration_since(w.since),
            status: w.status.clone(),
        };
        CoreSnapshot {
            generations: generations.into_values().collect(),
            next: NextSnapshot {
                spec: (*self.next.spec).clone(),
                sockets: self.next.sockets.iter().map(&mut *socket).collect(),
            },
            serving: self.serving.number,
            serving_ready: self.serving_ready,
            last_generation: self.ids.last_generation,
            next_worker: self.ids.next_worker,
            // Only taken in the steady phase: no slot is being replaced.
            slots: self
                .slots
                .iter()
                .map(|s| SlotSnapshot {
                    active: s.active().map(worker),
                    respawn: s.respawn().map(|r| r.generation.number),
                    restarts: s.crashes.restarts,
                    backoff: s.crashes.backoff,
                })
                .collect(),
            draining: self.draining.iter().map(worker).collect(),
            last_failure: self.last_failure.clone(),
            respawns_ago_ms: self
                .respawns
                .iter()
                .map(|&at| super::ms_u64(now.saturating_duration_since(at)))
                .collect(),
            steering: self
                .steering
                .groups()
                .map(|g| g.map(&mut *socket).collect())
                .collect(),
        }
    }
}
