//! The plan of a migration: for each column, what it is now, whether it is done, what is kept
//! (NOT NULL, indexes rebuilt on the new form, foreign keys between columns of one key
//! context) and what cannot be (with its definition), and every statement the run will send.
//! `--dry-run` prints it; the run executes the statements this module writes.

use pgshroud_rules::{LogicalType, TypeModifier};
use tokio_postgres::Client;

use super::catalog::{self, Attribute, Constraint, Index};
use super::convert::Direction;
use crate::protect::codec::ColumnSpec;
use crate::protect::guard::{self, quote_ident};

/// A column the run changes.
pub struct ColumnPlan {
    pub spec: ColumnSpec,
    pub schema: String,
    pub table: String,
    pub column: String,
    pub shadow: String,
    pub attr: Attribute,
    /// The shadow column exists: an earlier run was interrupted after preparing it.
    pub resumed: bool,
    /// Rows whose shadow is still to fill.
    pub to_fill: u64,
}

impl ColumnPlan {
    pub fn table_sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }

    /// Rows whose shadow is still to fill.
    pub fn to_fill(&self) -> String {
        format!(
            "{} IS NULL AND {} IS NOT NULL",
            quote_ident(&self.shadow),
            quote_ident(&self.column)
        )
    }

    /// How many rows are still to fill.
    pub async fn left_to_fill(&self, client: &Client) -> Result<u64, String> {
        catalog::rows_to_fill(client, &self.table_sql(), &self.to_fill()).await
    }

    /// The shadow's type: `bytea` for envelopes, else the logical type with its modifier.
    pub fn shadow_type(&self, direction: Direction) -> String {
        match direction {
            Direction::Encrypt => "bytea".to_owned(),
            Direction::Decrypt => type_sql(self.spec.logical, self.spec.modifier),
        }
    }
}

/// An index rebuilt on the shadow before the swap and put in the old one's place in it.
pub struct Rebuild {
    pub old: Index,
    pub table_sql: String,
    pub new_name: String,
    /// Schema of the table (the new index lives there too).
    pub schema: String,
}

/// Everything one run does, and what stops it.
#[derive(Default)]
pub struct Plan {
    pub direction: Option<Direction>,
    pub columns: Vec<ColumnPlan>,
    pub rebuilds: Vec<Rebuild>,
    /// Foreign keys between two migrated columns of one key context: dropped and added again.
    pub foreign_keys: Vec<Constraint>,
    /// Foreign keys that cannot be kept; dropped with `--drop-incompatible`.
    pub dropped_foreign_keys: Vec<Constraint>,
    /// What cannot exist on the new form (one line each, with its definition).
    pub incompatible: Vec<String>,
    /// What stops the migration whatever the flags.
    pub problems: Vec<String>,
    /// Columns already in the target form.
    pub done: Vec<String>,
    /// Guards of done columns left `NOT VALID` by a run killed between the swap and the
    /// validation: (table, constraint), both quoted.
    pub unvalidated: Vec<(String, String)>,
    /// What the plan keeps or loses that is worth saying.
    pub notes: Vec<String>,
}

/// `numeric(12,2)`, `character varying(100)`, `int8`: the SQL type of a logical type.
pub fn type_sql(logical: LogicalType, modifier: Option<TypeModifier>) -> String {
    match modifier {
        Some(m) => m.type_name(logical),
        None => logical.name().to_owned(),
    }
}

/// The rules-file type of a column of type `oid` with `typmod`, when pgshroud has one.
fn rules_type(oid: u32, typmod: i32) -> Option<String> {
    let t = LogicalType::from_oid(oid)?;
    let m = typmod - 4;
    let modifier = match t {
        LogicalType::Numeric if m >= 0 => format!("({},{})", m >> 16, m & 0xffff),
        LogicalType::Varchar if m >= 0 => format!("({m})"),
        LogicalType::Timestamp | LogicalType::Timestamptz if typmod >= 0 => format!("({typmod})"),
        _ => String::new(),
    };
    Some(format!("{}{modifier}", t.name()))
}

impl Plan {
    /// Reads the database around every column of `specs` (as `schema.table.column`).
    pub async fn read(
        client: &Client,
        direction: Direction,
        specs: Vec<(String, String, String, ColumnSpec)>,
    ) -> Result<Plan, String> {
        let mut plan = Plan {
            direction: Some(direction),
            ..Plan::default()
        };
        for (schema, table, column, spec) in specs {
            plan.add_column(client, direction, schema, table, column, spec)
                .await?;
        }
        plan.check_foreign_keys();
        Ok(plan)
    }

