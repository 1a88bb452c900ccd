//! Statement plans: what the analysis of a text means for the wire (forward, rewrite with
//! sealed literals and bytea parameters, or refuse), built once per text and layout and cached.

use std::sync::Arc;

use super::compared_sites::SiteRole;
use super::{Layout, Protection, FEATURE_NOT_SUPPORTED};
use crate::analyze::{self, Analysis, ColumnId, LinkKind, StatementInfo, Usage};
use crate::protect::catalog::Catalog;
use crate::protect::codec::{self, ColumnSpec, Spec};
use crate::protocol::error::PgError;

/// A protected `$n` parameter.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub spec: Spec,
    /// `c = ANY($n)`: the value is an array of the column's values.
    pub array: bool,
    /// Compared while several key versions are live: bound as a `bytea[]` of the value's
    /// envelopes under every live version (of every element's, for an array).
    pub every_version: bool,
}

/// What to do with a statement that mentions a protected table.
#[derive(Debug)]
pub struct Plan {
    pub action: PlanAction,
    /// Protected parameters by position (`$1` is index 0).
    pub params: Vec<Option<ParamSpec>>,
    /// Per statement of the text: the analysis (kind, tables, outputs, COPY).
    pub statements: Vec<StatementInfo>,
    /// Every protected column the text touches, and how.
    pub columns: Vec<(Spec, Usage)>,
    /// The text changes the schema: the catalog must be looked up again afterwards.
    pub refreshes_catalog: bool,
    /// Protected columns of tables whose rows the text removes or that it changes as a whole
    /// (DELETE, TRUNCATE, DDL): the role needs their write right.
    pub table_writes: Vec<Spec>,
    /// Protected columns the text compares with each other, merges into one result column
    /// or copies into each other (`Copied`: the first is the target).
    pub links: Vec<(Spec, Spec, LinkKind)>,
    /// Protected columns that views the text names compute outputs from (not plain
    /// references): a role must be able to read each of them as stored or in plaintext.
    pub computed: Vec<Spec>,
}

#[derive(Debug)]
pub enum PlanAction {
    /// Send the text as the client wrote it.
    Forward,
    /// Send this text instead (protected literals replaced by ciphertext, casts on protected
    /// parameters replaced by `bytea`).
    Rewrite(String),
    /// Refused before it reaches PostgreSQL.
    Refused(PgError),
}

impl Plan {
    pub(super) fn refused(error: PgError) -> Plan {
        Plan {
            action: PlanAction::Refused(error),
            params: Vec::new(),
            statements: Vec::new(),
            columns: Vec::new(),
            refreshes_catalog: false,
            table_writes: Vec::new(),
            links: Vec::new(),
            computed: Vec::new(),
        }
    }

    /// The protected column behind each output position of statement `index`.
    pub fn outputs(&self, index: usize) -> Option<&[Option<ColumnId>]> {
        self.statements.get(index).map(|s| s.outputs.as_slice())
    }
}

/// Where each edit of a rewritten text comes from: a literal sealed (its column, role and
/// (statement, literal) in the plan), or fixed text.
#[derive(Debug)]
pub(super) enum Origin {
    Sealed {
        spec: Spec,
        role: SiteRole,
        site: (usize, usize),
        array: bool,
    },
    Fixed(String),
}

/// The edits of a plan's text by origin, in the order the full path made them.
pub(super) type Recipe = Vec<(std::ops::Range<usize>, Origin)>;

