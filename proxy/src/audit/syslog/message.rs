//! The messages: RFC 5424 with RFC 6587 octet counting, the event's severity and MSGID, and
//! the CEF alternative to the JSON line.

use super::super::event::{Event, EventType, Outcome};
use super::{Queued, SD_ID};

/// The chain value (hex) at the end of a sealed line.
pub(super) fn line_chain(line: &[u8]) -> Option<String> {
    let (_, chain) = crate::audit::chain::split_line(line)?;
    Some(hex::encode(chain))
}

/// RFC 5424 severity of an event.
pub(super) fn severity(event: &Event) -> u8 {
    const WARNING: u8 = 4;
    const NOTICE: u8 = 5;
    const INFO: u8 = 6;
    match event.event {
        EventType::Alert => WARNING,
        EventType::AuthFailed | EventType::TenantForgotten | EventType::TenantRowsDeleted => NOTICE,
        EventType::Statement if event.outcome == Some(Outcome::Refused) => NOTICE,
        _ => INFO,
    }
}

/// MSGID: the event type, as the JSON names it.
pub(super) fn msgid(kind: EventType) -> &'static str {
    match kind {
        EventType::ChainStart => "chain_start",
        EventType::ChainEnd => "chain_end",
        EventType::FileStart => "file_start",
        EventType::Connect => "connect",
        EventType::AuthOk => "auth_ok",
        EventType::AuthFailed => "auth_failed",
        EventType::Statement => "statement",
        EventType::Alert => "alert",
        EventType::Disconnect => "disconnect",
        EventType::TenantForgotten => "tenant_forgotten",
        EventType::TenantRowsDeleted => "tenant_rows_deleted",
    }
}

/// The event in ArcSight CEF: `CEF:0|vendor|product|version|signature|name|severity|ext`.
pub fn cef(event: &Event, chain: &str) -> String {
    let name = msgid(event.event);
    let signature = match (event.event, event.alert) {
        (EventType::Alert, Some(alert)) => format!("alert:{alert}"),
        _ => name.to_owned(),
    };
    let cef_severity = match severity(event) {
        4 => 7,
        5 => 5,
        _ => 3,
    };
    let mut ext: Vec<(&str, String)> = vec![("rt", event.ts.clone())];
    let mut put = |key: &'static str, value: Option<String>| {
        if let Some(v) = value {
            ext.push((key, v));
        }
    };
    put("suser", event.user.clone());
    put("src", event.client_addr.as_ref().map(|a| host_of(a)));
    put("cs1Label", event.role.as_ref().map(|_| "role".into()));
    put("cs1", event.role.clone());
    put(
        "cs2Label",
        event.database.as_ref().map(|_| "database".into()),
    );
    put("cs2", event.database.clone());
    put("cs3Label", event.session.as_ref().map(|_| "session".into()));
    put("cs3", event.session.clone());
    put(
        "act",
        event.outcome.map(|o| format!("{o:?}").to_lowercase()),
    );
    put("outcome", event.sqlstate.clone());
    put("msg", event.statement.clone());
    put("cnt", event.rows.map(|r| r.to_string()));
    put(
        "cs4Label",
        event.columns.as_ref().map(|_| "protected_columns".into()),
    );
    put(
        "cs4",
        event.columns.as_ref().map(|cols| {
            cols.iter()
                .map(|c| format!("{}:{}", c.column, c.action))
                .collect::<Vec<_>>()
                .join(",")
        }),
    );
    put("cs5Label", event.tenant.as_ref().map(|_| "tenant".into()));
    put("cs5", event.tenant.clone());
    put("cn1Label", Some("seq".into()));
    put("cn1", Some(event.seq.to_string()));
    put("cs6Label", Some("chain".into()));
    put("cs6", Some(chain.to_owned()));
    let ext: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", cef_ext_escape(&v)))
        .collect();
    format!(
        "CEF:0|pgshroud|pgshroud|{}|{}|{}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        cef_header_escape(&signature),
        cef_header_escape(name),
        cef_severity,
        ext.join(" ")
    )
}

/// `host:port` or `[v6]:port` -> the host.
pub(super) fn host_of(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']').to_owned(),
        None => addr.to_owned(),
    }
}

pub(super) fn cef_header_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|")
}

pub(super) fn cef_ext_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// An RFC 5424 message with RFC 6587 octet counting: `LEN SP <PRI>1 TS HOST APP PROCID MSGID
/// [SD] MSG`.
pub(super) fn frame(
    q: &Queued,
    hostname: &str,
    app_name: &str,
    procid: &str,
    dropped: u64,
) -> Vec<u8> {
    let mut sd = format!("[{SD_ID} seq=\"{}\" chain=\"{}\"", q.seq, q.chain);
    if dropped > 0 {
        sd.push_str(&format!(" dropped=\"{dropped}\""));
    }
    sd.push(']');
    let head = format!(
        "<{}>1 {} {hostname} {app_name} {procid} {} {sd} ",
        q.pri, q.ts, q.msgid
    );
    let len = head.len() + q.msg.len();
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(format!("{len} ").as_bytes());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&q.msg);
    out
}
