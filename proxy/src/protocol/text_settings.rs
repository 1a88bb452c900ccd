//! The server settings that decide how statement text is read (`client_encoding`,
//! `standard_conforming_strings`), followed from the server's `ParameterStatus` messages: the
//! server reports every change however it was made (startup options, `SET`, `set_config`,
//! `RESET`, function `SET` clauses), so this is the one reliable source.

use crate::protocol::error::PgError;

/// SQLSTATE of text pgshroud cannot read in the session's encoding: character_not_in_repertoire.
pub use crate::protocol::error::sqlstate::CHARACTER_NOT_IN_REPERTOIRE;

/// How the session's statement text is to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSettings {
    /// `client_encoding` as the server reported it (PostgreSQL's canonical name, `UTF8`).
    pub client_encoding: String,
    pub standard_conforming_strings: bool,
}

/// How statement text of a session reads, for the tokenizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMode {
    /// UTF-8, backslashes in '...' are plain characters: what the analyser reads.
    Standard,
    /// UTF-8, but backslashes in '...' escape (standard_conforming_strings off).
    BackslashEscapes,
    /// Not UTF-8: the bytes cannot be read as the server reads them.
    OtherEncoding,
}

impl Default for TextSettings {
    /// PostgreSQL's defaults, until the server reports otherwise.
    fn default() -> Self {
        TextSettings {
            client_encoding: "UTF8".into(),
            standard_conforming_strings: true,
        }
    }
}

impl TextSettings {
    /// The settings after the startup's `ParameterStatus` messages.
    pub fn from_parameters(parameters: &[(String, String)]) -> TextSettings {
        let mut settings = TextSettings::default();
        for (name, value) in parameters {
            settings.observe(name, value);
        }
        settings
    }

    /// Takes in one reported parameter; others than the two are ignored.
    pub fn observe(&mut self, name: &str, value: &str) {
        match name {
            "client_encoding" => self.client_encoding = value.to_owned(),
            "standard_conforming_strings" => {
                self.standard_conforming_strings = value.eq_ignore_ascii_case("on")
            }
            _ => {}
        }
    }

    /// Takes in a whole `ParameterStatus` message (name and value as C strings).
    pub fn observe_message(&mut self, frame: &[u8]) {
        let mut parts = frame.get(5..).unwrap_or_default().split(|&b| b == 0);
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            return;
        };
        if let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) {
            self.observe(name, value);
        }
    }

    fn utf8(&self) -> bool {
        // PostgreSQL reports its canonical name; the alias is accepted all the same.
        self.client_encoding.eq_ignore_ascii_case("UTF8")
            || self.client_encoding.eq_ignore_ascii_case("UTF-8")
    }

    pub fn mode(&self) -> TextMode {
        if !self.utf8() {
            TextMode::OtherEncoding
        } else if !self.standard_conforming_strings {
            TextMode::BackslashEscapes
        } else {
            TextMode::Standard
        }
    }

    /// Refuses analysis unless the text reads as the analyser reads it.
    pub fn check_analysable(&self) -> Result<(), PgError> {
        let (code, state, fix) = match self.mode() {
            TextMode::Standard => return Ok(()),
            TextMode::OtherEncoding => (
                CHARACTER_NOT_IN_REPERTOIRE,
                format!("client_encoding {}", self.client_encoding),
                "SET client_encoding = 'UTF8'",
            ),
            TextMode::BackslashEscapes => (
                crate::protocol::error::sqlstate::FEATURE_NOT_SUPPORTED,
                "standard_conforming_strings off".to_owned(),
                "SET standard_conforming_strings = on",
            ),
        };
        Err(PgError::error(
            code,
            format!(
                "pgshroud analyses statements only with client_encoding UTF8 and standard_conforming_strings on; this session has {state}: {fix}"
            ),
        ))
    }
}

/// Reads statement text as UTF-8, refusing (22021) what is not: it is never converted lossily,
/// since a replaced byte would change a value that is then encrypted and stored.
pub fn utf8_text(bytes: &[u8]) -> Result<&str, PgError> {
    std::str::from_utf8(bytes).map_err(|e| {
        PgError::error(
            CHARACTER_NOT_IN_REPERTOIRE,
            format!(
                "invalid byte sequence for encoding \"UTF8\" at byte {} of the statement text: pgshroud does not pass on text it cannot read",
                e.valid_up_to()
            ),
        )
    })
}

/// Whether a statement text may roll a transaction back (undoing a `SET` made in it).
pub fn may_roll_back(sql: &[u8]) -> bool {
    has_word(sql, &[b"rollback", b"abort"])
}

/// Whether `sql` holds one of `words` as a whole word (ASCII case-insensitive).
fn has_word(sql: &[u8], words: &[&[u8]]) -> bool {
    // One pass over the text's words (every statement of a session with rules comes here).
    let part_of_word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$' || *b >= 0x80;
    sql.split(|b| !part_of_word(b))
        .filter(|word| !word.is_empty())
        .any(|word| words.iter().any(|w| word.eq_ignore_ascii_case(w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::message;

    #[test]
    fn rollbacks_are_recognised_by_whole_words() {
        assert!(may_roll_back(b"ROLLBACK"));
        assert!(may_roll_back(b"rollback to savepoint a"));
        assert!(!may_roll_back(b"SELECT rollbacks FROM stats"));
    }

    #[test]
    fn parameter_status_messages_change_the_mode() {
        let mut s = TextSettings::from_parameters(&[("client_encoding".into(), "UTF8".into())]);
        assert_eq!(s.mode(), TextMode::Standard);
        s.observe_message(&message(b'S', b"standard_conforming_strings\0off\0"));
        assert_eq!(s.mode(), TextMode::BackslashEscapes);
        s.observe_message(&message(b'S', b"client_encoding\0LATIN1\0"));
        assert_eq!(s.mode(), TextMode::OtherEncoding);
        let e = s.check_analysable().unwrap_err();
        assert_eq!(e.code, CHARACTER_NOT_IN_REPERTOIRE);
        assert!(e
            .message
            .contains("client_encoding LATIN1: SET client_encoding = 'UTF8'"));
        s.observe_message(&message(b'S', b"client_encoding\0UTF8\0"));
        let e = s.check_analysable().unwrap_err();
        assert!(e.message.contains("SET standard_conforming_strings = on"));
        s.observe_message(&message(b'S', b"standard_conforming_strings\0on\0"));
        assert!(s.check_analysable().is_ok());
        // A short or odd message changes nothing.
        s.observe_message(&message(b'S', b""));
        s.observe_message(b"S");
        assert_eq!(s.mode(), TextMode::Standard);
    }

    #[test]
    fn invalid_utf8_is_refused_not_replaced() {
        assert_eq!(utf8_text(b"select 1").unwrap(), "select 1");
        let e = utf8_text(b"insert into t values ('\xe9')").unwrap_err();
        assert_eq!(e.code, CHARACTER_NOT_IN_REPERTOIRE);
    }
}
