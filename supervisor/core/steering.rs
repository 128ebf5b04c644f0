//! Which socket gets each new connection, when generations have sockets of
//! their own (docs/design.md, "A socket per generation").
//!
//! Every steered address has one SO_REUSEPORT group: the socket of each
//! generation that still has one, in the kernel's order ([`Group`]). A
//! steering program names a socket by its place in that order, so
//! [`Steering`] replays every join and leave, and works out, from how many
//! slots each generation serves, the program each group needs. The core
//! calls it after every change; [`Steering::plan`] returns only the groups
//! whose program must change.
//!
//! Groups are found by their address, so that a supervisor with a thousand
//! sockets does a thousand small lookups per event, not a million.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::generation::Generation;
use crate::sockets::{BoundSocket, ListenAddr};
use crate::steer::Group;

/// A socket in a group, the same socket only if it is the same `Arc`.
#[derive(Debug, Clone)]
pub struct Member(pub Arc<BoundSocket>);

impl PartialEq for Member {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A set of sockets by identity (the `Arc`'s pointer), for lookups that a
/// scan would make quadratic. A pointer names its socket only while the
/// socket lives: a set is built, used and dropped within one call, while
/// the `Arc`s it was built from are held.
#[derive(Debug, Default)]
pub struct Sockets(HashSet<*const BoundSocket>);

impl Sockets {
    pub fn insert(&mut self, socket: &Arc<BoundSocket>) -> bool {
        self.0.insert(Arc::as_ptr(socket))
    }

    pub fn contains(&self, socket: &Arc<BoundSocket>) -> bool {
        self.0.contains(&Arc::as_ptr(socket))
    }
}

impl<'a> Extend<&'a Arc<BoundSocket>> for Sockets {
    fn extend<I: IntoIterator<Item = &'a Arc<BoundSocket>>>(&mut self, iter: I) {
        self.0.extend(iter.into_iter().map(Arc::as_ptr));
    }
}

impl<'a> FromIterator<&'a Arc<BoundSocket>> for Sockets {
    fn from_iter<I: IntoIterator<Item = &'a Arc<BoundSocket>>>(iter: I) -> Self {
        Sockets(iter.into_iter().map(Arc::as_ptr).collect())
    }
}

/// What names a group: TCP or UDP, and the bound address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    udp: bool,
    local: String,
}

impl GroupKey {
    /// The group a socket is in, or would join: only steered TCP and UDP
    /// sockets have one.
    fn of(socket: &BoundSocket) -> Option<GroupKey> {
        let udp = match socket.spec.listen {
            ListenAddr::Tcp(_) => false,
            ListenAddr::Udp(_) => true,
            _ => return None,
        };
        socket.mode.is_steer().then(|| GroupKey {
            udp,
            local: socket.local.clone(),
        })
    }
}

/// The steered groups, each with the targets of the program last attached.
#[derive(Debug, Default)]
pub struct Steering {
    groups: BTreeMap<GroupKey, SteerGroup>,
}

#[derive(Debug)]
struct SteerGroup {
    order: Group<Member>,
    /// `(index, weight)` of the program attached; None: none yet.
    attached: Option<Vec<(u32, u32)>>,
}

/// A program to attach to a group (through any of its `members` that
/// listens: one a child shut down is out of the group, and a program
/// attached through it would go nowhere), sending new connections to the
/// sockets at these `(index, weight)`.
#[derive(Debug, Clone)]
pub struct Attach {
    /// The group's members, in its order.
    pub members: Vec<Arc<BoundSocket>>,
    pub targets: Vec<(u32, u32)>,
}

impl Steering {
    /// Groups, each a list of members in the kernel's order (an upgrade
    /// hands them on so).
    pub fn from_groups(groups: Vec<Vec<Arc<BoundSocket>>>) -> Steering {
        let mut steering = Steering::default();
        for members in groups {
            for m in &members {
                steering.join(m);
            }
        }
        steering
    }

    /// Each group's members, in the kernel's order.
    pub fn groups(&self) -> impl Iterator<Item = impl Iterator<Item = &Arc<BoundSocket>>> {
        self.groups
            .values()
            .map(|g| g.order.keys().iter().map(|m| &m.0))
    }

    pub fn contains(&self, socket: &Arc<BoundSocket>) -> bool {
        self.index_of(socket).is_some()
    }

    /// `socket`'s place in its group.
    pub fn index_of(&self, socket: &Arc<BoundSocket>) -> Option<u32> {
        let g = self.groups.get(&GroupKey::of(socket)?)?;
        g.order.index_of(&Member(socket.clone()))
    }

