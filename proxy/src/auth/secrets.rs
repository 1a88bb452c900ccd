//! Where the proxy finds a user's SCRAM verifier: an `auth_file` of verifiers, or an
//! `auth_query` run over one dedicated, least-privileged connection. Both are read at every
//! login, so a changed password counts from the next login on; verifiers are never cached or
//! logged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::SslMode as ClientSslMode;
use tokio_postgres::{Client, Config};
use zeroize::Zeroizing;

use super::md5::Md5Secret;
use super::scram::Verifier;
use crate::net::upstream_url::{SslMode, UpstreamUrl};

/// What a look-up found.
#[derive(Debug)]
pub enum Secret {
    Scram(Verifier),
    /// An md5 secret: `md5` and 32 hex digits of md5(password || user name).
    Md5(Md5Secret),
    /// No such user, no password, or a secret of another kind (plaintext): the client goes
    /// through a mock exchange and is refused as for a wrong password.
    Unusable,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("cannot read auth_file {0}: {1}")]
    File(PathBuf, std::io::Error),
    #[error("auth_query connection failed: {0}")]
    Connect(String),
    #[error("auth_query failed: {0}")]
    Query(String),
    #[error("auth_query did not answer within {0:?}")]
    Timeout(Duration),
}

/// Where verifiers come from.
pub enum SecretSource {
    File(PathBuf),
    Query(Box<AuthQuery>),
}

impl SecretSource {
    pub async fn lookup(&self, user: &str) -> Result<Secret, LookupError> {
        let secret = match self {
            SecretSource::File(path) => {
                let text = Zeroizing::new(
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|e| LookupError::File(path.clone(), e))?,
                );
                auth_file_entry(&text, user)
            }
            SecretSource::Query(query) => query.lookup(user).await?,
        };
        let Some(text) = secret else {
            return Ok(Secret::Unusable);
        };
        Ok(match (Verifier::parse(&text), Md5Secret::parse(&text)) {
            (Some(verifier), _) => Secret::Scram(verifier),
            (None, Some(md5)) => Secret::Md5(md5),
            (None, None) => Secret::Unusable,
        })
    }
}

/// The secret of `user` in an auth file: PgBouncer's userlist format, one `"user" "secret"`
/// per line, `""` for a quote inside, lines starting with `;` or `#` ignored.
fn auth_file_entry(text: &str, user: &str) -> Option<Zeroizing<String>> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with(';') && !l.starts_with('#'))
        .find_map(|line| {
            let (name, rest) = quoted(line)?;
            if name != user {
                return None;
            }
            let (secret, _) = quoted(rest.trim_start())?;
            Some(Zeroizing::new(secret))
        })
}

/// A leading `"..."` with `""` escapes, and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut rest = text.strip_prefix('"')?;
    let mut value = String::new();
    loop {
        let end = rest.find('"')?;
        value.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('"') {
            Some(after) => {
                value.push('"');
                rest = after;
            }
            None => return Some((value, rest)),
        }
    }
}

/// The `auth_query` over a connection of its own as `auth_user`, opened on first use and
/// again whenever it broke. Look-ups take turns on it; each one is bounded in time.
pub struct AuthQuery {
    config: Config,
    tls: Option<Arc<rustls::ClientConfig>>,
    query: String,
    timeout: Duration,
    client: tokio::sync::Mutex<Option<Client>>,
}

/// PgBouncer's default. It needs a superuser; the README shows a least-privileged function.
pub const DEFAULT_AUTH_QUERY: &str =
    "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1";

impl AuthQuery {
    /// `upstream` gives host, port and TLS (the same as the sessions' upstream connections).
    pub fn new(
        upstream: &UpstreamUrl,
        tls: Option<Arc<rustls::ClientConfig>>,
        user: &str,
        password: Option<&str>,
        dbname: &str,
        query: String,
    ) -> AuthQuery {
        let mut config = Config::new();
        config
            .host(&upstream.host)
            .port(upstream.port)
            .user(user)
            .dbname(dbname)
            .application_name("pgshroud auth_query")
            .connect_timeout(upstream.connect_timeout)
            .ssl_mode(match upstream.sslmode {
                SslMode::Disable => ClientSslMode::Disable,
                SslMode::Prefer => ClientSslMode::Prefer,
                _ => ClientSslMode::Require,
            });
        if let Some(password) = password {
            config.password(password);
        }
        AuthQuery {
            config,
            tls,
            query,
            timeout: upstream.connect_timeout,
            client: tokio::sync::Mutex::new(None),
        }
    }

    async fn lookup(&self, user: &str) -> Result<Option<Zeroizing<String>>, LookupError> {
        let mut slot = self.client.lock().await;
        // A kept connection may have died since its last use (server restart, terminated
        // backend) without the client noticing yet: one retry on a fresh connection.
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            if let Ok(secret) = self.query(client, user).await {
                return Ok(secret);
            }
        }
        *slot = None;
        let client = self.connect().await?;
        let secret = self.query(&client, user).await?;
        *slot = Some(client);
        Ok(secret)
    }

    async fn query(
        &self,
        client: &Client,
        user: &str,
    ) -> Result<Option<Zeroizing<String>>, LookupError> {
        let row = tokio::time::timeout(self.timeout, client.query_opt(&self.query, &[&user]))
            .await
            .map_err(|_| LookupError::Timeout(self.timeout))?
            .map_err(|e| LookupError::Query(describe(&e)))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let column = if row.len() > 1 { 1 } else { 0 };
        row.try_get::<_, Option<String>>(column)
            .map(|secret| secret.map(Zeroizing::new))
            .map_err(|e| LookupError::Query(describe(&e)))
    }

    async fn connect(&self) -> Result<Client, LookupError> {
        let failed = |e: tokio_postgres::Error| LookupError::Connect(describe(&e));
        let connecting = async {
            match &self.tls {
                None => {
                    let (client, connection) = self
                        .config
                        .connect(tokio_postgres::NoTls)
                        .await
                        .map_err(failed)?;
                    tokio::spawn(connection);
                    Ok(client)
                }
                Some(tls) => {
                    let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                    let (client, connection) =
                        self.config.connect(connector).await.map_err(failed)?;
                    tokio::spawn(connection);
                    Ok(client)
                }
            }
        };
        tokio::time::timeout(self.timeout * 2, connecting)
            .await
            .map_err(|_| LookupError::Timeout(self.timeout * 2))?
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_file_finds_the_users_secret_with_quotes_and_comments() {
        let text = "; comment\n# another\n\"alice\" \"SCRAM-SHA-256$4096:c2FsdA==$a:b\"\n\
                    \"bob \"\"the\"\" builder\" \"md5abc\"\n";
        assert_eq!(
            auth_file_entry(text, "alice")
                .as_deref()
                .map(String::as_str),
            Some("SCRAM-SHA-256$4096:c2FsdA==$a:b")
        );
        assert_eq!(
            auth_file_entry(text, "bob \"the\" builder")
                .as_deref()
                .map(String::as_str),
            Some("md5abc")
        );
        assert!(auth_file_entry(text, "carol").is_none());
        assert!(auth_file_entry("\"dave\"\n", "dave").is_none());
    }
}
