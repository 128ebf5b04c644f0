//! The pieces of the upgrade check (issue 9): before the supervisor hands
//! itself over to a new binary, that binary is asked whether it can take
//! over, and the fds it will be handed are looked at without touching them.
//!
//! - `run`: runs the check as a child on the event loop's runtime, with the
//!   fds at the same numbers, its output read as it comes (and capped), a
//!   timeout that kills and reaps it. Nothing blocks the loop's thread.
//! - `fds`: says whether an fd is what the snapshot claims (open, a socket,
//!   of the right family and type, listening where it must), without
//!   taking ownership of it or changing it.

pub mod fds;
pub mod run;
