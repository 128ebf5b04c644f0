//! The new generation's own start-up CPU time: user+sys of a server
//! process from its fork to the moment it is ready.
//!
//! When it is read: the example prints "hello: pid P generation G serving
//! on ADDR" on its stdout right after its READY=1 (the naive way's server
//! prints the same line once it has bound the port). Under handoff the
//! children inherit the supervisor's stdout, which the benchmark reads here;
//! on each such line it reads that process's CPU time at once. Not at its
//! exit: by then it has served for a restart interval or more, hundreds of
//! ms of CPU that have nothing to do with starting. Not when the restart's
//! answer arrives either: with `drained` that is after the old generation
//! is gone, about 260 ms after the new one began to serve.
//!
//! What is read: the process's CPU clock (`clock_getcpuclockid(3)`), the
//! user+sys time of all its threads, alive or exited, since the fork, in
//! nanoseconds. `/proc/PID/stat`'s utime and stime hold the same sum, but
//! in clock ticks (10 ms at the usual USER_HZ of 100), too coarse for a
//! start-up of a few ms. The fork is handoff's (or the benchmark's, for
//! the naive way): the time counts from there, through the exec, the
//! dynamic loader, the runtime's start and the READY=1.
//!
//! It is an upper bound by the time this reader takes to wake up: once
//! ready, the new generation accepts at once, so what it spends serving
//! before the read is counted too. Without load (the scaling table) it
//! serves nothing, and the figure is exact.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::time::{clock_getcpuclockid, clock_gettime};
use nix::unistd::Pid;

/// How long to wait for a ready worker's line after the supervisor said
/// the generation is ready: the line is printed right after READY=1, so it
/// is only missing if the server prints something else.
const LINE_TIMEOUT: Duration = Duration::from_secs(5);

/// The user+sys time `pid` has used since its fork, or None if it is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?);
    let clock = clock_getcpuclockid(pid).ok()?;
    clock_gettime(clock).ok().map(Duration::from)
}

/// Per generation, the start-up CPU time of each of its workers.
type Seen = Mutex<HashMap<u64, Vec<Duration>>>;

/// Reads the servers' stdout and keeps, per generation, the start-up CPU
/// time of each of its workers, read when the worker said it serves.
pub struct Watch {
    seen: Arc<(Seen, Condvar)>,
}

impl Watch {
    /// Reads `out` on a thread of its own until its end (when the
    /// supervisor and all its children have exited). Reading it to the end
    /// matters: a server writing to a pipe nobody reads would block, or
    /// fail on a closed one.
    pub fn start(out: impl Read + Send + 'static) -> Watch {
        let seen: Arc<(Seen, Condvar)> = Arc::default();
        let shared = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let Some((pid, generation)) = serving(&line) else {
                    continue;
                };
                let Some(cpu) = cpu_time(pid) else { continue };
                let (map, changed) = &*shared;
                map.lock()
                    .expect("no thread panics holding the map")
                    .entry(generation)
                    .or_default()
                    .push(cpu);
                changed.notify_all();
            }
        });
        Watch { seen }
    }

    /// The start-up CPU time of `workers` workers of `generation`, summed:
    /// what starting the generation cost the machine. None if they did not
    /// all say they serve within LINE_TIMEOUT.
    pub fn take(&self, generation: u64, workers: usize) -> Option<Duration> {
        let (map, changed) = &*self.seen;
        let deadline = Instant::now() + LINE_TIMEOUT;
        let mut map = map.lock().expect("no thread panics holding the map");
        loop {
            if map.get(&generation).is_some_and(|v| v.len() >= workers) {
                return map.remove(&generation).map(|v| v.iter().sum());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            map = changed
                .wait_timeout(map, left)
                .expect("no thread panics holding the map")
                .0;
        }
    }
}

/// (pid, generation) from "hello: pid P generation G serving on ADDR".
fn serving(line: &str) -> Option<(u32, u64)> {
    if !line.contains(" serving on ") {
        return None;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        let at = words.iter().position(|w| *w == key)?;
        words.get(at + 1).copied()
    };
    Some((
        after("pid")?.parse().ok()?,
        after("generation")?.parse().ok()?,
    ))
}
