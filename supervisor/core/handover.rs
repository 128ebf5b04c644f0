//! How connections pass from one generation to the next when each has a
//! socket of its own (docs/design.md, "A socket per generation"):
//!
//! 1. a restart's generation gets a new socket beside each steered socket
//!    of the generation before it ([`Core::open_sockets`]); the program
//!    still sends every new connection to the old one;
//! 2. once its batch is ready (and has stayed up `min_ready_time`), new
//!    connections go to the new generation ([`Core::weights`], then
//!    [`Core::steer`]), and the batch's old workers are not told to stop
//!    until their generation's socket has had an empty accept queue for
//!    `handover_settle` (at most `handover_timeout`): whatever they
//!    accepted before the switch has been read by then;
//! 3. an old generation's socket leaves its group once no worker of that
//!    generation is left ([`Core::tidy_sockets`]).
//!
//! While both generations serve (a rolling restart), each gets new
//! connections in proportion to the slots it serves; a generation with a
//! worker that was told to stop gets none until that worker is gone, since
//! the worker shares the socket with the others and may still accept from
//! it before it notices its signal.

use std::sync::Arc;
use std::time::Duration;

use super::phase::{HandOver, Phase};
use super::slot::{Occupant, SlotState};
use super::steering::Sockets;
use super::{Core, Effects, Generation, Timer};
use crate::sockets::{BoundSocket, SocketSet};

impl Core {
    /// The sockets for a new generation: for each steered socket a ready
    /// worker accepts from, a new one beside it in its group; every other
    /// socket as it is. On failure, why (what was opened is released
    /// by the next [`Core::tidy_sockets`]).
    pub(super) fn open_sockets(
        &mut self,
        fx: &mut dyn Effects,
        number: u64,
    ) -> Result<SocketSet, String> {
        let served = self.served_sockets();
        let live: Sockets = self.generation_sockets().iter().collect();
        let mut sockets = Vec::with_capacity(self.next.sockets.len());
        for socket in self.next.sockets.iter() {
            if socket.mode.is_steer() && served.contains(socket) {
                // An activator's socket that no generation has any more is
                // still in the group (it is never shut down): the new
                // generation takes it, and with it anything that strayed
                // into its queue, rather than a socket of its own.
                let free = self
                    .steering
                    .group_of(socket)
                    .find(|m| m.from_activator && !live.contains(m))
                    .cloned();
                let own = match free {
                    Some(free) => free,
                    None => {
                        let sibling = fx.sibling(socket).map_err(|e| {
                            format!("cannot open generation {number}'s socket: {e}")
                        })?;
                        self.steering.join(&sibling);
                        sibling
                    }
                };
                sockets.push(own);
            } else {
                self.steering.join(socket);
                sockets.push(socket.clone());
            }
        }
        Ok(sockets.into())
    }

    /// The sockets a ready worker accepts from. A socket that no ready
    /// worker accepts from (its generation never became ready, or crashes
    /// and waits to respawn) holds connections nobody will take but the
    /// next generation: that one gets the same socket, not one of its own.
    fn served_sockets(&self) -> Sockets {
        let mut served = Sockets::default();
        let mut seen: Vec<u64> = Vec::new();
        for w in self.slots.iter().filter_map(|slot| slot.active()) {
            if w.is_ready() && !seen.contains(&w.generation.number) {
                seen.push(w.generation.number);
                served.extend(w.generation.sockets.iter());
            }
        }
        served
    }

    /// How many new connections each generation should get: the slots it
    /// serves. During a hand-over the batch's slots count for the new
    /// generation, and the generations it hands over from get none; so does
    /// one with a worker that was told to stop and is not gone yet. If that
    /// leaves nobody, every generation keeps its share (there is nobody
    /// else to send connections to).
    pub(super) fn weights(&self) -> Vec<(Arc<Generation>, u32)> {
        let handing = match &self.phase {
            Phase::Rolling { rollout, .. } if rollout.handover.is_some() => {
                Some(&rollout.batch[..])
            }
            _ => None,
        };
        let mut weights: Vec<(Arc<Generation>, u32)> = Vec::new();
        let mut quiet: Vec<u64> = Vec::new();
        let add = |weights: &mut Vec<(Arc<Generation>, u32)>, g: &Arc<Generation>| match weights
            .iter_mut()
            .find(|(k, _)| k.number == g.number)
        {
            Some((_, w)) => *w += 1,
            None => weights.push((g.clone(), 1)),
        };
        let occupant = |o: &Occupant| match o {
            Occupant::Running(w) => w.generation.clone(),
            Occupant::Respawning(r) => r.generation.clone(),
        };
        for (i, slot) in self.slots.iter().enumerate() {
            match &slot.state {
                SlotState::Settled(o) => add(&mut weights, &occupant(o)),
                SlotState::Replacing { old, new } => {
                    if handing.is_some_and(|b| b.contains(&i)) {
                        add(&mut weights, &new.generation);
                        quiet.extend(old.as_ref().map(|o| occupant(o).number));
                    } else if let Some(o) = old {
                        add(&mut weights, &occupant(o));
                    }
                }
            }
        }
        quiet.extend(self.draining.iter().map(|w| w.generation.number));
        let keep: Vec<(Arc<Generation>, u32)> = weights
            .iter()
            .filter(|(g, _)| !quiet.contains(&g.number))
            .cloned()
            .collect();
        if keep.is_empty() {
            weights
        } else {
            keep
        }
    }

