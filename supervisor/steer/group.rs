//! The order of a SO_REUSEPORT group, as the kernel keeps it.
//!
//! A steering program returns an index into the group's array of listening
//! sockets, so handoff must know each socket's position without asking the
//! kernel (it cannot: no socket option reports it). [`Group`] replays the
//! kernel's rules on keys of the caller's choosing (a generation number, a
//! socket id). The rules, from `net/core/sock_reuseport.c` (see the module
//! root for the details and the callers):
//!
//! - a socket joins at the end (`__reuseport_add_sock`: `socks[num_socks++]`);
//! - a socket that leaves is replaced by the last one, moved into its hole
//!   (`__reuseport_detach_sock`: `socks[i] = socks[num_socks - 1]`), and
//!   nothing else moves;
//! - a socket closed while `tcp_migrate_req` is on is moved to a separate
//!   "closed" section at the far end of the array (`reuseport_stop_listen_sock`
//!   then `__reuseport_add_closed_sock`). It leaves the listening section by
//!   the same swap, the closed section lies beyond `num_socks`, which bounds
//!   every index a program may return (`run_bpf_filter`), and its final
//!   detach (`__reuseport_detach_closed_sock`) moves only closed sockets. So
//!   for the indices it is a plain leave, whatever the sysctl says;
//! - a socket that listens again after leaving (`shutdown()` then `listen()`)
//!   joins at the end like a new one (`reuseport_resurrect` pops it from the
//!   closed section and calls `__reuseport_add_sock`; without migration it
//!   was detached and joins through `reuseport_add_sock`);
//! - `listen()` on a socket that already listens only changes its backlog
//!   (`inet_listen`), so a second join of a member changes nothing.

/// The listening sockets of one SO_REUSEPORT group, in the kernel's order:
/// the position of a key is the index a steering program returns to send
/// new connections to that socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group<K> {
    /// `order[i]` is the socket at index `i`.
    order: Vec<K>,
}

impl<K> Default for Group<K> {
    fn default() -> Self {
        Group { order: Vec::new() }
    }
}

