//! Which relation an unqualified table name means: PostgreSQL looks it up in the session's
//! effective search path (its temporary schema first, then `pg_catalog` unless listed later,
//! then the path), so the proxy resolves it the same way, or refuses where it cannot be sure.

use std::collections::BTreeSet;

use super::scope::DEFAULT_SCHEMA;

/// What the analyser knows of the session's search path.
///
/// Supplied by the caller with [`super::ProtectedSchema::set_search_path`]; part of what a
/// cached analysis depends on, so callers must key cached plans on it too (it is `Hash`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum SearchPath {
    /// Unqualified names mean `public` (what pgshroud assumed before it read the path).
    #[default]
    AssumePublic,
    /// The session's path is not known (e.g. it changed since it was read): an unqualified
    /// name that is the name of a protected table is refused.
    Unknown,
    /// The effective path and the relations that matter on it.
    Known {
        /// `current_schemas(true)` in order (the session's `pg_temp_N` first when it exists).
        schemas: Vec<String>,
        /// Every (schema, relation) of `pg_class` in those schemas whose name is the name of a
        /// protected table (tables, views, sequences, indexes, ...: any relation PostgreSQL
        /// would find first), names as stored (case kept; they are folded here).
        relations: BTreeSet<(String, String)>,
    },
}

/// What an unqualified name of a protected table resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// This (schema, table).
    Table(String, String),
    /// Maybe the protected (schema, table), maybe another relation: refuse rather than guess.
    Unsure {
        schema: String,
        table: String,
        why: String,
    },
}

impl SearchPath {
    /// Resolves folded unqualified name `table`; `protected` lists the schemas in which a
    /// protected table of that name is declared (never empty: other names need no care).
    pub fn resolve(&self, table: &str, protected: &[&str]) -> Resolution {
        let unsure = |schema: &str, why: String| Resolution::Unsure {
            schema: schema.to_string(),
            table: table.to_string(),
            why,
        };
        let first = protected.first().copied().unwrap_or(DEFAULT_SCHEMA);
        match self {
            SearchPath::AssumePublic => Resolution::Table(DEFAULT_SCHEMA.to_string(), table.into()),
            SearchPath::Unknown => unsure(first, "the session's search_path is not known".into()),
            SearchPath::Known { schemas, relations } => {
                let found = schemas.iter().find(|s| {
                    relations
                        .iter()
                        .any(|(rs, rt)| rs == *s && super::scope::fold_name(rt) == table)
                });
                match found {
                    Some(s) if protected.contains(&super::scope::fold_name(s).as_str()) => {
                        Resolution::Table(super::scope::fold_name(s), table.into())
                    }
                    Some(s) => unsure(
                        first,
                        format!("the relation {s}.{table} comes first in the search_path"),
                    ),
                    None => unsure(
                        first,
                        "no relation of that name was on the search_path when pgshroud looked"
                            .into(),
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(schemas: &[&str], relations: &[(&str, &str)]) -> SearchPath {
        SearchPath::Known {
            schemas: schemas.iter().map(|s| s.to_string()).collect(),
            relations: relations
                .iter()
                .map(|(s, t)| (s.to_string(), t.to_string()))
                .collect(),
        }
    }

    #[test]
    fn first_schema_holding_the_name_wins() {
        let path = known(
            &["pg_catalog", "app", "public"],
            &[("app", "customers"), ("public", "customers")],
        );
        assert_eq!(
            path.resolve("customers", &["app", "public"]),
            Resolution::Table("app".into(), "customers".into())
        );
    }

    #[test]
    fn temp_or_earlier_relation_shadowing_a_protected_one_is_unsure() {
        let path = known(
            &["pg_temp_3", "pg_catalog", "public"],
            &[("pg_temp_3", "customers"), ("public", "customers")],
        );
        assert!(matches!(
            path.resolve("customers", &["public"]),
            Resolution::Unsure { why, .. } if why.contains("pg_temp_3.customers")
        ));
    }

    #[test]
    fn unknown_path_or_missing_relation_is_unsure() {
        assert!(matches!(
            SearchPath::Unknown.resolve("customers", &["public"]),
            Resolution::Unsure { .. }
        ));
        let path = known(&["pg_catalog", "other"], &[("public", "customers")]);
        assert!(matches!(
            path.resolve("customers", &["public"]),
            Resolution::Unsure { .. }
        ));
    }

    #[test]
    fn default_assumes_public() {
        assert_eq!(
            SearchPath::default().resolve("leads", &["crm"]),
            Resolution::Table("public".into(), "leads".into())
        );
    }
}
