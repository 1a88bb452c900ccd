//! What the database holds for each protected column: a write goes only into bytea storage
//! under the column's guard, and the catalog's problems are logged and counted.

use super::{split_qualified, GuardPolicy, Protection, FEATURE_NOT_SUPPORTED};
use crate::protect::catalog::{Catalog, CatalogColumn};
use crate::protect::codec::ColumnSpec;
use crate::protect::guard::GuardState;
use crate::protocol::error::PgError;

impl Protection {
    /// A write to a protected column goes ahead only into `bytea` storage under its guard
    /// (unless guards are not required): plaintext must never land, whatever the analysis
    /// missed, and a column without the database's own check has nothing behind the proxy.
    pub(super) fn check_writable(
        &self,
        catalog: &Catalog,
        spec: &ColumnSpec,
    ) -> Result<(), PgError> {
        self.check_column_writable(catalog_column(catalog, spec), spec, &spec.qualified)
    }

    /// [`Protection::check_writable`] for the column `qualified` of the database (the
    /// protected column `spec`, or a partition's or child's column holding its values).
    pub(super) fn check_column_writable(
        &self,
        column: Option<&CatalogColumn>,
        spec: &ColumnSpec,
        qualified: &str,
    ) -> Result<(), PgError> {
        if let Some(c) = column.filter(|c| c.type_name != "bytea") {
            return Err(PgError::error(
                FEATURE_NOT_SUPPORTED,
                format!(
                    "column {} is protected but is {} in the database, not bytea: pgshroud refuses to write plaintext into it",
                    qualified, c.type_name
                ),
            )
            .with_hint("Change the column's type to bytea (pgshroud stores ciphertext there), or remove it from the rules file."));
        }
        if self.guards == GuardPolicy::NotRequired {
            return Ok(());
        }
        let per_tenant = self.per_tenant.contains(&spec.context);
        let state = column
            .map(|c| GuardState::of_column(&c.guards, &c.name, spec.context.as_str(), per_tenant));
        if state.as_ref().is_some_and(GuardState::is_guarded) {
            return Ok(());
        }
        let why = match state {
            None => "was not found in the database when this session looked it up".to_owned(),
            Some(state) => format!("has no guard for its key context ({state})"),
        };
        Err(PgError::error(
            UNGUARDED,
            format!(
                "protected column {qualified} {why}: pgshroud writes to no protected column without its guard"
            ),
        )
        .with_hint("Run `pgshroud setup --upstream-url <owner connection> --rules <rules file>`, then reconnect."))
    }

    /// The guard state of every protected column the catalog knows (for logs and metrics).
    pub fn guard_states<'a>(
        &'a self,
        catalog: &'a Catalog,
    ) -> impl Iterator<Item = (&'a ColumnSpec, GuardState)> + 'a {
        self.specs.iter().filter_map(|spec| {
            let column = catalog_column(catalog, spec)?;
            Some((
                &**spec,
                GuardState::of_column(
                    &column.guards,
                    &column.name,
                    spec.context.as_str(),
                    self.per_tenant.contains(&spec.context),
                ),
            ))
        })
    }

    /// Protected columns whose storage type is not `bytea`, that do not exist, or that have
    /// no guard; and how many of them are unguarded.
    pub fn storage_problems(&self, catalog: &Catalog) -> (Vec<String>, usize) {
        let mut problems = Vec::new();
        for spec in &self.specs {
            let Some((schema, table, column)) = split_qualified(&spec.qualified) else {
                continue;
            };
            let Some(t) = catalog.table(schema, table) else {
                continue;
            };
            match t.columns.iter().find(|c| c.name == column) {
                None => problems.push(format!(
                    "protected column {} does not exist in the database",
                    spec.qualified
                )),
                Some(c) if c.type_name != "bytea" => problems.push(format!(
                    "protected column {} is {} in the database, not bytea: writes to it are refused",
                    spec.qualified, c.type_name
                )),
                Some(_) => {}
            }
        }
        let mut unguarded = 0;
        for (spec, state) in self.guard_states(catalog) {
            if state.is_guarded() {
                continue;
            }
            unguarded += 1;
            problems.push(match self.guards {
                GuardPolicy::Required => format!(
                    "protected column {} is not guarded in the database ({state}): writes to it are refused",
                    spec.qualified
                ),
                GuardPolicy::NotRequired => format!(
                    "protected column {} is not guarded in the database ({state}) and require_guard is off: plaintext written around pgshroud would be stored",
                    spec.qualified
                ),
            });
        }
        (problems, unguarded)
    }

    /// Logs the catalog's problems and counts unguarded columns in the metrics.
    pub fn report_problems(&self, catalog: &Catalog, metrics: &crate::ops::metrics::Metrics) {
        let (problems, unguarded) = self.storage_problems(catalog);
        for problem in problems {
            tracing::warn!("{problem}");
        }
        metrics.unguarded_columns(unguarded);
    }
}

/// SQLSTATE of a write refused because the column's guard is missing
/// (object_not_in_prerequisite_state).
pub const UNGUARDED: &str = crate::protocol::error::sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE;

/// The catalog's entry for a protected column, if the table and column exist.
fn catalog_column<'a>(catalog: &'a Catalog, spec: &ColumnSpec) -> Option<&'a CatalogColumn> {
    let (schema, table, column) = split_qualified(&spec.qualified)?;
    catalog
        .table(schema, table)?
        .columns
        .iter()
        .find(|c| c.name == column)
}