impl<K: PartialEq> Group<K> {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }

    /// A socket joined the group (TCP: its `listen()`; UDP: its `bind()`):
    /// it goes at the end. Returns its index. A key already in the group
    /// keeps its place, as a second `listen()` does.
    pub fn join(&mut self, key: K) -> u32 {
        if let Some(i) = self.index_of(&key) {
            return i;
        }
        self.order.push(key);
        index(self.order.len() - 1)
    }

    /// A socket left the group (the last copy of it closed, or a `shutdown()`
    /// of the listener): the last socket moves into its place. Returns the
    /// index it had, or `None` when it was not in the group (nothing moves).
    pub fn leave(&mut self, key: &K) -> Option<u32> {
        let i = self.order.iter().position(|k| k == key)?;
        // Vec::swap_remove is exactly the kernel's move of the last socket
        // into the hole; Vec::remove (shifting every later one down) is not.
        self.order.swap_remove(i);
        Some(index(i))
    }

    /// The index a program returns to reach `key`'s socket.
    pub fn index_of(&self, key: &K) -> Option<u32> {
        self.order.iter().position(|k| k == key).map(index)
    }

    /// The key at `index`, if the group has that many sockets.
    pub fn at(&self, index: u32) -> Option<&K> {
        self.order.get(usize::try_from(index).ok()?)
    }

    /// The keys in index order.
    pub fn keys(&self) -> &[K] {
        &self.order
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

fn index(i: usize) -> u32 {
    // The kernel's group holds at most U16_MAX sockets (reuseport_grow).
    u32::try_from(i).expect("a reuseport group has fewer than 2^16 sockets")
}

#[cfg(test)]
mod tests {
    use super::Group;

    fn group(keys: &[&'static str]) -> Group<&'static str> {
        let mut g = Group::new();
        for k in keys {
            g.join(*k);
        }
        g
    }

    #[test]
    fn joins_append_in_order() {
        let mut g = Group::new();
        assert_eq!(g.join("a"), 0);
        assert_eq!(g.join("b"), 1);
        assert_eq!(g.join("c"), 2);
        assert_eq!(g.keys(), ["a", "b", "c"]);
        assert_eq!(g.index_of(&"b"), Some(1));
        assert_eq!(g.at(2), Some(&"c"));
        assert_eq!(g.at(3), None);
    }

    #[test]
    fn a_second_join_of_a_member_changes_nothing() {
        let mut g = group(&["a", "b", "c"]);
        assert_eq!(g.join("a"), 0);
        assert_eq!(g.keys(), ["a", "b", "c"]);
    }

    #[test]
    fn leaving_last_moves_nothing() {
        let mut g = group(&["a", "b", "c"]);
        assert_eq!(g.leave(&"c"), Some(2));
        assert_eq!(g.keys(), ["a", "b"]);
    }

    #[test]
    fn leaving_first_moves_the_last_to_the_front() {
        let mut g = group(&["a", "b", "c", "d"]);
        assert_eq!(g.leave(&"a"), Some(0));
        // Not ["b", "c", "d"]: the kernel does not shift.
        assert_eq!(g.keys(), ["d", "b", "c"]);
        assert_eq!(g.index_of(&"d"), Some(0));
        assert_eq!(g.index_of(&"b"), Some(1));
    }

    #[test]
    fn leaving_a_middle_one_moves_the_last_into_its_hole() {
        let mut g = group(&["a", "b", "c", "d"]);
        assert_eq!(g.leave(&"b"), Some(1));
        assert_eq!(g.keys(), ["a", "d", "c"]);
        assert_eq!(g.index_of(&"b"), None);
    }

    #[test]
    fn several_leaves_in_a_row() {
        let mut g = group(&["a", "b", "c", "d", "e"]);
        assert_eq!(g.leave(&"a"), Some(0)); // e into 0
        assert_eq!(g.keys(), ["e", "b", "c", "d"]);
        assert_eq!(g.leave(&"b"), Some(1)); // d into 1
        assert_eq!(g.keys(), ["e", "d", "c"]);
        assert_eq!(g.leave(&"c"), Some(2)); // the last: nothing moves
        assert_eq!(g.keys(), ["e", "d"]);
        assert_eq!(g.leave(&"e"), Some(0)); // d into 0
        assert_eq!(g.keys(), ["d"]);
        assert_eq!(g.leave(&"d"), Some(0));
        assert!(g.is_empty());
    }

    #[test]
    fn leaving_a_stranger_changes_nothing() {
        let mut g = group(&["a", "b"]);
        assert_eq!(g.leave(&"z"), None);
        assert_eq!(g.keys(), ["a", "b"]);
        let mut empty: Group<&str> = Group::new();
        assert_eq!(empty.leave(&"a"), None);
    }

    #[test]
    fn rejoining_after_a_leave_goes_to_the_end() {
        // shutdown() then listen() again (reuseport_resurrect).
        let mut g = group(&["a", "b", "c"]);
        g.leave(&"a");
        assert_eq!(g.keys(), ["c", "b"]);
        assert_eq!(g.join("a"), 2);
        assert_eq!(g.keys(), ["c", "b", "a"]);
    }

    #[test]
    fn a_rolling_restart_keeps_every_index_right() {
        // Generations 1..=3 are in the group; each restart joins the next
        // one and the oldest leaves.
        let mut g = Group::new();
        for gen in 1..=3u32 {
            g.join(gen);
        }
        for next in 4..=10u32 {
            g.join(next);
            g.leave(&(next - 3));
            // Every live generation is found, at a distinct index < len.
            let mut seen: Vec<u32> = (next - 2..=next)
                .map(|k| g.index_of(&k).expect("a live generation is a member"))
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2]);
            assert_eq!(g.at(g.index_of(&next).expect("joined")), Some(&next));
        }
    }
}
