//! Metrics of the operator commands (`rotate`, `keys status`) for node_exporter's textfile
//! collector: these commands are separate processes with no `/metrics` of their own, so with
//! `--metrics-textfile PATH` they write Prometheus text there (a new file renamed over the old,
//! so the collector never reads half of one). Point PATH into the collector's directory
//! (`--collector.textfile.directory`), with a name ending in `.prom`.

use std::io::Write as _;
use std::path::Path;

use super::stored::VersionCount;

/// Writes `text` to `path` through a temporary file beside it and a rename.
pub fn write(path: &Path, text: &str) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write metrics textfile {}: {e}", path.display())
    })
}

/// A rotation's state: rows to do and done, values re-encrypted, whether it finished (and
/// whether its final check passed), and when this was written.
pub struct Rotation {
    pub active_version: u32,
    pub rows_total: u64,
    pub rows_done: u64,
    pub values_reencrypted: u64,
    /// `None` while running; `Some(check passed)` at the end.
    pub finished: Option<bool>,
}

pub fn rotation(r: &Rotation, now_unix: i64) -> String {
    let mut out = String::new();
    gauge(
        &mut out,
        "pgshroud_rotate_active_key_version",
        "The key version pgshroud rotate re-encrypts under",
        &[("", r.active_version.into())],
    );
    gauge(
        &mut out,
        "pgshroud_rotate_rows",
        "Rows holding values to re-encrypt when the run started",
        &[("", r.rows_total as f64)],
    );
    gauge(
        &mut out,
        "pgshroud_rotate_rows_done",
        "Rows re-encrypted so far by this run",
        &[("", r.rows_done as f64)],
    );
    gauge(
        &mut out,
        "pgshroud_rotate_values_reencrypted",
        "Values re-encrypted by this run (counted at its end)",
        &[("", r.values_reencrypted as f64)],
    );
    let (finished, passed) = match r.finished {
        None => (0.0, 0.0),
        Some(passed) => (1.0, if passed { 1.0 } else { 0.0 }),
    };
    gauge(
        &mut out,
        "pgshroud_rotate_finished",
        "1 once the run has ended",
        &[("", finished)],
    );
    gauge(
        &mut out,
        "pgshroud_rotate_final_check_passed",
        "1 when the ended run found every value under the active key version",
        &[("", passed)],
    );
    gauge(
        &mut out,
        "pgshroud_rotate_updated_timestamp_seconds",
        "When this file was written",
        &[("", now_unix as f64)],
    );
    out
}

/// `keys status` as metrics: values per column, envelope format and key version.
pub fn key_versions(counts: &[VersionCount], now_unix: i64) -> String {
    let mut out = String::new();
    let series: Vec<(String, f64)> = counts
        .iter()
        .map(|c| {
            (
                format!(
                    "{{column=\"{}\",format=\"{}\",key_version=\"{}\"}}",
                    escape(&c.column),
                    c.format,
                    c.version
                ),
                c.values as f64,
            )
        })
        .collect();
    let borrowed: Vec<(&str, f64)> = series.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    gauge(&mut out, "pgshroud_stored_values", "Stored values of a protected column, by envelope format and key version (pgshroud keys status)", &borrowed);
    gauge(
        &mut out,
        "pgshroud_stored_values_updated_timestamp_seconds",
        "When pgshroud keys status counted",
        &[("", now_unix as f64)],
    );
    out
}

fn gauge(out: &mut String, name: &str, help: &str, series: &[(&str, f64)]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
    for (labels, value) in series {
        out.push_str(&format!("{name}{labels} {value}\n"));
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_versions_are_one_series_per_column_format_and_version() {
        let counts = [
            VersionCount {
                column: "public.customers.email".into(),
                format: 2,
                version: 1,
                values: 3,
            },
            VersionCount {
                column: "public.customers.email".into(),
                format: 2,
                version: 2,
                values: 5,
            },
        ];
        let text = key_versions(&counts, 1_800_000_000);
        assert!(text.contains("pgshroud_stored_values{column=\"public.customers.email\",format=\"2\",key_version=\"1\"} 3\n"), "{text}");
        assert!(text.contains("key_version=\"2\"} 5\n"), "{text}");
        assert!(
            text.contains("pgshroud_stored_values_updated_timestamp_seconds 1800000000\n"),
            "{text}"
        );
    }

    #[test]
    fn a_rotation_reports_progress_then_its_end() {
        let mut r = Rotation {
            active_version: 2,
            rows_total: 100,
            rows_done: 40,
            values_reencrypted: 0,
            finished: None,
        };
        let running = rotation(&r, 1);
        assert!(
            running.contains("pgshroud_rotate_rows_done 40\n"),
            "{running}"
        );
        assert!(
            running.contains("pgshroud_rotate_finished 0\n"),
            "{running}"
        );
        r.rows_done = 100;
        r.values_reencrypted = 180;
        r.finished = Some(true);
        let done = rotation(&r, 2);
        assert!(
            done.contains("pgshroud_rotate_values_reencrypted 180\n"),
            "{done}"
        );
        assert!(
            done.contains("pgshroud_rotate_final_check_passed 1\n"),
            "{done}"
        );
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("pgshroud-textfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pgshroud.prom");
        write(&path, "a 1\n").unwrap();
        write(&path, "b 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b 2\n");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
