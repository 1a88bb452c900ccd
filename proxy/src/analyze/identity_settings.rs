//! Whether a text touches pgshroud's identity settings (`pgshroud.user`, `pgshroud.role`,
//! `pgshroud.tenant`), which row-level security policies trust, as PostgreSQL's grammar reads
//! it: `SET`/`RESET`, `set_config` under any spelling, the `SET` clauses of functions, roles
//! and databases, `UPDATE pg_settings`, and code bodies that could do any of these. The only
//! change a client may ask for is its tenant (`SET`/`RESET pgshroud.tenant`, for roles allowed
//! to choose); everything else naming the prefix is refused by the session.

use super::pg_reading::{self, PgStatement, SetForm, Setting};
use std::borrow::Cow;
use std::sync::LazyLock;

use super::settings::changes_by_word;
use super::{spelling, sql_text};

/// The prefix of every identity setting (PostgreSQL folds setting names to lower case).
pub const PREFIX: &str = "pgshroud.";
/// The setting a role with `choose_tenant` may change.
pub const TENANT: &str = "pgshroud.tenant";

/// Statements PostgreSQL's own tools send that call `set_config` with a name read from
/// `pg_settings` rather than a constant, known by their exact bytes: each sets only the
/// setting its WHERE names. (pg_dump since 2024's minor releases, before dumping.)
const TOOL_STATEMENTS: [&str; 1] = [
    "SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'",
];

/// What a text does to the identity settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IdentityTouch {
    /// Nothing.
    #[default]
    None,
    /// `RESET ALL` or `DISCARD ALL`: the server puts every setting back to the value pgshroud
    /// gave it at connection start (the identity settings are startup parameters).
    ResetAll,
    /// The text is one session-level `SET pgshroud.tenant = 'id'` (`Some(id)`, not yet
    /// validated) or `RESET pgshroud.tenant` / `SET pgshroud.tenant TO DEFAULT` (`None`).
    ChooseTenant(Option<String>),
    /// A text with such a word (but not the prefix itself) that PostgreSQL's grammar (as
    /// pgshroud reads it) does not parse: refused as the syntax error the server would most
    /// likely report.
    Unreadable,
    /// Anything else that changes, or may change, an identity setting: what it is, for the
    /// client's error message (a setting name or a description, never a value).
    Refused(String),
    /// One SELECT, INSERT, UPDATE, DELETE or MERGE whose `set_config` calls name their
    /// setting by parameters (`set_config($1, $2, false)`, each `$n` used once): the values
    /// the Bind supplies decide (an extended-protocol statement; a simple query has none).
    BoundNames(Vec<usize>),
}

/// How `sql` touches the identity settings. Texts without a word that could start such a
/// change are not parsed; a text PostgreSQL's grammar cannot read counts as a refusal when it
/// has one.
pub fn identity_touch(sql: &str) -> IdentityTouch {
    if !may_touch(sql) || TOOL_STATEMENTS.contains(&sql) {
        return IdentityTouch::None;
    }
    let Ok(reading) = pg_reading::read(sql) else {
        // A text naming the prefix is refused as an attempt on the settings (its author
        // learns why); any other is most likely the syntax error the server would report.
        if spelling::contains_any_ignore_ascii_case(sql, &["pgshroud"]) {
            return IdentityTouch::Refused(
                "a text PostgreSQL's grammar (as pgshroud reads it) does not parse".into(),
            );
        }
        return IdentityTouch::Unreadable;
    };
    if let Some(refused) = run_text_refusal(sql) {
        return IdentityTouch::Refused(refused);
    }
    let mut reset_all = false;
    let mut bound = Vec::new();
    for statement in &reading.statements {
        if let Some(refused) = refusal(statement) {
            return IdentityTouch::Refused(refused);
        }
        if let Some(choice) = tenant_choice(statement) {
            return match reading.statements.len() {
                1 => IdentityTouch::ChooseTenant(choice),
                _ => IdentityTouch::Refused(format!(
                    "{TENANT} changed together with other statements (send SET {TENANT} as a statement of its own)"
                )),
            };
        }
        reset_all |= statement.discards_all
            || statement
                .variable_sets
                .iter()
                .any(|s| s.top && s.form == SetForm::ResetAll);
        bound.extend(statement.set_config_names.iter().filter_map(|s| match s {
            Setting::Bound(n) => Some(*n),
            _ => None,
        }));
    }
    if !bound.is_empty() {
        return match &reading.statements[..] {
            [statement] if !reset_all && bound_once(statement, &bound) => {
                IdentityTouch::BoundNames(bound)
            }
            _ => IdentityTouch::Refused(NOT_A_CONSTANT.into()),
        };
    }
    if reset_all {
        IdentityTouch::ResetAll
    } else {
        IdentityTouch::None
    }
}

