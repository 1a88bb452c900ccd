//! The operator's own connection to PostgreSQL, for `pgshroud setup` and `pgshroud check
//! --upstream-url`: a libpq-style URL with the operator's credentials (the proxy itself never
//! holds any), TLS as `sslmode` says.

use std::path::PathBuf;

use tokio_postgres::config::SslMode as ClientSslMode;
use tokio_postgres::{Client, Config};

use crate::net::tls;
use crate::net::upstream_url::SslMode;

/// Connects with `url` (`postgres://user[:password]@host[:port]/db?sslmode=...&sslrootcert=...`).
/// Without a password in the URL, `PGPASSWORD` is used when set.
pub async fn connect(url: &str) -> Result<Client, String> {
    let (url, mode, ca) = split_tls_params(url)?;
    let mut config: Config = url
        .parse()
        .map_err(|e| format!("--upstream-url: {e} (write postgres://user@host:port/database)"))?;
    if config.get_password().is_none() {
        if let Ok(password) = std::env::var("PGPASSWORD") {
            config.password(password);
        }
    }
    config.ssl_mode(match mode {
        SslMode::Disable => ClientSslMode::Disable,
        SslMode::Prefer => ClientSslMode::Prefer,
        _ => ClientSslMode::Require,
    });
    let tls = tls::upstream_config(mode, ca.as_deref())?;
    let failed = |e: tokio_postgres::Error| format!("cannot connect to PostgreSQL: {}", reason(&e));
    let client = match tls {
        None => {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(failed)?;
            tokio::spawn(connection);
            client
        }
        Some(tls) => {
            let connector = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
            let (client, connection) = config.connect(connector).await.map_err(failed)?;
            tokio::spawn(connection);
            client
        }
    };
    Ok(client)
}

/// The server's message of an error (with its SQLSTATE), else the error's own text.
pub fn reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Takes `sslmode` and `sslrootcert` out of the URL (this side verifies certificates, with the
/// same rules as the proxy's upstream connection) and hands the rest to the client.
fn split_tls_params(url: &str) -> Result<(String, SslMode, Option<PathBuf>), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut mode = SslMode::Prefer;
    let mut ca = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) => {
                mode = SslMode::parse(value).ok_or_else(|| {
                    format!("sslmode `{value}` is not one of disable, prefer, require, verify-ca, verify-full")
                })?
            }
            Some(("sslrootcert", value)) => ca = Some(PathBuf::from(value)),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, mode, ca))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out() {
        let (url, mode, ca) = split_tls_params(
            "postgres://owner@db:5432/shop?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(url, "postgres://owner@db:5432/shop?connect_timeout=5");
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(ca, Some(PathBuf::from("/ca.pem")));
        let (url, mode, _) = split_tls_params("postgres://owner@db/shop").unwrap();
        assert_eq!(
            (url.as_str(), mode),
            ("postgres://owner@db/shop", SslMode::Prefer)
        );
        assert!(split_tls_params("postgres://db/x?sslmode=sometimes").is_err());
    }
}
