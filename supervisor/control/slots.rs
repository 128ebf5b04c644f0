//! Who holds the control socket's connection slots, and which one gives
//! its place to a newcomer.
//!
//! The number of connections is capped (each one costs the supervisor an
//! fd), but a cap alone lets a stuck script that holds connections open
//! lock the operator out. So a connection is either *idle*, waiting for its
//! next request line, or *busy*, waiting for the answer to one. When the
//! cap is reached, a newcomer takes the place of the connection that has
//! been idle the longest; only when every connection is busy does it get a
//! `busy` answer. A busy connection (a `restart` waiting for its new
//! generation, a `stop` waiting for the drain) is never cut: its client
//! would not learn how its request ended.
//!
//! Pure bookkeeping, generic over what the table keeps for each
//! connection, so that the rules are unit-tested without sockets.

use std::collections::HashMap;

/// A connection's place in the table.
pub type SlotId = u64;

/// The connection table. `H` is what evicting a connection hands back to
/// the caller (the server keeps a sender whose drop tells the connection's
/// task to close).
#[derive(Debug)]
pub struct Slots<H> {
    cap: usize,
    next_id: SlotId,
    /// Increases on every change to idle, so the smallest value is the
    /// connection idle the longest (a clock could tie).
    tick: u64,
    held: HashMap<SlotId, Held<H>>,
}

#[derive(Debug)]
struct Held<H> {
    /// `Some(tick)` while waiting for a request line, `None` while a
    /// request is being answered.
    idle_since: Option<u64>,
    handle: H,
}

/// What became of a newcomer.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<H> {
    /// It has a slot; `evicted` is the idle connection that made room,
    /// if the table was full.
    Admitted { id: SlotId, evicted: Option<H> },
    /// Every slot is busy: no room. The handle comes back.
    Full(H),
}

impl<H> Slots<H> {
    pub fn new(cap: usize) -> Slots<H> {
        Slots {
            cap,
            next_id: 0,
            tick: 0,
            held: HashMap::new(),
        }
    }

    /// Gives a new connection a slot, making room by evicting the
    /// longest-idle connection if needed. A newcomer is not idle yet: its
    /// request may already wait unread (clients write as soon as they
    /// connect, and a burst is accepted before any connection's task
    /// runs), so it cannot be evicted until its task has looked for a
    /// request and found none ([`Slots::idle`]).
    pub fn admit(&mut self, handle: H) -> Admission<H> {
        let evicted = if self.held.len() >= self.cap {
            match self.longest_idle() {
                Some(oldest) => self.held.remove(&oldest).map(|h| h.handle),
                None => return Admission::Full(handle),
            }
        } else {
            None
        };
        let id = self.next_id;
        self.next_id += 1;
        self.held.insert(
            id,
            Held {
                idle_since: None,
                handle,
            },
        );
        Admission::Admitted { id, evicted }
    }

    /// The connection has read a request and waits for its answer. False
    /// if it no longer has a slot (it was evicted): it must close.
    pub fn busy(&mut self, id: SlotId) -> bool {
        match self.held.get_mut(&id) {
            Some(held) => {
                held.idle_since = None;
                true
            }
            None => false,
        }
    }

    /// The connection waits for its (next) request: it has none unread.
    /// False if it no longer has a slot.
    pub fn idle(&mut self, id: SlotId) -> bool {
        let tick = self.next_tick();
        match self.held.get_mut(&id) {
            Some(held) => {
                held.idle_since = Some(tick);
                true
            }
            None => false,
        }
    }

    /// The connection closed; its slot is free. A no-op for an evicted one.
    pub fn leave(&mut self, id: SlotId) {
        self.held.remove(&id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.len()
    }

    fn longest_idle(&self) -> Option<SlotId> {
        self.held
            .iter()
            .filter_map(|(id, h)| h.idle_since.map(|since| (since, *id)))
            .min()
            .map(|(_, id)| id)
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted<H: std::fmt::Debug>(a: Admission<H>) -> (SlotId, Option<H>) {
        match a {
            Admission::Admitted { id, evicted } => (id, evicted),
            Admission::Full(h) => panic!("no slot for {h:?}"),
        }
    }

    #[test]
    fn below_the_cap_nobody_is_evicted() {
        let mut slots = Slots::new(3);
        for name in ["a", "b", "c"] {
            let (id, evicted) = admitted(slots.admit(name));
            assert_eq!(evicted, None);
            assert!(slots.idle(id));
        }
        assert_eq!(slots.len(), 3);
    }

    #[test]
    fn a_newcomer_at_the_cap_evicts_the_longest_idle() {
        let mut slots = Slots::new(3);
        let (a, _) = admitted(slots.admit("a"));
        let (b, _) = admitted(slots.admit("b"));
        let (c, _) = admitted(slots.admit("c"));
        for id in [a, b, c] {
            assert!(slots.idle(id));
        }
        // a was admitted first, but it has just been answered: b has been
        // idle the longest.
        assert!(slots.busy(a));
        assert!(slots.idle(a));
        let (d, evicted) = admitted(slots.admit("d"));
        assert_eq!(evicted, Some("b"));
        assert!(!slots.busy(b), "an evicted connection has no slot");
        assert!(slots.idle(d));
        let (e, evicted) = admitted(slots.admit("e"));
        assert_eq!(evicted, Some("c"));
        assert!(slots.idle(e));
        assert_eq!(admitted(slots.admit("f")).1, Some("a"));
        assert_eq!(slots.len(), 3);
    }

    #[test]
    fn busy_connections_are_never_evicted() {
        let mut slots = Slots::new(3);
        let (a, _) = admitted(slots.admit("a"));
        let (b, _) = admitted(slots.admit("b"));
        let (c, _) = admitted(slots.admit("c"));
        assert!(slots.busy(a));
        assert!(slots.idle(b));
        assert!(slots.busy(c));
        // Only b is idle: it goes, though a and c are older.
        let (d, evicted) = admitted(slots.admit("d"));
        assert_eq!(evicted, Some("b"));
        assert!(!slots.idle(b));
        assert!(slots.busy(d));
        // Everyone is busy now: no room, and the newcomer comes back.
        assert_eq!(slots.admit("e"), Admission::Full("e"));
        // Once one is answered and idle again, it can make room.
        assert!(slots.idle(c));
        assert_eq!(admitted(slots.admit("f")).1, Some("c"));
        assert!(slots.busy(a), "a, busy all along, still has its slot");
    }

    #[test]
    fn a_newcomer_whose_task_has_not_looked_for_its_request_is_not_evicted() {
        let mut slots = Slots::new(2);
        let (a, _) = admitted(slots.admit("a"));
        let (_b, _) = admitted(slots.admit("b"));
        // Neither task has run yet: their requests may wait unread.
        assert_eq!(slots.admit("c"), Admission::Full("c"));
        assert!(slots.idle(a));
        assert_eq!(admitted(slots.admit("d")).1, Some("a"));
    }

    #[test]
    fn leaving_frees_the_slot_and_is_harmless_twice() {
        let mut slots = Slots::new(2);
        let (a, _) = admitted(slots.admit("a"));
        let (_b, _) = admitted(slots.admit("b"));
        slots.leave(a);
        slots.leave(a);
        assert_eq!(slots.len(), 1);
        assert_eq!(admitted(slots.admit("c")).1, None);
    }

    #[test]
    fn a_zero_cap_admits_nobody() {
        let mut slots: Slots<&str> = Slots::new(0);
        assert_eq!(slots.admit("a"), Admission::Full("a"));
        assert_eq!(slots.len(), 0);
    }
}