impl Protection {
    /// A full analysis and plan of `sql` for a session of `tenant`, with the origins of its
    /// edits (`None` when the plan is a refusal: a refusal is never made a template).
    pub(super) fn build(
        &self,
        sql: &str,
        layout: &Layout,
        catalog: &Catalog,
        tenant: Option<&str>,
    ) -> (Plan, Option<Recipe>) {
        let statements = match analyze::analyze(sql, &layout.schema) {
            Analysis::Refused(r) => {
                return (Plan::refused(PgError::error(r.sqlstate, r.message)), None)
            }
            Analysis::Untouched { mut statements } => {
                for statement in &mut statements {
                    to_protected_tables(layout, statement);
                }
                let plan = Plan {
                    action: PlanAction::Forward,
                    params: Vec::new(),
                    refreshes_catalog: refreshes_catalog(&statements),
                    table_writes: self.table_writes(&statements),
                    links: Vec::new(),
                    computed: self.computed(layout, &statements),
                    statements,
                    columns: Vec::new(),
                };
                return (plan, Some(Recipe::new()));
            }
            Analysis::Protected { mut statements } => {
                for statement in &mut statements {
                    if let Err(error) = self.check_child_writes(layout, catalog, statement) {
                        return (Plan::refused(error), None);
                    }
                    to_protected_columns(layout, statement);
                    to_protected_tables(layout, statement);
                }
                statements
            }
        };
        let computed = self.computed(layout, &statements);
        match self.rewrite(sql, statements, catalog, tenant) {
            Ok((plan, recipe)) => (Plan { computed, ..plan }, Some(recipe)),
            Err(error) => (Plan::refused(error), None),
        }
    }

    fn rewrite(
        &self,
        sql: &str,
        statements: Vec<StatementInfo>,
        catalog: &Catalog,
        tenant: Option<&str>,
    ) -> Result<(Plan, Recipe), PgError> {
        let mut columns: Vec<(Spec, Usage)> = Vec::new();
        for statement in &statements {
            for used in &statement.columns {
                let spec = self.spec(used.column)?;
                if used.usage == Usage::Write {
                    self.check_writable(catalog, &spec)?;
                }
                if !columns
                    .iter()
                    .any(|(s, u)| Arc::ptr_eq(s, &spec) && *u == used.usage)
                {
                    columns.push((spec, used.usage));
                }
            }
        }

        // Splice replacements in source order; the rest of the text stays byte for byte.
        let mut edits: Vec<(std::ops::Range<usize>, String, Origin)> = Vec::new();
        let mut params: Vec<Option<ParamSpec>> = Vec::new();
        let roles = self.site_roles(sql, &statements, tenant)?;
        for (n, (statement, roles)) in statements.iter().zip(&roles).enumerate() {
            for (l, (literal, role)) in statement.literals.iter().zip(&roles.literals).enumerate() {
                let spec = self.spec(literal.column)?;
                let sealed = match role {
                    SiteRole::Written => {
                        self.seal_literal(&spec, literal.value.as_deref(), literal.array, tenant)?
                    }
                    SiteRole::Compared(how) => self.seal_literal_every_version(
                        &spec,
                        literal.value.as_deref(),
                        literal.array,
                        *how,
                        tenant,
                    )?,
                };
                let origin = Origin::Sealed {
                    spec: spec.clone(),
                    role: *role,
                    site: (n, l),
                    array: literal.array,
                };
                edits.push((literal.span.clone(), sealed, origin));
            }
            for (param, role) in statement.params.iter().zip(&roles.params) {
                let spec = self.spec(param.column)?;
                if params.len() <= param.index {
                    params.resize(param.index + 1, None);
                }
                let every_version = *role != SiteRole::Written;
                if let Some(existing) = &params[param.index] {
                    if !Arc::ptr_eq(&existing.spec, &spec)
                        || existing.array != param.array
                        || existing.every_version != every_version
                    {
                        return Err(PgError::error(
                            FEATURE_NOT_SUPPORTED,
                            format!(
                                "parameter ${} is used for protected column {} and elsewhere; use a separate parameter for each use",
                                param.index + 1,
                                spec.qualified
                            ),
                        ));
                    }
                }
                let n = param.index + 1;
                let replacement = match role {
                    // Typed, so the server infers bytea where nothing else would (a VALUES
                    // list, UNNEST's argument).
                    SiteRole::Written if param.array => format!("${n}::bytea[]"),
                    SiteRole::Written => format!("${n}::bytea"),
                    SiteRole::Compared(how) => {
                        self.param_every_version(&spec, n, param.array, *how, tenant)?
                    }
                };
                params[param.index] = Some(ParamSpec {
                    spec,
                    array: param.array,
                    every_version,
                });
                let origin = Origin::Fixed(replacement.clone());
                edits.push((param.span.clone(), replacement, origin));
            }
            for edit in &statement.edits {
                let origin = Origin::Fixed(edit.replacement.clone());
                edits.push((edit.span.clone(), edit.replacement.clone(), origin));
            }
        }
        edits.sort_by_key(|(span, _, _)| span.start);
        let (edits, recipe): (Vec<_>, Recipe) = edits
            .into_iter()
            .map(|(span, text, origin)| ((span.clone(), text), (span, origin)))
            .unzip();
        let action = if edits.is_empty() {
            PlanAction::Forward
        } else {
            PlanAction::Rewrite(splice(sql, &edits)?)
        };
        let mut links = Vec::new();
        for link in statements.iter().flat_map(|s| &s.links) {
            links.push((self.spec(link.a)?, self.spec(link.b)?, link.kind));
        }
        let plan = Plan {
            action,
            params,
            refreshes_catalog: refreshes_catalog(&statements),
            table_writes: self.table_writes(&statements),
            links,
            statements,
            columns,
            computed: Vec::new(),
        };
        Ok((plan, recipe))
    }

