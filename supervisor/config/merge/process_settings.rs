//! The merge's share of the process controls: the env file (read here, so
//! its problems stand at the `env_file` key), the environment's size, and
//! the children's credentials.

use super::*;

/// Reads the env file the flag or the file names, if any: its problems at
/// the `env_file` line (the env file's own line is in the message).
pub(super) fn read_env_file(
    file: &ProgramSettings,
    flags: &ProgramSettings,
    at: &dyn Fn(&str) -> Option<Location>,
    errors: &mut Vec<ConfigError>,
) -> Option<EnvFile> {
    let (path, said, location) = match (&flags.env_file, &file.env_file) {
        (Some(path), _) => (path, "--env-file", None),
        (None, Some(path)) => (path, "env_file", at("env_file")),
        (None, None) => return None,
    };
    match super::env_file::read(path) {
        Ok(env_file) => Some(env_file),
        Err(e) => {
            errors.push(ConfigError {
                location,
                message: format!("{said}: {e}"),
            });
            None
        }
    }
}

/// What `env` and the env file take in execve's budget together, a name
/// in both counted once (the env file's value is the one passed).
pub(super) fn env_bytes(
    env: &std::collections::BTreeMap<String, String>,
    file: Option<&EnvFile>,
) -> usize {
    let from_file: std::collections::BTreeMap<&str, &str> = file
        .map(|f| {
            f.vars
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let from_env: usize = env
        .iter()
        .filter(|(k, _)| !from_file.contains_key(k.as_str()))
        .map(|(k, v)| env_entry_cost(k, v))
        .sum();
    from_env
        + from_file
            .iter()
            .map(|(k, v)| env_entry_cost(k, v))
            .sum::<usize>()
}

/// `user`, `group` and `supplementary_groups` (flags over the file)
/// resolved to ids; each problem at its key's line, or named as its flag.
/// `look_up_program`: also refuse what this process cannot do (another
/// user without root), as the program lookup refuses what is not here.
pub(super) fn credentials(
    file: &ProgramSettings,
    flags: &ProgramSettings,
    at: &dyn Fn(&str) -> Option<Location>,
    look_up_program: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<Credentials> {
    let user = flags.user.as_ref().or(file.user.as_ref());
    let group = flags.group.as_ref().or(file.group.as_ref());
    let supplementary = flags
        .supplementary_groups
        .as_deref()
        .or(file.supplementary_groups.as_deref());
    // Where a key's problem is reported: the flag's name, or the line.
    let place = |key: &str| -> (Option<Location>, String) {
        let flag = match key {
            "user" => flags.user.is_some(),
            "group" => flags.group.is_some(),
            _ => flags.supplementary_groups.is_some(),
        };
        match flag {
            true => (None, format!("--{}", key.replace('_', "-"))),
            false => (at(key), key.to_string()),
        }
    };
    let credentials = match process::resolve_credentials(user, group, supplementary) {
        Ok(c) => c?,
        Err(problems) => {
            for (key, message) in problems {
                let (location, said) = place(key);
                errors.push(ConfigError {
                    location,
                    message: format!("{said}: {message}"),
                });
            }
            return None;
        }
    };
    let (euid, egid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    match process::privilege_problem(&credentials, euid, egid) {
        // Root changes to them; anyone else has them already, and could
        // not call setgroups: nothing to do in the child.
        None if euid == 0 => Some(credentials),
        None => None,
        Some(problem) => {
            if look_up_program {
                let (location, said) = place(if user.is_some() { "user" } else { "group" });
                errors.push(ConfigError {
                    location,
                    message: format!("{said}: {problem}"),
                });
            }
            None
        }
    }
}
