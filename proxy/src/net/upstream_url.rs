//! The upstream server address: `postgres://host[:port]?sslmode=...&sslrootcert=...`.
//! Credentials and the database come from each client, so the URL carries neither.

use std::path::PathBuf;
use std::time::Duration;

/// libpq's `sslmode` values that make sense for a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS if the server offers it, without verification; plain otherwise.
    Prefer,
    /// TLS required; the certificate is checked only when a CA file is given (as libpq does).
    Require,
    /// TLS required, the certificate chain must lead to the CA file.
    VerifyCa,
    /// Like `VerifyCa`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where and how to reach PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub host: String,
    pub port: u16,
    pub sslmode: SslMode,
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl UpstreamUrl {
    /// Parses the URL; the error says what is wrong and what to write instead.
    pub fn parse(url: &str) -> Result<UpstreamUrl, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| {
                format!(
                    "`{url}` must start with postgres:// (e.g. postgres://db:5432?sslmode=prefer)"
                )
            })?;
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match authority.split_once('/') {
            Some((a, p)) => (a, p),
            None => (authority, ""),
        };
        if authority.contains('@') {
            return Err("remove `user:password@`: credentials are relayed from each client".into());
        }
        if !path.is_empty() {
            return Err(format!(
                "remove `/{path}`: the database is chosen by each client"
            ));
        }
        let (host, port) = split_host_port(authority)?;
        let mut parsed = UpstreamUrl {
            host,
            port,
            sslmode: SslMode::Prefer,
            ca_file: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            parsed.apply_param(key, value)?;
        }
        if matches!(parsed.sslmode, SslMode::VerifyCa | SslMode::VerifyFull)
            && parsed.ca_file.is_none()
        {
            return Err(format!(
                "sslmode={} needs sslrootcert=/path/to/ca.pem (or upstream_ca_file) to verify the server",
                parsed.sslmode.as_str()
            ));
        }
        Ok(parsed)
    }

    fn apply_param(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "sslmode" => {
                self.sslmode = SslMode::parse(value).ok_or_else(|| {
                    format!("sslmode `{value}` is not one of disable, prefer, require, verify-ca, verify-full")
                })?
            }
            "sslrootcert" => self.ca_file = Some(PathBuf::from(value)),
            "connect_timeout" => {
                let secs: u64 = value
                    .parse()
                    .map_err(|_| format!("connect_timeout `{value}` is not a whole number of seconds"))?;
                self.connect_timeout = Duration::from_secs(secs.max(1));
            }
            other => {
                return Err(format!(
                    "unknown parameter `{other}`; supported: sslmode, sslrootcert, connect_timeout"
                ))
            }
        }
        Ok(())
    }

    /// `host:port` for connecting (IPv6 hosts in brackets).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    if authority.is_empty() {
        return Err("missing host (e.g. postgres://db:5432)".into());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed `[` in IPv6 address")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 5432,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port `{p}` is not a number from 1 to 65535"))?,
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_with_default_sslmode_prefer() {
        let u = UpstreamUrl::parse("postgres://db.internal:6543").unwrap();
        assert_eq!(u.host, "db.internal");
        assert_eq!(u.port, 6543);
        assert_eq!(u.sslmode, SslMode::Prefer);
        assert_eq!(u.address(), "db.internal:6543");
    }

    #[test]
    fn port_defaults_to_5432_and_ipv6_is_bracketed() {
        let u = UpstreamUrl::parse("postgresql://[::1]?sslmode=disable").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.port, 5432);
        assert_eq!(u.address(), "[::1]:5432");
        assert_eq!(u.sslmode, SslMode::Disable);
    }

    #[test]
    fn verify_full_needs_a_ca_file() {
        let err = UpstreamUrl::parse("postgres://db?sslmode=verify-full").unwrap_err();
        assert!(err.contains("sslrootcert"), "{err}");
        let u =
            UpstreamUrl::parse("postgres://db?sslmode=verify-full&sslrootcert=/ca.pem").unwrap();
        assert_eq!(u.ca_file, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn credentials_and_database_are_refused() {
        assert!(UpstreamUrl::parse("postgres://u:p@db")
            .unwrap_err()
            .contains("credentials"));
        assert!(UpstreamUrl::parse("postgres://db/shop")
            .unwrap_err()
            .contains("database"));
    }

    #[test]
    fn bad_values_are_named() {
        assert!(UpstreamUrl::parse("mysql://db")
            .unwrap_err()
            .contains("postgres://"));
        assert!(UpstreamUrl::parse("postgres://db:99999")
            .unwrap_err()
            .contains("99999"));
        assert!(UpstreamUrl::parse("postgres://db?sslmode=maybe")
            .unwrap_err()
            .contains("maybe"));
        assert!(UpstreamUrl::parse("postgres://db?pool=1")
            .unwrap_err()
            .contains("pool"));
    }
}