/// The refusal of a `set_config` whose setting name the proxy cannot know.
const NOT_A_CONSTANT: &str = "set_config with a setting name that is not a constant";

/// Whether every parameter in `bound` is the Bind's value (see `PgStatement::binds_params`)
/// and appears once in `statement`, as set_config's first argument: its type is then
/// resolved from set_config's signature (text) alone.
fn bound_once(statement: &PgStatement, bound: &[usize]) -> bool {
    statement.binds_params
        && bound.iter().all(|&n| {
            n > 0
                && bound.iter().filter(|&&m| m == n).count() == 1
                && statement.params.iter().filter(|p| p.number == n).count() == 1
        })
}

/// How the session's text reads, as far as the identity check needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// UTF-8, or an encoding in which every byte below 0x80 is that ASCII character and no
    /// other byte is (LATIN1, WIN1252, EUC_JP, ...): the text's tokens, all ASCII where they
    /// matter, are those PostgreSQL reads (other characters become U+FFFD, which PostgreSQL's
    /// scanner also takes as part of a name or string), with standard_conforming_strings on.
    Exact,
    /// An encoding that hides ASCII bytes inside characters (SJIS, BIG5, GBK, UHC, JOHAB,
    /// GB18030), standard_conforming_strings off (backslashes end strings elsewhere), or a
    /// change of either still unanswered: a text showing a word that could change an
    /// identity setting is refused unread.
    Unsure,
}

/// Whether PostgreSQL's client encoding `name` keeps every ASCII byte a character of its own.
pub fn ascii_safe_encoding(name: &str) -> bool {
    let unsafe_ones = [
        "SJIS",
        "SHIFT_JIS_2004",
        "BIG5",
        "GBK",
        "UHC",
        "JOHAB",
        "GB18030",
    ];
    !unsafe_ones.iter().any(|e| name.eq_ignore_ascii_case(e))
}

/// [`identity_touch`] of a text as the session sends it.
pub fn identity_touch_in(sql: &[u8], reading: Reading) -> IdentityTouch {
    // UTF-8 (nearly every text) is checked by the fast validator; only other bytes are
    // replaced, as `from_utf8_lossy` does.
    let text = match std::str::from_utf8(sql) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(sql),
    };
    match reading {
        Reading::Exact => identity_touch(&text),
        Reading::Unsure if names_or_hides(&text) => IdentityTouch::Refused(
            "a text pgshroud cannot read as the server will (client_encoding or standard_conforming_strings) that may name them".into(),
        ),
        Reading::Unsure => IdentityTouch::None,
    }
}

/// The cheap gate: what [`names_or_hides`] flags, the words that start setting changes (see
/// `settings::may_change_settings`: `RESET ALL`, `DISCARD ALL`), and calls of server
/// functions that run SQL text (`query_to_xml`, `dblink`, ...). The three gates' union, read
/// in one pass for their words (one automaton), one for the decoding forms each of them
/// also flags, and one for the settings keywords.
pub(super) fn may_touch(sql: &str) -> bool {
    static WORDS_AND_TRIGGERS: LazyLock<spelling::Words> = LazyLock::new(|| {
        spelling::Words::new(&[&NAME_WORDS[..], &sql_text::TRIGGERS[..]].concat())
    });
    WORDS_AND_TRIGGERS.in_text(sql) || spelling::may_hide_text(sql) || changes_by_word(sql)
}

/// What [`names_or_hides`] looks for.
const NAME_WORDS: [&str; 5] = ["pgshroud", "set_config", "pg_settings", "execute", "reset"];

/// The words without which no text, however run, can change an identity setting: the prefix,
/// `set_config`, `pg_settings`, dynamic SQL (`EXECUTE`, which can build any of them),
/// `reset` (`RESET ALL` in a body), and forms PostgreSQL decodes into words the bytes do not
/// show.
/// Runs on every statement of a session with rules: no lower-cased copy of the text.
fn names_or_hides(sql: &str) -> bool {
    static WORDS: LazyLock<spelling::Words> = LazyLock::new(|| spelling::Words::new(&NAME_WORDS));
    WORDS.in_text(sql) || spelling::may_hide_text(sql)
}

/// SQL texts a statement hands to server functions that run them (`query_to_xml('SELECT
/// set_config(...)')`): each is read like a statement of its own. A call whose text is
/// computed is refused; calls that only read tables (`schema_to_xml`) and trigger creation
/// (its function's body was checked when it was created through pgshroud) are not settings
/// changes.
fn run_text_refusal(sql: &str) -> Option<String> {
    if !sql_text::may_run_sql_text(sql) {
        return None;
    }
    match sql_text::sql_text_calls(sql) {
        sql_text::SqlText::None => None,
        sql_text::SqlText::Literals(texts) => texts
            .iter()
            .any(|t| identity_touch(t) != IdentityTouch::None)
            .then(|| "SQL text run by a server function that changes them".to_owned()),
        sql_text::SqlText::Unreadable(what)
            if what.starts_with("creating a trigger")
                || what.contains("which reads tables not named") =>
        {
            None
        }
        sql_text::SqlText::Unreadable(what) => Some(what),
    }
}

