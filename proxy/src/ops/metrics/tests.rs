use std::sync::Arc;
use std::time::Duration;

use super::statements::MAX_ROLES;
use super::*;

/// The value of the sample line starting with `series ` (exact series, labels included).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

#[test]
fn every_metric_is_exported_once_a_role_is_known() {
    let metrics = Metrics::new();
    metrics.role("app");
    let text = metrics.encode();
    for name in [
        "pgshroud_connections_active",
        "pgshroud_connections_total",
        "pgshroud_connection_errors_total",
        "pgshroud_statements_total",
        "pgshroud_statement_duration_seconds",
        "pgshroud_crypto_operations_total",
        "pgshroud_protected_values_total",
        "pgshroud_refusals_total",
        "pgshroud_plan_cache_lookups_total",
        "pgshroud_upstream_errors_total",
        "pgshroud_audit_events_total",
        "pgshroud_audit_dropped_total",
        "pgshroud_audit_syslog_sent_total",
        "pgshroud_audit_syslog_dropped_total",
        "pgshroud_audit_syslog_reconnects_total",
        "pgshroud_audit_syslog_connect_failures_total",
        "pgshroud_audit_syslog_connected",
        "pgshroud_alerts_total",
        "pgshroud_rules_reloads_total",
        "pgshroud_bytes_total",
        "pgshroud_build_info",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from:\n{text}"
        );
    }
}

#[test]
fn statement_series_appear_only_for_roles_seen() {
    let text = Metrics::new().encode();
    assert!(!text.contains("pgshroud_statements_total"));
}

#[test]
fn counter_families_are_named_after_their_samples() {
    let text = Metrics::new().encode();
    assert!(text.contains("# HELP pgshroud_connections_total Client connections accepted."));
    assert!(text.contains("# TYPE pgshroud_connections_total counter"));
    assert!(!text.contains("# TYPE pgshroud_connections counter"));
}

#[test]
fn output_has_no_openmetrics_eof_marker() {
    assert!(!Metrics::new().encode().contains("# EOF"));
}

#[test]
fn build_info_carries_the_crate_version() {
    let text = Metrics::new().encode();
    let series = format!(
        "pgshroud_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &series), Some(1.0));
}

#[test]
fn connection_guard_closes_the_connection_on_drop() {
    let metrics = Arc::new(Metrics::new());
    let guard = metrics.track_connection();
    let text = metrics.encode();
    assert_eq!(sample(&text, "pgshroud_connections_active"), Some(1.0));
    drop(guard);
    let text = metrics.encode();
    assert_eq!(sample(&text, "pgshroud_connections_active"), Some(0.0));
    assert_eq!(sample(&text, "pgshroud_connections_total"), Some(1.0));
}

#[test]
fn bytes_are_added_per_direction() {
    let metrics = Metrics::new();
    metrics.bytes(Direction::ClientToServer, 100);
    metrics.bytes(Direction::ClientToServer, 23);
    metrics.bytes(Direction::ServerToClient, 7);
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            "pgshroud_bytes_total{direction=\"client_to_server\"}"
        ),
        Some(123.0)
    );
    assert_eq!(
        sample(
            &text,
            "pgshroud_bytes_total{direction=\"server_to_client\"}"
        ),
        Some(7.0)
    );
}

#[test]
fn enum_labelled_series_start_at_zero() {
    let text = Metrics::new().encode();
    for reason in RefusalReason::ALL {
        let series = format!("pgshroud_refusals_total{{reason=\"{}\"}}", reason.as_str());
        assert_eq!(sample(&text, &series), Some(0.0), "{series}");
    }
}

#[test]
fn statement_is_counted_under_its_role_and_timed() {
    let metrics = Metrics::new();
    let support = metrics.role("support");
    metrics.statement(
        StatementKind::Select,
        &support,
        StatementOutcome::Refused,
        Duration::from_micros(70),
    );
    let text = metrics.encode();
    let series = "pgshroud_statements_total{kind=\"select\",role=\"support\",outcome=\"refused\"}";
    assert_eq!(sample(&text, series), Some(1.0));
    assert_eq!(
        sample(&text, "pgshroud_statement_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "pgshroud_statement_duration_seconds_bucket{le=\"0.00005\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "pgshroud_statement_duration_seconds_bucket{le=\"0.0001\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn same_role_shares_its_counters() {
    let metrics = Metrics::new();
    let a = metrics.role("app");
    let b = metrics.role("app");
    metrics.statement(
        StatementKind::Insert,
        &a,
        StatementOutcome::Ok,
        Duration::ZERO,
    );
    metrics.statement(
        StatementKind::Insert,
        &b,
        StatementOutcome::Ok,
        Duration::ZERO,
    );
    let text = metrics.encode();
    let series = "pgshroud_statements_total{kind=\"insert\",role=\"app\",outcome=\"ok\"}";
    assert_eq!(sample(&text, series), Some(2.0));
}

#[test]
fn role_label_cannot_break_the_text_format() {
    let metrics = Metrics::new();
    let role = metrics.role("evil\"} 1\nx{");
    assert_eq!(role.role(), "evil___1_x_");
    assert!(metrics.encode().contains("role=\"evil___1_x_\""));
}

#[test]
fn roles_beyond_the_cap_share_the_overflow_label() {
    let metrics = Metrics::new();
    for i in 0..MAX_ROLES {
        metrics.role(&format!("role{i}"));
    }
    assert_eq!(metrics.role("one_too_many").role(), OVERFLOW_ROLE);
    assert_eq!(metrics.role("role0").role(), "role0");
}

#[test]
fn slow_statement_lands_in_the_infinity_bucket() {
    let metrics = Metrics::new();
    let app = metrics.role("app");
    metrics.statement(
        StatementKind::Select,
        &app,
        StatementOutcome::Ok,
        Duration::from_secs(30),
    );
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            "pgshroud_statement_duration_seconds_bucket{le=\"10.0\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "pgshroud_statement_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "pgshroud_statement_duration_seconds_sum"),
        Some(30.0)
    );
}

#[test]
fn label_values_are_lowercase_snake_case() {
    let all: Vec<&str> = ConnectionErrorReason::ALL
        .iter()
        .map(|v| v.as_str())
        .chain(StatementKind::ALL.iter().map(|v| v.as_str()))
        .chain(StatementOutcome::ALL.iter().map(|v| v.as_str()))
        .chain(CryptoOp::ALL.iter().map(|v| v.as_str()))
        .chain(ProtectedValueAction::ALL.iter().map(|v| v.as_str()))
        .chain(RefusalReason::ALL.iter().map(|v| v.as_str()))
        .chain(AlertKind::ALL.iter().map(|v| v.as_str()))
        .chain(ReloadResult::ALL.iter().map(|v| v.as_str()))
        .chain(Direction::ALL.iter().map(|v| v.as_str()))
        .collect();
    for value in all {
        assert!(
            value.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{value}"
        );
    }
}
