//! Literal and parameter sites of compared protected columns while several key versions are
//! live: which sites are compared (read by `versions`), and their text sealed under every
//! live version. With one live version every site is written as before.

use super::versions;
pub use super::versions::SiteRole;
use super::{Protection, FEATURE_NOT_SUPPORTED};
use crate::analyze::{ColumnId, StatementInfo, Usage};
use crate::protect::codec::ColumnSpec;
use crate::protect::every_version::{self, Splice};
use crate::protocol::error::PgError;

/// The roles of one statement's literal and parameter sites, in their order.
pub(super) struct SiteRoles {
    pub literals: Vec<SiteRole>,
    pub params: Vec<SiteRole>,
}

impl Protection {
    /// Per statement, the role of each literal and parameter site: all written while one key
    /// version is live (nothing changes then); else read from the text where the statement
    /// compares the site's column with supplied values.
    pub(super) fn site_roles(
        &self,
        sql: &str,
        statements: &[StatementInfo],
        tenant: Option<&str>,
    ) -> Result<Vec<SiteRoles>, PgError> {
        let mut roles: Vec<SiteRoles> = statements
            .iter()
            .map(|s| SiteRoles {
                literals: vec![SiteRole::Written; s.literals.len()],
                params: vec![SiteRole::Written; s.params.len()],
            })
            .collect();
        if self.keys.versions().len() < 2 && self.tenant_versions(tenant) < 2 {
            return Ok(roles);
        }
        let compared = |s: &StatementInfo, column: ColumnId| {
            s.columns
                .iter()
                .any(|u| u.column == column && u.usage == Usage::CompareValue)
        };
        let mut ranges = Vec::new();
        for s in statements {
            let literals = s.literals.iter().filter(|l| compared(s, l.column));
            ranges.extend(literals.map(|l| l.span.clone()));
            let params = s.params.iter().filter(|p| compared(s, p.column));
            ranges.extend(params.map(|p| p.span.clone()));
        }
        if ranges.is_empty() {
            return Ok(roles);
        }
        let mut found = versions::roles(sql, &ranges)?.into_iter();
        for (s, r) in statements.iter().zip(&mut roles) {
            for (l, role) in s.literals.iter().zip(&mut r.literals) {
                if compared(s, l.column) {
                    *role = found.next().unwrap_or(SiteRole::Written);
                }
            }
            for (p, role) in s.params.iter().zip(&mut r.params) {
                if compared(s, p.column) {
                    *role = found.next().unwrap_or(SiteRole::Written);
                }
            }
        }
        Ok(roles)
    }

    /// The text of a compared `$n` while several key versions are live: its Bind value is
    /// then a `bytea[]` of one envelope per version (per element, for an array).
    pub(super) fn param_every_version(
        &self,
        spec: &ColumnSpec,
        n: usize,
        array: bool,
        how: Splice,
        tenant: Option<&str>,
    ) -> Result<String, PgError> {
        let versions = self.live_versions_of(spec, tenant);
        Ok(match (how, array) {
            (Splice::AnyOf, false) => format!("ANY(${n}::bytea[])"),
            (Splice::AllOf, false) => format!("ALL(${n}::bytea[])"),
            (Splice::Items, false) => (1..=versions)
                .map(|i| format!("(${n}::bytea[])[{i}]"))
                .collect::<Vec<_>>()
                .join(", "),
            (Splice::Array, true) => format!("${n}::bytea[]"),
            _ => {
                return Err(PgError::error(
                    FEATURE_NOT_SUPPORTED,
                    format!(
                        "while several key versions are live (a key rotation), pgshroud cannot match parameter ${n} with protected column {} under every version",
                        spec.qualified
                    ),
                ))
            }
        })
    }

