//! The socket options of a `[[socket]]` (issue 12): typed, and each
//! mistake (a bad value, an option that does not fit the socket's kind)
//! reported at its file:line.

use super::{errors, parse};
use crate::sockets::SocketOptions;

/// One socket listening at `listen` with `keys` in its table (the keys
/// start on line 4), and a program.
fn file(listen: &str, keys: &str) -> String {
    format!(
        "[[socket]]\nname = \"s\"\nlisten = \"{listen}\"\n{keys}\n[program]\ncommand = [\"x\"]\n"
    )
}

fn options(listen: &str, keys: &str) -> SocketOptions {
    let c = parse(&file(listen, keys)).unwrap_or_else(|e| panic!("{e}"));
    c.sockets[0].options.clone()
}

#[test]
fn every_tcp_option_is_typed() {
    let o = options(
        "tcp://[::1]:0",
        "ipv6_only = true\nfree_bind = true\nbind_to_device = \"lo\"\n\
         keepalive = true\nkeepalive_idle = \"2m\"\nkeepalive_interval = 15\nkeepalive_count = 4\n\
         defer_accept = \"3s\"\nfast_open = 16\nreceive_buffer = 65536\nsend_buffer = 32768\n\
         no_delay = false",
    );
    assert_eq!(
        o,
        SocketOptions {
            ipv6_only: Some(true),
            free_bind: Some(true),
            bind_to_device: Some("lo".into()),
            keepalive: Some(true),
            keepalive_idle: Some(120),
            keepalive_interval: Some(15),
            keepalive_count: Some(4),
            defer_accept: Some(3),
            fast_open: Some(16),
            receive_buffer: Some(65536),
            send_buffer: Some(32768),
            no_delay: Some(false),
            owner: None,
            group: None,
        }
    );
    assert_eq!(
        options("tcp://127.0.0.1:0", "keepalive = true").to_string(),
        "keepalive = true"
    );
    assert!(options("tcp://127.0.0.1:0", "").is_empty());
}

#[test]
fn a_unix_socket_takes_owner_and_group_by_name_or_id() {
    let o = options(
        "unix://s.sock",
        "owner = \"root\"\ngroup = 0\nreceive_buffer = 4096",
    );
    assert_eq!(
        (o.owner, o.group, o.receive_buffer),
        (Some(0), Some(0), Some(4096))
    );
    let o = options("unix://s.sock", "owner = \"65534\"");
    assert_eq!(o.owner, Some(65534));
    let e = errors(&file("unix://s.sock", "owner = \"no-such-user-here\""));
    assert!(
        e.contains("t.toml:4:9:") && e.contains("no such owner"),
        "{e}"
    );
}

#[test]
fn an_option_that_does_not_fit_the_socket_is_an_error_at_its_line() {
    let e = errors(&file(
        "udp://127.0.0.1:0",
        "free_bind = true\nno_delay = true\nkeepalive = true\nowner = 0",
    ));
    assert!(!e.contains("free_bind"), "free_bind fits UDP: {e}");
    assert!(
        e.contains("t.toml:5:12: no_delay only applies to tcp:// sockets"),
        "{e}"
    );
    assert!(
        e.contains("t.toml:6:13: keepalive only applies to tcp://"),
        "{e}"
    );
    assert!(
        e.contains("t.toml:7:9: owner only applies to unix:// sockets with a path"),
        "{e}"
    );

    let e = errors(&file("tcp://127.0.0.1:0", "group = \"root\""));
    assert!(
        e.contains("t.toml:4:9: group only applies to unix://"),
        "{e}"
    );
    let e = errors(&file("unix://@abstract", "owner = 0\nsend_buffer = 1"));
    assert!(e.contains("t.toml:4:9: owner only applies"), "{e}");
    assert!(!e.contains("send_buffer"), "buffers fit every socket: {e}");
    let e = errors(&file(
        "unix://s.sock",
        "no_delay = true\nbind_to_device = \"lo\"",
    ));
    assert!(e.contains("t.toml:4:12: no_delay"), "{e}");
    assert!(
        e.contains("t.toml:5:18: bind_to_device only applies to tcp:// and udp://"),
        "{e}"
    );
    let e = errors(&file("tcp://127.0.0.1:0", "ipv6_only = true"));
    assert!(
        e.contains("t.toml:4:13: ipv6_only only applies to an IPv6 address"),
        "{e}"
    );
}

#[test]
fn a_value_out_of_the_kernels_range_is_an_error_at_its_line() {
    let cases = [
        (
            "keepalive_idle = \"0s\"",
            "t.toml:4:18: keepalive_idle must be between 1s and 32767s",
        ),
        (
            "keepalive_interval = \"1500ms\"",
            "t.toml:4:22: keepalive_interval = \"1500ms\": the kernel counts it in whole seconds",
        ),
        (
            "keepalive_count = 128",
            "t.toml:4:19: keepalive_count must be between 1 and 127, not 128",
        ),
        (
            "defer_accept = \"soon\"",
            "t.toml:4:16: defer_accept: `soon` is not a duration",
        ),
        (
            "fast_open = -1",
            "t.toml:4:13: fast_open must be between 0 and",
        ),
        (
            "receive_buffer = 0",
            "t.toml:4:18: receive_buffer must be between 1 and",
        ),
        (
            "send_buffer = 4294967296",
            "t.toml:4:15: send_buffer must be between 1 and",
        ),
        (
            "bind_to_device = \"a-name-far-too-long\"",
            "t.toml:4:18: bind_to_device = \"a-name-far-too-long\" is not an interface name",
        ),
        ("keepalive = \"yes\"", "t.toml:4:13:"),
    ];
    for (keys, want) in cases {
        let e = errors(&file("tcp://127.0.0.1:0", keys));
        assert!(e.contains(want), "{keys}: {e}");
    }
}

#[test]
fn every_mistake_of_a_socket_is_reported_at_once() {
    let e = errors(&file(
        "tcp://127.0.0.1:0",
        "keepalive_count = 0\nowner = 0\nreceive_buffer = -5\nno_such_option = 1",
    ));
    for want in [
        "t.toml:4:19: keepalive_count",
        "t.toml:5:9: owner",
        "t.toml:6:18: receive_buffer",
        "t.toml:7:1:",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
}