    /// A write into a partition's or child's protected column goes ahead only into that
    /// table's own `bytea` storage under its guard, as a write to the protected table does.
    fn check_child_writes(
        &self,
        layout: &Layout,
        catalog: &Catalog,
        statement: &StatementInfo,
    ) -> Result<(), PgError> {
        for used in &statement.columns {
            let protected = layout.protected_id(used.column);
            // A write through a view lands in the protected table, whose column `rewrite`
            // checks (the view itself has no storage).
            if used.usage != Usage::Write
                || protected == used.column
                || layout.is_view_column(used.column)
            {
                continue;
            }
            let (schema, table, column, _) = layout.schema.column(used.column);
            let found = catalog
                .table(schema, table)
                .and_then(|t| t.columns.iter().find(|c| c.name == column));
            let spec = self.spec(protected)?;
            let child = format!("{schema}.{table}.{column}");
            self.check_column_writable(found, &spec, &child)?;
        }
        Ok(())
    }

    /// The protected columns that views named by the statements compute outputs from.
    fn computed(&self, layout: &Layout, statements: &[StatementInfo]) -> Vec<Spec> {
        let mut specs: Vec<Spec> = Vec::new();
        for (_, table) in statements.iter().flat_map(|s| &s.tables) {
            for id in layout.computed_sources(table) {
                let spec = self.specs.get(*id);
                if let Some(spec) = spec.filter(|s| !specs.iter().any(|x| Arc::ptr_eq(x, s))) {
                    specs.push(spec.clone());
                }
            }
        }
        specs
    }

    /// The protected columns of every protected table the statements change as a whole.
    fn table_writes(&self, statements: &[StatementInfo]) -> Vec<Spec> {
        let mut specs: Vec<Spec> = Vec::new();
        for (schema, table) in statements.iter().flat_map(|s| &s.changed_tables) {
            for id in self.base.protected_columns_of(schema, table) {
                let spec = self.specs.get(id);
                if let Some(spec) = spec.filter(|s| !specs.iter().any(|x| Arc::ptr_eq(x, s))) {
                    specs.push(spec.clone());
                }
            }
        }
        specs
    }

