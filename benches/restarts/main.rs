//! `cargo bench --bench restarts`: does handoff keep its promise under load,
//! and what does it cost?
//!
//! It runs the example server under handoff with 64 concurrent clients (the
//! load generator in `load.rs`), in two modes (a new connection per request,
//! and keep-alive), restarting it K times at a fixed interval, and measures
//! the same for the naive way (stop the server, start a new one that binds
//! the port itself), for handoff's two handovers (a socket per generation,
//! steered, the default; one shared socket) and for the example's sloppy
//! drain under each (the `WAYS` below: a column each, a table per mode). A
//! last table restarts 1, 16 and 64 workers and 1, 100 and 1000 sockets,
//! without load and with the default handover, to show how the cost grows.
//!
//! `--short` (or HANDOFF_BENCH_SHORT=1) runs 10 restarts per mode and takes
//! about a minute and a half; the default does 100 (about 11 minutes).
//! Figures are printed, not asserted.

mod load;
mod run;
mod startup;
mod stats;
mod table;

use std::time::Duration;

use load::Mode;

/// How the example server is run, and what its sockets are configured with.
pub struct Server {
    /// Flags of `examples/hello.rs`.
    pub args: &'static [&'static str],
    /// TOML lines added to each `[[socket]]` table of handoff's config.
    pub socket_config: &'static str,
}

impl Server {
    /// The example as it is, for the scaling table.
    pub const CAREFUL: Server = Server {
        args: CAREFUL,
        socket_config: "",
    };
}

/// The example's own drain: it stops accepting, serves what it accepted.
const CAREFUL: &[&str] = &[];
/// Closes what it accepted but has not read yet when told to stop, as
/// hyper's graceful shutdown and ASGI servers do.
const SLOPPY: &[&str] = &["--sloppy-drain"];

/// A way of restarting the server: one column of the main table per
/// connection mode.
pub struct Way {
    /// The column's title; ", " breaks it into lines.
    pub label: &'static str,
    /// Under handoff, or the naive way.
    pub handoff: bool,
    /// Whether `targets` checks this column against the targets: the way a
    /// user gets by default.
    pub target: bool,
    pub server: Server,
}

impl Way {
    const fn handoff(
        label: &'static str,
        args: &'static [&'static str],
        socket_config: &'static str,
    ) -> Way {
        Way {
            label,
            handoff: true,
            target: false,
            server: Server {
                args,
                socket_config,
            },
        }
    }

    /// This way is the one the targets are about.
    const fn target(self) -> Way {
        Way {
            target: true,
            ..self
        }
    }

    const fn naive(label: &'static str, args: &'static [&'static str]) -> Way {
        Way {
            label,
            handoff: false,
            target: false,
            server: Server {
                args,
                socket_config: "",
            },
        }
    }
}

/// Each handover named explicitly, so that a column keeps its meaning if
/// the default changes; steer is the default today.
const STEER: &str = "handover = \"steer\"\n";
const SHARED: &str = "handover = \"shared\"\n";

/// The main table's columns, in order, each measured in both modes (a
/// table each): one line per way. The first is what a user gets by default, and the one the
/// targets are checked on; the shared socket beside it shows what steering
/// costs a server that drains carefully, and the sloppy pair what it saves
/// one that does not.
const WAYS: &[Way] = &[
    Way::handoff("handoff (steer)", CAREFUL, STEER).target(),
    Way::handoff("handoff (shared)", CAREFUL, SHARED),
    Way::naive("naive", CAREFUL),
    Way::handoff("handoff (shared), sloppy drain", SLOPPY, SHARED),
    Way::handoff("handoff (steer), sloppy drain", SLOPPY, STEER),
];

/// How much to do.
pub struct Plan {
    pub restarts: usize,
    pub interval: Duration,
    pub warmup: Duration,
    pub clients: usize,
    /// Restarts per row of the scaling table.
    pub scaling_restarts: usize,
}

fn main() {
    let short = std::env::args().any(|a| a == "--short")
        || std::env::var_os("HANDOFF_BENCH_SHORT").is_some();
    let plan = if short {
        Plan {
            restarts: 10,
            interval: Duration::from_millis(300),
            warmup: Duration::from_secs(1),
            clients: 64,
            scaling_restarts: 3,
        }
    } else {
        Plan {
            restarts: 100,
            interval: Duration::from_millis(300),
            warmup: Duration::from_secs(2),
            clients: 64,
            scaling_restarts: 10,
        }
    };
    let bins = run::Binaries::build();
    println!("{}", table::machine());
    println!(
        "{} restarts per mode and column, one every {} ms, {} concurrent clients, the example server (examples/hello.rs), release build\n",
        plan.restarts,
        plan.interval.as_millis(),
        plan.clients
    );

    let mut columns = Vec::new();
    for mode in [Mode::Close, Mode::KeepAlive] {
        for way in WAYS {
            eprintln!("measuring {}, {mode:?}...", way.label);
            let measured = if way.handoff {
                run::under_handoff(&bins, &way.server, &plan, mode)
            } else {
                run::naive(&bins, &way.server, &plan, mode)
            };
            columns.push((mode, way, measured));
        }
    }
    // One table per connection mode (the loop above measured them mode by
    // mode): ten columns side by side would be 300 characters wide.
    for of_mode in columns.chunks(WAYS.len()) {
        println!("{}", table::main_table(of_mode));
    }
    println!("{}", table::targets(&columns));

    let mut rows = Vec::new();
    for (workers, sockets) in [(1, 1), (16, 1), (64, 1), (1, 100), (1, 1000)] {
        eprintln!("measuring {workers} worker(s), {sockets} socket(s)...");
        rows.push((
            workers,
            sockets,
            run::scaling(&bins, plan.scaling_restarts, workers, sockets),
        ));
    }
    println!("{}", table::scaling_table(&rows, plan.scaling_restarts));
}
