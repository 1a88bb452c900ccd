//! The Prometheus text format (0.0.4) of the registry, which every Prometheus version and
//! `promtool check metrics` read.

use prometheus_client::encoding::text::encode_registry;

use super::Metrics;

/// `Content-Type` of [`Metrics::encode`]'s output: the Prometheus text format, which every
/// Prometheus version and `promtool check metrics` read.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Metrics {
    /// The metrics in the Prometheus text format (serve with [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        self.refresh_key_age(time::OffsetDateTime::now_utc().unix_timestamp());
        let mut open_metrics = String::with_capacity(16 * 1024);
        if encode_registry(&mut open_metrics, &self.registry).is_err() {
            // Writing to a String cannot fail; an error here would be a bug in the encoder.
            tracing::error!("encoding metrics failed; the scrape will be partial");
        }
        to_prometheus_text(&open_metrics)
    }
}

/// Converts prometheus-client's OpenMetrics text to the Prometheus text format (0.0.4).
///
/// OpenMetrics names a counter family without `_total` (`# TYPE x counter`, sample `x_total`)
/// and ends with `# EOF`; the Prometheus format names the family after its samples and has no
/// EOF marker. `promtool check metrics` reads only the latter.
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: Vec<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        match descriptor(line) {
            Some((keyword, name, rest)) if counters.contains(&name) => {
                text.push_str(keyword);
                text.push_str(name);
                text.push_str("_total");
                text.push_str(rest);
            }
            _ => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// Splits `# HELP name rest` / `# TYPE name rest` into (`# HELP `, `name`, ` rest`).
fn descriptor(line: &str) -> Option<(&'static str, &str, &str)> {
    let (keyword, after) = if let Some(after) = line.strip_prefix("# HELP ") {
        ("# HELP ", after)
    } else {
        ("# TYPE ", line.strip_prefix("# TYPE ")?)
    };
    let end = after.find(' ').unwrap_or(after.len());
    Some((keyword, &after[..end], &after[end..]))
}
