//! `{fd:NAME}` in a command's arguments or an environment value becomes the
//! fd number the child receives socket NAME on, for servers that take their
//! sockets by number rather than through LISTEN_FDS
//! (`uvicorn --fd {fd:http}`; `{fd_count}`, the number of sockets, for
//! einhorn's `EINHORN_FD_COUNT`).
//!
//! `{port:NAME}` becomes the socket's port, for a server that binds its
//! own port under `preload` (the port is then written once, in `listen`).
//!
//! `{fd_count}` becomes the number of sockets. With the two, a server
//! written for einhorn finds its sockets where einhorn puts them:
//! `EINHORN_FD_COUNT = "{fd_count}"`, `EINHORN_FD_0 = "{fd:http}"`. A
//! template rather than an einhorn switch: the variables stay visible in
//! the config, and a socket's einhorn index is the user's choice.

/// The first fd passed to a child (sd_listen_fds' SD_LISTEN_FDS_START).
pub const FIRST_FD: usize = 3;

const FD: &str = "{fd:";
const PORT: &str = "{port:";
const COUNT: &str = "{fd_count}";

/// A socket as a template sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named<'a> {
    pub name: &'a str,
    /// Its port: the bound one when a child starts, the config's (perhaps
    /// 0) when the config is checked; None for a unix socket.
    pub port: Option<u16>,
}

/// Checks that every `{fd:NAME}` and `{port:NAME}` names a socket (with a
/// port, for the latter); `{fd_count}` always expands.
///
/// The errors of this module are messages (`String`): a wrong template is
/// only ever shown to the user (with its place in the config), no caller
/// decides anything from which mistake it is, and there is no cause to keep.
pub fn check(text: &str, sockets: &[Named]) -> Result<(), String> {
    expand(text, sockets).map(drop)
}

/// Replaces every `{fd:NAME}` with the socket's fd number, every
/// `{port:NAME}` with its port (for a server that binds its own port under
/// `preload`: the port is written once, in `listen`), and every
/// `{fd_count}` with the number of sockets.
pub fn expand(text: &str, sockets: &[Named]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = next_template(rest) {
        out.push_str(&rest[..start]);
        if let Some(after) = rest[start..].strip_prefix(COUNT) {
            out.push_str(&sockets.len().to_string());
            rest = after;
            continue;
        }
        let (open, is_port) = match rest[start..].starts_with(PORT) {
            true => (PORT, true),
            false => (FD, false),
        };
        let after = &rest[start + open.len()..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{text}`: `{open}` is not closed with `}}`"))?;
        let name = &after[..end];
        let index = sockets.iter().position(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = sockets.iter().map(|s| s.name).collect();
            format!(
                "`{text}` refers to socket `{name}`, but the sockets are: {}",
                names.join(", ")
            )
        })?;
        if is_port {
            let port = sockets[index].port.ok_or_else(|| {
                format!("`{text}`: socket `{name}` is a unix socket: it has no port")
            })?;
            out.push_str(&port.to_string());
        } else {
            out.push_str(&(FIRST_FD + index).to_string());
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the first template in `text` starts.
fn next_template(text: &str) -> Option<usize> {
    [FD, PORT, COUNT].iter().filter_map(|t| text.find(t)).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn named(name: &str) -> Named<'_> {
        Named { name, port: None }
    }

    #[test]
    fn expands_names_to_fds() {
        let names = [named("http"), named("admin")];
        assert_eq!(expand("--fd={fd:admin}", &names).unwrap(), "--fd=4");
        assert_eq!(
            expand("fd://{fd:http} {fd:admin}", &names).unwrap(),
            "fd://3 4"
        );
        assert_eq!(
            expand("no templates {x}", &names).unwrap(),
            "no templates {x}"
        );
        assert!(expand("{fd:nope}", &names).unwrap_err().contains("`nope`"));
        assert!(expand("{fd:http", &names).is_err());
    }

    #[test]
    fn counts_the_sockets_for_einhorn() {
        let names = [named("http"), named("admin")];
        assert_eq!(expand("{fd_count}", &names).unwrap(), "2");
        assert_eq!(expand("{fd_count}", &[named("http")]).unwrap(), "1");
        assert_eq!(
            expand("{fd:admin} of {fd_count}, then {fd:http}", &names).unwrap(),
            "4 of 2, then 3"
        );
        // Not a template: left alone, like any other brace.
        assert_eq!(expand("{fd_counts}", &names).unwrap(), "{fd_counts}");
        assert_eq!(expand("{fd_count", &names).unwrap(), "{fd_count");
    }

    #[test]
    fn expands_names_to_ports() {
        let names = [
            Named {
                name: "http",
                port: Some(8080),
            },
            named("unix"),
        ];
        assert_eq!(
            expand("--bind=127.0.0.1:{port:http} fd {fd:http}", &names).unwrap(),
            "--bind=127.0.0.1:8080 fd 3"
        );
        let e = expand("{port:unix}", &names).unwrap_err();
        assert!(e.contains("unix socket") && e.contains("`unix`"), "{e}");
        assert!(expand("{port:nope}", &names)
            .unwrap_err()
            .contains("`nope`"));
        assert!(expand("{port:http", &names)
            .unwrap_err()
            .contains("`{port:` is not closed"));
    }
}
