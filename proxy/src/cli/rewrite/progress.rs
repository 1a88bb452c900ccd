//! Progress of a column rewrite (rotate, migrate) on stderr: a bar redrawn in place on a
//! terminal (rows done, rate, time left), plain lines otherwise (logs, CI), at most one per
//! percent or ten seconds; and, for rotate's `--metrics-textfile`, the same progress as
//! Prometheus text at most once a second.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cli::textfile::{self, Rotation};

pub struct Progress {
    /// The command's name, starting each plain line (`rotate: 4000/100000 rows ...`).
    label: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    terminal: bool,
    shown: Option<(Instant, u64)>,
    /// The metrics textfile and the active version; when it was last written.
    textfile: Option<(PathBuf, u32)>,
    written: Option<Instant>,
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
            textfile: None,
            written: None,
        }
    }

    /// Also keeps `path` (a metrics textfile) up to date; a path that cannot be written is
    /// an error now, before any work.
    pub fn with_textfile(
        mut self,
        path: Option<PathBuf>,
        active_version: u32,
    ) -> Result<Progress, String> {
        self.textfile = path.map(|p| (p, active_version));
        self.write_textfile(0, None)?;
        Ok(self)
    }

    /// The run's end in the textfile: values re-encrypted and whether the final check passed.
    pub fn finish_textfile(&mut self, values: u64, passed: bool) -> Result<(), String> {
        self.write_textfile(values, Some(passed))
    }

    fn write_textfile(&mut self, values: u64, finished: Option<bool>) -> Result<(), String> {
        let Some((path, active_version)) = &self.textfile else {
            return Ok(());
        };
        self.written = Some(Instant::now());
        let state = Rotation {
            active_version: *active_version,
            rows_total: self.total,
            rows_done: self.done,
            values_reencrypted: values,
            finished,
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        textfile::write(path, &textfile::rotation(&state, now))
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
        if self
            .written
            .is_some_and(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            // A textfile that cannot be written must not stop the re-encryption: say it once
            // a second on stderr instead.
            if let Err(e) = self.write_textfile(0, None) {
                eprintln!("rotate: {e}");
            }
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
