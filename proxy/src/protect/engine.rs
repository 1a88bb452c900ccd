//! The shared, read-only side of protection: the protected columns from the rules file, the
//! key ring, and the plan cache (analysis plus deterministic literal encryption, once per
//! statement text and database layout).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pgshroud_rules::Rules;

use super::catalog::{Catalog, CatalogColumn};
use super::codec::{self, Ciphers, ColumnSpec, Spec};
use super::guard::GuardState;
use crate::analyze::{
    self, Analysis, ColumnId, LinkKind, ProtectedSchema, SearchPath, StatementInfo, Usage,
};
use crate::crypto::{KeyContext, KeyRing};
use crate::protocol::error::PgError;

/// SQLSTATE of refusals for operations encryption cannot support.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";

/// A protected `$n` parameter.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub spec: Spec,
    /// `c = ANY($n)`: the value is an array of the column's values.
    pub array: bool,
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
    fn refused(error: PgError) -> Plan {
        Plan {
            action: PlanAction::Refused(error),
            params: Vec::new(),
            statements: Vec::new(),
            columns: Vec::new(),
            refreshes_catalog: false,
            table_writes: Vec::new(),
            links: Vec::new(),
        }
    }

    /// The protected column behind each output position of statement `index`.
    pub fn outputs(&self, index: usize) -> Option<&[Option<ColumnId>]> {
        self.statements.get(index).map(|s| s.outputs.as_slice())
    }
}

/// Bound on cached plans; a full cache is simply cleared (plans are cheap to rebuild).
const PLAN_CACHE_LIMIT: usize = 10_000;

/// The analyser's view of one database: protected columns plus the catalog's column lists.
#[derive(Debug, Clone)]
pub struct Layout {
    pub schema: ProtectedSchema,
    pub fingerprint: u64,
}

pub struct Protection {
    pub keys: Arc<KeyRing>,
    pub rules: Arc<Rules>,
    /// Indexed by the analyser's `ColumnId`.
    specs: Vec<Spec>,
    by_name: HashMap<(String, String, String), ColumnId>,
    tables: Vec<(String, String)>,
    base: ProtectedSchema,
    cache: Mutex<HashMap<(u64, String), Arc<Plan>>>,
    /// Ciphers used while planning (literal encryption), shared by all sessions.
    planning: Mutex<Ciphers>,
    /// Writes only to columns whose guard is in place (`require_guard`).
    guards: GuardPolicy,
}

/// Whether writes need the column's guard in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuardPolicy {
    /// No write to a protected column without its guard (the default).
    #[default]
    Required,
    /// Writes go ahead without a guard (a migration window only; loudly warned about).
    NotRequired,
}

