//! The keys each table of the file may have: any other is reported as
//! unknown, all of them in one pass (`[program.env]` takes any name, and
//! `rlimits` the resources `process.rs` knows).

pub(super) const TOP_KEYS: &[&str] = &[
    "control",
    "sighup",
    "fdstore",
    "forward_signals",
    "handover",
    "socket",
    "program",
    "watch",
];

pub(super) const SOCKET_KEYS: &[&str] = &[
    "name",
    "listen",
    "backlog",
    "reuse_port",
    "mode",
    "handover",
    "ipv6_only",
    "free_bind",
    "bind_to_device",
    "keepalive",
    "keepalive_idle",
    "keepalive_interval",
    "keepalive_count",
    "defer_accept",
    "fast_open",
    "receive_buffer",
    "send_buffer",
    "no_delay",
    "owner",
    "group",
];

pub(super) const PROGRAM_KEYS: &[&str] = &[
    "command",
    "env",
    "working_directory",
    "ready",
    "ready_command",
    "ready_delay",
    "ready_interval",
    "ready_timeout",
    "min_ready_time",
    "stop_signal",
    "drain_timeout",
    "respawn_backoff",
    "respawn_backoff_max",
    "workers",
    "strategy",
    "batch",
    "handover_settle",
    "handover_timeout",
    "listen_env",
    "listen_pid",
    "sockets_nonblocking",
    "preload",
    "user",
    "group",
    "supplementary_groups",
    "umask",
    "rlimits",
    "env_file",
    "clear_env",
    "respawn_limit",
];

/// `respawn_limit = { count = 5, within = "60s" }`.
pub(super) const RESPAWN_LIMIT_KEYS: &[&str] = &["count", "within"];

/// `[watch]`: development mode.
pub(super) const WATCH_KEYS: &[&str] = &["paths", "ignore", "debounce"];
