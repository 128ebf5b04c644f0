//! The README's one-minute tour is `examples/tour.sh`: run it as a reader
//! would, on the binaries under test, and hold it to what the README shows.

use std::process::{Command, Stdio};

use crate::harness::{example, get, handoff_bin, temp_dir, wait_timeout, Handoff};

#[test]
fn the_tour_script_restarts_under_load_without_a_failed_request() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tour.sh");
    let dir = temp_dir();
    let log = dir.path().join("tour.log");
    let file = std::fs::File::create(&log).expect("create the log file");
    let mut tour = Command::new(script)
        .env("HANDOFF", handoff_bin())
        .env("SERVER", example("hello"))
        .env("TOUR_PORT", "0")
        .env("TMPDIR", dir.path())
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup the log file"))
        .stderr(file)
        .spawn()
        .expect("examples/tour.sh runs");
    // The script bounds each of its own waits at 30 s.
    let status = wait_timeout(&mut tour, std::time::Duration::from_secs(120));
    let out = std::fs::read_to_string(&log).expect("read the log file");
    let Some(status) = status else {
        let _ = tour.kill();
        let _ = tour.wait();
        panic!("examples/tour.sh did not finish within 120 s:\n{out}");
    };
    assert!(status.success(), "examples/tour.sh: {status}\n{out}");

    assert!(out.contains("generation 3 ready in"), "{out}");
    let counts = out
        .lines()
        .find(|l| l.starts_with("requests: "))
        .unwrap_or_else(|| panic!("no request count:\n{out}"));
    assert!(counts.ends_with("failed: 0; answered by:"), "{out}");
    // The load overlapped both restarts: every generation answered some.
    for g in 1..=3 {
        assert!(
            out.lines()
                .any(|l| l.trim_start().ends_with(&format!(" generation {g}"))),
            "no answer from generation {g}:\n{out}"
        );
    }
    // Everything it started is gone, its temp dir too.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list the temp dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n != "tour.log")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The README's first set-up command runs `config/example.toml`: with the
/// example server the tests built, on a port of its own, it serves.
#[test]
fn the_readme_example_config_serves() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let text = std::fs::read_to_string(shipped).expect("read config/example.toml");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("read");
    assert!(
        readme.contains("handoff run --config config/example.toml"),
        "the README runs config/example.toml"
    );
    // As written, it runs the release build on port 8080; the tests have
    // the debug build and take a free port.
    let program = "\"../target/release/examples/hello\"";
    let listen = "\"tcp://127.0.0.1:8080\"";
    assert!(
        text.contains(program) && text.contains(listen),
        "{shipped} runs the example server on 127.0.0.1:8080"
    );
    let text = text
        .replace(
            program,
            &format!("{:?}", example("hello").display().to_string()),
        )
        .replace(listen, "\"tcp://127.0.0.1:0\"");
    let dir = temp_dir();
    let file = dir.path().join("example.toml");
    std::fs::write(&file, text).expect("write the config's copy");
    // --control: the file's /tmp/handoff-example.sock is shared by every
    // checkout on the machine.
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    h.wait_generation(1);
    let (status, body) = get(&h.addr("http"), "/").expect("the example serves");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("hello from pid"), "{body}");
}