    /// Attaches the programs that changed. One that could not be attached
    /// (logged by the executor) is tried again after the next event.
    pub(super) fn steer(&mut self, fx: &mut dyn Effects) {
        let weights = self.weights();
        for attach in self.steering.plan(&weights) {
            if fx.steer(&attach) {
                self.steering.attached(&attach);
            }
        }
    }

    /// After any change: the next generation's steered sockets follow the
    /// newest generation that has one in their group, a steered socket no
    /// generation has any more leaves its group, and the programs follow.
    pub(super) fn tidy_sockets(&mut self, fx: &mut dyn Effects) {
        let live: Sockets = self.generation_sockets().iter().collect();
        let serving: Sockets = self.serving.sockets.iter().collect();
        // The next generation's socket for a steered address is a template
        // (its address, backlog, revival count) and what status and the fd
        // store show: the serving generation's, or else the newest live
        // one's in the group.
        let mut next: Vec<Arc<BoundSocket>> = self.next.sockets.to_vec();
        let mut replaced = false;
        // Worked out once, and only when needed (a reload's new address
        // whose generation failed).
        let mut newest_first: Option<Vec<Arc<BoundSocket>>> = None;
        for socket in &mut next {
            if !socket.mode.is_steer() {
                continue;
            }
            let group: Vec<&Arc<BoundSocket>> = self.steering.group_of(socket).collect();
            let newest = match group.iter().find(|m| serving.contains(m)) {
                Some(s) if !Arc::ptr_eq(s, socket) => Some((*s).clone()),
                Some(_) => None,
                None if live.contains(socket) => None,
                None => {
                    let members: Sockets = group.iter().copied().collect();
                    newest_first
                        .get_or_insert_with(|| self.live_sockets_newest_first())
                        .iter()
                        .find(|s| members.contains(s))
                        .cloned()
                }
            };
            if let Some(newest) = newest {
                *socket = newest;
                replaced = true;
            }
        }
        if replaced {
            self.next.sockets = next.into();
        }
        // An activator's socket stays: the activator holds the same socket,
        // which must keep listening (a later generation takes it again).
        // What `held_sockets` gives, without working out the live
        // generations' sockets a second time on every event.
        let mut held = live;
        held.extend(self.next.sockets.iter());
        let unheld: Vec<Arc<BoundSocket>> = self
            .steering
            .groups()
            .flatten()
            .filter(|m| !held.contains(m) && !m.from_activator)
            .cloned()
            .collect();
        for socket in &unheld {
            fx.release(socket);
            self.steering.leave(socket);
        }
        // Closed before the programs change: a UDP socket leaves its group
        // only when its last copy closes, and the new programs count it out.
        drop(unheld);
        self.steer(fx);
    }

    /// Every live generation's sockets, the newest generation's first.
    fn live_sockets_newest_first(&self) -> Vec<Arc<BoundSocket>> {
        self.live_generations()
            .into_iter()
            .rev()
            .flat_map(|g| g.sockets.to_vec())
            .collect()
    }

    /// Every generation that has a worker, a pending respawn, a rollout or
    /// serves, oldest first.
    pub fn live_generations(&self) -> Vec<Arc<Generation>> {
        let mut live: Vec<Arc<Generation>> = vec![self.serving.clone()];
        if let Phase::Rolling { rollout, .. } = &self.phase {
            live.push(rollout.generation.clone());
        }
        for slot in &self.slots {
            let (old, new) = match &slot.state {
                SlotState::Settled(o) => (Some(o), None),
                SlotState::Replacing { old, new } => (old.as_ref(), Some(new)),
            };
            match old {
                Some(Occupant::Running(w)) => live.push(w.generation.clone()),
                Some(Occupant::Respawning(r)) => live.push(r.generation.clone()),
                None => {}
            }
            live.extend(new.map(|w| w.generation.clone()));
        }
        live.extend(self.draining.iter().map(|w| w.generation.clone()));
        live.sort_by_key(|g| g.number);
        live.dedup_by_key(|g| g.number);
        live
    }

