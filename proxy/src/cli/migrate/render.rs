//! `--dry-run`: the plan as text, with the statements the run would execute.

use std::fmt::Write as _;

use super::convert::Direction;
use super::plan::{form, Plan};
use super::sql;

impl Plan {
    /// The plan as `--dry-run` prints it.
    pub fn render(&self, batch: u32) -> String {
        let direction = self.direction.unwrap_or(Direction::Encrypt);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Plan ({}): {} column(s) to migrate, {} already done.",
            match direction {
                Direction::Encrypt => "encrypt",
                Direction::Decrypt => "decrypt",
            },
            self.columns.len(),
            self.done.len()
        );
        for d in &self.done {
            let _ = writeln!(out, "  {d}: already done");
        }
        for c in &self.columns {
            let _ = writeln!(
                out,
                "  {}: {} -> {}, key context {:?}, {} rows to fill{}{}",
                c.spec.qualified,
                c.attr.type_name,
                match direction {
                    Direction::Encrypt => "bytea envelopes under the guard".to_owned(),
                    Direction::Decrypt => c.shadow_type(direction),
                },
                c.spec.context.as_str(),
                c.to_fill,
                if c.attr.not_null {
                    ", NOT NULL kept"
                } else {
                    ""
                },
                if c.resumed {
                    " (resuming an interrupted run)"
                } else {
                    ""
                }
            );
        }
        for r in &self.rebuilds {
            let _ = writeln!(
                out,
                "  kept: {} {} (rebuilt on the {}{})",
                match r.old.constraint.as_ref().map(|(k, _)| k.as_str()) {
                    Some("p") => "primary key",
                    Some(_) => "unique constraint",
                    None if r.old.unique => "unique index",
                    None => "index",
                },
                r.old.constraint.as_ref().map_or(&r.old.name, |(_, n)| n),
                form(direction),
                match (direction, r.old.unique) {
                    (Direction::Encrypt, false) => ": it serves equality; range scans and ORDER BY on the column are not possible on ciphertext",
                    _ => "",
                }
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        for i in &self.incompatible {
            let _ = writeln!(out, "  cannot be kept: {i}");
        }
        for p in &self.problems {
            let _ = writeln!(out, "  PROBLEM: {p}");
        }
        if !self.columns.is_empty() {
            let _ = writeln!(out, "Statements:");
            for s in sql::prepare_statements(self, direction) {
                let _ = writeln!(out, "  {s};");
            }
            let _ = writeln!(
                out,
                "  -- fill the shadow columns in batches of {batch} rows, one short transaction each, in ctid order"
            );
            for s in sql::index_statements(self) {
                let _ = writeln!(out, "  {s};");
            }
            let _ = writeln!(
                out,
                "  -- verify: every shadow value holds what the column holds"
            );
            let _ = writeln!(out, "  -- the swap, one short transaction:");
            for s in sql::swap_statements(self, direction, true) {
                let end = if s.starts_with("--") { "" } else { ";" };
                let _ = writeln!(out, "  {s}{end}");
            }
            for s in sql::after_swap_statements(self, direction) {
                let _ = writeln!(out, "  {s};");
            }
        }
        out
    }
}
