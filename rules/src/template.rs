//! Built-in role templates: the read action, write right and compare right a role starts from
//! before its own overrides.

use std::fmt;

use crate::action::Action;
use crate::logical_type::LogicalType;
use crate::mask::Mask;

/// A built-in role template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Template {
    /// Plaintext reads, may write and compare.
    App,
    /// Masked reads (see [`Template::default_action`]), may compare, no writes.
    Support,
    /// Keyed pseudonyms (`mask:hash`) for every column, no writes, no comparisons with
    /// supplied values.
    Analyst,
    /// Ciphertext as stored, no writes to protected columns, no comparisons with supplied
    /// values.
    Dba,
    /// No protected data at all: any statement touching a protected column is refused.
    Auditor,
}

impl Template {
    pub const ALL: [Template; 5] = [
        Template::App,
        Template::Support,
        Template::Analyst,
        Template::Dba,
        Template::Auditor,
    ];

    /// The rules-file name.
    pub fn name(self) -> &'static str {
        match self {
            Template::App => "app",
            Template::Support => "support",
            Template::Analyst => "analyst",
            Template::Dba => "dba",
            Template::Auditor => "auditor",
        }
    }

    pub fn from_name(name: &str) -> Option<Template> {
        Template::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The names, for error messages.
    pub fn names() -> String {
        let names: Vec<&str> = Template::ALL.iter().map(|t| t.name()).collect();
        names.join(", ")
    }

    /// Whether roles from this template may write protected columns unless they say otherwise.
    pub fn default_write(self) -> bool {
        self == Template::App
    }

    /// Whether roles from this template may compare protected columns with values they supply
    /// unless they say otherwise. `analyst` and `dba` see pseudonyms or ciphertext: letting
    /// them have a guess encrypted and compared would give away every low-entropy column
    /// (ages, postcodes, SSNs) by enumeration. `auditor` sees nothing at all.
    pub fn default_compare(self) -> bool {
        matches!(self, Template::App | Template::Support)
    }

    /// The read action for a column no override names.
    ///
    /// `support` uses masks that are safe for any column of the type, since the template
    /// cannot know what a column holds: dates and timestamps show their year (rarely
    /// identifying on its own); everything else is redacted, because a numeric `range` step
    /// or a `partial` width that suits one column (age) gives another away (salary, short
    /// codes). Per-column overrides choose sharper masks (`mask:email`, `mask:last4`, ...).
    pub fn default_action(self, logical: LogicalType) -> Action {
        match self {
            Template::App => Action::Decrypt,
            Template::Support => Action::Mask(support_mask(logical)),
            Template::Analyst => Action::Mask(Mask::Hash),
            Template::Dba => Action::Ciphertext,
            Template::Auditor => Action::Deny,
        }
    }
}

fn support_mask(logical: LogicalType) -> Mask {
    match logical {
        LogicalType::Date | LogicalType::Timestamp | LogicalType::Timestamptz => Mask::Year,
        _ => Mask::Redact,
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_app_writes_by_default() {
        let writers: Vec<Template> = Template::ALL
            .into_iter()
            .filter(|t| t.default_write())
            .collect();
        assert_eq!(writers, [Template::App]);
    }

    #[test]
    fn only_app_and_support_compare_by_default() {
        let comparers: Vec<Template> = Template::ALL
            .into_iter()
            .filter(|t| t.default_compare())
            .collect();
        assert_eq!(comparers, [Template::App, Template::Support]);
    }

    #[test]
    fn support_sees_years_of_dates_and_redacted_rest() {
        let support = Template::Support;
        assert_eq!(
            support.default_action(LogicalType::Date),
            Action::Mask(Mask::Year)
        );
        assert_eq!(
            support.default_action(LogicalType::Timestamptz),
            Action::Mask(Mask::Year)
        );
        assert_eq!(
            support.default_action(LogicalType::Text),
            Action::Mask(Mask::Redact)
        );
        assert_eq!(
            support.default_action(LogicalType::Int4),
            Action::Mask(Mask::Redact)
        );
    }

    #[test]
    fn templates_round_trip_by_name() {
        for t in Template::ALL {
            assert_eq!(Template::from_name(t.name()), Some(t));
        }
        assert_eq!(Template::from_name("admin"), None);
    }
}