    /// Every member of the group `socket` is in (or would join).
    pub fn group_of(&self, socket: &BoundSocket) -> impl Iterator<Item = &Arc<BoundSocket>> {
        GroupKey::of(socket)
            .and_then(|key| self.groups.get(&key))
            .into_iter()
            .flat_map(|g| g.order.keys().iter().map(|m| &m.0))
    }

    /// A steered socket started listening: it goes at the end of its
    /// address's group (a new group if it is the first). A member already
    /// there keeps its place.
    pub fn join(&mut self, socket: &Arc<BoundSocket>) {
        let Some(key) = GroupKey::of(socket) else {
            return;
        };
        let g = self.groups.entry(key).or_insert_with(|| SteerGroup {
            order: Group::new(),
            attached: None,
        });
        g.order.join(Member(socket.clone()));
    }

    /// A member left its group (handoff took it out, or a child shut it
    /// down): the last member moves into its place. An emptied group goes,
    /// and with it the kernel's program.
    pub fn leave(&mut self, socket: &Arc<BoundSocket>) {
        let Some(key) = GroupKey::of(socket) else {
            return;
        };
        let Some(g) = self.groups.get_mut(&key) else {
            return;
        };
        if g.order.leave(&Member(socket.clone())).is_some() {
            // Indices moved: the program must be attached again even if its
            // targets read the same.
            g.attached = None;
        }
        if g.order.is_empty() {
            self.groups.remove(&key);
        }
    }

    /// A member that a child shut down listens again: the kernel took it
    /// out when it stopped listening and puts it back at the end.
    pub fn rejoin(&mut self, socket: &Arc<BoundSocket>) {
        if self.contains(socket) {
            self.leave(socket);
            self.join(socket);
        }
    }

    /// The programs that must change so that each group sends new
    /// connections to the sockets of `weights`' generations, each in
    /// proportion to its weight. A group none of them has a socket in keeps
    /// its program. Each is to be reported [`Steering::attached`] once it
    /// is.
    pub fn plan(&mut self, weights: &[(Arc<Generation>, u32)]) -> Vec<Attach> {
        let mut wanted: BTreeMap<GroupKey, Vec<(u32, u32)>> = BTreeMap::new();
        for (generation, weight) in weights {
            if *weight == 0 {
                continue;
            }
            for socket in generation.sockets.iter() {
                let Some(key) = GroupKey::of(socket) else {
                    continue;
                };
                let Some(index) = self
                    .groups
                    .get(&key)
                    .and_then(|g| g.order.index_of(&Member(socket.clone())))
                else {
                    continue;
                };
                let targets = wanted.entry(key).or_default();
                match targets.iter_mut().find(|(i, _)| *i == index) {
                    Some((_, w)) => *w += weight,
                    None => targets.push((index, *weight)),
                }
            }
        }
        let mut plan = Vec::new();
        for (key, mut targets) in wanted {
            let Some(g) = self.groups.get_mut(&key) else {
                continue;
            };
            targets.sort_unstable();
            // One target: its weight means nothing (the program is `ret`).
            if let [(_, w)] = targets.as_mut_slice() {
                *w = 1;
            }
            if g.attached.as_ref() != Some(&targets) {
                let members = g.order.keys().iter().map(|m| m.0.clone()).collect();
                plan.push(Attach { members, targets });
            }
        }
        plan
    }

    /// `attach` is in force.
    pub fn attached(&mut self, attach: &Attach) {
        let group = attach
            .members
            .first()
            .and_then(|m| GroupKey::of(m))
            .and_then(|key| self.groups.get_mut(&key));
        if let Some(g) = group {
            g.attached = Some(attach.targets.clone());
        }
    }

    /// The program attached to `socket`'s group, as `(index, percent)`:
    /// None when it is not steered or has no program yet.
    pub fn shares(&self, socket: &BoundSocket) -> Option<Vec<(u32, u32)>> {
        let g = self.groups.get(&GroupKey::of(socket)?)?;
        let targets = g.attached.as_ref()?;
        let total: u32 = targets.iter().map(|(_, w)| w).sum::<u32>().max(1);
        Some(targets.iter().map(|&(i, w)| (i, w * 100 / total)).collect())
    }

    /// Forgets what was attached (a new supervisor after an upgrade
    /// attaches every program again).
    pub fn forget_programs(&mut self) {
        for g in self.groups.values_mut() {
            g.attached = None;
        }
    }
}