    async fn add_column(
        &mut self,
        client: &Client,
        direction: Direction,
        schema: String,
        table: String,
        column: String,
        spec: ColumnSpec,
    ) -> Result<(), String> {
        let q = spec.qualified.clone();
        let Some(attr) = catalog::attribute(client, &schema, &table, &column).await? else {
            self.problems
                .push(format!("{q}: the table or column does not exist"));
            return Ok(());
        };
        let shadow = crate::cli::rewrite::shadow_name(&column);
        if shadow.len() > 63 {
            self.problems.push(format!(
                "{q}: the column name is too long for a shadow column ({shadow})"
            ));
            return Ok(());
        }
        let shadow_attr = catalog::attribute(client, &schema, &table, &shadow).await?;
        let guarded = catalog::constraints(client, attr.table_oid, attr.attnum)
            .await?
            .iter()
            .any(|c| c.name == guard::constraint_name(&column));
        let bytea = attr.type_oid == LogicalType::Bytea.oid();
        let matches_rules = attr.type_oid == spec.logical.oid()
            && attr.typmod == spec.modifier.map_or(-1, TypeModifier::typmod);
        let done = match direction {
            Direction::Encrypt => bytea && guarded && shadow_attr.is_none(),
            Direction::Decrypt => matches_rules && !guarded && shadow_attr.is_none(),
        };
        if done {
            let name = guard::constraint_name(&column);
            let validated = catalog::constraints(client, attr.table_oid, attr.attnum)
                .await?
                .iter()
                .any(|c| c.name == name && c.validated);
            if direction == Direction::Encrypt && !validated {
                self.unvalidated.push((
                    format!("{}.{}", quote_ident(&schema), quote_ident(&table)),
                    quote_ident(&name),
                ));
            }
            self.done.push(q);
            return Ok(());
        }
        if attr.relkind != "r" {
            self.problems.push(format!(
                "{q}: {}.{} is not a plain table (partitioned tables, views and foreign tables are not migrated)",
                schema, table
            ));
            return Ok(());
        }
        if attr.special {
            self.problems.push(format!(
                "{q}: an identity or generated column cannot be protected"
            ));
            return Ok(());
        }
        let wrong_type = match direction {
            Direction::Encrypt if !matches_rules => Some(format!(
                "{q}: the column is {}, the rules say {}: {}",
                attr.type_name,
                type_sql(spec.logical, spec.modifier),
                match rules_type(attr.type_oid, attr.typmod) {
                    Some(t) => format!("write type = \"{t}\" for it in the rules file, so every value is kept exactly"),
                    None => "pgshroud has no logical type for it".to_owned(),
                }
            )),
            Direction::Decrypt if !bytea => Some(format!(
                "{q}: the column is {}, not bytea holding envelopes",
                attr.type_name
            )),
            _ => None,
        };
        if let Some(problem) = wrong_type {
            self.problems.push(problem);
            return Ok(());
        }
        let target = match direction {
            Direction::Encrypt => "bytea".to_owned(),
            Direction::Decrypt => type_sql(spec.logical, spec.modifier),
        };
        if let Some(s) = &shadow_attr {
            let expected = match direction {
                Direction::Encrypt => "bytea".to_owned(),
                Direction::Decrypt => format_type_of(spec.logical, spec.modifier),
            };
            if s.type_name != expected {
                self.problems.push(format!(
                    "{q}: a column {shadow} exists and is {}, not the shadow ({target}) an earlier run would have left: rename or drop it",
                    s.type_name
                ));
                return Ok(());
            }
        }
        self.read_dependents(client, direction, &spec, &attr, (&schema, &table, &column))
            .await?;
        if spec.logical == LogicalType::Numeric && spec.modifier.is_none() {
            self.notes.push(format!(
                "{q}: numeric without a scale: equal values are stored alike, so the display scale (1.50 as against 1.5) is not kept; set keep_scale = true on the column to keep it (equality then tells 1.5 from 1.50)"
            ));
        }
        if spec.logical == LogicalType::Jsonb {
            self.notes.push(format!(
                "{q}: jsonb numbers are kept by value, not as written: 1.50 inside a document reads back as 1.5 (pgshroud encrypts equal documents alike)"
            ));
        }
        let plan = ColumnPlan {
            resumed: shadow_attr.is_some(),
            to_fill: 0,
            spec,
            schema,
            table,
            column,
            shadow,
            attr,
        };
        let to_fill = match plan.resumed {
            true => plan.left_to_fill(client).await?,
            false => {
                catalog::rows_to_fill(
                    client,
                    &plan.table_sql(),
                    &format!("{} IS NOT NULL", quote_ident(&plan.column)),
                )
                .await?
            }
        };
        self.columns.push(ColumnPlan { to_fill, ..plan });
        Ok(())
    }