/// The tenant a statement chooses: a top-level, session-level `SET pgshroud.tenant` with one
/// constant, or its `RESET`. (`SET LOCAL` and other forms are refused by [`refusal`].)
fn tenant_choice(statement: &PgStatement) -> Option<Option<String>> {
    let set = statement.variable_sets.first().filter(|s| s.top)?;
    if set.name != TENANT || set.local {
        return None;
    }
    match &set.form {
        SetForm::Value(Some(id)) => Some(Some(id.clone())),
        SetForm::Default => Some(None),
        _ => None,
    }
}

/// What in `statement` touches an identity setting in a way no role may ask for.
fn refusal(statement: &PgStatement) -> Option<String> {
    for set in &statement.variable_sets {
        if !set.name.starts_with(PREFIX) {
            continue;
        }
        let choosing = set.top && set.name == TENANT && !set.local;
        let plain_form = matches!(set.form, SetForm::Value(Some(_)) | SetForm::Default);
        if !(choosing && plain_form) {
            let how = match (set.top, set.local) {
                (false, _) => "a SET clause of a function, procedure, role or database for",
                (true, true) => "SET LOCAL of",
                (true, false) => "this form of SET for",
            };
            return Some(format!("{how} {}", set.name));
        }
    }
    for setting in &statement.set_config_names {
        match setting {
            Setting::Named(name) if name.starts_with(PREFIX) => {
                return Some(format!("set_config of {name}"))
            }
            Setting::Named(_) | Setting::Bound(_) => {}
            _ => return Some(NOT_A_CONSTANT.into()),
        }
    }
    let pg_settings = statement
        .relations
        .iter()
        .any(|r| r.name.eq_ignore_ascii_case("pg_settings"));
    if pg_settings && statement.updates {
        return Some("UPDATE of pg_settings (it runs set_config)".into());
    }
    if statement.bodies.iter().any(|b| body_may_touch(b)) {
        return Some("code (a DO block or function body) that could change them".into());
    }
    None
}

/// A code body is not read as the server will run it (PL/pgSQL, dynamic SQL): one whose text
/// shows a word that could change an identity setting is refused.
fn body_may_touch(body: &str) -> bool {
    names_or_hides(body)
}

#[cfg(test)]
mod tool_statement_tests {
    use super::*;

