//! Progress of a column rewrite (rotate, migrate) on stderr: a bar redrawn in place on a terminal (rows done, rate,
//! time left), plain lines otherwise (logs, CI), at most one per percent or ten seconds.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

pub struct Progress {
    /// The command's name, starting each plain line (`rotate: 4000/100000 rows ...`).
    label: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    terminal: bool,
    shown: Option<(Instant, u64)>,
}

impl Progress {
    pub fn new(label: &'static str, total: u64) -> Progress {
        Progress {
            label,
            total,
            done: 0,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            shown: None,
        }
    }

    pub fn advance(&mut self, rows: u64) {
        self.done += rows;
        let now = Instant::now();
        let due = match self.shown {
            None => true,
            Some(_) if self.terminal => true,
            Some((at, done)) => {
                now.duration_since(at) >= Duration::from_secs(10)
                    || (self.done - done) * 100 >= self.total.max(1)
            }
        };
        if due {
            self.show(now);
        }
    }

    /// The last state, and a new line after the bar.
    pub fn finish(&mut self) {
        if self.shown.map(|(_, d)| d) != Some(self.done) {
            self.show(Instant::now());
        }
        if self.terminal && self.shown.is_some() {
            eprintln!();
        }
    }

    fn show(&mut self, now: Instant) {
        let text = line(self.done, self.total, now.duration_since(self.started));
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r{} {text}\x1b[K", bar(self.done, self.total, 30))
        } else {
            writeln!(err, "{}: {text}", self.label)
        };
        let _ = err.flush();
        self.shown = Some((now, self.done));
    }
}

/// `4000/100000 rows (4%), 2400 rows/s, about 40 s left`.
pub fn line(done: u64, total: u64, elapsed: Duration) -> String {
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let left = match total.saturating_sub(done) {
        0 => "done".to_owned(),
        _ if rate < 1.0 => "time left unknown".to_owned(),
        rest => format!("about {} s left", (rest as f64 / rate).ceil() as u64),
    };
    format!("{done}/{total} rows ({percent}%), {rate:.0} rows/s, {left}")
}

fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = (done as usize * width)
        .checked_div(total as usize)
        .unwrap_or(width)
        .min(width);
    format!("[{}{}]", "=".repeat(filled), " ".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_rows_rate_and_time_left() {
        assert_eq!(
            line(4000, 100_000, Duration::from_secs(2)),
            "4000/100000 rows (4%), 2000 rows/s, about 48 s left"
        );
        assert_eq!(
            line(10, 10, Duration::from_secs(1)),
            "10/10 rows (100%), 10 rows/s, done"
        );
        assert_eq!(
            line(0, 0, Duration::ZERO),
            "0/0 rows (100%), 0 rows/s, done"
        );
        assert_eq!(bar(1, 4, 8), "[==      ]");
    }
}
