//! `date`, `timestamp`, `timestamptz`: canonical form is the binary send format, i32 days or
//! i64 microseconds since 2000-01-01 (timestamptz in UTC), with PostgreSQL's `infinity`
//! values at the integer extremes.
//!
//! Text input covers ISO 8601 (`2024-01-02`, `2024-01-02 03:04:05.5`, `...T...`, `20240102`),
//! numeric UTC offsets (`+02`, `+02:30`, `+0230`, `Z`, `UTC`), `AD`/`BC`, and the keywords
//! `infinity`, `-infinity`, `epoch`. Differences from PostgreSQL, all by design:
//! - timestamptz text without an offset is read as UTC; PostgreSQL would use the session's
//!   `TimeZone`, which the proxy does not track;
//! - named zones (`Europe/Paris`), month names, `now`/`today` and other non-ISO styles are
//!   refused rather than guessed: they depend on settings or the clock;
//! - output is always `DateStyle = ISO` and, for timestamptz, `TimeZone = UTC` (`+00`).

use pgshroud_rules::LogicalType;

use super::calendar::{civil_from_days, days_from_civil, days_in_month};
use super::{fixed, trim_pg_space, ValueError};

const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_DAY: i64 = 86_400 * USECS_PER_SEC;
/// First valid date (4714-11-24 BC, Julian day 0), as days since 2000-01-01.
const DATE_MIN: i64 = -2_451_545;
/// First date past the end of `date`'s range (5874898-01-01).
const DATE_END: i64 = 2_145_031_949;
/// First valid timestamp (4714-11-24 00:00:00 BC) in microseconds since 2000-01-01.
const TIMESTAMP_MIN: i64 = -211_813_488_000_000_000;
/// First timestamp past the end of the range (294277-01-01 00:00:00).
const TIMESTAMP_END: i64 = 9_223_371_331_200_000_000;
/// Largest accepted UTC offset hour, as in PostgreSQL (`MAX_TZDISP_HOUR`).
const MAX_OFFSET_HOURS: i64 = 15;

/// A date or point in time as read from text, before it is reduced to one integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parsed {
    Infinity,
    NegInfinity,
    Moment {
        days: i64,
        /// Up to and including 24:00:00, as PostgreSQL allows.
        micros_of_day: i64,
        /// East of UTC, in seconds; `None` when the text had no zone.
        offset_secs: Option<i64>,
    },
}

pub(super) fn date_from_text(text: &str) -> Result<Vec<u8>, ValueError> {
    let ty = LogicalType::Date;
    let days = match parse(ty, text)? {
        Parsed::Infinity => i64::from(i32::MAX),
        Parsed::NegInfinity => i64::from(i32::MIN),
        // date_in drops the time of day and the zone.
        Parsed::Moment { days, .. } => check_date(ty, days)?,
    };
    Ok(i32::try_from(days)
        .map_err(|_| ValueError::OutOfRange { ty })?
        .to_be_bytes()
        .to_vec())
}

pub(super) fn timestamp_from_text(ty: LogicalType, text: &str) -> Result<Vec<u8>, ValueError> {
    let micros = match parse(ty, text)? {
        Parsed::Infinity => i64::MAX,
        Parsed::NegInfinity => i64::MIN,
        Parsed::Moment {
            days,
            micros_of_day,
            offset_secs,
        } => {
            let local = days
                .checked_mul(USECS_PER_DAY)
                .and_then(|d| d.checked_add(micros_of_day))
                .ok_or(ValueError::OutOfRange { ty })?;
            // timestamp (without time zone) ignores a zone in its input, as PostgreSQL does.
            let offset = match ty {
                LogicalType::Timestamptz => offset_secs.unwrap_or(0),
                _ => 0,
            };
            let utc = local
                .checked_sub(offset * USECS_PER_SEC)
                .ok_or(ValueError::OutOfRange { ty })?;
            check_timestamp(ty, utc)?
        }
    };
    Ok(micros.to_be_bytes().to_vec())
}

pub(super) fn date_from_binary(bytes: &[u8]) -> Result<Vec<u8>, ValueError> {
    let ty = LogicalType::Date;
    let days = i32::from_be_bytes(fixed::<4>(bytes, ValueError::length(ty, 4))?);
    decode_date(days).map_err(|_| ValueError::OutOfRange { ty })?;
    Ok(bytes.to_vec())
}

pub(super) fn timestamp_from_binary(ty: LogicalType, bytes: &[u8]) -> Result<Vec<u8>, ValueError> {
    let micros = i64::from_be_bytes(fixed::<8>(bytes, ValueError::length(ty, 8))?);
    if !is_infinite_timestamp(micros) {
        check_timestamp(ty, micros)?;
    }
    Ok(bytes.to_vec())
}

