//! Issue 7, item 3: the runtime directory (the children's notify sockets,
//! an upgrade's state) is private whatever the umask handoff was started
//! with, its files are never written through a symlink, and a SIGKILLed
//! supervisor's directory is cleaned up by the next one, never a live one's.
//!
//! Each test points XDG_RUNTIME_DIR at its own temp dir, so the tests do
//! not see each other's directories.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::harness::{
    client, example, handoff_bin, run_command, temp_dir, write_executable, Handoff,
};

/// `BINARY run --control DIR/control.sock --listen http=tcp://127.0.0.1:0
/// -- hello`, started with `umask` and XDG_RUNTIME_DIR=`base`, serving.
fn start(binary: &Path, dir: &Path, base: &Path, umask: libc::mode_t) -> Handoff {
    let mut cmd = run_command(binary, dir);
    cmd.args(["--listen", "http=tcp://127.0.0.1:0", "--"])
        .arg(example("hello"))
        .env("XDG_RUNTIME_DIR", base);
    // SAFETY: umask(2) is async-signal-safe and touches no memory; it is
    // all the child does between fork and exec here.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(umask);
            Ok(())
        });
    }
    let mut h = Handoff::spawn(cmd, dir);
    h.wait_generation(1);
    h
}

/// A fresh directory `name` in the test's temp dir.
fn subdir(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir(&path).expect("mkdir");
    path
}

/// The supervisors' directories in `base`.
fn runtime_dirs(base: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(base)
        .expect("read the base")
        .map(|e| e.expect("an entry").path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("handoff-"))
        })
        .collect();
    dirs.sort();
    dirs
}

/// The one supervisor's directory in `base`.
fn the_runtime_dir(base: &Path) -> PathBuf {
    let dirs = runtime_dirs(base);
    assert_eq!(dirs.len(), 1, "one supervisor, one directory: {dirs:?}");
    dirs.into_iter().next().expect("one")
}

/// The permission bits, in octal: "700".
fn mode(path: &Path) -> String {
    format!(
        "{:o}",
        std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
    )
}

fn upgrade(h: &Handoff) -> (i32, String, String) {
    client(&["upgrade", "--control", h.control.to_str().expect("utf-8")])
}

#[test]
fn started_with_umask_000_the_runtime_dir_and_notify_socket_are_private() {
    let dir = temp_dir();
    let base = subdir(dir.path(), "run");
    let h = start(handoff_bin().as_ref(), dir.path(), &base, 0o000);

    let runtime = the_runtime_dir(&base);
    assert_eq!(mode(&runtime), "700", "{}", runtime.display());
    let sockets: Vec<PathBuf> = std::fs::read_dir(&runtime)
        .expect("read the runtime dir")
        .map(|e| e.expect("an entry").path())
        .filter(|p| {
            std::fs::symlink_metadata(p)
                .expect("stat")
                .file_type()
                .is_socket()
        })
        .collect();
    assert_eq!(
        sockets.len(),
        1,
        "one worker, one notify socket: {sockets:?}"
    );
    assert_eq!(mode(&sockets[0]), "600", "{}", sockets[0].display());
    drop(h);
}

#[test]
fn an_upgrade_does_not_follow_a_symlink_planted_at_its_state_file() {
    let dir = temp_dir();
    let base = subdir(dir.path(), "run");
    let mut h = start(handoff_bin().as_ref(), dir.path(), &base, 0o000);
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("write the victim");
    let planted = the_runtime_dir(&base).join("upgrade.json");
    std::os::unix::fs::symlink(&victim, &planted).expect("plant the symlink");

    let (code, out, err) = upgrade(&h);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_log("upgraded from handoff");
    let after = std::fs::read_to_string(&victim).expect("read the victim");
    assert!(
        after == "precious\n",
        "the state was written through the symlink: {after:.60}..."
    );
    // The state file replaced the symlink, and the new supervisor removed it.
    assert!(
        std::fs::symlink_metadata(&planted).is_err(),
        "{} is still there",
        planted.display()
    );
    assert_eq!(h.status().upgrades, 1);
}

#[test]
fn the_upgrade_state_file_is_0600_while_an_upgrade_runs() {
    let dir = temp_dir();
    let base = subdir(dir.path(), "run");
    let installed = dir.path().join("handoff");
    std::fs::copy(handoff_bin(), &installed).expect("copy the binary");
    // The default umask, under which the state used to be 0644.
    let mut h = start(&installed, dir.path(), &base, 0o022);

    // The new build notes the mode of the state file it is given (the last
    // argument), for the check and for the take-over.
    let modes = dir.path().join("modes");
    write_executable(
        &installed,
        &format!(
            "#!/bin/sh\nfor a; do state=$a; done\nstat -c %a \"$state\" >> {}\nexec {} \"$@\"\n",
            modes.display(),
            handoff_bin()
        ),
    );
    let (code, out, err) = upgrade(&h);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_log("upgraded from handoff");
    let seen = std::fs::read_to_string(&modes).expect("the new binary ran");
    assert_eq!(
        seen, "600\n600\n",
        "the state file's mode, check and take-over"
    );
}

#[test]
fn a_killed_supervisors_runtime_dir_is_removed_at_the_next_start_and_a_live_ones_kept() {
    let dir = temp_dir();
    let base = subdir(dir.path(), "run");
    let bin: &Path = handoff_bin().as_ref();
    let live = start(bin, &subdir(dir.path(), "live"), &base, 0o022);
    let live_dir = the_runtime_dir(&base);

    let mut killed = start(bin, &subdir(dir.path(), "killed"), &base, 0o022);
    let killed_dir = runtime_dirs(&base)
        .into_iter()
        .find(|d| *d != live_dir)
        .expect("the second supervisor's directory");
    let killed_pid = killed.child.id();
    killed.signal(Signal::SIGKILL);
    killed.wait_exit();
    assert!(killed_dir.exists(), "SIGKILL leaves the directory behind");

    // A directory of the same name pattern and the same dead supervisor,
    // but another user's, is not ours to remove (root can plant one).
    let name = killed_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a utf-8 name");
    let (stem, random) = name.split_at(name.len() - 6);
    let other = if random == "zzzzzz" {
        "yyyyyy"
    } else {
        "zzzzzz"
    };
    let foreign = base.join(format!("{stem}{other}"));
    let planted_foreign = nix::unistd::geteuid().is_root() && {
        std::fs::create_dir(&foreign).expect("mkdir");
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).expect("chown");
        true
    };

    let next = start(bin, &subdir(dir.path(), "next"), &base, 0o022);
    let dirs = runtime_dirs(&base);
    assert!(
        !dirs.contains(&killed_dir),
        "the killed supervisor's is still there: {dirs:?}"
    );
    assert!(dirs.contains(&live_dir), "the live supervisor's: {dirs:?}");
    assert_eq!(
        dirs.len(),
        2 + usize::from(planted_foreign),
        "the live one's, the new one's: {dirs:?}"
    );
    if planted_foreign {
        assert!(dirs.contains(&foreign), "another user's: {dirs:?}");
    }
    // Said before generation 1 started, which `start` waited for.
    let said = format!(
        "removed {}, left by a supervisor (pid {killed_pid})",
        killed_dir.display()
    );
    assert!(next.log().contains(&said), "not said: {said:?}");
    // The live supervisor still works with its directory.
    assert_eq!(live.status().workers.len(), 1);
    drop(next);
}
