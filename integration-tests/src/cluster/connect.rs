//! Connection strings and clients straight to the test cluster, over TCP with or without TLS.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{PgCluster, HOST};

impl PgCluster {
    /// Upstream URL without TLS: `postgres://127.0.0.1:PORT?sslmode=disable`.
    pub fn url(&self) -> String {
        format!("postgres://{HOST}:{}?sslmode=disable", self.port)
    }

    /// Upstream URL with TLS in `sslmode` and the test CA as `sslrootcert`. The host is
    /// `localhost`, so `verify-full` checks a DNS name (the certificate also names 127.0.0.1).
    pub fn tls_url(&self, sslmode: &str) -> String {
        format!(
            "postgres://localhost:{}?sslmode={sslmode}&sslrootcert={}",
            self.port,
            self.ca_cert_path.display()
        )
    }

    /// A key=value connection string straight to the cluster over TCP, without TLS. Values are
    /// quoted, so an empty password (trust_user) is fine. Understood by libpq and tokio-postgres.
    pub fn conn_string(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host={HOST} port={} user={} password={} dbname={} sslmode=disable",
            self.port,
            quote(user),
            quote(password),
            quote(db)
        )
    }

    /// A connection string for TLS straight to the cluster with tokio-postgres: host
    /// `localhost`, `sslmode=require`. Together with [`PgCluster::tls_connector`] (rustls
    /// checks the chain and the host name) this is what libpq calls `verify-full`.
    pub fn tls_conn_string(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host=localhost port={} user={} password={} dbname={} sslmode=require",
            self.port,
            quote(user),
            quote(password),
            quote(db)
        )
    }

    /// A tokio-postgres TLS connector that trusts only the cluster's CA.
    pub fn tls_connector(&self) -> MakeRustlsConnect {
        MakeRustlsConnect::new(self.ca.client_config())
    }

    /// Connects straight to the cluster over TCP without TLS. The connection is driven by a
    /// task on the current tokio runtime.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.conn_string(user, password, db), NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Connects straight to the cluster over TLS, verifying its certificate against the CA and
    /// the name `localhost`.
    pub async fn connect_tls(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let conn = self.tls_conn_string(user, password, db);
        let (client, connection) = tokio_postgres::connect(&conn, self.tls_connector()).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// A connection-string value in single quotes, with `\` and `'` escaped (libpq rules), so
/// empty values and spaces stay intact.
impl PgCluster {
    /// A fresh login role (`<prefix>_<n>`, unique in this process) with a SCRAM verifier for
    /// `password`, member of [`users::TLS_ONLY`](super::users::TLS_ONLY): pg_hba admits it over
    /// TCP only with TLS.
    pub async fn tls_only_role(&self, prefix: &str, password: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!("{prefix}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.admin_client()
            .await
            .batch_execute(&format!(
                "CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE {}",
                super::users::TLS_ONLY
            ))
            .await
            .expect("create role");
        name
    }
}

pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_survive_empty_strings_quotes_and_backslashes() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote(r"a'b\c"), r"'a\'b\\c'");
    }

    #[test]
    fn tls_and_plain_connection_strings_parse_in_tokio_postgres() {
        let plain = format!(
            "host={HOST} port=1 user={} password={} dbname=db sslmode=disable",
            quote("u"),
            quote("")
        );
        let config: tokio_postgres::Config = plain.parse().expect("parses");
        assert_eq!(config.get_password(), Some(&b""[..]));
        assert_eq!(config.get_dbname(), Some("db"));
    }
}
