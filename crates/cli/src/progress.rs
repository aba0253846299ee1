//! Progress of long commands: a bar redrawn in place on a terminal, structured log lines
//! (every few seconds) otherwise.

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

/// Reports `done` of `total` units.
pub struct Progress {
    what: &'static str,
    unit: &'static str,
    total: Option<u64>,
    started: Instant,
    last: Option<Instant>,
    terminal: bool,
}

impl Progress {
    /// Starts reporting; `total` when known.
    pub fn new(what: &'static str, unit: &'static str, total: Option<u64>) -> Self {
        Progress { what, unit, total, started: Instant::now(), last: None, terminal: std::io::stderr().is_terminal() }
    }

    /// Sets the total once it is known.
    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
    }

    /// Reports (rate-limited).
    pub fn update(&mut self, done: u64) {
        let every = if self.terminal { Duration::from_millis(100) } else { Duration::from_secs(2) };
        if self.last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        self.draw(done);
    }

    fn draw(&self, done: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        if self.terminal {
            let line = match self.total {
                Some(total) if total > 0 => {
                    let ratio = (done as f64 / total as f64).min(1.0);
                    let filled = (ratio * 30.0).round() as usize;
                    format!(
                        "{} [{}{}] {:>3.0}% {done}/{total} {} {rate:.0}/s",
                        self.what,
                        "#".repeat(filled),
                        "-".repeat(30 - filled),
                        ratio * 100.0,
                        self.unit
                    )
                }
                _ => format!("{} {done} {} {rate:.0}/s", self.what, self.unit),
            };
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        } else {
            tracing::info!(
                task = self.what,
                done,
                total = self.total,
                unit = self.unit,
                per_second = rate.round(),
                "progress"
            );
        }
    }

    /// The final report.
    pub fn finish(&mut self, done: u64) {
        self.draw(done);
        if self.terminal {
            eprintln!();
        }
    }
}
