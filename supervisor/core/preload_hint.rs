//! The hint for a server that binds its own port without `preload`: it
//! dies at start with "Address already in use" (handoff holds the port),
//! and handoff cannot see why (the child's stderr is the child's). So when
//! a worker exits with an error code before it was ever ready, and nothing
//! in the config hands it the sockets by number, handoff says once what
//! the likely cause is and what fixes it.

use crate::config::ProgramSpec;
use crate::sockets::BoundSocket;

/// The hint, or None when the exit does not look like a failed bind.
pub fn preload_hint(spec: &ProgramSpec, sockets: &[std::sync::Arc<BoundSocket>]) -> Option<String> {
    if spec.preload || sockets.is_empty() {
        return None;
    }
    // A server given its fds by number takes them; its failure is another.
    let by_number = spec
        .command
        .iter()
        .chain(spec.env.values())
        .any(|a| a.contains("{fd:"));
    if by_number {
        return None;
    }
    let program = spec.command.first()?;
    let held: Vec<String> = sockets
        .iter()
        .map(|s| format!("{} (socket {})", s.local, s.spec.name))
        .collect();
    // Its command line names what handoff holds: a port number or a path.
    let named = sockets.iter().find_map(|s| {
        let port_or_path = match s.local.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() => port,
            _ => s.local.as_str(),
        };
        spec.command[1..]
            .iter()
            .any(|a| names(a, port_or_path))
            .then(|| format!("its command line names {port_or_path}, which handoff holds"))
    });
    let lead = match named {
        Some(named) => format!(
            "`{program}` exited before it was ready and {named}: it most likely bound that itself and failed with \"Address already in use\""
        ),
        None => format!(
            "if `{program}` binds its own port, it failed with \"Address already in use\": handoff already holds {}",
            held.join(", ")
        ),
    };
    Some(format!(
        "{lead}. Run it with --preload (preload = true in [program]) so that its bind() takes handoff's socket, or give it the socket: LISTEN_FDS, or {{fd:{}}} in its command line",
        sockets[0].spec.name
    ))
}

/// Whether argument `arg` names `what` as a whole word (`8000` in
/// `--port=8000` or `127.0.0.1:8000`, not in `18000`).
fn names(arg: &str, what: &str) -> bool {
    arg.match_indices(what).any(|(at, _)| {
        let before = arg[..at].chars().next_back();
        let after = arg[at + what.len()..].chars().next();
        let apart = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
        apart(before) && apart(after)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_named_as_a_whole_word() {
        assert!(names("8000", "8000"));
        assert!(names("--port=8000", "8000"));
        assert!(names("127.0.0.1:8000", "8000"));
        assert!(!names("18000", "8000"));
        assert!(!names("80001", "8000"));
        assert!(names("/run/app.sock", "/run/app.sock"));
    }
}
