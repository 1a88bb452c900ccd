//! The logical types a protected column can have: what the application sees, while the
//! database stores `bytea`. Type OIDs are PostgreSQL's fixed built-in ones.

use std::fmt;

/// OID of `bytea`, the storage type of every protected column.
pub const BYTEA_OID: u32 = 17;
/// OID of `bytea[]`, what the server infers for `= ANY($n)` on a protected column.
pub const BYTEA_ARRAY_OID: u32 = 1001;
/// OID of `text`, the type of masked values.
pub const TEXT_OID: u32 = 25;

/// A logical type from the rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogicalType {
    Text,
    Varchar,
    Int2,
    Int4,
    Int8,
    Bool,
    Numeric,
    Date,
    Timestamp,
    Timestamptz,
    Uuid,
    Bytea,
    Jsonb,
}

impl LogicalType {
    /// Every logical type, in the order the documentation lists them.
    pub const ALL: [LogicalType; 13] = [
        LogicalType::Text,
        LogicalType::Varchar,
        LogicalType::Int2,
        LogicalType::Int4,
        LogicalType::Int8,
        LogicalType::Bool,
        LogicalType::Numeric,
        LogicalType::Date,
        LogicalType::Timestamp,
        LogicalType::Timestamptz,
        LogicalType::Uuid,
        LogicalType::Bytea,
        LogicalType::Jsonb,
    ];

    /// The name used in rules files and in PostgreSQL (`int4`, `timestamptz`, ...).
    pub fn name(self) -> &'static str {
        match self {
            LogicalType::Text => "text",
            LogicalType::Varchar => "varchar",
            LogicalType::Int2 => "int2",
            LogicalType::Int4 => "int4",
            LogicalType::Int8 => "int8",
            LogicalType::Bool => "bool",
            LogicalType::Numeric => "numeric",
            LogicalType::Date => "date",
            LogicalType::Timestamp => "timestamp",
            LogicalType::Timestamptz => "timestamptz",
            LogicalType::Uuid => "uuid",
            LogicalType::Bytea => "bytea",
            LogicalType::Jsonb => "jsonb",
        }
    }

    /// Parses a rules-file type name; common SQL spellings are accepted too.
    pub fn from_name(name: &str) -> Option<LogicalType> {
        let lower = name.trim().to_ascii_lowercase();
        let found = match lower.as_str() {
            "text" => LogicalType::Text,
            "varchar" | "character varying" => LogicalType::Varchar,
            "int2" | "smallint" => LogicalType::Int2,
            "int4" | "int" | "integer" => LogicalType::Int4,
            "int8" | "bigint" => LogicalType::Int8,
            "bool" | "boolean" => LogicalType::Bool,
            "numeric" | "decimal" => LogicalType::Numeric,
            "date" => LogicalType::Date,
            "timestamp" | "timestamp without time zone" => LogicalType::Timestamp,
            "timestamptz" | "timestamp with time zone" => LogicalType::Timestamptz,
            "uuid" => LogicalType::Uuid,
            "bytea" => LogicalType::Bytea,
            "jsonb" => LogicalType::Jsonb,
            _ => return None,
        };
        Some(found)
    }

    /// The type's OID, as `RowDescription` and `ParameterDescription` carry it.
    pub fn oid(self) -> u32 {
        match self {
            LogicalType::Text => 25,
            LogicalType::Varchar => 1043,
            LogicalType::Int2 => 21,
            LogicalType::Int4 => 23,
            LogicalType::Int8 => 20,
            LogicalType::Bool => 16,
            LogicalType::Numeric => 1700,
            LogicalType::Date => 1082,
            LogicalType::Timestamp => 1114,
            LogicalType::Timestamptz => 1184,
            LogicalType::Uuid => 2950,
            LogicalType::Bytea => 17,
            LogicalType::Jsonb => 3802,
        }
    }

    /// The logical type whose OID this is, if any.
    pub fn from_oid(oid: u32) -> Option<LogicalType> {
        LogicalType::ALL.into_iter().find(|t| t.oid() == oid)
    }

    /// The logical type whose array type has this OID, if any.
    pub fn from_array_oid(oid: u32) -> Option<LogicalType> {
        LogicalType::ALL.into_iter().find(|t| t.array_oid() == oid)
    }

    /// The OID of the type's array type (`int4[]` ...), for `= ANY($n)` parameters.
    pub fn array_oid(self) -> u32 {
        match self {
            LogicalType::Text => 1009,
            LogicalType::Varchar => 1015,
            LogicalType::Int2 => 1005,
            LogicalType::Int4 => 1007,
            LogicalType::Int8 => 1016,
            LogicalType::Bool => 1000,
            LogicalType::Numeric => 1231,
            LogicalType::Date => 1182,
            LogicalType::Timestamp => 1115,
            LogicalType::Timestamptz => 1185,
            LogicalType::Uuid => 2951,
            LogicalType::Bytea => 1001,
            LogicalType::Jsonb => 3807,
        }
    }

    /// `typlen` as `RowDescription` reports it: the fixed size, or -1 for variable length.
    pub fn type_len(self) -> i16 {
        match self {
            LogicalType::Int2 => 2,
            LogicalType::Int4 | LogicalType::Date => 4,
            LogicalType::Int8 | LogicalType::Timestamp | LogicalType::Timestamptz => 8,
            LogicalType::Bool => 1,
            LogicalType::Uuid => 16,
            _ => -1,
        }
    }
}

