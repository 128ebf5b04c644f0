//! The phases of an upgrade, as the core sees them: when one may begin,
//! what gives way to what.

use nix::sys::signal::Signal;

use super::fake::*;
use crate::core::{Asker, StopCause};
use crate::protocol::{ErrorKind, Response};

impl Harness {
    /// An upgrade asked by a client; whether it may go ahead.
    fn upgrade(&mut self) -> (bool, Reply) {
        let (reply, rx) = Reply::pair();
        let asker = Asker {
            reply,
            stream: None,
        };
        (self.core.begin_upgrade(&mut self.fx, Some(asker)), rx)
    }
}

fn busy(message: &str) -> Response {
    error(ErrorKind::Busy, message)
}

#[test]
fn an_upgrade_is_refused_during_a_rollout_and_twice() {
    let mut h = Harness::serving(quick(1, 0));
    h.restart(false);
    h.take();
    let (ok, mut reply) = h.upgrade();
    let refusal = busy("a restart (generation 2) is in progress: upgrade once it is done");
    assert!(!ok);
    assert_eq!(h.take(), vec![Effect::Answer(refusal.clone())]);
    assert_eq!(reply.get(), Some(refusal));
    h.ready(2);
    h.take();
    let (ok, mut first) = h.upgrade();
    assert!(ok && h.core.is_upgrading());
    let (ok, mut second) = h.upgrade();
    assert!(!ok);
    assert_eq!(
        second.get(),
        Some(busy("an upgrade is already in progress"))
    );
    assert!(first.pending(), "the first one goes on");
}

#[test]
fn an_upgrade_is_refused_while_stopping() {
    let mut h = Harness::serving(quick(1, 0));
    h.core.stop(&mut h.fx, None, StopCause::Request);
    h.take();
    let (ok, mut reply) = h.upgrade();
    assert!(!ok);
    let refusal = error(ErrorKind::ShuttingDown, "the supervisor is shutting down");
    assert_eq!(h.take(), vec![Effect::Answer(refusal.clone())]);
    assert_eq!(reply.get(), Some(refusal));
}

#[test]
fn an_upgrade_is_refused_while_a_drained_restart_waits() {
    let mut h = Harness::serving(quick(1, 0));
    let mut restart = h.restart(true);
    h.ready(2);
    h.take();
    let (ok, mut reply) = h.upgrade();
    assert!(!ok);
    let refusal =
        busy("a restart --drained is waiting for old workers to exit: upgrade once it is answered");
    assert_eq!(reply.get(), Some(refusal));
    h.exit(1, 0);
    assert!(matches!(restart.get(), Some(Response::Restarted(_))));
    let (ok, _reply) = h.upgrade();
    assert!(ok, "nothing waits any more");
}

#[test]
fn a_sighup_during_an_upgrade_abandons_it_and_restarts() {
    let mut h = Harness::serving(quick(1, 0));
    let (ok, mut reply) = h.upgrade();
    assert!(ok);
    h.sighup();
    let refusal = busy("SIGHUP arrived first");
    assert_eq!(
        h.take(),
        vec![
            Effect::Answer(refusal.clone()),
            launch(2, 2, 0),
            ready_deadline(2)
        ]
    );
    assert_eq!(reply.get(), Some(refusal));
    assert!(!h.core.is_upgrading());
    assert_eq!(h.core.restarting(), Some(2));
}

#[test]
fn client_requests_during_an_upgrade_are_refused_busy() {
    let mut h = Harness::serving(quick(1, 0));
    let (_, mut upgrade) = h.upgrade();
    let mut restart = h.restart(false);
    let refusal = busy("handoff is upgrading itself: restart once the upgrade is done");
    assert_eq!(h.take(), vec![Effect::Answer(refusal.clone())]);
    assert_eq!(restart.get(), Some(refusal));
    assert_eq!(
        h.core.scale(&mut h.fx, 2),
        busy("handoff is upgrading itself: scale once the upgrade is done")
    );
    assert_eq!(
        h.core.refuses_reload(),
        Some(busy(
            "handoff is upgrading itself: reload once the upgrade is done"
        ))
    );
    assert!(h.core.is_upgrading() && upgrade.pending());
}

#[test]
fn abandon_upgrade_answers_the_asker_and_carries_on() {
    let mut h = Harness::serving(quick(1, 0));
    let (_, mut reply) = h.upgrade();
    let message = "the new binary failed its check";
    h.core
        .abandon_upgrade(&mut h.fx, ErrorKind::UpgradeFailed, message.into());
    let refusal = error(ErrorKind::UpgradeFailed, message);
    assert_eq!(h.take(), vec![Effect::Answer(refusal.clone())]);
    assert_eq!(reply.get(), Some(refusal));
    assert!(!h.core.is_upgrading());
    h.restart(false);
    assert_eq!(h.take(), vec![launch(2, 2, 0), ready_deadline(2)]);
}

#[test]
fn a_stop_during_an_upgrade_refuses_it_and_stops() {
    let mut h = Harness::serving(quick(1, 0));
    let (_, mut reply) = h.upgrade();
    h.core
        .stop(&mut h.fx, None, StopCause::Signal(Signal::SIGTERM));
    let refusal = error(ErrorKind::ShuttingDown, "the supervisor is shutting down");
    let mut expected = vec![Effect::Answer(refusal.clone())];
    expected.extend(drain(1));
    assert_eq!(h.take(), expected);
    assert_eq!(reply.get(), Some(refusal));
    assert!(!h.core.is_upgrading() && h.core.is_stopping());
}

#[test]
fn a_sighups_reload_during_an_upgrade_abandons_it_and_is_admitted() {
    let mut h = Harness::serving(quick(1, 0));
    let (_, mut upgrade) = h.upgrade();
    let sighup = crate::core::Asked::Signal(nix::sys::signal::Signal::SIGHUP);
    assert_eq!(h.core.admit_reload(&mut h.fx, &sighup), None);
    let refusal = busy("SIGHUP arrived first");
    assert_eq!(h.take(), vec![Effect::Answer(refusal.clone())]);
    assert_eq!(upgrade.get(), Some(refusal));
    assert!(!h.core.is_upgrading());
}