    /// The ciphers planning seals literals with (one lock shared by all sessions).
    pub(super) fn planning_ciphers(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, codec::Ciphers>, PgError> {
        self.planning.lock().map_err(|_| {
            PgError::error(
                crate::protocol::error::sqlstate::INTERNAL_ERROR,
                "internal error: planning lock poisoned",
            )
        })
    }

    pub(super) fn seal_literal(
        &self,
        spec: &ColumnSpec,
        value: Option<&str>,
        array: bool,
        tenant: Option<&str>,
    ) -> Result<String, PgError> {
        let mut tenant_cipher = self.tenant_cipher(spec, tenant)?;
        let mut ciphers = self.planning_ciphers()?;
        let cipher = match &mut tenant_cipher {
            Some(cipher) => cipher,
            None => ciphers.get(&spec.context),
        };
        if array {
            codec::sealed_array_literal(spec, cipher, value)
        } else {
            codec::sealed_literal(spec, cipher, value)
        }
    }
}

/// A partition's or child's columns are read as the protected table's: the plan (its
/// parameters, literals, outputs, COPY columns, links) carries only protected column ids.
fn to_protected_columns(layout: &Layout, statement: &mut StatementInfo) {
    let id = |id: &mut ColumnId| *id = layout.protected_id(*id);
    statement.columns.iter_mut().for_each(|c| id(&mut c.column));
    let mut seen = Vec::new();
    statement.columns.retain(|c| {
        let new = !seen.contains(c);
        seen.push(*c);
        new
    });
    statement
        .literals
        .iter_mut()
        .for_each(|l| id(&mut l.column));
    statement.params.iter_mut().for_each(|p| id(&mut p.column));
    statement.outputs.iter_mut().flatten().for_each(id);
    if let Some(copy) = &mut statement.copy {
        copy.columns.iter_mut().flatten().for_each(id);
    }
    for link in &mut statement.links {
        id(&mut link.a);
        id(&mut link.b);
    }
    statement.links.retain(|l| l.a != l.b);
}

/// Rows removed from a partition or child (`DELETE`, `TRUNCATE`) are the protected table's:
/// they need the same write right.
fn to_protected_tables(layout: &Layout, statement: &mut StatementInfo) {
    for table in &mut statement.changed_tables {
        *table = layout.protected_table(table);
    }
}

fn refreshes_catalog(statements: &[StatementInfo]) -> bool {
    statements
        .iter()
        .any(|s| s.kind == analyze::StatementKind::Ddl)
}

/// Applies sorted, non-overlapping byte-range replacements.
pub(super) fn splice(
    sql: &str,
    edits: &[(std::ops::Range<usize>, String)],
) -> Result<String, PgError> {
    let mut out = String::with_capacity(sql.len() + edits.len() * 64);
    let mut at = 0;
    for (span, replacement) in edits {
        let piece = sql.get(at..span.start).filter(|_| span.start <= span.end);
        let Some(piece) = piece else {
            return Err(PgError::error(
                FEATURE_NOT_SUPPORTED,
                "pgshroud could not locate a protected value in the statement text",
            ));
        };
        out.push_str(piece);
        out.push_str(replacement);
        at = span.end;
    }
    let rest = sql.get(at..).ok_or_else(|| {
        PgError::error(
            FEATURE_NOT_SUPPORTED,
            "pgshroud could not locate a protected value in the statement text",
        )
    })?;
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::GuardPolicy;
    use super::*;
    use crate::crypto::KeyRing;

    #[test]
    fn splice_replaces_ranges_and_keeps_the_rest() {
        let sql = "SELECT 'ü' WHERE a = 'x' AND b = $1::text";
        let a = sql.find("'x'").unwrap();
        let b = sql.find("$1::text").unwrap();
        let out = splice(
            sql,
            &[(a..a + 3, "'\\x01'::bytea".into()), (b..b + 8, "$1".into())],
        )
        .unwrap();
        assert_eq!(out, "SELECT 'ü' WHERE a = '\\x01'::bytea AND b = $1");
    }

    /// The text sent for `sql` under rules protecting t.email (text) and t.amount
    /// (numeric(12,2)), with envelopes shown as `<sealed>`.
    fn rewritten(sql: &str) -> String {
        let text = plan_text(sql);
        let mut out = String::new();
        for (i, piece) in text.split("E'\\\\x").enumerate() {
            match i {
                0 => out.push_str(piece),
                _ => {
                    let end = piece.find('\'').expect("end of envelope");
                    out.push_str("<sealed>");
                    out.push_str(&piece[end + 1..]);
                }
            }
        }
        out
    }

    /// The text sent for `sql`, envelopes included.
    fn plan_text(sql: &str) -> String {
        let rules = pgshroud_rules::parse(
            r#"
[[tables]]
name = "public.t"
  [[tables.columns]]
  name = "email"
  type = "varchar"
  [[tables.columns]]
  name = "amount"
  type = "numeric(12, 2)"
  [[tables.columns]]
  name = "flag"
  type = "bool"
"#,
            "rules.toml",
        )
        .expect("rules");
        let key = crate::crypto::MasterKey::from_bytes(&[7; 32]).expect("key");
        let keys = Arc::new(KeyRing::single(key));
        let p = Protection::new(rules, keys, GuardPolicy::NotRequired);
        let catalog = Catalog::default();
        let plan = p.plan(sql, &p.layout(&catalog), &catalog);
        match &plan.action {
            PlanAction::Rewrite(text) => text.clone(),
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn a_boolean_column_as_a_condition_is_compared_with_true() {
        assert_eq!(
            rewritten("SELECT id FROM t WHERE flag"),
            "SELECT id FROM t WHERE (flag = <sealed>::bytea)"
        );
        assert_eq!(
            rewritten("SELECT id FROM t WHERE NOT \"t\".\"flag\" AND email = 'a'"),
            "SELECT id FROM t WHERE NOT (\"t\".\"flag\" = <sealed>::bytea) AND email = <sealed>::bytea"
        );
        assert_eq!(
            rewritten("SELECT id FROM t WHERE (flag) OR id = 1"),
            "SELECT id FROM t WHERE ((flag = <sealed>::bytea)) OR id = 1"
        );
    }

    #[test]
    fn sqlalchemy_bulk_insert_is_rewritten_to_bytea() {
        assert_eq!(
            rewritten(
                "INSERT INTO t (email, amount) SELECT p0::VARCHAR, p1::NUMERIC(12, 2) FROM \
                 (VALUES ('a', 1.5, 0), (NULL, $1::NUMERIC(12, 2), 1)) AS imp_sen(p0, p1, n) \
                 ORDER BY n RETURNING t.id"
            ),
            "INSERT INTO t (email, amount) SELECT p0, p1 FROM (VALUES (<sealed>::bytea, \
             <sealed>::bytea, 0), (NULL::bytea, $1::bytea, 1)) AS imp_sen(p0, p1, n) ORDER BY n \
             RETURNING t.id"
        );
    }

    #[test]
    fn unnest_bulk_insert_is_rewritten_to_bytea_arrays() {
        assert_eq!(
            rewritten(
                "INSERT INTO t (email, amount) SELECT * FROM UNNEST(('{a,NULL}')::varchar[], \
                 $1::numeric[])"
            ),
            "INSERT INTO t (email, amount) SELECT * FROM UNNEST(ARRAY[<sealed>::bytea, \
             NULL::bytea]::bytea[], $1::bytea[])"
        );
        assert_eq!(
            rewritten(
                "INSERT INTO t (email, amount) SELECT * FROM UNNEST((ARRAY['a', NULL])::varchar[], \
                 ARRAY[1.5]::numeric(12,2)[])"
            ),
            "INSERT INTO t (email, amount) SELECT * FROM UNNEST((ARRAY[<sealed>::bytea, \
             NULL::bytea])::bytea[], ARRAY[<sealed>::bytea]::bytea[])"
        );
        assert_eq!(
            rewritten("INSERT INTO t (email) SELECT * FROM UNNEST('{}'::text[])"),
            "INSERT INTO t (email) SELECT * FROM UNNEST('{}'::bytea[])"
        );
    }

    #[test]
    fn bulk_values_are_rounded_like_single_ones() {
        // numeric(12, 2): 1.5 and 1.50 seal alike, in a VALUES list as anywhere else.
        let envelope = |s: String| {
            let start = s.find("E'").expect("envelope");
            let end = start + 2 + s[start + 2..].find('\'').expect("end");
            s[start..end].to_owned()
        };
        let a = envelope(plan_text(
            "INSERT INTO t (amount) SELECT p FROM (VALUES (1.5)) AS v(p)",
        ));
        let b = envelope(plan_text("INSERT INTO t (amount) VALUES (1.500)"));
        let c = envelope(plan_text("INSERT INTO t (amount) VALUES (1.504)"));
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_ne!(
            a,
            envelope(plan_text("INSERT INTO t (amount) VALUES (1.505)"))
        );
    }

    #[test]
    fn splice_refuses_overlapping_or_misplaced_ranges() {
        assert!(splice("abc", &[(1..2, "x".into()), (0..1, "y".into())]).is_err());
        assert!(splice("ü", &[(1..2, "x".into())]).is_err());
    }
}
