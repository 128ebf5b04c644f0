//! Turning request records and restart timings into the table's figures.

use std::time::Duration;

use crate::load::{Outcome, Record};

/// One restart: when it was asked for, and what the supervisor (or, for the
/// naive way, the script) reported.
#[derive(Debug, Clone, Copy)]
pub struct RestartTiming {
    /// From the load's start.
    pub asked: Duration,
    pub ready: Duration,
    /// The child's own share of `ready` (None for the naive way).
    pub child: Option<Duration>,
    pub old_gone: Duration,
    /// The new generation's own start-up CPU time (user+sys, summed over
    /// its workers) from its fork to its being ready; see `startup`.
    pub startup_cpu: Option<Duration>,
}

impl RestartTiming {
    fn window(&self) -> (Duration, Duration) {
        (self.asked, self.asked + self.ready.max(self.old_gone))
    }
}

#[derive(Debug, Default, Clone)]
pub struct Figures {
    pub requests: usize,
    pub refused: usize,
    pub reset: usize,
    pub timeout: usize,
    pub bad_status: usize,
    pub retried: usize,
    pub steady: Latency,
    pub restarting: Latency,
    /// Completed requests per second during restarts / outside them.
    pub throughput_ratio: f64,
    pub restarts: usize,
    pub ready_mean: f64,
    pub ready_max: f64,
    pub child_mean: Option<f64>,
    pub overhead_mean: Option<f64>,
    pub overhead_max: Option<f64>,
    pub gone_mean: f64,
    pub gone_max: f64,
    /// What a restart costs the service, in ms of full service per
    /// restart: see `service_lost`.
    pub lost_ms: Option<f64>,
    /// The new generation's start-up CPU time, mean per restart (ms).
    pub startup_cpu_mean: Option<f64>,
}

impl Figures {
    pub fn failed(&self) -> usize {
        self.refused + self.reset + self.timeout + self.bad_status
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Latency {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn latency(mut samples: Vec<f64>) -> Latency {
    if samples.is_empty() {
        return Latency::default();
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Latency {
        count: samples.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: *samples.last().expect("not empty"),
    }
}

pub fn figures(records: &[Record], restarts: &[RestartTiming]) -> Figures {
    let windows: Vec<(Duration, Duration)> = restarts.iter().map(RestartTiming::window).collect();
    let overlaps = |r: &Record| {
        let end = r.start + r.latency;
        windows.iter().any(|&(a, b)| r.start < b && end > a)
    };
    let in_window = |t: Duration| windows.iter().any(|&(a, b)| t >= a && t < b);
    let mut f = Figures {
        requests: records.len(),
        restarts: restarts.len(),
        ..Figures::default()
    };
    let (mut steady, mut restarting) = (Vec::new(), Vec::new());
    let (mut done_in, mut done_out) = (0usize, 0usize);
    for r in records {
        match r.outcome {
            Outcome::Ok => {}
            Outcome::Refused => f.refused += 1,
            Outcome::Reset => f.reset += 1,
            Outcome::Timeout => f.timeout += 1,
            Outcome::BadStatus => f.bad_status += 1,
        }
        f.retried += usize::from(r.retried);
        if overlaps(r) {
            restarting.push(ms(r.latency));
        } else {
            steady.push(ms(r.latency));
        }
        if r.outcome == Outcome::Ok {
            if in_window(r.start + r.latency) {
                done_in += 1;
            } else {
                done_out += 1;
            }
        }
    }
    f.steady = latency(steady);
    f.restarting = latency(restarting);
    let span = records
        .last()
        .map(|r| r.start + r.latency)
        .unwrap_or_default();
    let window_time: f64 = windows
        .iter()
        .map(|&(a, b)| (b.min(span).saturating_sub(a)).as_secs_f64())
        .sum();
    let outside = span.as_secs_f64() - window_time;
    if window_time > 0.0 && outside > 0.0 && done_out > 0 {
        f.throughput_ratio = (done_in as f64 / window_time) / (done_out as f64 / outside);
    }
    f.lost_ms = service_lost(&windows, span, done_in, done_out, restarts.len());
    let n = restarts.len().max(1) as f64;
    f.ready_mean = restarts.iter().map(|r| ms(r.ready)).sum::<f64>() / n;
    f.ready_max = restarts.iter().map(|r| ms(r.ready)).fold(0.0, f64::max);
    f.gone_mean = restarts.iter().map(|r| ms(r.old_gone)).sum::<f64>() / n;
    f.gone_max = restarts.iter().map(|r| ms(r.old_gone)).fold(0.0, f64::max);
    let cpu: Option<Vec<f64>> = restarts.iter().map(|r| r.startup_cpu.map(ms)).collect();
    f.startup_cpu_mean = cpu
        .filter(|c| !c.is_empty())
        .map(|c| c.iter().sum::<f64>() / n);
    if restarts.iter().all(|r| r.child.is_some()) && !restarts.is_empty() {
        let child: Vec<f64> = restarts
            .iter()
            .map(|r| ms(r.child.expect("checked")))
            .collect();
        let overhead: Vec<f64> = restarts
            .iter()
            .map(|r| ms(r.ready.saturating_sub(r.child.expect("checked"))))
            .collect();
        f.child_mean = Some(child.iter().sum::<f64>() / n);
        f.overhead_mean = Some(overhead.iter().sum::<f64>() / n);
        f.overhead_max = Some(overhead.iter().copied().fold(0.0, f64::max));
    }
    f
}

/// What the restarts cost the service, in milliseconds of full service per
/// restart: the requests that were not served against the steady rate,
/// expressed as the time the server would have taken to serve them.
///
/// With T the steady throughput (successful requests completed per second
/// outside the restarts), W the time the restarts spanned (the union of
/// their windows, each from the restart request to the later of the new
/// generation ready and the old one gone), S the successful requests
/// completed within W, and K the number of restarts:
///
///   lost = (T * W - S) / T / K  =  (W - S / T) / K
///
/// A failed request is not served, so it counts as lost; a slow one counts
/// in the window it completes in. The clients are a closed loop (each sends
/// its next request when the last is done): a request that fails fast
/// costs its client little time, so most of what a restart costs shows as
/// requests not sent rather than failed; both are counted. 0 is a restart
/// the service did not notice; a stop-and-start loses about its gap (the
/// time no server accepts). Unlike the throughput ratio it is in absolute
/// time, so ways whose restarts span very different times compare. None
/// when there is no steady rate to compare with.
fn service_lost(
    windows: &[(Duration, Duration)],
    span: Duration,
    done_in: usize,
    done_out: usize,
    restarts: usize,
) -> Option<f64> {
    let mut sorted: Vec<(Duration, Duration)> = windows
        .iter()
        .map(|&(a, b)| (a.min(span), b.min(span)))
        .collect();
    sorted.sort();
    // Overlapping windows (a restart asked for before the last one's old
    // generation is gone) count once.
    let mut spanned = Duration::ZERO;
    let mut covered_to = Duration::ZERO;
    for (a, b) in sorted {
        let a = a.max(covered_to);
        if b > a {
            spanned += b - a;
            covered_to = b;
        }
    }
    let w = spanned.as_secs_f64();
    let outside = span.as_secs_f64() - w;
    if restarts == 0 || outside <= 0.0 || done_out == 0 {
        return None;
    }
    let steady = done_out as f64 / outside;
    Some((w - done_in as f64 / steady) / restarts as f64 * 1000.0)
}