/// A type modifier, as PostgreSQL declares it on a column: `numeric(12, 2)`, `varchar(100)`,
/// `timestamp(3)`. The proxy then behaves like the typed column would: it rounds values to the
/// scale or precision before encryption (so equal values still encrypt alike), refuses values
/// too long or too large with PostgreSQL's own errors, and reports the modifier to drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeModifier {
    /// `numeric(precision, scale)`.
    Numeric { precision: u16, scale: u16 },
    /// `varchar(n)`: at most `n` characters.
    Length(u32),
    /// `timestamp(p)`, `timestamptz(p)`: `p` fractional digits of seconds.
    Precision(u8),
    /// Unconstrained `numeric` whose rules say `keep_scale = true`: not a PostgreSQL typmod
    /// (the column reports -1), but the display scale each value was written with is kept in
    /// the canonical form, so `85000.50` reads back as `85000.50`. The price: values equal
    /// to PostgreSQL but written with different scales (`1.5`, `1.50`) encrypt differently,
    /// so equality, unique indexes, joins and GROUP BY treat them as different.
    KeepScale,
}

/// Largest `numeric` precision PostgreSQL accepts in a type modifier.
const NUMERIC_MAX_PRECISION: u16 = 1000;
/// Largest `varchar(n)` PostgreSQL accepts.
const VARCHAR_MAX_LENGTH: u32 = 10_485_760;
/// Largest fractional-second precision of `timestamp(p)`.
const TIMESTAMP_MAX_PRECISION: u8 = 6;

impl TypeModifier {
    /// `atttypmod` as PostgreSQL stores it and `RowDescription` carries it.
    pub fn typmod(self) -> i32 {
        const VARHDRSZ: i32 = 4;
        match self {
            TypeModifier::Numeric { precision, scale } => {
                ((i32::from(precision) << 16) | i32::from(scale)) + VARHDRSZ
            }
            // Bounded by VARCHAR_MAX_LENGTH, far below i32::MAX.
            TypeModifier::Length(n) => n as i32 + VARHDRSZ,
            TypeModifier::Precision(p) => i32::from(p),
            TypeModifier::KeepScale => -1,
        }
    }

    /// The type with its modifier, as PostgreSQL prints it (`character varying(10)`).
    pub fn type_name(self, logical: LogicalType) -> String {
        match (self, logical) {
            (TypeModifier::Numeric { precision, scale }, _) => {
                format!("numeric({precision},{scale})")
            }
            (TypeModifier::Length(n), _) => format!("character varying({n})"),
            (TypeModifier::Precision(p), LogicalType::Timestamptz) => {
                format!("timestamp({p}) with time zone")
            }
            (TypeModifier::Precision(p), _) => format!("timestamp({p}) without time zone"),
            (TypeModifier::KeepScale, _) => "numeric".to_owned(),
        }
    }
}

