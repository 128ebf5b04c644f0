//! The process controls (issue 12): children as another user on a port
//! below 1024, their umask and limits, the env file read again on reload,
//! clear_env, and the refusal of `user` without root.
//!
//! Most need root, as CI runs them; as anyone else they print why and pass.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::harness::{client, example, get, handoff_bin, temp_dir, Handoff, DEADLINE};

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root (it runs children as another user)");
    false
}

/// `nobody`'s uid and primary gid, as the user database has them.
fn nobody() -> (u32, u32) {
    let u = nix::unistd::User::from_name("nobody")
        .expect("the user database")
        .expect("a `nobody` user");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// A port below 1024 that nothing listens on now: only root can bind it,
/// which is the point. Tried from a start that differs per process, so
/// that concurrent runs rarely meet; the other tests use port 0, which
/// the kernel picks above 1024.
fn free_low_port() -> u16 {
    let start = 600 + (std::process::id() % 300) as u16;
    (start..1024)
        .chain(500..start)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1024")
}

/// Field `name` of /proc/PID/status, e.g. `Uid`.
fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status:\n{status}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The line of /proc/PID/limits that starts with `name`, blanks squeezed.
fn limit(pid: u32, name: &str) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/limits"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A process's environment, `NAME=value` each.
fn environ(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("/proc environ");
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn write_config(dir: &Path, listen: &str, program: &str) -> std::path::PathBuf {
    let file = dir.join("handoff.toml");
    let text = format!(
        "[[socket]]\nname = \"http\"\nlisten = \"{listen}\"\n\n[program]\ncommand = [{hello:?}]\n{program}\n",
        hello = example("hello").display().to_string()
    );
    std::fs::write(&file, text).expect("write config");
    file
}

fn one_pid(h: &Handoff) -> u32 {
    let pids = h.pids("ready");
    assert_eq!(pids.len(), 1, "{pids:?}");
    pids[0]
}

#[test]
fn children_run_as_nobody_on_a_port_below_1024_with_their_umask_and_limits() {
    if !root() {
        return;
    }
    let (uid, gid) = nobody();
    let dir = temp_dir();
    let port = free_low_port();
    let file = write_config(
        dir.path(),
        &format!("tcp://127.0.0.1:{port}"),
        "user = \"nobody\"\nsupplementary_groups = [4242, 4343]\numask = 0o027\nrlimits = { nofile = 4242, core = 0, nproc = { soft = 500, hard = 1000 } }\n",
    );
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    // Ready by READY=1: the child reached its notify socket.
    h.wait_generation(1);
    let pid = one_pid(&h);
    assert_eq!(status_field(pid, "Uid"), format!("{uid} {uid} {uid} {uid}"));
    assert_eq!(status_field(pid, "Gid"), format!("{gid} {gid} {gid} {gid}"));
    assert_eq!(status_field(pid, "Groups"), "4242 4343");
    assert_eq!(status_field(pid, "Umask"), "0027");
    assert_eq!(
        limit(pid, "Max open files"),
        "Max open files 4242 4242 files"
    );
    assert_eq!(
        limit(pid, "Max core file size"),
        "Max core file size 0 0 bytes"
    );
    assert_eq!(
        limit(pid, "Max processes"),
        "Max processes 500 1000 processes"
    );
    let (code, body) = get(&format!("127.0.0.1:{port}"), "/").expect("served");
    assert_eq!(code, 200, "{body}");
    // handoff itself stays root, its control socket its own.
    assert_eq!(status_field(h.child.id(), "Uid"), "0 0 0 0");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&h.control).expect("control").uid(), 0);
}

/// The death signal is cleared by the kernel when a process changes its
/// uid: it must be asked for after the change, or a server of another
/// user would outlive a supervisor killed with SIGKILL.
#[test]
fn a_child_of_another_user_still_stops_when_handoff_is_killed() {
    if !root() {
        return;
    }
    let dir = temp_dir();
    let file = write_config(dir.path(), "tcp://127.0.0.1:0", "user = \"nobody\"\n");
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    h.wait_generation(1);
    let pid = one_pid(&h);
    h.signal(nix::sys::signal::Signal::SIGKILL);
    h.wait_exit();
    let gone = handoff::sys::wait_for_exit(pid, DEADLINE).expect("pidfd");
    if !gone {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(gone, "worker {pid} outlived its supervisor");
}

#[test]
fn the_ready_probe_runs_as_the_user_too() {
    if !root() {
        return;
    }
    let (uid, _) = nobody();
    let dir = temp_dir();
    // A directory nobody may write to, inside the test's private one.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let probe = out.join("probe-uid");
    let file = write_config(
        dir.path(),
        "tcp://127.0.0.1:0",
        &format!(
            "user = \"nobody\"\nready = \"exec\"\nready_command = [\"/bin/sh\", \"-c\", \"id -u > {}\"]\n",
            probe.display()
        ),
    );
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    h.wait_generation(1);
    let said = std::fs::read_to_string(&probe).expect("the probe wrote its uid");
    assert_eq!(said.trim(), uid.to_string());
}

#[test]
fn a_preloaded_python_server_runs_as_nobody() {
    if !root() {
        return;
    }
    let (uid, _) = nobody();
    let dir = temp_dir();
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--preload",
            "--ready",
            "listen",
            "--user",
            "nobody",
            // The absolute path: a PATH through /root (pyenv) is closed
            // to nobody.
            "--",
            "/usr/bin/python3",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            "/",
            "{port:http}",
        ],
    );
    h.wait_generation(1);
    let pid = one_pid(&h);
    assert_eq!(status_field(pid, "Uid"), format!("{uid} {uid} {uid} {uid}"));
    let (code, body) = get(&h.addr("http"), "/").expect("served");
    assert_eq!(code, 200, "{body}");
}

