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
}
