//! The verified identity handed to PostgreSQL for row-level security: `pgshroud.user`,
//! `pgshroud.role` and `pgshroud.tenant`, sent as startup parameters of the upstream
//! connection. A startup parameter is the session's default, so `RESET`, `RESET ALL` and
//! `DISCARD ALL` (which poolers send) put pgshroud's values back, never leave them unset; a
//! client's own startup packet may not name them.

use pgshroud_rules::{Identity, Rules};

use crate::analyze::identity_settings::TENANT;
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::startup::StartupMessage;

pub const USER: &str = "pgshroud.user";
pub const ROLE: &str = "pgshroud.role";

/// The identity settings' values for a session (`tenant` empty when none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySettings {
    pub user: String,
    pub role: String,
    pub tenant: String,
}

impl IdentitySettings {
    /// What the rules say of `who` before login: its role (matched without PostgreSQL role
    /// memberships, which are looked up only once logged in) and its tenant.
    pub fn for_caller(rules: &Rules, who: &Identity) -> IdentitySettings {
        IdentitySettings {
            user: who.user.to_owned(),
            role: rules.role_for(who).name.clone(),
            tenant: rules.tenant_for(who).unwrap_or_default().to_owned(),
        }
    }

    /// `startup` with the settings added as parameters, for the upstream connection.
    pub fn upstream_startup(&self, startup: &StartupMessage) -> StartupMessage {
        let mut upstream = startup.clone();
        for (name, value) in [
            (USER, &self.user),
            (ROLE, &self.role),
            (TENANT, &self.tenant),
        ] {
            upstream.params.insert(name.to_owned(), value.clone());
        }
        upstream
    }
}

/// A client's startup packet may not set an identity setting: not as a parameter (PostgreSQL
/// folds names to lower case), and not in `options` (`-c pgshroud.tenant=x`,
/// `--pgshroud.tenant=x`, as `PGOPTIONS` sends it). Any mention of the prefix counts: the
/// options string is not parsed, so nothing it could spell slips through. PostgreSQL's
/// `pg_split_opts` reads a backslash as escaping the next character (`pgs\hroud.tenant` is
/// `pgshroud.tenant`), so backslashes are removed before looking.
pub fn check_client_startup(startup: &StartupMessage) -> Result<(), PgError> {
    let mentions = |text: &str| {
        text.replace('\\', "")
            .to_ascii_lowercase()
            .contains("pgshroud")
    };
    let named = startup
        .params
        .iter()
        .find(|(name, value)| mentions(name) || (name.as_str() == "options" && mentions(value)));
    match named {
        None => Ok(()),
        Some((name, _)) => Err(PgError::fatal(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!(
                "permission denied to set pgshroud's identity settings in the startup packet (parameter \"{name}\")"
            ),
        )
        .with_hint("pgshroud sets pgshroud.user, pgshroud.role and pgshroud.tenant from the identity it verified; remove them from the connection's options or PGOPTIONS.")),
    }
}

/// The statement that sets `pgshroud.role` for the session, when the role known after login
/// (with PostgreSQL role memberships) differs from the startup parameter's. The name comes
/// from the rules file: quoted as an escape string literal, which reads the same whatever
/// `standard_conforming_strings` the client asked for.
pub fn set_role_statement(role: &str) -> Option<String> {
    if role.contains('\0') {
        return None;
    }
    let quoted = role.replace('\\', "\\\\").replace('\'', "''");
    Some(format!(
        "SELECT pg_catalog.set_config('{ROLE}', E'{quoted}', false)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn startup(params: &[(&str, &str)]) -> StartupMessage {
        StartupMessage {
            version: crate::protocol::startup::ProtocolVersion { major: 3, minor: 0 },
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_client_startup_naming_the_settings_is_refused() {
        for params in [
            &[("user", "app"), ("pgshroud.tenant", "acme")][..],
            &[("user", "app"), ("PGSHROUD.Role", "admin")],
            &[("user", "app"), ("options", "-c pgshroud.tenant=acme")],
            &[("user", "app"), ("options", "--PgShroud.tenant=acme")],
            &[
                ("user", "app"),
                ("options", "-c\\ x=1 -cpgshroud.user=root"),
            ],
            &[("user", "app"), ("options", r"-c pgs\hroud.tenant=acme")],
            &[("user", "app"), ("options", r"--PG\Shr\oud.role=admin")],
        ] {
            let error = check_client_startup(&startup(params)).unwrap_err();
            assert_eq!(error.code, sqlstate::INSUFFICIENT_PRIVILEGE, "{params:?}");
        }
        let ok = startup(&[("user", "app"), ("options", "-c search_path=app")]);
        assert!(check_client_startup(&ok).is_ok());
    }

    #[test]
    fn the_settings_are_added_to_the_upstream_startup() {
        let settings = IdentitySettings {
            user: "app".into(),
            role: "support".into(),
            tenant: String::new(),
        };
        let upstream = settings.upstream_startup(&startup(&[("user", "app")]));
        assert_eq!(
            upstream.params.get(ROLE).map(String::as_str),
            Some("support")
        );
        assert_eq!(upstream.params.get(TENANT).map(String::as_str), Some(""));
        let encoded: BytesMut = upstream.encode_v3();
        assert!(encoded.windows(14).any(|w| w == b"pgshroud.user\0"));
    }

    #[test]
    fn a_role_name_is_quoted_for_any_string_setting() {
        assert_eq!(
            set_role_statement(r"o'k\x").unwrap(),
            r"SELECT pg_catalog.set_config('pgshroud.role', E'o''k\\x', false)"
        );
        assert!(set_role_statement("a\0b").is_none());
    }
}