    async fn read_dependents(
        &mut self,
        client: &Client,
        direction: Direction,
        spec: &ColumnSpec,
        attr: &Attribute,
        (schema, table, column): (&str, &str, &str),
    ) -> Result<(), String> {
        let q = &spec.qualified;
        let table_sql = format!("{}.{}", quote_ident(schema), quote_ident(table));
        for index in catalog::indexes(client, attr.table_oid, attr.attnum).await? {
            if self.rebuilds.iter().any(|r| r.old.oid == index.oid) {
                continue;
            }
            if index.portable {
                self.rebuilds.push(Rebuild {
                    new_name: format!("pgshroud_migrate_{}", index.oid),
                    table_sql: table_sql.clone(),
                    schema: schema.to_owned(),
                    old: index,
                });
            } else {
                self.incompatible.push(format!(
                    "{q}: index {} cannot be rebuilt on the {} (an expression or partial index, or an operator class that needs the plaintext): {}",
                    index.name,
                    form(direction),
                    index.definition
                ));
            }
        }
        for c in catalog::constraints(client, attr.table_oid, attr.attnum).await? {
            if c.kind == "c" && c.name == guard::constraint_name(column) {
                continue;
            }
            if c.kind == "c" {
                self.incompatible.push(format!(
                    "{q}: CHECK constraint {} cannot hold on the {}: {}",
                    c.name,
                    form(direction),
                    c.definition
                ));
            } else if !self
                .foreign_keys
                .iter()
                .chain(&self.dropped_foreign_keys)
                .any(|f| f.name == c.name && f.table_sql == c.table_sql)
            {
                self.foreign_keys.push(c);
            }
        }
        if let Some(default) = &attr.default {
            self.incompatible.push(format!(
                "{q}: DEFAULT {default} would write {}: it goes",
                match direction {
                    Direction::Encrypt => "plaintext, which the guard refuses",
                    Direction::Decrypt => "an envelope into a plaintext column",
                }
            ));
        }
        for view in catalog::views(client, attr.table_oid, attr.attnum).await? {
            self.problems.push(format!(
                "{q}: view {view} reads the column; PostgreSQL cannot drop a column a view uses. Drop the view, migrate, then create it again"
            ));
        }
        Ok(())
    }

    /// A foreign key is kept only between two migrated columns of one key context.
    fn check_foreign_keys(&mut self) {
        let keys = std::mem::take(&mut self.foreign_keys);
        for fk in keys {
            let context_of = |name: &str| {
                self.columns
                    .iter()
                    .find(|c| c.spec.qualified == name)
                    .map(|c| c.spec.context.as_str().to_owned())
            };
            let Some((from, to)) = fk.link.clone() else {
                self.incompatible.push(format!(
                    "foreign key {} spans several columns: it cannot be kept ({})",
                    fk.name, fk.definition
                ));
                self.dropped_foreign_keys.push(fk);
                continue;
            };
            match (context_of(&from), context_of(&to)) {
                (Some(a), Some(b)) if a == b => {
                    self.notes.push(format!(
                        "foreign key {} ({from} -> {to}) is kept: both columns share key context {a:?}, so equal values have equal envelopes",
                        fk.name
                    ));
                    self.foreign_keys.push(fk);
                }
                (Some(a), Some(b)) => self.problems.push(format!(
                    "foreign key {} links {from} (key context {a:?}) and {to} (key context {b:?}): equal values would have different envelopes. Give both columns the same key_context in the rules file",
                    fk.name
                )),
                _ => {
                    self.incompatible.push(format!(
                        "foreign key {} ({from} -> {to}) cannot be kept: both of its columns must be migrated in the same run (give --column for each) and share a key context",
                        fk.name
                    ));
                    self.dropped_foreign_keys.push(fk);
                }
            }
        }
    }
}

/// What the column holds after the migration, for messages.
pub(super) fn form(direction: Direction) -> &'static str {
    match direction {
        Direction::Encrypt => "ciphertext",
        Direction::Decrypt => "plaintext",
    }
}

/// `format_type` of the logical type with its modifier, as PostgreSQL prints it.
fn format_type_of(logical: LogicalType, modifier: Option<TypeModifier>) -> String {
    if let Some(m) = modifier {
        return m.type_name(logical);
    }
    match logical {
        LogicalType::Text => "text",
        LogicalType::Varchar => "character varying",
        LogicalType::Int2 => "smallint",
        LogicalType::Int4 => "integer",
        LogicalType::Int8 => "bigint",
        LogicalType::Bool => "boolean",
        LogicalType::Numeric => "numeric",
        LogicalType::Date => "date",
        LogicalType::Timestamp => "timestamp without time zone",
        LogicalType::Timestamptz => "timestamp with time zone",
        LogicalType::Uuid => "uuid",
        LogicalType::Bytea => "bytea",
        LogicalType::Jsonb => "jsonb",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_types_carry_the_modifier() {
        let numeric = TypeModifier::Numeric {
            precision: 12,
            scale: 2,
        };
        assert_eq!(
            rules_type(LogicalType::Numeric.oid(), numeric.typmod()).as_deref(),
            Some("numeric(12,2)")
        );
        assert_eq!(
            rules_type(
                LogicalType::Varchar.oid(),
                TypeModifier::Length(40).typmod()
            )
            .as_deref(),
            Some("varchar(40)")
        );
        assert_eq!(
            rules_type(LogicalType::Text.oid(), -1).as_deref(),
            Some("text")
        );
        assert_eq!(rules_type(600, -1), None);
        assert_eq!(
            type_sql(LogicalType::Numeric, Some(numeric)),
            "numeric(12,2)"
        );
    }
}
