//! Tenants: how a session's tenant is known. A `[[tenants]]` entry gives sessions whose user
//! or certificate subject matches a fixed tenant (first entry in file order wins); a role with
//! `choose_tenant = true` may instead name one per request (`SET pgshroud.tenant = 'acme'`),
//! as multi-tenant applications sharing one pool need. Columns marked `per_tenant` are sealed
//! with that tenant's own key.

use crate::glob::Glob;
use crate::role::Identity;

/// Longest tenant id: it is a file name, a setting value and part of key derivation.
pub const MAX_TENANT_ID_LEN: usize = 63;

/// A `[[tenants]]` entry: sessions matching it belong to `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRule {
    pub id: String,
    /// PostgreSQL user names (`*` globs).
    pub users: Vec<Glob>,
    /// TLS client-certificate subjects (`*` globs).
    pub cert_subjects: Vec<Glob>,
}

impl TenantRule {
    pub fn matches(&self, who: &Identity) -> bool {
        self.users.iter().any(|g| g.matches(who.user))
            || match who.cert_subject {
                Some(subject) => self.cert_subjects.iter().any(|g| g.matches(subject)),
                None => false,
            }
    }
}

/// Whether `id` can name a tenant: 1 to 63 ASCII letters, digits, `_`, `-` or `.`, starting
/// with a letter or digit. Ids become file names, setting values and key-derivation input, so
/// nothing that needs quoting or could walk a path (`..`, `/`) is accepted, from the rules file
/// or from a client's `SET pgshroud.tenant`.
pub fn is_valid_tenant_id(id: &str) -> bool {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    !id.is_empty()
        && id.len() <= MAX_TENANT_ID_LEN
        && id.chars().all(valid)
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_plain_names() {
        for good in ["acme", "t1", "acme-eu.2", "A_b", &"a".repeat(63)] {
            assert!(is_valid_tenant_id(good), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "..",
            "a/b",
            "a b",
            "a'b",
            "é",
            "a\u{0}",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_tenant_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_rule_matches_users_and_subjects() {
        let rule = TenantRule {
            id: "acme".into(),
            users: vec![Glob::new("acme_*").unwrap()],
            cert_subjects: vec![Glob::new("CN=*.acme.example").unwrap()],
        };
        let who = |user, subject| Identity {
            user,
            pg_roles: &[],
            cert_subject: subject,
        };
        assert!(rule.matches(&who("acme_app", None)));
        assert!(rule.matches(&who("other", Some("CN=api.acme.example"))));
        assert!(!rule.matches(&who("globex_app", None)));
        assert!(!rule.matches(&who("other", Some("CN=api.globex.example"))));
    }
}
