//! Operator commands that work on values and rules without a running proxy:
//! `pgshroud encrypt`, `pgshroud decrypt` and `pgshroud check`.

use std::path::Path;

use crate::cli::args::ColumnValueArgs;
use crate::crypto::{KeyContext, KeyRing, MasterKeySource};
use crate::protect::codec::{self, ColumnSpec};
use crate::protect::wire::Format;

/// Encrypts a plaintext value (text form of the column's logical type) -> stored bytes, hex.
pub fn encrypt(args: &ColumnValueArgs) -> Result<String, String> {
    let (spec, ring) = column(args)?;
    let mut cipher = ring.cipher_for(&spec.context);
    let sealed = codec::seal(&spec, &mut cipher, Format::Text, args.value.as_bytes())
        .map_err(|e| e.message)?;
    Ok(hex::encode(sealed))
}

/// Decrypts stored bytes (hex, optionally `\x`-prefixed) -> the value's text form.
pub fn decrypt(args: &ColumnValueArgs) -> Result<String, String> {
    let (spec, ring) = column(args)?;
    let digits = args.value.trim();
    let digits = digits.strip_prefix("\\x").unwrap_or(digits);
    let stored = hex::decode(digits).map_err(|_| "the value is not hex".to_owned())?;
    let mut cipher = ring.cipher_for(&spec.context);
    let plain = codec::open(&spec, &mut cipher, Format::Binary, &stored, Format::Text)
        .map_err(|e| e.message)?;
    String::from_utf8(plain).map_err(|_| "decrypted value is not text".to_owned())
}

/// Validates a rules file and renders what each role sees.
pub fn check(rules: &Path) -> Result<String, String> {
    let rules = pgshroud_rules::load(rules).map_err(|e| e.to_string())?;
    Ok(pgshroud_rules::check_report(&rules))
}

fn column(args: &ColumnValueArgs) -> Result<(ColumnSpec, KeyRing), String> {
    let rules = pgshroud_rules::load(&args.rules).map_err(|e| e.to_string())?;
    let mut parts = args.column.splitn(3, '.');
    let (Some(schema), Some(table), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "--column {}: write the column as schema.table.column",
            args.column
        ));
    };
    let (t, c) = rules.column(schema, table, name).ok_or_else(|| {
        format!(
            "{} is not a protected column in {}",
            args.column,
            args.rules.display()
        )
    })?;
    let spec = ColumnSpec {
        qualified: format!("{}.{}.{}", t.schema, t.name, c.name),
        logical: c.logical,
        modifier: c.modifier,
        context: KeyContext::new(t.context_of(c)),
    };
    let source = MasterKeySource::from_settings(
        args.master_key_file.as_deref(),
        args.master_key_command.as_deref(),
    );
    let loaded = source
        .load()
        .map_err(|e| format!("master key ({source}): {e}"))?;
    Ok((spec, KeyRing::single(loaded.key)))
}
