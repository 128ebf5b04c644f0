//! Development mode (`--watch`): a change under a watched path restarts
//! the server the way `handoff restart` does, a burst of changes is one
//! restart, a change that breaks the server leaves the old one serving, and
//! what version control, builds and editors write restarts nothing. Last,
//! the real thing: `cargo run` of a project the test edits.

use std::path::Path;

use crate::harness::*;
use crate::load::Load;

/// handoff started in DIR (its paths are relative to it, as a developer
/// types them in the project) on the hello example behind DIR/server.sh,
/// once generation 1 serves.
fn start_in(dir: &Path, args: &[&str]) -> Handoff {
    let script = dir.join("server.sh");
    write_script(&script, example("hello").to_str().expect("utf-8 path"));
    let mut cmd = run_command(handoff_bin(), dir);
    cmd.current_dir(dir)
        .args(["--listen", "http=tcp://127.0.0.1:0"])
        .args(args)
        .arg("--")
        .arg(&script);
    let mut h = Handoff::spawn(cmd, dir);
    h.wait_generation(1);
    h
}

/// The same, watching DIR/src.
fn watch_src(dir: &Path, extra: &[&str]) -> Handoff {
    std::fs::create_dir_all(dir.join("src")).expect("src");
    std::fs::write(dir.join("src/main.txt"), "fine\n").expect("main.txt");
    let mut args = vec!["--watch", "src"];
    args.extend_from_slice(extra);
    start_in(dir, &args)
}

/// Rewrites DIR/server.sh to run `step` (shell, in the project dir: the
/// "build", which reads what the test wrote) before it execs hello.
fn build_step(dir: &Path, step: &str) {
    write_executable(
        &dir.join("server.sh"),
        &format!("#!/bin/sh\n{step}\nexec {}\n", example("hello").display()),
    );
}

