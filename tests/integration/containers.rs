//! handoff in a container: as the init of a pid namespace and as a child
//! subreaper it reaps what its servers leave behind, a SIGTERM (`docker
//! stop`, Kubernetes) still stops it gracefully, and the image and the
//! Kubernetes example in `config/container/` stay buildable and valid.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use handoff::sys::children_of;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::{
    can_unshare, client, eventually, example, handoff_bin, restart, temp_dir, write_executable,
    Handoff,
};

/// `(comm, state)` of process `pid`, from /proc/PID/stat.
fn comm_and_state(pid: u32) -> Option<(String, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let state = stat.get(close + 1..)?.split_whitespace().next()?;
    Some((
        stat.get(open + 1..close)?.to_string(),
        state.chars().next()?,
    ))
}

/// The `sleep` children of `pid` (the orphans the server leaves), each with
/// whether it is a zombie.
fn orphans_of(pid: u32) -> Vec<(u32, bool)> {
    children_of(pid)
        .into_iter()
        .filter_map(|c| {
            let (comm, state) = comm_and_state(c)?;
            (comm == "sleep").then_some((c, state == 'Z'))
        })
        .collect()
}

/// A server that leaves an orphan behind: a subshell starts a `sleep` in
/// the background and exits at once, so the sleep's parent is gone before
/// it ends and it is reparented to the nearest subreaper (or init). Then
/// the shell becomes the hello server. The sleep ignores SIGTERM, which
/// its worker's process group gets when that generation drains: it
/// outlives its generation for a while, long enough to be seen.
fn server_leaving_orphans(dir: &Path) -> PathBuf {
    let script = dir.join("server.sh");
    let hello = example("hello");
    write_executable(
        &script,
        &format!(
            "#!/bin/sh\n( trap '' TERM; sleep 2 >/dev/null 2>&1 & )\nexec {}\n",
            hello.to_str().expect("utf-8 path")
        ),
    );
    script
}