fn reload(h: &Handoff) -> (i32, String, String) {
    client(&["reload", "--control", h.control.to_str().expect("utf-8")])
}

#[test]
fn the_env_file_is_applied_and_read_again_on_reload() {
    let dir = temp_dir();
    let env_file = dir.path().join("app.env");
    std::fs::write(&env_file, "# v1\nexport FROM_FILE='one'\nBOTH=file\n").expect("write");
    let file = write_config(
        dir.path(),
        "tcp://127.0.0.1:0",
        "env = { BOTH = \"env\", ONLY_ENV = \"x\" }\nenv_file = \"app.env\"\n",
    );
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    h.wait_generation(1);
    let env = environ(one_pid(&h));
    for var in ["FROM_FILE=one", "BOTH=file", "ONLY_ENV=x"] {
        assert!(env.iter().any(|v| v == var), "{var} in {env:?}");
    }

    std::fs::write(&env_file, "FROM_FILE=\"two\"\nBOTH=file\n").expect("write");
    let (code, out, err) = reload(&h);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_generation(2);
    let env = environ(one_pid(&h));
    assert!(env.iter().any(|v| v == "FROM_FILE=two"), "{env:?}");

    // A broken env file is refused, with both places, and nothing changes.
    std::fs::write(&env_file, "FROM_FILE=three\nthis is no variable\n").expect("write");
    let before = h.status();
    let (code, out, err) = reload(&h);
    assert_eq!(code, 3, "{out}{err}");
    let expected = format!(
        "{}:8:12: env_file: {}:2: `this is no variable` is not KEY=VALUE",
        file.display(),
        env_file.display()
    );
    assert!(err.contains(&expected), "{expected} in: {err}");
    let after = h.status();
    assert_eq!(after.generation, before.generation);
    let env = environ(one_pid(&h));
    assert!(env.iter().any(|v| v == "FROM_FILE=two"), "{env:?}");
}

#[test]
fn clear_env_passes_only_the_configs_and_the_protocols_variables() {
    let dir = temp_dir();
    let file = write_config(
        dir.path(),
        "tcp://127.0.0.1:0",
        "env = { KEPT = \"1\" }\nclear_env = true\n",
    );
    let mut cmd = crate::harness::run_command(handoff_bin(), dir.path());
    cmd.args(["--config", file.to_str().expect("utf-8")])
        .env("HANDOFF_TEST_SECRET", "leak");
    let mut h = Handoff::spawn(cmd, dir.path());
    h.wait_generation(1);
    let env = environ(one_pid(&h));
    let names: Vec<&str> = env.iter().filter_map(|v| v.split('=').next()).collect();
    for name in ["KEPT", "LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    for name in ["HANDOFF_TEST_SECRET", "PATH", "HANDOFF_LOG"] {
        assert!(!names.contains(&name), "{name} in {names:?}");
    }
}

#[test]
fn another_user_without_root_is_refused_at_its_line() {
    if !root() {
        return;
    }
    let (uid, gid) = nobody();
    let dir = temp_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = write_config(dir.path(), "tcp://127.0.0.1:0", "user = \"root\"\n");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    // handoff as nobody, with its own user's config as a control.
    let check = || {
        Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                handoff_bin(),
                "check",
            ])
            .arg(&file)
            .output()
            .expect("setpriv runs")
    };
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!("{}:7:8: user:", file.display()))
            && err.contains(&format!("handoff runs as uid {uid}, not as root")),
        "{err}"
    );
    write_config(dir.path(), "tcp://127.0.0.1:0", "user = \"nobody\"\n");
    let out = check();
    assert!(
        out.status.success(),
        "its own user is no change: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
