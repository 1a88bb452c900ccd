//! A protected column as the value code sees it: where it is, what the application sees,
//! and its key context. Its own module so that the codec and the tenant refusals can both
//! name it without naming each other.

use std::sync::Arc;

use pgshroud_rules::{LogicalType, TypeModifier};

use crate::crypto::KeyContext;

/// A protected column: where it is, what the application sees, and its key context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    /// `schema.table.column`, for messages and audit.
    pub qualified: String,
    pub logical: LogicalType,
    /// `numeric(12, 2)`, `varchar(100)`, `timestamp(3)` from the rules file.
    pub modifier: Option<TypeModifier>,
    pub context: KeyContext,
}

pub type Spec = Arc<ColumnSpec>;
