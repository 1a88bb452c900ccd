//! Columns the rules mark `migrating` (`pgshroud migrate` is turning them into protected
//! columns, or back): each is served in the form the catalog says the database holds now.
//! Its plaintext type: a plain column (no encryption, no guard needed, reads untouched), so
//! the session is served by the rules without it. `bytea`, or anything else: protected as
//! usual, so a write needs `bytea` under the guard and everything else is refused as for any
//! protected column. The form can change under the session (migrate's swap, from another
//! connection): a statement that may touch such a table is preceded by a catalog look-up.

use std::sync::Arc;

use pgshroud_rules::Rules;

use super::ProtectedSession;
use crate::protect::catalog::Catalog;
use crate::protect::policy::Policy;

/// `schema.table.column` of the migrating columns the database holds in plaintext now, sorted.
pub(crate) fn plain_columns(rules: &Rules, catalog: &Catalog) -> Vec<String> {
    let mut plain = Vec::new();
    for table in &rules.tables {
        let Some(found) = catalog.table(&table.schema, &table.name) else {
            continue;
        };
        for column in table.columns.iter().filter(|c| c.migrating) {
            let holds_plaintext = found
                .columns
                .iter()
                .find(|c| c.name == column.name)
                .is_some_and(|c| c.type_name == column.logical.name());
            if holds_plaintext {
                plain.push(table.qualified_column(column));
            }
        }
    }
    plain.sort();
    plain
}

/// Lower-case names of the tables that have a migrating column (the cheap pre-filter that
/// decides which statements are preceded by a look-up).
pub(crate) fn migrating_tables(rules: &Rules) -> Vec<String> {
    rules
        .tables
        .iter()
        .filter(|t| t.columns.iter().any(|c| c.migrating))
        .map(|t| t.name.to_ascii_lowercase())
        .collect()
}

/// Whether `sql` may name one of `tables` (case-insensitive substring: a false positive costs
/// one look-up, a miss is impossible for a name written plainly or quoted).
pub(crate) fn may_touch(sql: &[u8], tables: &[String]) -> bool {
    tables.iter().any(|name| {
        let name = name.as_bytes();
        !name.is_empty()
            && sql
                .windows(name.len())
                .any(|w| w.eq_ignore_ascii_case(name))
    })
}

impl ProtectedSession {
    /// After a look-up or a reload: serves the migrating columns in the form the catalog says
    /// they are held in. A change of form re-checks prepared statements at their next Bind
    /// (as a reload does).
    /// `rules_changed`: the rules in force were replaced (a reload), so the served rules are
    /// built again even for the same plain columns.
    pub(super) fn serve_migrating(&mut self, rules_changed: bool) {
        let plain = plain_columns(&self.rules_in_force.rules, &self.catalog);
        if plain == self.plain_migrating && !rules_changed {
            return;
        }
        let served = if plain.is_empty() {
            self.rules_in_force.clone()
        } else {
            self.live.served(&self.rules_in_force, &plain)
        };
        if !Arc::ptr_eq(&served, &self.shared) {
            self.plans_epoch += 1;
        }
        if plain != self.plain_migrating {
            tracing::info!(
                plain = ?plain,
                "migrating columns served in the form the database holds them"
            );
        }
        self.plain_migrating = plain;
        self.shared = served;
        self.layout = self.shared.layout(&self.catalog);
        self.harmless.forget();
        // The role's policy follows the whole rules: the read backstop still withholds the
        // envelopes of a column served plain from roles that may not receive them (a session
        // that has not seen the swap yet).
        self.policy = Arc::new(Policy::for_caller(&self.rules_in_force.rules, &self.caller));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
[[tables]]
name = "public.people"
  [[tables.columns]]
  name = "email"
  type = "text"
  migrating = true
  [[tables.columns]]
  name = "born"
  type = "date"
"#;

    fn catalog(email_type: &str) -> Catalog {
        let row = |attnum: &str, name: &str, ty: &str| {
            ["42", "public", "people", attnum, name, ty]
                .map(|v| Some(v.to_owned()))
                .to_vec()
        };
        Catalog::from_rows(vec![
            row("1", "email", email_type),
            row("2", "born", "bytea"),
        ])
    }

    #[test]
    fn a_migrating_column_is_plain_only_while_it_has_its_plaintext_type() {
        let rules = pgshroud_rules::parse(RULES, "rules.toml").unwrap();
        assert_eq!(
            plain_columns(&rules, &catalog("text")),
            ["public.people.email"]
        );
        // Swapped (bytea), or a type that is neither: protected, so writes are refused
        // unless it is bytea under its guard.
        assert!(plain_columns(&rules, &catalog("bytea")).is_empty());
        assert!(plain_columns(&rules, &catalog("varchar")).is_empty());
        assert!(plain_columns(&rules, &Catalog::default()).is_empty());
        let served =
            crate::protect::live::rules_without(&rules, &["public.people.email".to_owned()]);
        let names: Vec<&str> = served.tables[0]
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["born"]);
    }

    #[test]
    fn the_pre_filter_finds_the_table_in_any_case() {
        let rules = pgshroud_rules::parse(RULES, "rules.toml").unwrap();
        let tables = migrating_tables(&rules);
        assert_eq!(tables, ["people"]);
        assert!(may_touch(b"SELECT * FROM \"People\" WHERE x = 1", &tables));
        assert!(!may_touch(b"select 1", &tables));
        assert!(!may_touch(b"select 1", &[]));
    }
}
