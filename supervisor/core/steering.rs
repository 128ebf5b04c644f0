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

/// The steered groups, each with the targets of the program last attached.
#[derive(Debug, Default)]
pub struct Steering {
    groups: Vec<SteerGroup>,
}

#[derive(Debug)]
struct SteerGroup {
    order: Group<Member>,
    /// `(index, weight)` of the program attached; None: none yet.
    attached: Option<Vec<(u32, u32)>>,
}

/// A program to attach: through `via` (a member of the group), sending new
/// connections to the sockets at these `(index, weight)`.
#[derive(Debug, Clone)]
pub struct Attach {
    pub via: Arc<BoundSocket>,
    pub targets: Vec<(u32, u32)>,
}

/// Whether two sockets are in one group: steered, both TCP or both UDP, on
/// the same bound address.
fn same_group(a: &BoundSocket, b: &BoundSocket) -> bool {
    let kind = |s: &BoundSocket| match s.spec.listen {
        ListenAddr::Tcp(_) => Some(0),
        ListenAddr::Udp(_) => Some(1),
        _ => None,
    };
    kind(a).is_some() && kind(a) == kind(b) && a.local == b.local
}

impl Steering {
    /// Groups in the order given, each a list of members in the kernel's
    /// order (an upgrade hands them on so).
    pub fn from_groups(groups: Vec<Vec<Arc<BoundSocket>>>) -> Steering {
        let groups = groups
            .into_iter()
            .filter(|g| !g.is_empty())
            .map(|members| {
                let mut order = Group::new();
                for m in members {
                    order.join(Member(m));
                }
                SteerGroup {
                    order,
                    attached: None,
                }
            })
            .collect();
        Steering { groups }
    }

    /// Each group's members, in the kernel's order.
    pub fn groups(&self) -> impl Iterator<Item = impl Iterator<Item = &Arc<BoundSocket>>> {
        self.groups
            .iter()
            .map(|g| g.order.keys().iter().map(|m| &m.0))
    }

    pub fn contains(&self, socket: &Arc<BoundSocket>) -> bool {
        let key = Member(socket.clone());
        self.groups.iter().any(|g| g.order.index_of(&key).is_some())
    }

    /// Every member of the group `socket` is in (or would join).
    pub fn group_of<'a>(
        &'a self,
        socket: &'a BoundSocket,
    ) -> impl Iterator<Item = &'a Arc<BoundSocket>> + 'a {
        self.groups
            .iter()
            .filter(move |g| {
                g.order
                    .keys()
                    .first()
                    .is_some_and(|m| same_group(&m.0, socket))
            })
            .flat_map(|g| g.order.keys().iter().map(|m| &m.0))
    }

    /// A steered socket started listening: it goes at the end of its
    /// address's group (a new group if it is the first). A member already
    /// there keeps its place.
    pub fn join(&mut self, socket: &Arc<BoundSocket>) {
        if !socket.mode.is_steer() || self.contains(socket) {
            return;
        }
        let member = Member(socket.clone());
        match self.groups.iter_mut().find(|g| {
            g.order
                .keys()
                .first()
                .is_some_and(|m| same_group(&m.0, socket))
        }) {
            Some(g) => {
                g.order.join(member);
            }
            None => {
                let mut order = Group::new();
                order.join(member);
                self.groups.push(SteerGroup {
                    order,
                    attached: None,
                });
            }
        }
    }

    /// A member left its group (handoff took it out, or a child shut it
    /// down): the last member moves into its place. An emptied group goes,
    /// and with it the kernel's program.
    pub fn leave(&mut self, socket: &Arc<BoundSocket>) {
        let key = Member(socket.clone());
        for g in &mut self.groups {
            if g.order.leave(&key).is_some() {
                // Indices moved: the program must be attached again even
                // if its targets read the same.
                g.attached = None;
            }
        }
        self.groups.retain(|g| !g.order.is_empty());
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
    /// its program.
    pub fn plan(&mut self, weights: &[(Arc<Generation>, u32)]) -> Vec<Attach> {
        let mut plan = Vec::new();
        for g in &mut self.groups {
            let mut targets: Vec<(u32, u32)> = Vec::new();
            for (generation, weight) in weights {
                if *weight == 0 {
                    continue;
                }
                for socket in generation.sockets.iter() {
                    let Some(index) = g.order.index_of(&Member(socket.clone())) else {
                        continue;
                    };
                    match targets.iter_mut().find(|(i, _)| *i == index) {
                        Some((_, w)) => *w += weight,
                        None => targets.push((index, *weight)),
                    }
                }
            }
            if targets.is_empty() {
                continue;
            }
            targets.sort_unstable();
            // One target: its weight means nothing (the program is `ret`).
            if let [(_, w)] = targets.as_mut_slice() {
                *w = 1;
            }
            if g.attached.as_ref() != Some(&targets) {
                let via = g.order.keys()[0].0.clone();
                g.attached = Some(targets.clone());
                plan.push(Attach { via, targets });
            }
        }
        plan
    }

    /// The program attached to `socket`'s group, as `(index, percent)`:
    /// None when it is not steered or has no program yet.
    pub fn shares(&self, socket: &BoundSocket) -> Option<Vec<(u32, u32)>> {
        let g = self.groups.iter().find(|g| {
            g.order
                .keys()
                .first()
                .is_some_and(|m| same_group(&m.0, socket))
        })?;
        let targets = g.attached.as_ref()?;
        let total: u32 = targets.iter().map(|(_, w)| w).sum::<u32>().max(1);
        Some(targets.iter().map(|&(i, w)| (i, w * 100 / total)).collect())
    }

    /// Forgets what was attached (a new supervisor after an upgrade
    /// attaches every program again).
    pub fn forget_programs(&mut self) {
        for g in &mut self.groups {
            g.attached = None;
        }
    }
}
