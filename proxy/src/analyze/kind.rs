//! The one classification of statements by kind, used by roles' `statements` lists, audit
//! events and the `statements_total{kind}` metric alike: from a parse tree (`statement.rs`,
//! `pg_kind.rs`), from a statement's leading words (texts the proxy does not parse), and from
//! the server's CommandComplete tag (what actually ran).

/// What a statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    Copy,
    /// Schema changes, rights and comments (`CREATE`, `ALTER`, `DROP`, `TRUNCATE`, `GRANT`).
    Ddl,
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, ...
    Transaction,
    /// `SET`, `SHOW`, `RESET`, `DISCARD`, `DEALLOCATE` and other session commands.
    Utility,
    /// Anything else (`DO`, `CALL`, `VACUUM`, `LISTEN`, ...).
    Other,
}

impl StatementKind {
    /// Every kind, in declaration order (the metrics create one series per kind).
    pub const ALL: &'static [StatementKind] = &[
        StatementKind::Select,
        StatementKind::Insert,
        StatementKind::Update,
        StatementKind::Delete,
        StatementKind::Merge,
        StatementKind::Copy,
        StatementKind::Ddl,
        StatementKind::Transaction,
        StatementKind::Utility,
        StatementKind::Other,
    ];

    /// The name in audit events, metrics labels and roles' `statements` lists.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Select => "select",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Merge => "merge",
            StatementKind::Copy => "copy",
            StatementKind::Ddl => "ddl",
            StatementKind::Transaction => "transaction",
            StatementKind::Utility => "utility",
            StatementKind::Other => "other",
        }
    }

    /// Transaction control and session commands: drivers send these on their own, so roles'
    /// `statements` lists never restrict them.
    pub fn is_session(self) -> bool {
        matches!(self, StatementKind::Transaction | StatementKind::Utility)
    }

    /// The kind of a statement from its first keyword (any case), for texts the proxy does not
    /// parse.
    pub fn of_keyword(word: &str) -> StatementKind {
        if word.bytes().any(|b| b.is_ascii_lowercase()) {
            Self::of_upper_keyword(&word.to_ascii_uppercase())
        } else {
            Self::of_upper_keyword(word)
        }
    }

    /// [`Self::of_keyword`] of a word already in upper case (command tags, the normaliser's
    /// words): no allocation, as the statement meter runs it for every CommandComplete.
    fn of_upper_keyword(word: &str) -> StatementKind {
        match word {
            "SELECT" | "VALUES" | "TABLE" => StatementKind::Select,
            "INSERT" => StatementKind::Insert,
            "UPDATE" => StatementKind::Update,
            "DELETE" => StatementKind::Delete,
            "MERGE" => StatementKind::Merge,
            "COPY" => StatementKind::Copy,
            "CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "COMMENT" | "GRANT" | "REVOKE"
            | "SECURITY" | "REINDEX" | "CLUSTER" | "REFRESH" | "IMPORT" => StatementKind::Ddl,
            "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT"
            | "RELEASE" => StatementKind::Transaction,
            "SET" | "SHOW" | "RESET" | "DISCARD" | "DEALLOCATE" => StatementKind::Utility,
            _ => StatementKind::Other,
        }
    }

    /// The kind of a statement from its leading words (upper case): the first keyword, except
    /// that a `WITH` query is named after its first data-changing word, and `PREPARE
    /// TRANSACTION` is transaction control.
    pub fn of_leading_words(words: &[&str]) -> StatementKind {
        let first = words.first().copied().unwrap_or("");
        match first {
            "WITH" => words
                .iter()
                .find_map(|w| match *w {
                    "INSERT" | "UPDATE" | "DELETE" | "MERGE" => Some(Self::of_upper_keyword(w)),
                    _ => None,
                })
                .unwrap_or(StatementKind::Select),
            "PREPARE" if words.get(1) == Some(&"TRANSACTION") => StatementKind::Transaction,
            word => Self::of_upper_keyword(word),
        }
    }

    /// The kind a `CommandComplete` tag (`INSERT 0 1`, `SELECT 5`, `CREATE TABLE`) stands for.
    pub fn of_command_tag(tag: &[u8]) -> StatementKind {
        let word_end = tag
            .iter()
            .position(|b| !b.is_ascii_alphabetic())
            .unwrap_or(tag.len());
        match std::str::from_utf8(&tag[..word_end]) {
            // `PREPARE TRANSACTION` and `PREPARE name AS ...` (which runs nothing yet) both
            // count as transaction control, as the metrics always counted them.
            Ok("PREPARE") => StatementKind::Transaction,
            Ok(word) => Self::of_upper_keyword(word),
            Err(_) => StatementKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StatementKind::{self, *};

    #[test]
    fn tags_words_and_keywords_agree() {
        for (tag, kind) in [
            ("INSERT 0 3", Insert),
            ("SELECT 5", Select),
            ("CREATE TABLE", Ddl),
            ("TRUNCATE TABLE", Ddl),
            ("COMMIT", Transaction),
            ("SET", Utility),
            ("MERGE 1", Merge),
            ("DO", Other),
        ] {
            assert_eq!(StatementKind::of_command_tag(tag.as_bytes()), kind, "{tag}");
            let words: Vec<&str> = tag.split(' ').collect();
            assert_eq!(StatementKind::of_leading_words(&words), kind, "{tag}");
        }
        assert_eq!(
            StatementKind::of_leading_words(&["WITH", "X", "AS", "DELETE"]),
            Delete
        );
        assert_eq!(StatementKind::of_leading_words(&["WITH", "X"]), Select);
        assert_eq!(StatementKind::of_keyword("rollback"), Transaction);
        assert!(Utility.is_session() && Transaction.is_session() && !Ddl.is_session());
    }
}
