//! The file read by hand (`file/reader.rs`): every mistake of a file in
//! one pass, in file order, whatever their number or the file's size, each
//! at its place and named by its key.

use super::{errors, parse};

const SOCKET: &str = "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n";

/// Every line of the errors that names a place, as "LINE:COLUMN: message".
fn places(e: &str) -> Vec<String> {
    e.lines()
        .map(|l| {
            l.strip_prefix("t.toml:")
                .unwrap_or_else(|| panic!("no place: {l}\n{e}"))
                .to_string()
        })
        .collect()
}

#[test]
fn every_value_of_the_wrong_type_in_one_table_is_reported_in_file_order() {
    // One per key that takes a string, a number or a boolean: more than
    // the rounds of blanking and parsing again that reported them before.
    let wrong = [
        ("working_directory", "1"),
        ("ready", "2"),
        ("ready_delay", "3"),
        ("ready_interval", "4"),
        ("ready_timeout", "5"),
        ("min_ready_time", "6"),
        ("stop_signal", "7"),
        ("drain_timeout", "8"),
        ("respawn_backoff", "9"),
        ("respawn_backoff_max", "10"),
        ("workers", "\"two\""),
        ("strategy", "12"),
        ("batch", "\"three\""),
        ("handover_settle", "14"),
        ("handover_timeout", "15"),
        ("listen_env", "\"yes\""),
        ("listen_pid", "17"),
        ("sockets_nonblocking", "18"),
        ("preload", "19"),
        ("env_file", "20"),
        ("clear_env", "\"no\""),
    ];
    let mut text = format!("{SOCKET}[program]\ncommand = [\"x\"]\n");
    for (key, value) in wrong {
        text.push_str(&format!("{key} = {value}\n"));
    }
    let e = errors(&text);
    let found = places(&e);
    assert_eq!(found.len(), wrong.len(), "{e}");
    for (i, ((key, _), line)) in wrong.iter().zip(&found).enumerate() {
        let at = format!("{}:{}: {key}: expected ", 6 + i, key.len() + 4);
        assert!(line.starts_with(&at), "{at}\n{e}");
    }
    assert!(
        found[10].ends_with("workers: expected a whole number, not the string \"two\""),
        "{e}"
    );
    assert!(
        found[15].ends_with("listen_env: expected true or false, not the string \"yes\""),
        "{e}"
    );
}

#[test]
fn mistakes_of_every_kind_and_table_come_in_one_pass_sorted_by_place() {
    let text = "colour = \"red\"\nfdstore = \"yes\"\n\
                [[socket]]\nname = 5\nlisten = \"tcp://127.0.0.1\"\nport = 80\nbacklog = 1.5\n\
                [program]\ncommand = [\"x\", 7]\nworkers = 0\nrespawn_limit = { count = \"5\" }\n\
                [program.env]\nA = 1\nB = \"fine\"\n";
    let e = errors(text);
    assert_eq!(
        places(&e),
        [
            "1:1: unknown field `colour`, expected one of `control`, `sighup`, `fdstore`, `forward_signals`, `handover`, `socket`, `program`, `watch`",
            "2:11: fdstore: expected true or false, not the string \"yes\"",
            "4:8: name: expected a string, not the integer 5",
            "5:10: `tcp://127.0.0.1`: no port: expected HOST:PORT",
            "6:1: unknown field `port` in [[socket]], expected one of `name`, `listen`, `backlog`, `reuse_port`, `mode`, `handover`, `ipv6_only`, `free_bind`, `bind_to_device`, `keepalive`, `keepalive_idle`, `keepalive_interval`, `keepalive_count`, `defer_accept`, `fast_open`, `receive_buffer`, `send_buffer`, `no_delay`, `owner`, `group`",
            "7:11: backlog: expected a whole number, not the float 1.5",
            "9:17: command[1]: expected a string, not the integer 7",
            "10:11: workers must be between 1 and 4096, not 0",
            "11:17: missing field `within` in respawn_limit",
            "11:27: respawn_limit.count: expected a whole number, not the string \"5\"",
            "13:5: env: `A`: expected a string, not the integer 1",
        ],
        "{e}"
    );
}

