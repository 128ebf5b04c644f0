//! `{fd:NAME}` in a command's arguments or an environment value becomes the
//! fd number the child receives socket NAME on, for servers that take their
//! sockets by number rather than through LISTEN_FDS
//! (`uvicorn --fd {fd:http}`; `{fd_count}`, the number of sockets, for
//! einhorn's `EINHORN_FD_COUNT`).
//!
//! `{fd_count}` becomes the number of sockets. With the two, a server
//! written for einhorn finds its sockets where einhorn puts them:
//! `EINHORN_FD_COUNT = "{fd_count}"`, `EINHORN_FD_0 = "{fd:http}"`. A
//! template rather than an einhorn switch: the variables stay visible in
//! the config, and a socket's einhorn index is the user's choice.

/// The first fd passed to a child (sd_listen_fds' SD_LISTEN_FDS_START).
pub const FIRST_FD: usize = 3;

const OPEN: &str = "{fd:";
const COUNT: &str = "{fd_count}";

/// Checks that every `{fd:NAME}` names a socket (`{fd_count}` always
/// expands).
///
/// The errors of this module are messages (`String`): a wrong template is
/// only ever shown to the user (with its place in the config), no caller
/// decides anything from which mistake it is, and there is no cause to keep.
pub fn check(text: &str, names: &[&str]) -> Result<(), String> {
    expand(text, names).map(drop)
}

/// Replaces every `{fd:NAME}` with the socket's fd number, and every
/// `{fd_count}` with the number of sockets.
pub fn expand(text: &str, names: &[&str]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = next_template(rest) {
        out.push_str(&rest[..start]);
        if let Some(after) = rest[start..].strip_prefix(COUNT) {
            out.push_str(&names.len().to_string());
            rest = after;
            continue;
        }
        let after = &rest[start + OPEN.len()..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{text}`: `{{fd:` is not closed with `}}`"))?;
        let name = &after[..end];
        let index = names.iter().position(|n| *n == name).ok_or_else(|| {
            format!(
                "`{text}` refers to socket `{name}`, but the sockets are: {}",
                names.join(", ")
            )
        })?;
        out.push_str(&(FIRST_FD + index).to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the first `{fd:` or `{fd_count}` in `text` starts.
fn next_template(text: &str) -> Option<usize> {
    match (text.find(OPEN), text.find(COUNT)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_names_to_fds() {
        let names = ["http", "admin"];
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
        let names = ["http", "admin"];
        assert_eq!(expand("{fd_count}", &names).unwrap(), "2");
        assert_eq!(expand("{fd_count}", &["http"]).unwrap(), "1");
        assert_eq!(
            expand("{fd:admin} of {fd_count}, then {fd:http}", &names).unwrap(),
            "4 of 2, then 3"
        );
        // Not a template: left alone, like any other brace.
        assert_eq!(expand("{fd_counts}", &names).unwrap(), "{fd_counts}");
        assert_eq!(expand("{fd_count", &names).unwrap(), "{fd_count");
    }
}
