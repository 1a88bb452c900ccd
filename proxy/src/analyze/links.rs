//! Links between protected columns that a role's actions must agree on: columns compared with
//! each other, columns whose values meet in one result column (set operations), and columns
//! whose values a write copies into another.

use super::walk::Walker;
use super::ColumnId;

/// How two protected columns of one key context meet in a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// `a = b`, `a IN (SELECT b ...)`, `JOIN ... USING`: whoever reads one learns which values
    /// of the other match it.
    Compared,
    /// `SELECT a ... UNION SELECT b ...`: values of both reach the same result column.
    Merged,
    /// `INSERT INTO .. (a) SELECT b`, `SET a = b`: values of `b` are stored in `a`.
    Copied,
}

/// Two protected columns linked by a statement (`a` is the write target for `Copied`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnLink {
    pub a: ColumnId,
    pub b: ColumnId,
    pub kind: LinkKind,
}

impl Walker<'_> {
    /// Records that `a` and `b` meet; a column meeting itself tells nothing.
    pub fn link(&mut self, a: ColumnId, b: ColumnId, kind: LinkKind) {
        let link = ColumnLink { a, b, kind };
        if a != b && !self.links.contains(&link) {
            self.links.push(link);
        }
    }
}

/// Every column whose values can reach a result column that `id` reaches: `id` and, through
/// `Merged` links, the columns of the other branches (transitively). Over-approximates
/// across a statement's set operations, which only makes the strictest action stricter.
pub fn merged_with(id: ColumnId, links: &[ColumnLink]) -> Vec<ColumnId> {
    let mut found = vec![id];
    let mut i = 0;
    while let Some(&at) = found.get(i) {
        for link in links.iter().filter(|l| l.kind == LinkKind::Merged) {
            let other = if link.a == at {
                link.b
            } else if link.b == at {
                link.a
            } else {
                continue;
            };
            if !found.contains(&other) {
                found.push(other);
            }
        }
        i += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(a: ColumnId, b: ColumnId) -> ColumnLink {
        ColumnLink {
            a,
            b,
            kind: LinkKind::Merged,
        }
    }

    #[test]
    fn merged_columns_are_found_transitively_and_other_links_ignored() {
        let links = [
            merged(0, 1),
            merged(2, 1),
            ColumnLink {
                a: 2,
                b: 3,
                kind: LinkKind::Compared,
            },
        ];
        let mut found = merged_with(0, &links);
        found.sort_unstable();
        assert_eq!(found, [0, 1, 2]);
        assert_eq!(merged_with(3, &links), [3]);
    }
}
