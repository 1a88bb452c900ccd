//! The syslog collector settings (`audit_syslog` and its companions): where audit events go
//! besides (or instead of) the audit file, and how they travel there.

use std::path::PathBuf;

use super::error::{invalid, readable_file, ConfigError};
use super::layer::ConfigLayer;
use super::on_full::{self, OnFull};

/// How events travel to the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls {
        /// CA certificates (PEM) the collector's certificate must chain to.
        ca_file: PathBuf,
        /// Client certificate and key (PEM), for collectors that require one.
        client_cert: Option<(PathBuf, PathBuf)>,
        /// Name checked against the collector's certificate (default: the host).
        server_name: String,
    },
}

/// What the message part of each syslog message holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    /// The audit event's JSON line, chain value included (verifiable).
    Json,
    /// ArcSight Common Event Format, for SIEMs that parse CEF (not verifiable).
    Cef,
}

/// A validated syslog destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogSettings {
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    /// RFC 5424 facility code (0-23).
    pub facility: u8,
    pub app_name: String,
    pub format: MessageFormat,
    pub on_full: OnFull,
    pub queue_size: usize,
}

impl SyslogSettings {
    /// `tcp://host:port` or `tls://host:port` (port defaults: 601, 6514); the error names
    /// `audit_syslog`.
    pub fn parse_url(url: &str) -> Result<(String, u16, bool), ConfigError> {
        let wrong = |problem: String| invalid("audit_syslog", problem);
        let (tls, rest) = if let Some(r) = url.strip_prefix("tcp://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("tls://") {
            (true, r)
        } else {
            return Err(wrong(format!(
                "`{url}` is not tcp://host:port or tls://host:port"
            )));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| wrong(format!("`{p}` in `{url}` is not a port")))?;
                (h, port)
            }
            _ => (rest, if tls { 6514 } else { 601 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(wrong(format!("`{url}` names no host")));
        }
        Ok((host.to_owned(), port, tls))
    }

    /// The collector as the operator wrote it, for logs.
    pub fn address(&self) -> String {
        let scheme = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Tls { .. } => "tls",
        };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

/// Facility names as syslog.conf spells them -> RFC 5424 codes.
pub fn facility_code(name: &str) -> Option<u8> {
    const NAMES: [&str; 16] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "ntp", "audit", "alert", "clock",
    ];
    if let Some(n) = name.strip_prefix("local") {
        return n.parse::<u8>().ok().filter(|n| *n <= 7).map(|n| 16 + n);
    }
    NAMES.iter().position(|n| *n == name).map(|i| i as u8)
}

/// An APP-NAME RFC 5424 accepts: 1 to 48 printable US-ASCII characters, no space.
pub fn valid_app_name(name: &str) -> bool {
    (1..=48).contains(&name.len()) && name.bytes().all(|b| (33..=126).contains(&b))
}

/// `audit_syslog` and its companions; `None` when `audit_syslog` is not set. The queue and,
/// unless `audit_syslog_on_full` says otherwise, the behaviour when full follow the audit file's.
pub(super) fn resolve(
    layer: &ConfigLayer,
    on_full: OnFull,
    queue_size: usize,
) -> Result<Option<SyslogSettings>, ConfigError> {
    let Some(url) = &layer.audit_syslog else {
        for (name, set) in [
            ("audit_syslog_ca_file", layer.audit_syslog_ca_file.is_some()),
            ("audit_syslog_cert", layer.audit_syslog_cert.is_some()),
            (
                "audit_syslog_facility",
                layer.audit_syslog_facility.is_some(),
            ),
            ("audit_syslog_format", layer.audit_syslog_format.is_some()),
        ] {
            if set {
                return Err(invalid(
                    name,
                    "needs audit_syslog (tcp://host:port or tls://host:port)",
                ));
            }
        }
        return Ok(None);
    };
    let (host, port, tls) = SyslogSettings::parse_url(url)?;
    let transport = if tls {
        tls_transport(layer, &host)?
    } else {
        if layer.audit_syslog_ca_file.is_some() || layer.audit_syslog_cert.is_some() {
            return Err(invalid(
                "audit_syslog",
                "certificates are set but the collector is tcp://; use tls://",
            ));
        }
        Transport::Tcp
    };
    let facility_name = layer.audit_syslog_facility();
    let facility = facility_code(&facility_name).ok_or_else(|| {
        invalid(
            "audit_syslog_facility",
            format!("`{facility_name}` is not a syslog facility (e.g. local0 .. local7, auth, authpriv, audit)"),
        )
    })?;
    let app_name = layer.audit_syslog_app_name();
    if !valid_app_name(&app_name) {
        return Err(invalid(
            "audit_syslog_app_name",
            "1 to 48 printable ASCII characters without spaces",
        ));
    }
    let format = match layer.audit_syslog_format().as_str() {
        "json" => MessageFormat::Json,
        "cef" => MessageFormat::Cef,
        other => {
            return Err(invalid(
                "audit_syslog_format",
                format!("`{other}` is not json or cef"),
            ))
        }
    };
    let on_full = on_full::on_full(
        "audit_syslog_on_full",
        layer.audit_syslog_on_full.as_deref(),
    )?
    .unwrap_or(on_full);
    Ok(Some(SyslogSettings {
        host,
        port,
        transport,
        facility,
        app_name,
        format,
        on_full,
        queue_size,
    }))
}

/// The CA, client certificate and name of a `tls://` collector.
fn tls_transport(layer: &ConfigLayer, host: &str) -> Result<Transport, ConfigError> {
    let ca_file = layer.audit_syslog_ca_file();
    readable_file("audit_syslog_ca_file", &ca_file)?;
    let client_cert = match (&layer.audit_syslog_cert, &layer.audit_syslog_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            readable_file("audit_syslog_cert", cert)?;
            readable_file("audit_syslog_key", key)?;
            Some((cert.clone(), key.clone()))
        }
        (Some(_), None) => {
            return Err(invalid(
                "audit_syslog_key",
                "missing; audit_syslog_cert needs it",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "audit_syslog_cert",
                "missing; audit_syslog_key needs it",
            ))
        }
    };
    Ok(Transport::Tls {
        ca_file,
        client_cert,
        server_name: layer
            .audit_syslog_server_name
            .clone()
            .unwrap_or_else(|| host.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_facilities_and_app_names() {
        assert_eq!(
            SyslogSettings::parse_url("tls://siem.example:6514"),
            Ok(("siem.example".into(), 6514, true))
        );
        assert_eq!(
            SyslogSettings::parse_url("tcp://[::1]:1514"),
            Ok(("::1".into(), 1514, false))
        );
        assert_eq!(
            SyslogSettings::parse_url("tcp://collector"),
            Ok(("collector".into(), 601, false))
        );
        assert!(SyslogSettings::parse_url("udp://x:514").is_err());
        assert_eq!(facility_code("local0"), Some(16));
        assert_eq!(facility_code("authpriv"), Some(10));
        assert_eq!(facility_code("local8"), None);
        assert!(valid_app_name("pgshroud"));
        assert!(!valid_app_name("pg shroud"));
    }
}
