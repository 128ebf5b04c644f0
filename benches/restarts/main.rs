//! `cargo bench --bench restarts`: does handoff keep its promise under load,
//! and what does it cost?
//!
//! It runs the example server under handoff with 64 concurrent clients (the
//! load generator in `load.rs`), in two modes (a new connection per request,
//! and keep-alive), restarting it K times at a fixed interval, and measures
//! the same for the naive way (stop the server, start a new one that binds
//! the port itself). A second table restarts 1, 16 and 64 workers and 1, 100
//! and 1000 sockets, without load, to show how the cost grows.
//!
//! `--short` (or HANDOFF_BENCH_SHORT=1) runs 10 restarts per mode and takes
//! under a minute; the default does 100. Figures are printed, not asserted.

mod load;
mod run;
mod stats;
mod table;

use std::time::Duration;

use load::Mode;

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
        "{} restarts per mode, one every {} ms, {} concurrent clients, the example server (examples/hello.rs), release build\n",
        plan.restarts,
        plan.interval.as_millis(),
        plan.clients
    );

    let mut columns = Vec::new();
    for mode in [Mode::Close, Mode::KeepAlive] {
        eprintln!("measuring handoff, {mode:?}...");
        columns.push((mode, "handoff", run::under_handoff(&bins, &plan, mode)));
        eprintln!("measuring the naive way, {mode:?}...");
        columns.push((mode, "naive", run::naive(&bins, &plan, mode)));
    }
    println!("{}", table::main_table(&columns));
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