/// `YYYY-MM-DD`, with ` BC` for years before 1, as `date_out` prints with `DateStyle = ISO`.
pub(super) fn date_to_text(canonical: &[u8]) -> Result<String, ValueError> {
    let days = canonical_date(canonical)?;
    Ok(match decode_date(days)? {
        None if days > 0 => "infinity".to_owned(),
        None => "-infinity".to_owned(),
        Some(days) => {
            let (year, month, day) = civil_from_days(days);
            let (shown_year, era) = era_year(year);
            format!("{shown_year:04}-{month:02}-{day:02}{era}")
        }
    })
}

pub(super) fn date_to_binary(canonical: &[u8]) -> Result<Vec<u8>, ValueError> {
    decode_date(canonical_date(canonical)?)?;
    Ok(canonical.to_vec())
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` with trailing fractional zeros trimmed, `+00` for
/// timestamptz (shown in UTC) and ` BC` last, as `timestamp_out`/`timestamptz_out` print.
pub(super) fn timestamp_to_text(ty: LogicalType, canonical: &[u8]) -> Result<String, ValueError> {
    let micros = canonical_timestamp(ty, canonical)?;
    match micros {
        i64::MAX => return Ok("infinity".to_owned()),
        i64::MIN => return Ok("-infinity".to_owned()),
        _ => {}
    }
    let (year, month, day) = civil_from_days(micros.div_euclid(USECS_PER_DAY));
    let of_day = micros.rem_euclid(USECS_PER_DAY);
    let secs = of_day / USECS_PER_SEC;
    let (shown_year, era) = era_year(year);
    let mut out = format!(
        "{shown_year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    let fraction = of_day % USECS_PER_SEC;
    if fraction != 0 {
        out.push_str(format!(".{fraction:06}").trim_end_matches('0'));
    }
    if ty == LogicalType::Timestamptz {
        out.push_str("+00");
    }
    out.push_str(era);
    Ok(out)
}

pub(super) fn timestamp_to_binary(
    ty: LogicalType,
    canonical: &[u8],
) -> Result<Vec<u8>, ValueError> {
    canonical_timestamp(ty, canonical)?;
    Ok(canonical.to_vec())
}

fn canonical_date(canonical: &[u8]) -> Result<i32, ValueError> {
    let ty = LogicalType::Date;
    Ok(i32::from_be_bytes(fixed::<4>(
        canonical,
        ValueError::canonical(ty, "expected 4 bytes"),
    )?))
}

/// The day count of a finite date, `None` for ±infinity, an error outside the range.
fn decode_date(days: i32) -> Result<Option<i64>, ValueError> {
    if days == i32::MAX || days == i32::MIN {
        return Ok(None);
    }
    check_date(LogicalType::Date, i64::from(days))
        .map(Some)
        .map_err(|_| ValueError::canonical(LogicalType::Date, "outside the date range"))
}

fn canonical_timestamp(ty: LogicalType, canonical: &[u8]) -> Result<i64, ValueError> {
    let micros = i64::from_be_bytes(fixed::<8>(
        canonical,
        ValueError::canonical(ty, "expected 8 bytes"),
    )?);
    if !is_infinite_timestamp(micros) && check_timestamp(ty, micros).is_err() {
        return Err(ValueError::canonical(ty, "outside the timestamp range"));
    }
    Ok(micros)
}

fn is_infinite_timestamp(micros: i64) -> bool {
    micros == i64::MAX || micros == i64::MIN
}

fn check_date(ty: LogicalType, days: i64) -> Result<i64, ValueError> {
    if (DATE_MIN..DATE_END).contains(&days) {
        Ok(days)
    } else {
        Err(ValueError::OutOfRange { ty })
    }
}

fn check_timestamp(ty: LogicalType, micros: i64) -> Result<i64, ValueError> {
    if (TIMESTAMP_MIN..TIMESTAMP_END).contains(&micros) {
        Ok(micros)
    } else {
        Err(ValueError::OutOfRange { ty })
    }
}

/// Astronomical year -> (year as shown, era suffix): year 0 is 1 BC.
fn era_year(year: i64) -> (i64, &'static str) {
    if year <= 0 {
        (1 - year, " BC")
    } else {
        (year, "")
    }
}

/// Reads the text forms described in the module comment.
fn parse(ty: LogicalType, text: &str) -> Result<Parsed, ValueError> {
    let trimmed = trim_pg_space(text);
    match trimmed.to_ascii_lowercase().as_str() {
        "infinity" | "+infinity" => return Ok(Parsed::Infinity),
        "-infinity" => return Ok(Parsed::NegInfinity),
        "epoch" => {
            let epoch = days_from_civil(1970, 1, 1);
            return Ok(Parsed::Moment {
                days: epoch,
                micros_of_day: 0,
                offset_secs: None,
            });
        }
        "now" | "today" | "tomorrow" | "yesterday" => {
            return Err(ValueError::Unsupported {
                ty,
                reason: "relative dates depend on the server clock",
            })
        }
        _ => {}
    }
    let mut cursor = Cursor {
        rest: trimmed.as_bytes(),
        ty,
    };
    let (year, month, day) = cursor.date()?;
    let fields = cursor.trailing_fields()?;
    // There is no year 0 in AD/BC notation; internally 1 BC is year 0.
    if year == 0 {
        return Err(ValueError::OutOfRange { ty });
    }
    let year = if fields.bc { 1 - year } else { year };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(ValueError::OutOfRange { ty });
    }
    Ok(Parsed::Moment {
        days: days_from_civil(year, month, day),
        micros_of_day: fields.micros_of_day,
        offset_secs: fields.offset_secs,
    })
}

/// What may follow the date: a time, a zone, an era.
#[derive(Debug, Default)]
struct TrailingFields {
    micros_of_day: i64,
    offset_secs: Option<i64>,
    bc: bool,
}

/// A position in the text being parsed; every reader consumes what it recognises.
struct Cursor<'a> {
    rest: &'a [u8],
    ty: LogicalType,
}

impl Cursor<'_> {
    fn syntax(&self, reason: &'static str) -> ValueError {
        ValueError::syntax(self.ty, reason)
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.rest = &self.rest[1..];
        }
        found
    }

    fn skip_spaces(&mut self) -> bool {
        let before = self.rest.len();
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_whitespace() || b == 0x0b)
        {
            self.rest = &self.rest[1..];
        }
        before != self.rest.len()
    }

    /// A run of ASCII digits: (value, how many digits). Runs longer than 9 digits are refused.
    fn number(&mut self) -> Result<(i64, usize), ValueError> {
        let len = self.rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 || len > 9 {
            return Err(self.syntax("expected a number of at most 9 digits"));
        }
        let value = self.rest[..len]
            .iter()
            .fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
        self.rest = &self.rest[len..];
        Ok((value, len))
    }

    /// `YYYY-MM-DD` (year of four or more digits) or `YYYYMMDD`.
    fn date(&mut self) -> Result<(i64, u32, u32), ValueError> {
        let (first, len) = self.number()?;
        if len == 8 && self.peek() != Some(b'-') {
            return Ok((
                first / 10_000,
                month_or_day(first / 100 % 100),
                month_or_day(first % 100),
            ));
        }
        if len < 4 {
            return Err(self.syntax("expected an ISO date with a four-digit year, YYYY-MM-DD"));
        }
        let field = |cursor: &mut Self| -> Result<u32, ValueError> {
            if !cursor.eat(b'-') {
                return Err(cursor.syntax("expected an ISO date, YYYY-MM-DD"));
            }
            match cursor.number()? {
                (value, 1 | 2) => Ok(month_or_day(value)),
                _ => Err(cursor.syntax("expected an ISO date, YYYY-MM-DD")),
            }
        };
        let month = field(self)?;
        let day = field(self)?;
        Ok((first, month, day))
    }

    fn trailing_fields(&mut self) -> Result<TrailingFields, ValueError> {
        let mut fields = TrailingFields::default();
        let (mut seen_time, mut seen_zone, mut seen_era) = (false, false, false);
        loop {
            let spaced = self.skip_spaces();
            let Some(next) = self.peek() else {
                return Ok(fields);
            };
            let t_then_digit =
                matches!(next, b'T' | b't') && self.rest.get(1).is_some_and(u8::is_ascii_digit);
            if !seen_time
                && !seen_zone
                && !seen_era
                && ((spaced && next.is_ascii_digit()) || t_then_digit)
            {
                if t_then_digit {
                    self.rest = &self.rest[1..];
                }
                fields.micros_of_day = self.time()?;
                seen_time = true;
            } else if !seen_zone && !seen_era && matches!(next, b'+' | b'-') {
                fields.offset_secs = Some(self.offset()?);
                seen_zone = true;
            } else if next.is_ascii_alphabetic() && (spaced || seen_time) {
                let word = self.word();
                match word.as_str() {
                    "z" | "utc" | "gmt" | "zulu" if seen_zone || seen_era => {
                        return Err(self.syntax("misplaced or repeated time zone"))
                    }
                    "z" | "utc" | "gmt" | "zulu" => {
                        fields.offset_secs = Some(0);
                        seen_zone = true;
                    }
                    "ad" | "bc" if seen_era => return Err(self.syntax("repeated AD/BC")),
                    "ad" | "bc" => {
                        fields.bc = word == "bc";
                        seen_era = true;
                    }
                    _ => {
                        return Err(ValueError::Unsupported {
                            ty: self.ty,
                            reason: "only numeric UTC offsets, Z and UTC are supported as zones",
                        })
                    }
                }
            } else {
                return Err(self.syntax("unexpected text after the date"));
            }
        }
    }

    fn word(&mut self) -> String {
        let len = self
            .rest
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let word = String::from_utf8_lossy(&self.rest[..len]).to_ascii_lowercase();
        self.rest = &self.rest[len..];
        word
    }

    /// `HH:MM[:SS[.fraction]]`, checked as PostgreSQL's `time_overflows` does: up to
    /// 24:00:00 in total, and a leap second `:60` allowed (it rolls into the next minute).
    fn time(&mut self) -> Result<i64, ValueError> {
        let bad = |c: &Self| c.syntax("expected a time, HH:MM[:SS[.ffffff]]");
        let (hour, hour_len) = self.number()?;
        if hour_len > 2 || !self.eat(b':') {
            return Err(bad(self));
        }
        let (minute, minute_len) = self.number()?;
        let (mut second, mut micros) = (0, 0);
        if self.eat(b':') {
            let (value, len) = self.number()?;
            second = value;
            if len > 2 {
                return Err(bad(self));
            }
            if self.peek() == Some(b'.') {
                micros = self.fraction()?;
            }
        }
        if minute_len > 2 || hour > 24 || minute > 59 || second > 60 {
            return Err(ValueError::OutOfRange { ty: self.ty });
        }
        let total = ((hour * 60 + minute) * 60 + second) * USECS_PER_SEC + micros;
        if total > USECS_PER_DAY {
            return Err(ValueError::OutOfRange { ty: self.ty });
        }
        Ok(total)
    }

    /// Fractional seconds rounded to microseconds exactly as PostgreSQL does it:
    /// `rint(strtod(".fff") * 1000000)`, so ties go to even through a double.
    fn fraction(&mut self) -> Result<i64, ValueError> {
        let len = 1 + self.rest[1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if len == 1 {
            return Err(self.syntax("expected digits after the decimal point"));
        }
        let digits =
            std::str::from_utf8(&self.rest[..len]).map_err(|_| self.syntax("bad fraction"))?;
        let fraction: f64 = format!("0{digits}")
            .parse()
            .map_err(|_| self.syntax("bad fraction"))?;
        self.rest = &self.rest[len..];
        // In 0.0..=1_000_000.0 by construction, so the cast is exact.
        Ok((fraction * 1_000_000.0).round_ties_even() as i64)
    }

    /// `+HH`, `+HH:MM`, `+HH:MM:SS`, `+HHMM`, `+HHMMSS` (or `-`), as seconds east of UTC.
    fn offset(&mut self) -> Result<i64, ValueError> {
        // The caller saw a '+' or '-' here.
        let sign = if self.peek() == Some(b'-') { -1 } else { 1 };
        self.rest = &self.rest[1..];
        let (first, len) = self.number()?;
        let (hours, mut minutes, mut seconds) = match len {
            1 | 2 => (first, 0, 0),
            4 => (first / 100, first % 100, 0),
            6 => (first / 10_000, first / 100 % 100, first % 100),
            _ => return Err(self.syntax("expected a UTC offset, +HH[:MM]")),
        };
        if len <= 2 && self.eat(b':') {
            minutes = self.two_digits()?;
            if self.eat(b':') {
                seconds = self.two_digits()?;
            }
        }
        if hours > MAX_OFFSET_HOURS || minutes > 59 || seconds > 59 {
            return Err(ValueError::OutOfRange { ty: self.ty });
        }
        Ok(sign * (hours * 3600 + minutes * 60 + seconds))
    }

    fn two_digits(&mut self) -> Result<i64, ValueError> {
        match self.number()? {
            (value, 2) => Ok(value),
            _ => Err(self.syntax("expected two digits")),
        }
    }
}

/// Months and days are at most two digits here, so they fit; anything larger is caught by
/// the range check that follows.
fn month_or_day(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