    /// Every socket some live generation has, once each.
    pub(super) fn generation_sockets(&self) -> Vec<Arc<BoundSocket>> {
        let mut seen = Sockets::default();
        let mut sockets = Vec::new();
        for g in self.live_generations() {
            for s in g.sockets.iter() {
                if seen.insert(s) {
                    sockets.push(s.clone());
                }
            }
        }
        sockets
    }

    /// A batch is ready: if its old workers' generations have steered
    /// sockets of their own, new connections go to the new generation now,
    /// and the commit waits until those sockets are quiet. Returns whether
    /// it waits.
    pub(super) fn begin_handover(&mut self, fx: &mut dyn Effects) -> bool {
        let Phase::Rolling { rollout, .. } = &self.phase else {
            return false;
        };
        let new = &rollout.generation;
        let new_sockets: Sockets = new.sockets.iter().collect();
        let mut waited = Sockets::default();
        let mut sockets: Vec<Arc<BoundSocket>> = Vec::new();
        for &slot in &rollout.batch {
            let old = match self.slots[slot].active() {
                Some(w) => w.generation.clone(),
                None => match self.slots[slot].respawn() {
                    Some(r) => r.generation.clone(),
                    None => continue,
                },
            };
            // Only an address the new generation serves too, on a socket
            // of its own: one a reload dropped keeps its connections going
            // to the old generation, which nobody else can take over.
            for s in old.sockets.iter() {
                let taken_over = s.mode.is_steer()
                    && !new_sockets.contains(s)
                    && self.steering.group_of(s).any(|m| new_sockets.contains(m));
                if taken_over && waited.insert(s) {
                    sockets.push(s.clone());
                }
            }
        }
        if sockets.is_empty() {
            return false;
        }
        let now = fx.now();
        let token = self.ids.token();
        let rollout = self.rollout_mut();
        let generation = rollout.generation.number;
        let every = poll_every(rollout.generation.spec.handover_settle);
        rollout.handover = Some(HandOver {
            token,
            since: now,
            quiet_since: None,
            sockets,
        });
        self.steer(fx);
        fx.timer(every, Timer::HandOver { generation, token });
        true
    }

    /// The hand-over's check: commits the batch once the old sockets have
    /// been quiet for `handover_settle`, or `handover_timeout` has passed.
    pub(super) fn on_handover_check(&mut self, fx: &mut dyn Effects, generation: u64, token: u64) {
        let Phase::Rolling { rollout, .. } = &mut self.phase else {
            return;
        };
        let current = rollout.generation.number == generation
            && rollout.handover.as_ref().is_some_and(|h| h.token == token);
        if !current {
            return;
        }
        let spec = rollout.generation.spec.clone();
        let handover = rollout.handover.as_mut().expect("checked above");
        let now = fx.now();
        let queued = fx.queued(&handover.sockets);
        if queued == 0 {
            handover.quiet_since.get_or_insert(now);
        } else {
            handover.quiet_since = None;
        }
        let quiet = handover
            .quiet_since
            .is_some_and(|q| now.duration_since(q) >= spec.handover_settle);
        let waited = now.duration_since(handover.since);
        if quiet {
            tracing::debug!(
                "generation {generation}: the old socket(s) stayed empty for {}, after {} ms",
                crate::ms(spec.handover_settle),
                waited.as_millis()
            );
        } else if waited >= spec.handover_timeout {
            tracing::warn!(
                "generation {generation}: the old generation's socket(s) still had {queued} connection(s) \
                 waiting after handover_timeout ({}): its workers are told to stop anyway",
                crate::ms(spec.handover_timeout),
            );
        } else {
            fx.timer(
                poll_every(spec.handover_settle),
                Timer::HandOver { generation, token },
            );
            return;
        }
        self.commit_batch(fx);
    }
}

/// How often a hand-over looks at the old sockets' queues: five times per
/// settle time (the quiet is noticed at most a fifth of it late), and
/// every 1 to 25 ms whatever the settle time. Each look is an event of the
/// loop: more would cost CPU for nothing.
fn poll_every(settle: Duration) -> Duration {
    (settle / 5).clamp(Duration::from_millis(1), Duration::from_millis(25))
}
