//! `pgshroud keygen --kms-key-id ARN`: a new master key wrapped by an AWS KMS key, printed as
//! the `[[keys]]` entry the keys file takes. Only the wrapped blob is printed: the plaintext
//! key KMS also returns is zeroed at once and never leaves this process.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::args::KeygenArgs;
use crate::crypto::kms::generate_wrapped_key;

/// The entry text, or why KMS did not give a key (naming the KMS key, never key material).
pub fn kms_entry(args: &KeygenArgs) -> Result<String, String> {
    let key_id = args
        .kms_key_id
        .as_deref()
        .ok_or("keygen: --kms-key-id is required here")?;
    if args.key_version == 0 {
        return Err("keygen: --key-version must be 1 or more".into());
    }
    let wrapped =
        generate_wrapped_key(key_id, args.kms_endpoint.as_deref(), args.region.as_deref())
            .map_err(|e| format!("KMS key {key_id}: {e}"))?;
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    let mut entry = format!(
        "# A new pgshroud master key, wrapped by KMS key {key_id} (only KMS can unwrap it).\n\
         # Add this entry to the keys file; to seal new values with it, set active = {version}\n\
         # and activated_at to when you do, then reload pgshroud and run `pgshroud rotate`.\n\
         [[keys]]\n\
         version = {version}\n\
         kms_key_id = {key_id_toml}\n\
         wrapped = \"{wrapped}\"\n",
        version = args.key_version,
        key_id_toml = toml_string(key_id),
    );
    if let Some(region) = &args.region {
        entry.push_str(&format!("kms_region = {}\n", toml_string(region)));
    }
    if let Some(endpoint) = &args.kms_endpoint {
        entry.push_str(&format!("kms_endpoint = {}\n", toml_string(endpoint)));
    }
    entry.push_str(&format!(
        "activated_at = {}",
        now.format(&Rfc3339).map_err(|e| e.to_string())?
    ));
    Ok(entry)
}

/// A TOML basic string (ARNs and URLs have no quotes, but an alias name might).
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}