#[test]
fn a_socket_without_its_name_or_address_still_lets_the_rest_be_checked() {
    let text = "[[socket]]\nlisten = \"tcp://127.0.0.1:0\"\n\
                [[socket]]\nname = \"b\"\nlisten = [\"tcp://127.0.0.1:0\"]\n\
                [[socket]]\nname = \"c\"\n\
                [program]\ncommand = [\"x\", \"{fd:b}\"]\nready = \"sometimes\"\n";
    let e = errors(text);
    assert_eq!(
        places(&e),
        [
            "1:1: missing field `name` in [[socket]]",
            "5:10: listen: expected a string, not an array",
            "6:1: missing field `listen` in [[socket]]",
            "10:9: ready = \"sometimes\" is not a readiness check: expected \"notify\", \"exec\", \"delay\" or \"listen\"",
        ],
        "{e}"
    );
    // A socket that has its name but not its address is still a socket
    // `{fd:NAME}` may name: no second mistake.
    let e =
        errors("[[socket]]\nname = \"a\"\nlisten = 1\n[program]\ncommand = [\"x\", \"{fd:a}\"]\n");
    assert_eq!(
        places(&e),
        ["3:10: listen: expected a string, not the integer 1"],
        "{e}"
    );
}

#[test]
fn numbers_past_64_bits_and_values_of_any_type_are_named_as_written() {
    let e = errors(&format!(
        "{SOCKET}receive_buffer = 0x1_0000_0000_0000_0000\n\
         [program]\ncommand = [\"x\"]\nworkers = 99999999999999999999\n\
         ready = 1979-05-27\nstop_signal = {{ name = \"TERM\" }}\nready_timeout = [\"5s\"]\n\
         user = 1.0\nsupplementary_groups = [\"adm\", false]\n"
    ));
    assert_eq!(
        places(&e),
        [
            "4:18: receive_buffer: 0x10000000000000000 is too large a number",
            "7:11: workers: 99999999999999999999 is too large a number",
            "8:9: ready: expected a string, not the datetime 1979-05-27",
            "9:15: stop_signal: expected a string, not a table",
            "10:17: ready_timeout: expected a duration such as \"10s\", not an array",
            "11:8: user: expected a name or a number, not the float 1.0",
            "12:32: supplementary_groups[1]: expected a name or a number, not the boolean false",
        ],
        "{e}"
    );
    let e = errors(&format!(
        "{SOCKET}[program]\ncommand = [\"x\"]\nready = [\"{}\"]\n",
        "z".repeat(100)
    ));
    assert_eq!(
        places(&e),
        ["6:9: ready: expected a string, not an array"],
        "{e}"
    );
    // A long string is cut short in the message: it could be megabytes.
    let e = errors(&format!(
        "{SOCKET}[program]\ncommand = [\"x\"]\nworkers = \"{}\"\n",
        "z".repeat(100)
    ));
    assert_eq!(
        places(&e),
        [format!(
            "6:11: workers: expected a whole number, not the string \"{}...\"",
            "z".repeat(40)
        )],
        "{e}"
    );
}

#[test]
fn a_huge_file_has_every_mistake_reported_too() {
    // 40,000 env entries (well past the size where a wrong type once
    // stopped the parse), a wrong type at each end.
    let mut text =
        format!("{SOCKET}[program]\ncommand = [\"x\"]\nworkers = \"one\"\n[program.env]\n");
    for i in 0..40_000 {
        text.push_str(&format!("V{i} = \"{i}\"\n"));
    }
    text.push_str("LAST = 2\n");
    assert!(text.len() > 512 * 1024);
    let e = errors(&text);
    assert_eq!(
        places(&e),
        [
            "6:11: workers: expected a whole number, not the string \"one\"".to_string(),
            format!(
                "{}:8: env: `LAST`: expected a string, not the integer 2",
                40_008
            ),
        ],
        "{e}"
    );
    // The good entries are all there.
    let good = text.replace("LAST = 2\n", "").replace("\"one\"", "1");
    let c = parse(&good).unwrap();
    assert_eq!(c.program.env.len(), 40_000);
    assert_eq!(c.program.env["V39999"], "39999");
}

#[test]
fn a_syntax_error_without_a_place_names_the_file() {
    let e = errors(&format!("[{}]\n", vec!["a"; 100].join(".")));
    assert_eq!(e, "t.toml: recursion limit");
}

#[test]
fn a_syntax_error_is_the_only_error() {
    let e = errors(&format!(
        "colour = 1\n{SOCKET}[program]\ncommand = [\"x\"]\nworkers = \"two\"\nready = \n"
    ));
    assert_eq!(
        places(&e),
        ["8:9: string values must be quoted, expected literal string"],
        "{e}"
    );
}