fn change_lines(h: &Handoff) -> Vec<String> {
    h.log()
        .lines()
        .filter(|l| l.contains("INFO change in "))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_change_restarts_once_and_the_answering_pid_changes() {
    let dir = temp_dir();
    let mut h = watch_src(dir.path(), &[]);
    let addr = h.addr("http");
    // Development mode shows in status, both forms.
    let src = std::fs::canonicalize(dir.path().join("src")).expect("src");
    let watching = h.status().watching.expect("watching in status");
    assert_eq!(watching.len(), 1);
    assert_eq!(std::fs::canonicalize(&watching[0]).expect("a path"), src);
    let (code, out, err) = client(&["status", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\nwatching ") && out.contains("src: a change restarts the server"),
        "{out}"
    );
    let first = get_from_generation(&addr, "/", 1);
    std::fs::write(dir.path().join("src/main.txt"), "changed\n").expect("edit");
    h.wait_log("change in src/main.txt: building generation 2");
    h.wait_generation(2);
    let second = get_from_generation(&addr, "/", 2);
    assert_ne!(first, second, "the same process answers");
    // One more, to see that the first change made exactly one restart: a
    // second restart of it would be generation 3 here, and this 4.
    std::fs::write(dir.path().join("src/other.txt"), "new\n").expect("add");
    h.wait_log("change in src/other.txt: building generation 3");
    h.wait_generation(3);
    assert_eq!(change_lines(&h).len(), 2, "{}", h.log());
}

#[test]
fn a_burst_of_twenty_changes_is_one_restart_and_no_request_fails() {
    let dir = temp_dir();
    // A burst as a `git checkout` or a formatter makes: 20 writes spread
    // over half a second (the pauses shape the burst; they synchronise
    // nothing), each well within the debounce of the one before.
    let mut h = watch_src(dir.path(), &["--watch-debounce", "2s"]);
    let load = Load::start(&h.addr("http"), 4);
    load.wait_for_more(50);
    for i in 0..20 {
        std::fs::write(dir.path().join(format!("src/f{i}.txt")), "x").expect("write");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let line = h.wait_log("building generation 2");
    assert!(line.contains("and 19 more"), "{line}");
    h.wait_generation(2);
    std::fs::write(dir.path().join("src/marker.txt"), "x").expect("marker");
    h.wait_log("change in src/marker.txt: building generation 3");
    h.wait_generation(3);
    load.wait_for_more(50);
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{tally:?}");
    assert_eq!(change_lines(&h).len(), 2, "{}", h.log());
}

#[test]
fn a_change_that_breaks_the_server_leaves_the_old_one_serving() {
    let dir = temp_dir();
    let mut h = watch_src(dir.path(), &[]);
    // The "build": the script fails as a compiler does while main.txt
    // says broken.
    build_step(
        dir.path(),
        "if grep -q broken src/main.txt; then echo 'error: expected `;`' >&2; exit 101; fi",
    );
    let addr = h.addr("http");
    let load = Load::start(&addr, 4);
    load.wait_for_more(50);
    std::fs::write(dir.path().join("src/main.txt"), "broken\n").expect("break");
    h.wait_log("change in src/main.txt: building generation 2");
    h.wait_log_all(&[
        "generation 2 failed",
        "exited with code 101 before it was ready; generation 1 keeps serving",
    ]);
    load.wait_for_more(50);
    assert!(get_from_generation(&addr, "/", 1).contains("generation 1 "));
    std::fs::write(dir.path().join("src/main.txt"), "fixed\n").expect("fix");
    h.wait_log("change in src/main.txt: building generation 3");
    h.wait_generation(3);
    get_from_generation(&addr, "/", 3);
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{tally:?}");
    // The same command served before: a failed build is no server that
    // binds its own port, and no --preload hint is given.
    assert!(!h.log().contains("--preload"), "{}", h.log());
}

#[test]
fn ignored_paths_restart_nothing() {
    require("/usr/bin/git");
    let dir = temp_dir();
    let root = dir.path();
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(root)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(root.join(".gitignore"), "build/\n*.generated\n").expect(".gitignore");
    std::fs::create_dir_all(root.join("src")).expect("src");
    // A big ignored tree there from the start costs no watches: only the
    // project and src are watched (.git by name, build/ by .gitignore).
    std::fs::create_dir_all(root.join("build/deep/er")).expect("build");
    let mut h = start_in(root, &["--watch", ".", "--watch-ignore", "*.log"]);
    h.wait_log_since_start(&["watching . (2 directories)"]);
    // Each of these is ignored: git's own files, build output, editors'
    // files, what .gitignore names, the user's glob.
    git(&["add", ".gitignore"]);
    for path in [
        "target/debug/app",
        "node_modules/x/index.js",
        "src/.main.rs.swp",
        "src/main.rs~",
        "build/bundle.js",
        "src/schema.generated",
        "server.log",
    ] {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("dirs");
        std::fs::write(&path, "x").expect("write");
    }
    // The change that counts comes last: had any of those counted, the
    // first restart would name it, or more than one file.
    std::fs::write(root.join("src/main.rs"), "fn main() {}\n").expect("write");
    let line = h.wait_log("building generation 2");
    assert!(
        line.contains("change in src/main.rs: building generation 2"),
        "{line}\n{}",
        h.log()
    );
    h.wait_generation(2);
    assert_eq!(change_lines(&h).len(), 1, "{}", h.log());
}

#[test]
fn a_missing_watch_path_is_refused_before_anything_starts() {
    let dir = temp_dir();
    let mut cmd = run_command(handoff_bin(), dir.path());
    cmd.current_dir(dir.path()).args([
        "--listen",
        "http=tcp://127.0.0.1:0",
        "--watch",
        "nowhere",
        "--",
        example("hello").to_str().expect("utf-8"),
    ]);
    let mut h = Handoff::spawn(cmd, dir.path());
    let status = h.wait_exit();
    assert!(!status.success());
    assert!(
        h.log()
            .contains("--watch nowhere: No such file or directory"),
        "{}",
        h.log()
    );
}

/// The test project's src/main.rs, with `version` (a Rust expression),
/// saved as editors and `sed -i` save: a new file renamed over the old one
/// (the new file is no change of its own).
fn write_main(dir: &Path, version: &str) {
    let source = include_str!("../fixtures/dev_server.rs").replace(
        "const VERSION: &str = \"1\";",
        &format!("const VERSION: &str = {version};"),
    );
    let new = dir.join("src/main.rs.new");
    std::fs::write(&new, source).expect("main.rs.new");
    std::fs::rename(&new, dir.join("src/main.rs")).expect("main.rs");
}

#[test]
fn cargo_run_follows_edits_and_survives_a_compile_error() {
    let dir = temp_dir();
    let project = dir.path();
    std::fs::create_dir_all(project.join("src")).expect("src");
    std::fs::write(
        project.join("Cargo.toml"),
        "[package]\nname = \"devserver\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .expect("Cargo.toml");
    write_main(project, "\"1\"");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = run_command(handoff_bin(), project);
    cmd.current_dir(project)
        .args([
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--watch",
            "src",
            "--watch",
            "Cargo.toml",
            "--",
            &cargo,
            "run",
            "--quiet",
            "--offline",
        ])
        // The project's own target dir (it is ignored by default).
        .env_remove("CARGO_TARGET_DIR");
    let mut h = Handoff::spawn(cmd, project);
    h.wait_generation(1);
    let addr = h.addr("http");
    let (_, body) = get(&addr, "/").expect("served");
    assert!(body.starts_with("version 1 "), "{body}");

    write_main(project, "\"2\"");
    h.wait_log("change in src/main.rs: building generation 2");
    h.wait_generation(2);
    eventually("version 2 answers", || {
        get(&addr, "/").is_ok_and(|(_, b)| b.starts_with("version 2 "))
    });

    // A compile error: cargo exits 101, the old version keeps serving.
    write_main(project, "2 +");
    h.wait_log("change in src/main.rs: building generation 3");
    h.wait_log_all(&[
        "generation 3 failed",
        "exited with code 101 before it was ready",
    ]);
    let (_, body) = get(&addr, "/").expect("still served");
    assert!(body.starts_with("version 2 "), "{body}");

    write_main(project, "\"3\"");
    h.wait_log("change in src/main.rs: building generation 4");
    h.wait_generation(4);
    eventually("version 3 answers", || {
        get(&addr, "/").is_ok_and(|(_, b)| b.starts_with("version 3 "))
    });
    // Cargo's output in target/ restarted nothing.
    assert_eq!(change_lines(&h).len(), 3, "{}", h.log());
}

#[test]
fn the_files_watch_table_is_followed_through_a_reload() {
    let dir = temp_dir();
    let root = dir.path();
    for sub in ["src", "lib"] {
        std::fs::create_dir_all(root.join(sub)).expect("dirs");
    }
    let script = root.join("server.sh");
    write_script(&script, example("hello").to_str().expect("utf-8 path"));
    let config = |watched: &str| {
        format!(
            "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\
             [program]\ncommand = [{script:?}]\n\
             [watch]\npaths = [\"{watched}\"]\ndebounce = \"100ms\"\n"
        )
    };
    std::fs::write(root.join("dev.toml"), config("src")).expect("config");
    let mut cmd = run_command(handoff_bin(), root);
    cmd.current_dir(root)
        .arg("--config")
        .arg(root.join("dev.toml"));
    let mut h = Handoff::spawn(cmd, root);
    h.wait_generation(1);
    h.wait_log_since_start(&["watching src (1 directory)"]);
    std::fs::write(root.join("src/a.txt"), "x").expect("write");
    h.wait_log("change in src/a.txt: building generation 2");
    h.wait_generation(2);
    // The reload watches lib instead: a change in src is no longer one.
    std::fs::write(root.join("dev.toml"), config("lib")).expect("config");
    let (code, out, err) = client(&["reload", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_log("watching lib (1 directory)");
    h.wait_generation(3);
    std::fs::write(root.join("src/b.txt"), "x").expect("write");
    std::fs::write(root.join("lib/c.txt"), "x").expect("write");
    let line = h.wait_log("change in ");
    assert!(
        line.contains("change in lib/c.txt: building generation 4"),
        "{line}\n{}",
        h.log()
    );
}

#[test]
fn a_watched_directory_removed_and_made_again_is_watched_again() {
    let dir = temp_dir();
    let mut h = watch_src(dir.path(), &[]);
    let src = dir.path().join("src");
    std::fs::remove_dir_all(&src).expect("rm -r src");
    h.wait_log("building generation 2");
    h.wait_generation(2);
    // A branch switch brings it back.
    std::fs::create_dir(&src).expect("mkdir src");
    h.wait_log("change in src: building generation 3");
    h.wait_generation(3);
    std::fs::write(src.join("a.rs"), "x").expect("write");
    h.wait_log("change in src/a.rs: building generation 4");
}

#[test]
fn watching_goes_on_after_handoff_upgrades_itself() {
    let dir = temp_dir();
    let mut h = watch_src(dir.path(), &[]);
    let (code, out, err) = client(&["upgrade", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_log("upgraded from handoff");
    h.wait_log("watching src (1 directory)");
    std::fs::write(dir.path().join("src/main.txt"), "changed\n").expect("edit");
    h.wait_log("change in src/main.txt: building generation 2");
    h.wait_generation(2);
}

#[test]
fn a_change_during_a_slow_build_stops_it_and_builds_again_at_once() {
    let dir = temp_dir();
    let mut h = watch_src(dir.path(), &[]);
    // The "build" takes a minute while main.txt says slow.
    build_step(
        dir.path(),
        "if grep -q slow src/main.txt; then echo building slowly >&2; sleep 60; fi",
    );
    let addr = h.addr("http");
    let load = Load::start(&addr, 4);
    std::fs::write(dir.path().join("src/main.txt"), "slow\n").expect("edit");
    h.wait_log("change in src/main.txt: building generation 2");
    // Its script has read main.txt and sleeps.
    h.wait_log("building slowly");
    std::fs::write(dir.path().join("src/main.txt"), "fast\n").expect("edit");
    h.wait_log("generation 2 stopped: out of date before it was ready");
    // Generation 3 is up long before generation 2's minute would be.
    h.wait_generation(3);
    get_from_generation(&addr, "/", 3);
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{tally:?}");
    assert!(
        !h.log().contains("restart to generation 2 failed"),
        "{}",
        h.log()
    );
}

#[test]
fn a_renamed_directory_reports_changes_under_its_new_name() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.path().join("src/old")).expect("src/old");
    let mut h = watch_src(dir.path(), &[]);
    std::fs::rename(dir.path().join("src/old"), dir.path().join("src/new")).expect("mv");
    h.wait_log("building generation 2");
    h.wait_generation(2);
    std::fs::write(dir.path().join("src/new/a.rs"), "x").expect("write");
    let line = h.wait_log("building generation 3");
    assert!(
        line.contains("change in src/new/a.rs: building generation 3"),
        "{line}"
    );
}