    pub(super) fn seal_literal_every_version(
        &self,
        spec: &ColumnSpec,
        value: Option<&str>,
        array: bool,
        how: Splice,
        tenant: Option<&str>,
    ) -> Result<String, PgError> {
        let mut tenant_cipher = self.tenant_cipher(spec, tenant)?;
        let mut ciphers = self.planning_ciphers()?;
        let cipher = match &mut tenant_cipher {
            Some(cipher) => cipher,
            None => ciphers.get(&spec.context),
        };
        every_version::literal(spec, cipher, value, array, how)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{GuardPolicy, PlanAction};
    use super::*;
    use crate::crypto::{KeyRing, KeyVersion, MasterKey};
    use crate::protect::catalog::Catalog;

    fn protection(versions: u32) -> Protection {
        let rules = pgshroud_rules::parse(
            r#"
[[tables]]
name = "public.t"
  [[tables.columns]]
  name = "email"
  type = "text"
  [[tables.columns]]
  name = "flag"
  type = "bool"
"#,
            "rules.toml",
        )
        .expect("rules");
        let masters = (1..=versions).map(|v| {
            (
                KeyVersion::new(v),
                MasterKey::from_bytes(&[v as u8; 32]).unwrap(),
            )
        });
        let ring = KeyRing::new(KeyVersion::new(versions), masters).unwrap();
        Protection::new(rules, Arc::new(ring), GuardPolicy::NotRequired)
    }

    /// The text sent for `sql`, each envelope shown as `<vN>` (its key version).
    fn sent(p: &Protection, sql: &str) -> (String, Vec<bool>) {
        let catalog = Catalog::default();
        let plan = p.plan(sql, &p.layout(&catalog), &catalog);
        let PlanAction::Rewrite(text) = &plan.action else {
            panic!("{sql}: {:?}", plan.action)
        };
        let mut out = String::new();
        for (i, piece) in text.split("E'\\\\x").enumerate() {
            if i == 0 {
                out.push_str(piece);
                continue;
            }
            let end = piece.find('\'').expect("end of envelope");
            out.push_str(&format!("<v{}>", &piece[9..10]));
            out.push_str(&piece[end + 1..]);
        }
        let every = plan
            .params
            .iter()
            .map(|p| p.as_ref().is_some_and(|p| p.every_version))
            .collect();
        (out, every)
    }

    #[test]
    fn with_two_live_versions_compared_values_match_both_and_written_ones_use_the_active() {
        let p = protection(2);
        assert_eq!(
            sent(&p, "SELECT id FROM t WHERE email = 'a'").0,
            "SELECT id FROM t WHERE email = ANY(ARRAY[<v2>::bytea, <v1>::bytea]::bytea[])"
        );
        assert_eq!(
            sent(&p, "SELECT id FROM t WHERE email <> $1"),
            (
                "SELECT id FROM t WHERE email <> ALL($1::bytea[])".into(),
                vec![true]
            )
        );
        assert_eq!(
            sent(&p, "SELECT id FROM t WHERE email IN ('a', $1)").0,
            "SELECT id FROM t WHERE email IN (<v2>::bytea, <v1>::bytea, ($1::bytea[])[1], ($1::bytea[])[2])"
        );
        assert_eq!(
            sent(&p, "SELECT id FROM t WHERE email = ANY($1)"),
            (
                "SELECT id FROM t WHERE email = ANY($1::bytea[])".into(),
                vec![true]
            )
        );
        assert_eq!(
            sent(&p, "UPDATE t SET email = $1 WHERE email = $2"),
            (
                "UPDATE t SET email = $1::bytea WHERE email = ANY($2::bytea[])".into(),
                vec![false, true]
            )
        );
        assert_eq!(
            sent(
                &p,
                "INSERT INTO t (email) VALUES ('a') ON CONFLICT (email) DO NOTHING"
            )
            .0,
            "INSERT INTO t (email) VALUES (<v2>::bytea) ON CONFLICT (email) DO NOTHING"
        );
        assert_eq!(
            sent(&p, "SELECT id FROM t WHERE flag").0,
            "SELECT id FROM t WHERE (flag = ANY(ARRAY[<v2>::bytea, <v1>::bytea]::bytea[]))"
        );
    }

    #[test]
    fn with_one_live_version_nothing_changes() {
        let p = protection(1);
        assert_eq!(
            sent(&p, "SELECT id FROM t WHERE email = 'a' OR email IN ($1)"),
            (
                "SELECT id FROM t WHERE email = <v1>::bytea OR email IN ($1::bytea)".into(),
                vec![false]
            )
        );
    }

    #[test]
    fn a_parameter_both_written_and_compared_is_refused_while_versions_differ() {
        let p = protection(2);
        let catalog = Catalog::default();
        let sql = "UPDATE t SET email = $1 WHERE email = $1";
        let plan = p.plan(sql, &p.layout(&catalog), &catalog);
        let PlanAction::Refused(error) = &plan.action else {
            panic!("{:?}", plan.action)
        };
        assert_eq!(error.code, FEATURE_NOT_SUPPORTED);
    }
}
