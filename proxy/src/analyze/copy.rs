//! COPY: which positions of the row stream hold protected columns (of a table, or of the
//! query of `COPY (query) TO STDOUT`), and the framing options
//! the proxy needs to rewrite rows (text or CSV only; binary COPY is refused).

use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, Query,
};

use super::expr::Outputs;
use super::refusal;
use super::scope::fold;
use super::walk::{Res, Walker};
use super::{ColumnId, CopyDirection, CopyFormat, CopyInfo, CopyOptions, Usage};

/// The parts of `Statement::Copy` this module reads.
pub struct CopyStatement<'s> {
    pub source: &'s CopySource,
    pub to: bool,
    pub target: &'s CopyTarget,
    pub options: &'s [CopyOption],
    pub legacy_options: &'s [CopyLegacyOption],
}

impl<'a> Walker<'a> {
    /// Returns copy information when the COPY moves a protected table's rows.
    pub fn copy(&mut self, c: CopyStatement<'_>) -> Res<Option<CopyInfo>> {
        let (table, columns) = match c.source {
            CopySource::Query(q) => return self.copy_query(q, c),
            CopySource::Table {
                table_name: name,
                columns,
            } => (name, columns),
        };
        let (s, t) = self.relation(table)?;
        self.add_table(&s, &t);
        let Some(first) = self.schema.protected_columns_of(&s, &t).first().copied() else {
            return Ok(None);
        };
        let direction = if c.to {
            CopyDirection::To
        } else {
            CopyDirection::From
        };
        let through_client = matches!(
            (direction, c.target),
            (CopyDirection::From, CopyTarget::Stdin) | (CopyDirection::To, CopyTarget::Stdout)
        );
        if !through_client {
            return Err(self.refuse(first, "COPY to or from a server file or program"));
        }
        let options = copy_options(c.options, c.legacy_options);
        if options.format == CopyFormat::Binary {
            return Err(self.refuse(first, "binary COPY"));
        }
        let columns = self.copy_columns(&s, &t, columns)?;
        let usage = match direction {
            CopyDirection::From => Usage::Write,
            CopyDirection::To => Usage::Project,
        };
        for id in columns.iter().flatten() {
            self.use_column(*id, usage);
        }
        Ok(Some(CopyInfo {
            direction,
            columns,
            options,
        }))
    }

    /// `COPY (query) TO STDOUT`: analysed as the SELECT it runs; each field of the copied
    /// rows is the query's output column at its position, shown as the role sees it (the
    /// strictest action where a set operation merges columns, as for a result row).
    fn copy_query(&mut self, q: &Query, c: CopyStatement<'_>) -> Res<Option<CopyInfo>> {
        let before = self.uses.len();
        let out = self.query(q, None, Outputs::Needed)?;
        let Some(first) = self.uses.get(before).map(|u| u.column) else {
            return Ok(None);
        };
        if !matches!(c.target, CopyTarget::Stdout) {
            return Err(self.refuse(first, "COPY (query) to a server file or program"));
        }
        if !out.complete {
            return Err(self.refuse(
                first,
                "COPY (query) TO with * over a relation whose columns pgshroud does not know",
            ));
        }
        let options = copy_options(c.options, c.legacy_options);
        if options.format == CopyFormat::Binary {
            return Err(self.refuse(first, "binary COPY"));
        }
        Ok(Some(CopyInfo {
            direction: CopyDirection::To,
            columns: out.cols.iter().map(|col| col.column).collect(),
            options,
        }))
    }

    fn copy_columns(&self, s: &str, t: &str, columns: &[Ident]) -> Res<Vec<Option<ColumnId>>> {
        if !columns.is_empty() {
            return Ok(columns
                .iter()
                .map(|c| self.schema.lookup(s, t, &fold(c)))
                .collect());
        }
        match self.schema.table_columns(s, t) {
            Some(cols) => Ok(cols.iter().map(|c| self.schema.lookup(s, t, c)).collect()),
            None => Err(refusal::name_the_columns(s, t, "the COPY")),
        }
    }
}

/// Reads both the modern `WITH (...)` options and the pre-9.0 forms.
fn copy_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> CopyOptions {
    let mut o = CopyOptions::default();
    for opt in options {
        match opt {
            CopyOption::Format(f) => {
                o.format = match fold(f).as_str() {
                    "csv" => CopyFormat::Csv,
                    "binary" => CopyFormat::Binary,
                    _ => CopyFormat::Text,
                }
            }
            CopyOption::Delimiter(c) => o.delimiter = Some(*c),
            CopyOption::Null(n) => o.null = Some(n.clone()),
            CopyOption::Header(h) => o.header = *h,
            CopyOption::Quote(c) => o.quote = Some(*c),
            CopyOption::Escape(c) => o.escape = Some(*c),
            _ => {}
        }
    }
    for opt in legacy {
        match opt {
            CopyLegacyOption::Binary => o.format = CopyFormat::Binary,
            CopyLegacyOption::Csv(csv) => {
                o.format = CopyFormat::Csv;
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => o.header = true,
                        CopyLegacyCsvOption::Quote(q) => o.quote = Some(*q),
                        CopyLegacyCsvOption::Escape(e) => o.escape = Some(*e),
                        _ => {}
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => o.delimiter = Some(*c),
            CopyLegacyOption::Null(n) => o.null = Some(n.clone()),
            CopyLegacyOption::Header => o.header = true,
            _ => {}
        }
    }
    o
}