impl std::fmt::Debug for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protection")
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl Protection {
    pub fn new(rules: Rules, keys: Arc<KeyRing>, guards: GuardPolicy) -> Protection {
        let mut base = ProtectedSchema::new();
        let mut specs = Vec::new();
        let mut by_name = HashMap::new();
        let mut tables = Vec::new();
        for table in &rules.tables {
            let (schema, name) = (table.schema.to_lowercase(), table.name.to_lowercase());
            if !tables.contains(&(schema.clone(), name.clone())) {
                tables.push((schema.clone(), name.clone()));
            }
            for column in &table.columns {
                let column_name = column.name.to_lowercase();
                let context = table.context_of(column);
                let id = base.protect(&schema, &name, &column_name, &context);
                base.set_logical_type(id, column.logical);
                debug_assert_eq!(id, specs.len());
                specs.push(Arc::new(ColumnSpec {
                    qualified: format!("{schema}.{name}.{column_name}"),
                    logical: column.logical,
                    modifier: column.modifier,
                    context: KeyContext::new(context),
                }));
                by_name.insert((schema.clone(), name.clone(), column_name), id);
            }
        }
        Protection {
            planning: Mutex::new(Ciphers::new(keys.clone())),
            keys,
            rules: Arc::new(rules),
            specs,
            by_name,
            tables,
            base,
            cache: Mutex::new(HashMap::new()),
            guards,
        }
    }

    pub fn guard_policy(&self) -> GuardPolicy {
        self.guards
    }

    /// The protected (schema, table) pairs.
    pub fn tables(&self) -> &[(String, String)] {
        &self.tables
    }

    /// The analyser's schema for a database with this catalog.
    pub fn layout(&self, catalog: &Catalog) -> Layout {
        let mut schema = self.base.clone();
        for table in catalog.tables() {
            let columns = table.columns.iter().map(|c| c.name.clone()).collect();
            schema.set_table_columns(&table.schema, &table.name, columns);
        }
        // Unqualified names resolve through the session's path as the look-up found it; a
        // catalog without one (no look-up yet) keeps the `public` default.
        if let Some(path) = &catalog.search_path {
            schema.set_search_path(SearchPath::Known {
                schemas: path.schemas.clone(),
                relations: path.relations.clone(),
            });
        }
        Layout {
            schema,
            fingerprint: catalog.fingerprint(),
        }
    }

    /// The pre-filter: `false` means the statement cannot touch a protected table.
    pub fn mentions_protected(&self, sql: &str) -> bool {
        self.base.mentions_protected_table(sql)
    }

    pub fn spec_by_id(&self, id: ColumnId) -> Option<&Spec> {
        self.specs.get(id)
    }

    /// The protected column `schema.table.column` (names as PostgreSQL reports them).
    pub fn spec_by_name(&self, schema: &str, table: &str, column: &str) -> Option<&Spec> {
        let id = self
            .by_name
            .get(&(schema.to_owned(), table.to_owned(), column.to_owned()))?;
        self.specs.get(*id)
    }

    /// The protected column behind a result column, by table OID and attribute number.
    pub fn spec_for(&self, catalog: &Catalog, table_oid: u32, attnum: i16) -> Option<Spec> {
        if table_oid == 0 {
            return None;
        }
        let table = catalog.table_by_oid(table_oid)?;
        let column = table.column(attnum)?;
        let id = self.by_name.get(&(
            table.schema.clone(),
            table.name.clone(),
            column.name.clone(),
        ))?;
        self.specs.get(*id).cloned()
    }

    /// The plan for a statement, from the cache or built now.
    pub fn plan(&self, sql: &str, layout: &Layout, catalog: &Catalog) -> Arc<Plan> {
        let key = (layout.fingerprint, sql.to_owned());
        if let Some(plan) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return plan;
        }
        let plan = Arc::new(self.build(sql, layout, catalog));
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= PLAN_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, plan.clone());
        }
        plan
    }

    fn build(&self, sql: &str, layout: &Layout, catalog: &Catalog) -> Plan {
        let statements = match analyze::analyze(sql, &layout.schema) {
            Analysis::Refused(r) => return Plan::refused(PgError::error(r.sqlstate, r.message)),
            Analysis::Untouched { statements } => {
                return Plan {
                    action: PlanAction::Forward,
                    params: Vec::new(),
                    refreshes_catalog: refreshes_catalog(&statements),
                    table_writes: self.table_writes(&statements),
                    links: Vec::new(),
                    statements,
                    columns: Vec::new(),
                }
            }
            Analysis::Protected { statements } => statements,
        };
        match self.rewrite(sql, statements, catalog) {
            Ok(plan) => plan,
            Err(error) => Plan::refused(error),
        }
    }

    fn rewrite(
        &self,
        sql: &str,
        statements: Vec<StatementInfo>,
        catalog: &Catalog,
    ) -> Result<Plan, PgError> {
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
        let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
        let mut params: Vec<Option<ParamSpec>> = Vec::new();
        for statement in &statements {
            for literal in &statement.literals {
                let spec = self.spec(literal.column)?;
                let sealed = self.seal_literal(&spec, literal.value.as_deref(), literal.array)?;
                edits.push((literal.span.clone(), sealed));
            }
            for param in &statement.params {
                let spec = self.spec(param.column)?;
                if params.len() <= param.index {
                    params.resize(param.index + 1, None);
                }
                if let Some(existing) = &params[param.index] {
                    if !Arc::ptr_eq(&existing.spec, &spec) || existing.array != param.array {
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
                params[param.index] = Some(ParamSpec {
                    spec,
                    array: param.array,
                });
                // Typed, so the server infers bytea where nothing else would (a VALUES list,
                // UNNEST's argument).
                let typed = if param.array { "bytea[]" } else { "bytea" };
                edits.push((param.span.clone(), format!("${}::{typed}", param.index + 1)));
            }
            for edit in &statement.edits {
                edits.push((edit.span.clone(), edit.replacement.clone()));
            }
        }
        edits.sort_by_key(|(span, _)| span.start);
        let action = if edits.is_empty() {
            PlanAction::Forward
        } else {
            PlanAction::Rewrite(splice(sql, &edits)?)
        };
        let mut links = Vec::new();
        for link in statements.iter().flat_map(|s| &s.links) {
            links.push((self.spec(link.a)?, self.spec(link.b)?, link.kind));
        }
        Ok(Plan {
            action,
            params,
            refreshes_catalog: refreshes_catalog(&statements),
            table_writes: self.table_writes(&statements),
            links,
            statements,
            columns,
        })
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

    /// The analyser's id of a protected column.
    pub fn id_of(&self, spec: &ColumnSpec) -> Option<ColumnId> {
        let (schema, table, column) = split_qualified(&spec.qualified)?;
        self.by_name
            .get(&(schema.to_owned(), table.to_owned(), column.to_owned()))
            .copied()
    }

    fn spec(&self, id: ColumnId) -> Result<Spec, PgError> {
        self.specs
            .get(id)
            .cloned()
            .ok_or_else(|| PgError::error("XX000", "internal error: unknown protected column"))
    }

    fn seal_literal(
        &self,
        spec: &ColumnSpec,
        value: Option<&str>,
        array: bool,
    ) -> Result<String, PgError> {
        let mut ciphers = self
            .planning
            .lock()
            .map_err(|_| PgError::error("XX000", "internal error: planning lock poisoned"))?;
        let cipher = ciphers.get(&spec.context);
        if array {
            codec::sealed_array_literal(spec, cipher, value)
        } else {
            codec::sealed_literal(spec, cipher, value)
        }
    }

    /// A write to a protected column goes ahead only into `bytea` storage under its guard
    /// (unless guards are not required): plaintext must never land, whatever the analysis
    /// missed, and a column without the database's own check has nothing behind the proxy.
    fn check_writable(&self, catalog: &Catalog, spec: &ColumnSpec) -> Result<(), PgError> {
        let column = catalog_column(catalog, spec);
        if let Some(c) = column.filter(|c| c.type_name != "bytea") {
            return Err(PgError::error(
                FEATURE_NOT_SUPPORTED,
                format!(
                    "column {} is protected but is {} in the database, not bytea: pgshroud refuses to write plaintext into it",
                    spec.qualified, c.type_name
                ),
            )
            .with_hint("Change the column's type to bytea (pgshroud stores ciphertext there), or remove it from the rules file."));
        }
        if self.guards == GuardPolicy::NotRequired {
            return Ok(());
        }
        let state = column.map(|c| GuardState::of(&c.guards, &c.name, spec.context.as_str()));
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
                "protected column {} {why}: pgshroud writes to no protected column without its guard",
                spec.qualified
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
                GuardState::of(&column.guards, &column.name, spec.context.as_str()),
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
pub const UNGUARDED: &str = "55000";

/// The catalog's entry for a protected column, if the table and column exist.
fn catalog_column<'a>(catalog: &'a Catalog, spec: &ColumnSpec) -> Option<&'a CatalogColumn> {
    let (schema, table, column) = split_qualified(&spec.qualified)?;
    catalog
        .table(schema, table)?
        .columns
        .iter()
        .find(|c| c.name == column)
}

fn refreshes_catalog(statements: &[StatementInfo]) -> bool {
    statements
        .iter()
        .any(|s| s.kind == analyze::StatementKind::Ddl)
}

fn split_qualified(qualified: &str) -> Option<(&str, &str, &str)> {
    let mut parts = qualified.splitn(3, '.');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// Applies sorted, non-overlapping byte-range replacements.
fn splice(sql: &str, edits: &[(std::ops::Range<usize>, String)]) -> Result<String, PgError> {
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
    use super::*;

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
