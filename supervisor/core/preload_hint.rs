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
        let template = format!("{{port:{}}}", s.spec.name);
        spec.command[1..]
            .iter()
            .any(|a| names(a, port_or_path) || a.contains(&template))
            .then(|| {
                format!(
                    "its command line names {port_or_path}, and handoff holds {} (socket {})",
                    s.local, s.spec.name
                )
            })
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
    use crate::core::tests::fake::http_spec;
    use std::sync::Arc;

    fn socket() -> Arc<BoundSocket> {
        Arc::new(BoundSocket::bind(&http_spec(None)).expect("binds"))
    }

    fn spec(command: &[&str]) -> ProgramSpec {
        ProgramSpec {
            command: command.iter().map(|a| a.to_string()).collect(),
            ..crate::core::tests::fake::spec(1)
        }
    }

    #[test]
    fn a_command_that_names_the_held_port_gets_the_strong_hint() {
        let sockets = [socket()];
        let port = sockets[0].named().port.expect("tcp");
        let hint = preload_hint(
            &spec(&["python3", "-m", "http.server", &port.to_string()]),
            &sockets,
        )
        .expect("a hint");
        assert!(
            hint.starts_with(&format!("`python3` exited before it was ready and its command line names {port}, and handoff holds {} (socket http)", sockets[0].local))
                && hint.contains("--preload"),
            "{hint}"
        );
    }

    #[test]
    fn a_port_template_names_the_port_too() {
        let sockets = [socket()];
        let hint =
            preload_hint(&spec(&["./server", "--port={port:http}"]), &sockets).expect("a hint");
        assert!(
            hint.starts_with("`./server` exited before it was ready and its command line names"),
            "{hint}"
        );
    }

    #[test]
    fn otherwise_the_hint_says_if() {
        let sockets = [socket()];
        let hint = preload_hint(&spec(&["./server"]), &sockets).expect("a hint");
        assert!(
            hint.starts_with("if `./server` binds its own port")
                && hint.contains(&sockets[0].local)
                && hint.contains("{fd:http}"),
            "{hint}"
        );
    }

    #[test]
    fn no_hint_with_preload_or_fds_by_number() {
        let sockets = [socket()];
        let preloaded = ProgramSpec {
            preload: true,
            ..spec(&["./server"])
        };
        assert_eq!(preload_hint(&preloaded, &sockets), None);
        assert_eq!(
            preload_hint(&spec(&["./server", "--fd", "{fd:http}"]), &sockets),
            None
        );
        let mut by_env = spec(&["./server"]);
        by_env.env.insert("FD".into(), "{fd:http}".into());
        assert_eq!(preload_hint(&by_env, &sockets), None);
    }

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
