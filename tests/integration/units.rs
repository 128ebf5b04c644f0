//! The shipped systemd units (config/systemd/) load on the systemd of the
//! machine: `systemd-analyze verify` accepts them without a warning. Debian
//! 12's systemd 252, for one, only warns about a service type it does not
//! know (`notify-reload` is 253+) and then runs the unit as another type.

use std::process::{Command, Stdio};

use crate::harness::{handoff_bin, temp_dir, wait_timeout, DEADLINE};

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";
const UNITS: [&str; 2] = ["handoff-example.socket", "handoff-example.service"];

#[test]
fn the_shipped_units_pass_systemd_analyze_verify() {
    if !std::path::Path::new(SYSTEMD_ANALYZE).exists() {
        eprintln!(
            "skipped: {SYSTEMD_ANALYZE} is missing (Debian package `systemd`, installed by scripts/install-test-deps)"
        );
        return;
    }
    // verify checks that ExecStart's program exists: point it at the
    // binary under test, in copies of the units.
    let dir = temp_dir();
    let mut paths = Vec::new();
    for unit in UNITS {
        let text = std::fs::read_to_string(format!(
            "{}/config/systemd/{unit}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("read the shipped unit");
        let text = text.replace("/usr/local/bin/handoff", handoff_bin());
        let path = dir.path().join(unit);
        std::fs::write(&path, text).expect("write the unit's copy");
        paths.push(path);
    }
    // Output to a file: a pipe nobody reads while we wait could fill.
    let log = dir.path().join("verify.log");
    let file = std::fs::File::create(&log).expect("create the log file");
    let mut verify = Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .args(&paths)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup the log file"))
        .stderr(file)
        .spawn()
        .expect("systemd-analyze runs");
    let Some(status) = wait_timeout(&mut verify, DEADLINE) else {
        let _ = verify.kill();
        let _ = verify.wait();
        panic!("systemd-analyze verify did not finish within {DEADLINE:?}");
    };
    let text = std::fs::read_to_string(&log).expect("read the log file");
    // A unit systemd does not fully understand is only a warning: any
    // output at all is a failure.
    assert!(
        status.success() && text.trim().is_empty(),
        "systemd-analyze verify ({status}):\n{text}"
    );
}
