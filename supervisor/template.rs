//! `{fd:NAME}` in a command's arguments or an environment value becomes the
//! fd number the child receives socket NAME on, for servers that take their
//! sockets by number rather than through LISTEN_FDS
//! (`uvicorn --fd {fd:http}`, `gunicorn --bind fd://{fd:http}`).

/// The first fd passed to a child (sd_listen_fds' SD_LISTEN_FDS_START).
pub const FIRST_FD: usize = 3;

const OPEN: &str = "{fd:";

/// Checks that every `{fd:NAME}` names a socket.
pub fn check(text: &str, names: &[&str]) -> Result<(), String> {
    expand(text, names).map(drop)
}

/// Replaces every `{fd:NAME}` with the socket's fd number.
pub fn expand(text: &str, names: &[&str]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
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
}
