//! Proxy-side authentication (`auth_mode = "proxy"`): SCRAM and md5 arithmetic and the
//! sources of users' verifiers. The conversations with client and server live in `session::login` and
//! `session::pass_through`; this module holds no sockets.

pub mod md5;
pub mod scram;
pub mod secrets;

use std::sync::Arc;

use rand::RngCore as _;
use zeroize::Zeroizing;

use self::secrets::{AuthQuery, SecretSource};
use crate::config::{AuthMode, ClientAuthMethod, SecretSettings, Settings};

/// What every session of a proxy-side-authenticating proxy shares.
pub struct ProxyAuth {
    pub source: SecretSource,
    /// `tls-server-end-point` data of the proxy's own certificate, for SCRAM-SHA-256-PLUS
    /// with clients that came over TLS.
    pub end_point: Option<Vec<u8>>,
    /// Keys the mock exchange for unknown users: random per process, so nobody can tell an
    /// unknown user from a wrong password by the salt.
    pub mock_secret: Zeroizing<[u8; 32]>,
    /// What clients are asked for (`auth_method`).
    pub method: ClientAuthMethod,
}

/// Environment variable with `auth_user`'s password, when `auth_password_file` is not set.
pub const AUTH_PASSWORD_ENV: &str = "PGSHROUD_AUTH_PASSWORD";

impl ProxyAuth {
    /// `None` in relay mode. `upstream_tls` is the sessions' upstream TLS configuration, which
    /// the auth_query connection uses too.
    pub fn new(
        settings: &Settings,
        upstream_tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Option<ProxyAuth>, String> {
        let AuthMode::Proxy(secrets) = &settings.auth_mode else {
            return Ok(None);
        };
        let source = match secrets {
            SecretSettings::File(path) => SecretSource::File(path.clone()),
            SecretSettings::Query {
                user,
                password_file,
                dbname,
                query,
            } => {
                let password = match password_file {
                    Some(path) => Some(Zeroizing::new(
                        std::fs::read_to_string(path)
                            .map_err(|e| {
                                format!(
                                    "invalid setting `auth_password_file`: cannot read {}: {e}",
                                    path.display()
                                )
                            })?
                            .trim_end_matches(['\r', '\n'])
                            .to_owned(),
                    )),
                    None => std::env::var(AUTH_PASSWORD_ENV).ok().map(Zeroizing::new),
                };
                SecretSource::Query(Box::new(AuthQuery::new(
                    &settings.upstream,
                    upstream_tls,
                    user,
                    password.as_deref().map(String::as_str),
                    dbname,
                    query.clone(),
                )))
            }
        };
        let end_point = match &settings.client_tls {
            Some(files) => {
                let certs = crate::net::tls::load_certs(&files.cert)?;
                Some(scram::tls_server_end_point(certs[0].as_ref()))
            }
            None => None,
        };
        let mut mock_secret = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(&mut *mock_secret);
        Ok(Some(ProxyAuth {
            source,
            end_point,
            mock_secret,
            method: settings.auth_method,
        }))
    }
}
