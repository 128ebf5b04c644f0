//! Upgrading handoff itself: `handoff upgrade` or SIGUSR2 replaces the
//! running supervisor with the binary now on disk, in place.
//!
//! 1. The core enters its `Upgrading` phase (refused during a restart, a
//!    stop, or while a `restart --drained` waits).
//! 2. The supervisor writes its whole state down as data ([`State`]:
//!    each part's own snapshot) and starts the new binary as
//!    `handoff __resume --check STATE`, with the fds the state names at the
//!    same numbers. The check reads the state and validates it and each fd
//!    (`check.rs`) without starting anything, and exits. Meanwhile the
//!    event loop goes on serving; the check's output is read as it comes.
//! 3. If the check passed and nothing called the upgrade off meanwhile,
//!    `hand_over.rs` blocks signals, lets the control server finish (calls
//!    on their way are answered `busy`; new connections wait in the
//!    socket's queue for the new supervisor), writes the state afresh,
//!    clears FD_CLOEXEC on the fds it names and `execve`s the new binary
//!    with `__resume STATE`.
//! 4. The new binary takes the parts back (`take_over.rs`) and builds the
//!    supervisor through the same constructor as a boot.
//!
//! Re-executing in place, rather than starting a second supervisor, keeps
//! the pid: the children stay its children (their exits are still its to
//! reap, PR_SET_PDEATHSIG does not fire), and systemd sees the same main
//! process, so the unit stays active with no MAINPID= to send. The kernel
//! sockets are never closed, so no connection is lost. If the check fails
//! or the exec does, the old supervisor carries on and says why.

pub mod check;
pub mod fds;
pub mod hand_over;
pub mod run_check;
pub mod state;
pub mod take_over;

pub use state::{State, FORMAT};

use std::path::PathBuf;

/// The path this handoff was started as (argv[0], found in PATH if it has
/// no `/`), not following symlinks: a deploy that re-points a link, or
/// replaces the file, is what an upgrade must run.
pub fn own_binary() -> PathBuf {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let env: Vec<_> = std::env::vars_os().collect();
    crate::spawn::resolve_program(&argv0.to_string_lossy(), &env)
        .or_else(|_| std::env::current_exe())
        .unwrap_or_else(|_| PathBuf::from("/proc/self/exe"))
}