/// `handoff run` with the orphan-leaving server, behind `wrapper` (empty:
/// none), with its log in the test's log.
fn start(dir: &Path, wrapper: &[&str], extra: &[&str]) -> Handoff {
    let (program, args) = match wrapper.split_first() {
        Some((first, rest)) => (*first, rest.iter().map(|a| a.to_string()).collect()),
        None => (handoff_bin(), Vec::new()),
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    if !wrapper.is_empty() {
        cmd.arg(handoff_bin());
    }
    cmd.arg("run")
        .arg("--control")
        .arg(dir.join("control.sock"))
        .args(["--listen", "http=tcp://127.0.0.1:0"])
        .args(extra)
        .arg("--")
        .arg(server_leaving_orphans(dir))
        .env("HANDOFF_LOG", "debug")
        // A runtime directory of its own: its name carries handoff's pid,
        // and as a namespace's init that is 1 for every test at once, which
        // another handoff sharing /tmp takes for a gone supervisor's and
        // removes (noted in the report; a container has its own /tmp).
        .env("XDG_RUNTIME_DIR", dir)
        .stdin(Stdio::null());
    let mut h = Handoff::spawn(cmd, dir);
    h.wait_generation(1);
    h
}

/// The pid of handoff itself, as this process sees it: the child of the
/// `unshare` we started.
fn handoff_under(unshare: u32) -> u32 {
    let mut found = None;
    eventually("unshare's child, handoff", || {
        found = children_of(unshare).first().copied();
        found.is_some()
    });
    found.expect("found above")
}

/// Orphans reach `handoff` (it has a `sleep` child), and once they have
/// ended none is left a zombie.
fn assert_orphans_reaped(h: &Handoff, handoff: u32, generations: usize) {
    let mut seen = std::collections::HashSet::new();
    eventually(
        &format!(
            "{generations} orphans of the server reparented to handoff (pid {handoff}); log:\n{}",
            h.log()
        ),
        || {
            seen.extend(orphans_of(handoff).into_iter().map(|(pid, _)| pid));
            seen.len() >= generations
        },
    );
    eventually(
        &format!(
            "no orphan of the server left under handoff (pid {handoff}), zombie or not; \
             (pid, zombie) when the wait began: {:?}",
            orphans_of(handoff)
        ),
        || orphans_of(handoff).is_empty(),
    );
    // Nothing else of handoff's is a zombie for long either: a worker's
    // watcher reaps it when it exits.
    eventually("no zombie child of handoff", || {
        children_of(handoff)
            .into_iter()
            .all(|c| comm_and_state(c).is_none_or(|(_, state)| state != 'Z'))
    });
}

/// Issue 12: as the init of a pid namespace, handoff left every orphan of
/// its server a zombie (`<defunct>`) for as long as it ran. Without
/// `--mount-proc`, /proc is the parent namespace's, in which handoff is
/// not pid 1: it must still find its children.
#[test]
fn as_pid1_the_orphans_of_every_generation_are_reaped() {
    for mount_proc in [false, true] {
        if !can_unshare() {
            eprintln!("skipped: cannot create a pid namespace here (not root?)");
            return;
        }
        let dir = temp_dir();
        let mut wrapper = vec!["unshare", "--pid", "--fork", "--kill-child"];
        if mount_proc {
            wrapper.push("--mount-proc");
        }
        let mut h = start(dir.path(), &wrapper, &[]);
        assert_eq!(h.status().pid, 1, "handoff is the namespace's init");
        let handoff = handoff_under(h.child.id());
        for g in 2..=3 {
            let (code, out, err) = restart(&h);
            assert_eq!(code, 0, "restart to generation {g}: {out}{err}");
        }
        assert_orphans_reaped(&h, handoff, 3);
        let (code, out, err) = client(&["stop", "--control", h.control.to_str().expect("utf-8")]);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(h.wait_exit().code(), Some(0), "{}", h.log());
    }
}

/// `docker stop` and Kubernetes send SIGTERM to the container's pid 1,
/// from outside its namespace. The kernel delivers only the signals pid 1
/// handles: handoff must handle SIGTERM and stop gracefully, its workers
/// told to drain, exiting 0.
#[test]
fn as_pid1_sigterm_from_outside_stops_gracefully() {
    if !can_unshare() {
        eprintln!("skipped: cannot create a pid namespace here (not root?)");
        return;
    }
    let dir = temp_dir();
    let mut h = start(
        dir.path(),
        &["unshare", "--pid", "--fork", "--kill-child"],
        &[],
    );
    let handoff = handoff_under(h.child.id());
    let addr = h.addr("http");
    kill(Pid::from_raw(handoff as i32), Signal::SIGTERM).expect("handoff is alive");
    h.wait_log("stopped");
    assert_eq!(h.wait_exit().code(), Some(0), "{}", h.log());
    std::net::TcpListener::bind(&addr).expect("the port is free after the stop");
}

/// Not pid 1: handoff is a child subreaper, so a server's orphans come to
/// it rather than to init, and it reaps them.
#[test]
fn as_a_subreaper_the_orphans_of_the_server_are_reaped() {
    let dir = temp_dir();
    let mut h = start(dir.path(), &[], &[]);
    let handoff = h.child.id();
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "restart: {out}{err}");
    assert_orphans_reaped(&h, handoff, 2);
    let (code, out, err) = client(&["stop", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(h.wait_exit().code(), Some(0), "{}", h.log());
}

/// A server that exits at once, under `respawn_limit = { count = 2 }`:
/// respawned exactly twice, then handoff stops and exits with its own code
/// (8) and says why, so that a container's restart policy sees the crash
/// loop. Without the limit it would retry for ever.
#[test]
fn a_crash_loop_past_respawn_limit_stops_handoff_with_its_exit_code() {
    let dir = temp_dir();
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\
         [program]\ncommand = [\"/bin/sh\", \"-c\", \"exit 3\"]\n\
         respawn_backoff = \"10ms\"\nrespawn_backoff_max = \"20ms\"\n\
         respawn_limit = { count = 2, within = \"60s\" }\n",
    )
    .expect("write the config");
    // Under systemd, it says it is stopping, as for a stop it is asked for.
    let notify = crate::activator::NotifySocket::bind(dir.path(), false);
    let mut cmd = Command::new(handoff_bin());
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--control")
        .arg(dir.path().join("control.sock"))
        .env("HANDOFF_LOG", "debug")
        .env("NOTIFY_SOCKET", &notify.address)
        .stdin(Stdio::null());
    let mut h = Handoff::spawn(cmd, dir.path());
    let status = h.wait_exit();
    let log = h.log();
    assert_eq!(
        status.code(),
        Some(10),
        "the respawn_limit exit code; log:\n{log}"
    );
    notify.wait_for("STOPPING=1", 0);
    let texts = notify.texts();
    assert_eq!(
        texts.iter().filter(|t| t.contains("STOPPING=1")).count(),
        1,
        "{texts:?}"
    );
    assert_eq!(
        log.matches(" respawned").count(),
        2,
        "respawned up to the limit, not past it; log:\n{log}"
    );
    assert!(
        log.contains("handoff: workers crashed 3 times within 1m (respawn_limit"),
        "the reason, as handoff's last word; log:\n{log}"
    );
}

fn container_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/container")
        .join(name)
}

/// The image builds (the build also runs `handoff check` on its config),
/// where a Docker daemon answers; skipped with a message elsewhere.
#[test]
fn the_container_image_builds() {
    let daemon = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !daemon {
        eprintln!("skipped: no Docker daemon here (`docker info` fails)");
        return;
    }
    let out = Command::new("docker")
        .args(["build", "-q", "-f"])
        .arg(container_file("Dockerfile"))
        .args(["-t", "handoff-hello:test"])
        .arg(env!("CARGO_MANIFEST_DIR"))
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker build: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Kubernetes example parses as YAML (without kubectl: python3's yaml
/// module; skipped with a message where it is missing), its ConfigMap's
/// config is the image's own and is valid, and the pod's grace period
/// outlasts the drain, or the kubelet's SIGKILL would cut it short.
#[test]
fn the_kubernetes_example_parses_and_outlasts_the_drain() {
    let has_yaml = Command::new("python3")
        .args(["-c", "import yaml"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_yaml {
        eprintln!("skipped: no python3 with the yaml module here");
        return;
    }
    let script = r#"
import sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1]))}
pod = docs["Deployment"]["spec"]["template"]["spec"]
assert "preStop" not in str(pod), "no preStop: SIGTERM is the graceful stop"
print(pod["terminationGracePeriodSeconds"])
sys.stdout.write(docs["ConfigMap"]["data"]["handoff.toml"])
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(container_file("k8s.yaml"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "k8s.yaml: {}{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (grace, config) = stdout.split_once('\n').expect("two parts");
    let image_config =
        std::fs::read_to_string(container_file("handoff.toml")).expect("read handoff.toml");
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        settings(config),
        settings(&image_config),
        "the ConfigMap's config is the image's config/container/handoff.toml"
    );
    let drain = config
        .lines()
        .find_map(|l| l.strip_prefix("drain_timeout = "))
        .expect("a drain_timeout");
    let drain = handoff::config::parse_duration(drain.trim_matches('"')).expect("a duration");
    let grace: u64 = grace.trim().parse().expect("a number of seconds");
    assert!(
        Duration::from_secs(grace) > drain,
        "terminationGracePeriodSeconds {grace} must outlast drain_timeout {drain:?}"
    );
    let (code, out, err) = client(&[
        "check",
        "--skip-program-check",
        container_file("handoff.toml").to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
}