/// Parses a rules-file column type with an optional modifier: `numeric(12, 2)`, `numeric(5)`,
/// `varchar(100)`, `timestamp(3)`, `timestamptz(0)`. The error says what is wrong.
pub fn parse_column_type(text: &str) -> Result<(LogicalType, Option<TypeModifier>), String> {
    let Some((name, rest)) = text.split_once('(') else {
        return LogicalType::from_name(text)
            .map(|t| (t, None))
            .ok_or_else(|| "unknown type".to_owned());
    };
    let logical = LogicalType::from_name(name).ok_or_else(|| "unknown type".to_owned())?;
    let args = rest
        .trim_end()
        .strip_suffix(')')
        .ok_or_else(|| "expected a closing parenthesis".to_owned())?;
    let numbers = args
        .split(',')
        .map(|a| a.trim().parse::<u32>())
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|_| "modifiers are unsigned whole numbers".to_owned())?;
    let modifier = match (logical, numbers.as_slice()) {
        (LogicalType::Numeric, [p]) => numeric_modifier(*p, 0)?,
        (LogicalType::Numeric, [p, s]) => numeric_modifier(*p, *s)?,
        (LogicalType::Varchar, [n]) if (1..=VARCHAR_MAX_LENGTH).contains(n) => {
            TypeModifier::Length(*n)
        }
        (LogicalType::Varchar, [_]) => {
            return Err(format!("length must be between 1 and {VARCHAR_MAX_LENGTH}"))
        }
        (LogicalType::Timestamp | LogicalType::Timestamptz, [p]) => {
            match u8::try_from(*p)
                .ok()
                .filter(|p| *p <= TIMESTAMP_MAX_PRECISION)
            {
                Some(p) => TypeModifier::Precision(p),
                None => {
                    return Err(format!(
                        "precision must be between 0 and {TIMESTAMP_MAX_PRECISION}"
                    ))
                }
            }
        }
        (LogicalType::Numeric, _) => return Err("write numeric(precision, scale)".to_owned()),
        (LogicalType::Varchar, _) => return Err("write varchar(length)".to_owned()),
        (LogicalType::Timestamp | LogicalType::Timestamptz, _) => {
            return Err("write timestamp(precision)".to_owned())
        }
        (other, _) => return Err(format!("type {other} takes no modifier")),
    };
    Ok((logical, Some(modifier)))
}

fn numeric_modifier(precision: u32, scale: u32) -> Result<TypeModifier, String> {
    let max = u32::from(NUMERIC_MAX_PRECISION);
    if !(1..=max).contains(&precision) {
        return Err(format!("numeric precision must be between 1 and {max}"));
    }
    if scale > precision {
        return Err("numeric scale must be between 0 and the precision".to_owned());
    }
    // Both bounded by NUMERIC_MAX_PRECISION.
    Ok(TypeModifier::Numeric {
        precision: precision as u16,
        scale: scale as u16,
    })
}

impl fmt::Display for LogicalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in LogicalType::ALL {
            assert_eq!(LogicalType::from_name(t.name()), Some(t));
        }
        assert_eq!(LogicalType::from_name("money"), None);
    }

    #[test]
    fn modifiers_parse_and_encode_like_postgres() {
        let (t, m) = parse_column_type("numeric(12, 2)").unwrap();
        assert_eq!(t, LogicalType::Numeric);
        // PostgreSQL's atttypmod for numeric(12,2) is 786438.
        assert_eq!(m.unwrap().typmod(), 786_438);
        assert_eq!(
            parse_column_type("varchar(10)")
                .unwrap()
                .1
                .unwrap()
                .typmod(),
            14
        );
        assert_eq!(
            parse_column_type("timestamptz(3)").unwrap(),
            (LogicalType::Timestamptz, Some(TypeModifier::Precision(3)))
        );
        assert_eq!(
            parse_column_type("text").unwrap(),
            (LogicalType::Text, None)
        );
        for bad in [
            "numeric(0)",
            "numeric(5,6)",
            "varchar(0)",
            "timestamp(7)",
            "int4(3)",
            "numeric(5",
            "numeric(a)",
        ] {
            assert!(parse_column_type(bad).is_err(), "{bad}");
        }
    }
}