    #[test]
    fn pg_dumps_own_set_config_passes_and_nothing_like_it() {
        assert_eq!(identity_touch(TOOL_STATEMENTS[0]), IdentityTouch::None);
        for near in [
            "SELECT set_config(name, 'acme', false) FROM pg_settings WHERE name = 'pgshroud.tenant'",
            "SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind' OR true",
            "SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind';SELECT 1",
        ] {
            assert!(
                matches!(identity_touch(near), IdentityTouch::Refused(_)),
                "{near}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> bool {
        matches!(
            identity_touch(sql),
            IdentityTouch::Refused(_) | IdentityTouch::Unreadable
        )
    }

    #[test]
    fn every_way_to_set_an_identity_setting_is_refused() {
        for sql in [
            "SET pgshroud.user = 'alice'",
            "SET pgshroud.role TO admin",
            "SET SESSION pgshroud.role = 'admin'",
            "SET LOCAL pgshroud.tenant = 'acme'",
            "SET PGSHROUD.Role = 'admin'",
            r#"SET "pgshroud".role = 'admin'"#,
            r#"SET U&"pgshroud\002erole" = 'admin'"#,
            "RESET pgshroud.user",
            "SET pgshroud.user TO DEFAULT",
            "SET pgshroud.tenant FROM CURRENT",
            "SET pgshroud.tenant = 'a', 'b'",
            "SELECT set_config('pgshroud.tenant', 'acme', false)",
            "SELECT pg_catalog.set_config('PGSHROUD.tenant', 'acme', true)",
            r#"SELECT U&"set\005fconfig"('pgshroud.tenant', 'acme', false)"#,
            r#"SELECT set_config(U&'pgshroud\002etenant', 'acme', false)"#,
            "SELECT set_config(E'pgshroud\\x2etenant', 'acme', false)",
            "SELECT set_config('pgs' || 'hroud.tenant', 'acme', false)",
            "SELECT set_config($1::text, $2, false)",
            "SELECT set_config($1, $2, false), $1",
            "SELECT set_config($1, 'a', false), set_config($1, 'b', false)",
            "PREPARE p AS SELECT set_config($1, 'a', false)",
            "EXPLAIN SELECT set_config($1, 'a', false)",
            "CREATE FUNCTION f(text) RETURNS text BEGIN ATOMIC SELECT set_config($1, 'a', false); END",
            "SELECT set_config($1, 'a', false); SELECT 1",
            "DISCARD ALL; SELECT set_config($1, 'a', false)",
            "SELECT set_config('pgshroud.tenant'::text, 'acme', false)",
            "SELECT * FROM t WHERE id = (SELECT 1 FROM set_config('pgshroud.tenant', 'a', false))",
            "SELECT 1; SELECT set_config('pgshroud.role', 'x', false)",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET pgshroud.tenant = 'acme' AS 'SELECT 1'",
            "ALTER FUNCTION f() SET pgshroud.tenant = 'acme'",
            "ALTER PROCEDURE p() SET pgshroud.tenant TO 'acme'",
            "ALTER ROLE app SET pgshroud.tenant = 'acme'",
            "ALTER ROLE app IN DATABASE db SET pgshroud.role = 'admin'",
            "ALTER DATABASE db SET pgshroud.user = 'alice'",
            "ALTER SYSTEM SET pgshroud.tenant = 'acme'",
            "UPDATE pg_settings SET setting = 'acme' WHERE name = 'pgshroud.tenant'",
            "UPDATE pg_catalog.pg_settings SET setting = 'x'",
            "WITH u AS (UPDATE pg_settings SET setting = 'x' RETURNING 1) SELECT 1",
            "DO $$ BEGIN PERFORM set_config('pgshroud.tenant', 'acme', false); END $$",
            "DO $$ BEGIN EXECUTE 'SE' || 'T pgs' || 'hroud.tenant = 1'; END $$",
            "CREATE FUNCTION g() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET pgshroud.tenant = 'a'; END $$",
            "SET pgshroud.tenant = 'acme'; SELECT 1",
            "SELECT query_to_xml('SELECT pg_catalog.set_config(''pgshroud.tenant'', ''x'', false)', true, false, '')",
            "SELECT query_to_xml('SELECT set_' || 'config(1)', true, false, '')",
            "DO $$ BEGIN RESET ALL; END $$",
            "SELECT set_config('pgshroud.tenant', 'acme', false",
        ] {
            assert!(refused(sql), "{sql}");
        }
    }

    #[test]
    fn the_tenant_choice_is_read_exactly() {
        let choose = |sql| identity_touch(sql);
        assert_eq!(
            choose("SET pgshroud.tenant = 'acme'"),
            IdentityTouch::ChooseTenant(Some("acme".into()))
        );
        assert_eq!(
            choose("set SESSION PgShroud.Tenant to globex"),
            IdentityTouch::ChooseTenant(Some("globex".into()))
        );
        assert_eq!(
            choose("/* c */ SET pgshroud.tenant = 'a b'"),
            IdentityTouch::ChooseTenant(Some("a b".into()))
        );
        assert_eq!(
            choose("RESET pgshroud.tenant"),
            IdentityTouch::ChooseTenant(None)
        );
        assert_eq!(
            choose("SET pgshroud.tenant TO DEFAULT"),
            IdentityTouch::ChooseTenant(None)
        );
    }

    #[test]
    fn set_config_names_bound_once_in_a_plain_statement_are_left_to_the_bind() {
        for (sql, params) in [
            ("SELECT set_config($1, $2, false)", vec![1]),
            (
                "select SET_CONFIG($2, $1, true), set_config($3, 'x', false)",
                vec![2, 3],
            ),
            ("UPDATE t SET a = set_config($1, 'x', false)", vec![1]),
            (
                "WITH c AS (SELECT set_config($1, 'x', false)) SELECT * FROM c",
                vec![1],
            ),
        ] {
            assert_eq!(
                identity_touch(sql),
                IdentityTouch::BoundNames(params),
                "{sql}"
            );
        }
    }

    #[test]
    fn resets_of_everything_are_seen_and_others_are_not() {
        for sql in ["RESET ALL", "DISCARD ALL", "SELECT 1; DISCARD ALL"] {
            assert_eq!(identity_touch(sql), IdentityTouch::ResetAll, "{sql}");
        }
        for sql in [
            "DISCARD PLANS",
            "DISCARD TEMP",
            "SET search_path = app",
            "SELECT set_config('search_path', 'app', false)",
            "SELECT * FROM pg_settings WHERE name LIKE 'pgshroud.%'",
            "SELECT current_setting('pgshroud.tenant', true)",
            "UPDATE t SET a = 1",
            "ALTER ROLE app SET search_path = app",
            "SHOW pgshroud.tenant",
            "DO $$ BEGIN RAISE NOTICE 'what to do'; END $$",
            "SELECT query_to_xml('SELECT 1', true, false, '')",
        ] {
            assert_eq!(identity_touch(sql), IdentityTouch::None, "{sql}");
        }
    }
}
