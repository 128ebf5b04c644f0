//! `handoff reload`: re-reading the config file of a running supervisor.

use std::path::Path;

use crate::harness::{client, example, get, get_from_generation, serve_hello, temp_dir, Handoff};

fn write_config(path: &Path, sockets: &str, workers: usize) {
    let text = format!(
        "{sockets}\n[program]\ncommand = [{hello:?}]\nworkers = {workers}\n",
        hello = example("hello").display().to_string()
    );
    std::fs::write(path, text).expect("write config");
}

const HTTP: &str = "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n";

fn reload(h: &Handoff) -> (i32, String, String) {
    client(&["reload", "--control", h.control.to_str().expect("utf-8")])
}

#[test]
fn a_bad_file_changes_nothing() {
    let dir = temp_dir();
    let file = dir.path().join("handoff.toml");
    write_config(&file, HTTP, 2);
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    h.wait_generation(1);
    let before = h.status();

    std::fs::write(
        &file,
        format!("{HTTP}[program]\ncommand = [\"x\"]\nworkers = \"many\"\n"),
    )
    .expect("write");
    let (code, out, err) = reload(&h);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains(&format!("{}:6:11:", file.display())),
        "file:line: {err}"
    );

    let after = h.status();
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.restarting, None);
    let pids = |s: &handoff::protocol::Status| s.workers.iter().map(|w| w.pid).collect::<Vec<_>>();
    assert_eq!(pids(&after), pids(&before), "no worker was touched");
    assert_eq!(get(&h.addr("http"), "/").expect("serves").0, 200);
}

#[test]
fn a_reload_adds_a_socket_and_a_later_one_removes_it() {
    let dir = temp_dir();
    let file = dir.path().join("handoff.toml");
    write_config(&file, HTTP, 1);
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    h.wait_generation(1);
    let http = h.addr("http");

    let admin = "[[socket]]\nname = \"admin\"\nlisten = \"unix://admin.sock\"\n";
    write_config(&file, &format!("{HTTP}{admin}"), 1);
    let (code, out, err) = reload(&h);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("generation 2 ready"), "{out}");
    // The kept socket is the same one, on the same port.
    assert_eq!(h.addr("http"), http);
    let env = get_from_generation(&http, "/env", 2);
    let env: serde_json::Value = serde_json::from_str(&env).expect("JSON");
    assert_eq!(env["generation"], "2");
    assert_eq!(env["listen_fds"], "2");
    assert_eq!(env["listen_fdnames"], "http:admin");
    assert_eq!(env["fds"], serde_json::json!([0, 1, 2, 3, 4]));
    let admin_path = dir.path().join("admin.sock");
    std::os::unix::net::UnixStream::connect(&admin_path).expect("the new socket is bound");

    let generation_2 = h.pids("ready")[0];
    write_config(&file, HTTP, 1);
    let (code, out, err) = reload(&h);
    assert_eq!(code, 0, "{out}{err}");
    // Once generation 2, the last to have it, is gone, the socket closes.
    h.wait_log(&format!(
        "(pid {generation_2}) exited with code 0 after draining"
    ));
    h.wait_log("socket admin closed");
    assert!(!admin_path.exists(), "the removed socket's file is gone");
    assert_eq!(h.status().sockets.len(), 1);
    assert_eq!(get(&http, "/").expect("serves").0, 200);
}

#[test]
fn a_socket_change_that_needs_a_rebind_is_refused() {
    let dir = temp_dir();
    let file = dir.path().join("handoff.toml");
    write_config(&file, HTTP, 1);
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    h.wait_generation(1);
    let http = h.addr("http");
    // Same address (the bound port), now with reuse_port.
    let changed =
        format!("[[socket]]\nname = \"http\"\nlisten = \"tcp://{http}\"\nreuse_port = true\n");
    write_config(&file, &changed, 1);
    let (code, _, err) = reload(&h);
    // The address differs from the config's (port 0 became a real port), so
    // this is a new bind of a held port: refused, as the port is in use.
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("socket `http`"), "{err}");
    assert_eq!(h.status().generation, 1);
    assert_eq!(get(&http, "/").expect("serves").0, 200);
}

#[test]
fn reload_without_a_config_file_says_so() {
    let dir = temp_dir();
    let h = serve_hello(dir.path(), &[]);
    let (code, _, err) = reload(&h);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("without --config"), "{err}");
}
