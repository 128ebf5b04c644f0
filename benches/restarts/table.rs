//! Printing the figures.

use crate::load::Mode;
use crate::run::Measured;
use crate::stats::{Figures, Latency};
use crate::Way;

/// One line describing the machine.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| format!("{} GiB", kib / 1024 / 1024))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "machine: {cpu}, {cores} cores, {mem}, Linux {}",
        kernel.trim()
    )
}

fn lat(l: &Latency) -> String {
    if l.count == 0 {
        return "-".into();
    }
    format!("{:.2} / {:.2} / {:.1}", l.p50, l.p99, l.max)
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

pub fn main_table(columns: &[(Mode, &Way, Measured)]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, f: &dyn Fn(&Figures, &Measured) -> String| {
        rows.push((
            name.to_string(),
            columns.iter().map(|(_, _, m)| f(&m.figures, m)).collect(),
        ));
    };
    row("requests", &|f, _| f.requests.to_string());
    row("failed", &|f, _| f.failed().to_string());
    row("  refused / reset / timed out / bad status", &|f, _| {
        format!(
            "{} / {} / {} / {}",
            f.refused, f.reset, f.timeout, f.bad_status
        )
    });
    row("retried on a closed idle connection", &|f, _| {
        f.retried.to_string()
    });
    row("latency steady, p50 / p99 / max (ms)", &|f, _| {
        lat(&f.steady)
    });
    row("latency during restarts, p50 / p99 / max (ms)", &|f, _| {
        lat(&f.restarting)
    });
    row("throughput during restarts / steady", &|f, _| {
        format!("{:.0}%", f.throughput_ratio * 100.0)
    });
    row("service lost per restart (ms of full service)", &|f, _| {
        opt(f.lost_ms)
    });
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    row("  new generation's start-up CPU, mean (ms)", &|f, _| {
        opt(f.startup_cpu_mean)
    });
    // Every core busy: a ms of CPU spent starting is 1/cores ms of the
    // whole machine's service.
    row(
        &format!("  the floor: that CPU / {cores} cores (ms of full service)"),
        &|f, _| opt(f.startup_cpu_mean.map(|c| c / cores as f64)),
    );
    row(
        "restart -> new generation ready, mean / max (ms)",
        &|f, _| format!("{:.2} / {:.2}", f.ready_mean, f.ready_max),
    );
    row("  of which the child itself, mean (ms)", &|f, _| {
        opt(f.child_mean)
    });
    row(
        "  of which the supervisor, mean / max (ms)",
        &|f, _| match (f.overhead_mean, f.overhead_max) {
            (Some(a), Some(b)) => format!("{a:.2} / {b:.2}"),
            _ => "-".into(),
        },
    );
    row(
        "restart -> old generation gone, mean / max (ms)",
        &|f, _| format!("{:.1} / {:.1}", f.gone_mean, f.gone_max),
    );
    row("supervisor RSS, peak (MiB)", &|_, m| {
        m.usage
            .as_ref()
            .map(|u| format!("{:.2}", u.rss_peak_kib as f64 / 1024.0))
            .unwrap_or_else(|| "-".into())
    });
    row("supervisor CPU time, total / per restart (ms)", &|f, m| {
        m.usage
            .as_ref()
            .map(|u| {
                let total = u.cpu.as_secs_f64() * 1000.0;
                format!("{total:.1} / {:.3}", total / f.restarts.max(1) as f64)
            })
            .unwrap_or_else(|| "-".into())
    });

    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    // Each column's title over several lines, bottom-aligned: the way, cut
    // at ", ", then the connection mode.
    let titles: Vec<Vec<&str>> = columns
        .iter()
        .map(|(mode, way, _)| {
            let mode = match mode {
                Mode::Close => "new conn",
                Mode::KeepAlive => "keep-alive",
            };
            way.label.split(", ").chain([mode]).collect()
        })
        .collect();
    let col = titles
        .iter()
        .flatten()
        .map(|t| t.len())
        .max()
        .unwrap_or(0)
        .max(22);
    let lines = titles.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = String::new();
    for line in 0..lines {
        out += &format!("{:width$}", "");
        for title in &titles {
            let cell = (line + title.len())
                .checked_sub(lines)
                .map_or("", |i| title[i]);
            out += &format!(" | {cell:>col$}");
        }
        out += "\n";
    }
    out += &"-".repeat(width + columns.len() * (col + 3));
    out += "\n";
    for (name, cells) in rows {
        out += &format!("{name:width$}");
        for c in cells {
            out += &format!(" | {c:>col$}");
        }
        out += "\n";
    }
    out
}

/// The targets, each with what was measured and whether it was met.
pub fn targets(columns: &[(Mode, &Way, Measured)]) -> String {
    let handoff: Vec<&Measured> = columns
        .iter()
        .filter(|(_, w, _)| w.target)
        .map(|(_, _, m)| m)
        .collect();
    let label = columns
        .iter()
        .find(|(_, w, _)| w.target)
        .map_or("none", |(_, w, _)| w.label);
    let mark = |ok: bool| if ok { "met" } else { "MISSED" };
    let mut out = format!("targets ({label}, both modes):\n");
    let failed: usize = handoff.iter().map(|m| m.figures.failed()).sum();
    out += &format!(
        "  zero failed requests: {failed} failed -> {}\n",
        mark(failed == 0)
    );
    for m in &handoff {
        let f = &m.figures;
        let ratio = if f.steady.p99 > 0.0 {
            f.restarting.p99 / f.steady.p99
        } else {
            0.0
        };
        out += &format!(
            "  p99 during restarts <= 2x steady: {:.2} / {:.2} ms = {ratio:.2}x -> {}\n",
            f.restarting.p99,
            f.steady.p99,
            mark(ratio <= 2.0)
        );
        out += &format!(
            "  throughput during restarts >= 95% of steady: {:.0}% -> {}\n",
            f.throughput_ratio * 100.0,
            mark(f.throughput_ratio >= 0.95)
        );
        if let Some(o) = f.overhead_max {
            out += &format!(
                "  supervisor overhead per restart < 5 ms: mean {:.2}, max {o:.2} ms -> {}\n",
                f.overhead_mean.unwrap_or(0.0),
                mark(o < 5.0)
            );
        }
        if let Some(u) = &m.usage {
            let mib = u.rss_peak_kib as f64 / 1024.0;
            out += &format!(
                "  supervisor RSS <= 4 MiB with one worker: {mib:.2} MiB -> {}\n",
                mark(mib <= 4.0)
            );
        }
    }
    out
}

pub fn scaling_table(rows: &[(usize, usize, Figures)], restarts: usize) -> String {
    let mut out = format!(
        "restart cost, no load, {restarts} restarts each (ms, mean)\n{:>8} {:>8} | {:>14} {:>14} {:>14} {:>14} {:>14}\n",
        "workers", "sockets", "ready", "child itself", "supervisor", "old gone", "start-up CPU"
    );
    out += &"-".repeat(99);
    out += "\n";
    for (workers, sockets, f) in rows {
        out += &format!(
            "{workers:>8} {sockets:>8} | {:>14.2} {:>14} {:>14} {:>14.1} {:>14}\n",
            f.ready_mean,
            opt(f.child_mean),
            opt(f.overhead_mean),
            f.gone_mean,
            opt(f.startup_cpu_mean)
        );
    }
    out
}
