//! A slot: one of the `workers` places, `0..workers`, each with what it
//! really can hold. A slot serves with a worker or waits to respawn one;
//! during a restart it may also hold the next generation's worker, which
//! takes the slot once its batch is committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::generation::Generation;
use super::worker::Worker;

#[derive(Debug)]
pub struct Slot {
    pub state: SlotState,
    pub crashes: Crashes,
}

#[derive(Debug)]
pub enum SlotState {
    Settled(Occupant),
    /// A restart's new worker is starting here. `old` keeps serving (or
    /// keeps being respawned) until the batch is committed; None in a slot
    /// that the restart added (a reload raised `workers`).
    Replacing {
        old: Option<Occupant>,
        new: Worker,
    },
}

/// What serves a slot.
#[derive(Debug)]
pub enum Occupant {
    Running(Worker),
    /// The worker died; another is started after a backoff.
    Respawning(Respawn),
}

/// A respawn waiting for its delay to pass.
#[derive(Debug)]
pub struct Respawn {
    /// Names the timer that ends the wait: a stale one is ignored.
    pub token: u64,
    pub since: Instant,
    pub generation: Arc<Generation>,
}

/// How a slot's workers have been dying.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Crashes {
    /// How often this slot's worker died and was respawned.
    pub restarts: u32,
    /// The next respawn delay; None: the spec's initial one.
    pub backoff: Option<Duration>,
}

impl Slot {
    pub fn running(worker: Worker) -> Slot {
        Slot {
            state: SlotState::Settled(Occupant::Running(worker)),
            crashes: Crashes::default(),
        }
    }

    /// The occupant serving the slot (not a restart's new worker).
    pub fn occupant(&self) -> Option<&Occupant> {
        match &self.state {
            SlotState::Settled(o) => Some(o),
            SlotState::Replacing { old, .. } => old.as_ref(),
        }
    }

    pub fn occupant_mut(&mut self) -> Option<&mut Occupant> {
        match &mut self.state {
            SlotState::Settled(o) => Some(o),
            SlotState::Replacing { old, .. } => old.as_mut(),
        }
    }

    /// The worker serving the slot, if one runs.
    pub fn active(&self) -> Option<&Worker> {
        match self.occupant() {
            Some(Occupant::Running(w)) => Some(w),
            _ => None,
        }
    }

    pub fn active_mut(&mut self) -> Option<&mut Worker> {
        match self.occupant_mut() {
            Some(Occupant::Running(w)) => Some(w),
            _ => None,
        }
    }

    /// A restart's new worker, if one starts here.
    pub fn incoming(&self) -> Option<&Worker> {
        match &self.state {
            SlotState::Replacing { new, .. } => Some(new),
            SlotState::Settled(_) => None,
        }
    }

    pub fn incoming_mut(&mut self) -> Option<&mut Worker> {
        match &mut self.state {
            SlotState::Replacing { new, .. } => Some(new),
            SlotState::Settled(_) => None,
        }
    }

    pub fn respawn(&self) -> Option<&Respawn> {
        match self.occupant() {
            Some(Occupant::Respawning(r)) => Some(r),
            _ => None,
        }
    }

    /// Puts `occupant` in the place of the serving one and returns that.
    pub fn set_occupant(&mut self, occupant: Occupant) -> Option<Occupant> {
        match &mut self.state {
            SlotState::Settled(o) => Some(std::mem::replace(o, occupant)),
            SlotState::Replacing { old, .. } => old.replace(occupant),
        }
    }

    /// A restart's new worker starts here; the occupant keeps serving.
    pub fn begin_replacing(&mut self, new: Worker) {
        self.state = match self.take_state() {
            SlotState::Settled(old) => SlotState::Replacing {
                old: Some(old),
                new,
            },
            SlotState::Replacing { .. } => unreachable!("a slot is in one batch at a time"),
        };
    }

    /// A slot a restart adds (a reload raised `workers`), with its first
    /// worker starting.
    pub fn added(new: Worker) -> Slot {
        Slot {
            state: SlotState::Replacing { old: None, new },
            crashes: Crashes::default(),
        }
    }

    /// The new worker takes the slot, with a clean crash record; returns
    /// the old occupant (a pending respawn in it no longer applies).
    pub fn commit(&mut self) -> Option<Occupant> {
        let SlotState::Replacing { old, new } = self.take_state() else {
            unreachable!("only a slot being replaced is committed")
        };
        self.state = SlotState::Settled(Occupant::Running(new));
        self.crashes = Crashes::default();
        old
    }

    /// The new worker goes (to be killed); the old occupant stays. False if
    /// the slot was added by the restart and is now empty.
    pub fn roll_back(&mut self) -> (Worker, bool) {
        let SlotState::Replacing { old, new } = self.take_state() else {
            unreachable!("only a slot being replaced is rolled back")
        };
        let kept = old.is_some();
        if let Some(old) = old {
            self.state = SlotState::Settled(old);
        }
        (new, kept)
    }

    /// Moves the state out, leaving a stand-in that the caller replaces
    /// before anyone can see it (an enum has no empty value to leave).
    fn take_state(&mut self) -> SlotState {
        let generation = match &self.state {
            SlotState::Replacing { new, .. } => new.generation.clone(),
            SlotState::Settled(Occupant::Running(w)) => w.generation.clone(),
            SlotState::Settled(Occupant::Respawning(r)) => r.generation.clone(),
        };
        let stand_in = Respawn {
            token: 0,
            since: Instant::now(),
            generation,
        };
        std::mem::replace(
            &mut self.state,
            SlotState::Settled(Occupant::Respawning(stand_in)),
        )
    }

    /// Every worker of the slot, for shutdown or scaling down; a pending
    /// respawn is dropped with it.
    pub fn into_workers(self) -> impl Iterator<Item = Worker> {
        let (old, new) = match self.state {
            SlotState::Settled(o) => (Some(o), None),
            SlotState::Replacing { old, new } => (old, Some(new)),
        };
        let old = match old {
            Some(Occupant::Running(w)) => Some(w),
            _ => None,
        };
        old.into_iter().chain(new)
    }
}
