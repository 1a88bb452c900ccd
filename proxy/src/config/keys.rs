//! The key versions file (`keys_file`): every live master key with its version, its own source
//! and when it became active, and which one is active. Read at start-up and again on every
//! reload, so a new version is picked up without a restart.

use std::path::{Path, PathBuf};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::crypto::kms::{KmsKey, KmsObserver, NoKmsObserver, WrappedKey};
use crate::crypto::{KeyLoadWarning, KeyRing, KeyVersion, MasterKey, MasterKeySource};

/// One `[[keys]]` entry as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryText {
    version: u32,
    file: Option<PathBuf>,
    command: Option<String>,
    env: Option<String>,
    /// A master key wrapped by this AWS KMS key (ARN, key id or alias), with `wrapped` (base64)
    /// or `wrapped_file`, and optionally `kms_endpoint` / `kms_region`.
    kms_key_id: Option<String>,
    wrapped: Option<String>,
    wrapped_file: Option<PathBuf>,
    kms_endpoint: Option<String>,
    kms_region: Option<String>,
    activated_at: Option<toml::value::Datetime>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    active: u32,
    keys: Vec<EntryText>,
}

/// One configured key version (no key material: that is loaded by [`KeysFile::load`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub version: KeyVersion,
    pub source: MasterKeySource,
    /// When the version became (or becomes) active; the key age gauge counts from it.
    pub activated_at: Option<OffsetDateTime>,
}

/// A validated keys file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysFile {
    pub path: PathBuf,
    pub active: KeyVersion,
    pub entries: Vec<KeyEntry>,
}

/// The key ring a keys file gives, with what the operator should hear about.
#[derive(Debug)]
pub struct LoadedKeys {
    pub ring: KeyRing,
    /// When the active version became active, if the file says.
    pub active_since: Option<OffsetDateTime>,
    pub warnings: Vec<KeyLoadWarning>,
}

impl KeysFile {
    /// Reads and checks the file; errors name the file, the entry and the fix, never a key.
    pub fn read(path: &Path) -> Result<KeysFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read keys file {}: {e}", path.display()))?;
        KeysFile::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<KeysFile, String> {
        let shown = path.display();
        let file: FileText =
            toml::from_str(text).map_err(|e| format!("keys file {shown}: {}", e.message()))?;
        let mut entries: Vec<KeyEntry> = Vec::new();
        for mut entry in file.keys {
            let version = entry.version;
            if version == 0 {
                return Err(format!(
                    "keys file {shown}: key version 0 is not allowed; versions start at 1"
                ));
            }
            let kms = kms_source(&shown, version, &mut entry)?;
            let source = match (entry.file, entry.command, entry.env, kms) {
                (Some(path), None, None, None) => MasterKeySource::File { path },
                (None, Some(command), None, None) => MasterKeySource::Command { command },
                (None, None, Some(var), None) => MasterKeySource::Env { var },
                (None, None, None, Some(kms)) => MasterKeySource::Kms(kms),
                _ => {
                    return Err(format!(
                        "keys file {shown}: key version {version} needs exactly one of file, command, env or kms_key_id"
                    ))
                }
            };
            let activated_at = match entry.activated_at {
                None => None,
                Some(at) => Some(OffsetDateTime::parse(&at.to_string(), &Rfc3339).map_err(|_| {
                    format!(
                        "keys file {shown}: activated_at of key version {version} must be a date and time with its offset, e.g. 2026-12-06T19:00:00Z"
                    )
                })?),
            };
            let version = KeyVersion::new(version);
            if entries.iter().any(|e| e.version == version) {
                return Err(format!(
                    "keys file {shown}: key version {version} is given more than once"
                ));
            }
            entries.push(KeyEntry {
                version,
                source,
                activated_at,
            });
        }
        let active = KeyVersion::new(file.active);
        let Some(active_entry) = entries.iter().find(|e| e.version == active) else {
            return Err(format!(
                "keys file {shown}: active = {active}, but no [[keys]] entry has version {active}"
            ));
        };
        if active_entry.activated_at.is_none() {
            return Err(format!(
                "keys file {shown}: the active key version {active} needs activated_at (when it became active), for the key age policy"
            ));
        }
        Ok(KeysFile {
            path: path.to_owned(),
            active,
            entries,
        })
    }

    /// Loads every version's master key. Blocking (files, commands, KMS).
    pub fn load(&self) -> Result<LoadedKeys, String> {
        self.load_observed(&NoKmsObserver)
    }

    /// Loads every version's master key, telling `kms` of each KMS call. Blocking.
    pub fn load_observed(&self, kms: &dyn KmsObserver) -> Result<LoadedKeys, String> {
        let mut masters: Vec<(KeyVersion, MasterKey)> = Vec::new();
        let mut warnings = Vec::new();
        for entry in &self.entries {
            let loaded = entry
                .source
                .load_observed(kms)
                .map_err(|e| format!("key version {} ({}): {e}", entry.version, entry.source))?;
            warnings.extend(loaded.warning);
            masters.push((entry.version, loaded.key));
        }
        let ring = KeyRing::new(self.active, masters).map_err(|e| e.to_string())?;
        let active_since = self
            .entries
            .iter()
            .find(|e| e.version == self.active)
            .and_then(|e| e.activated_at);
        Ok(LoadedKeys {
            ring,
            active_since,
            warnings,
        })
    }
}

/// The entry's KMS source, when it names `kms_key_id`; the KMS-only fields need it.
fn kms_source(
    shown: &std::path::Display<'_>,
    version: u32,
    entry: &mut EntryText,
) -> Result<Option<KmsKey>, String> {
    let Some(key_id) = entry.kms_key_id.take() else {
        if entry.wrapped.is_some()
            || entry.wrapped_file.is_some()
            || entry.kms_endpoint.is_some()
            || entry.kms_region.is_some()
        {
            return Err(format!(
                "keys file {shown}: key version {version} has wrapped, wrapped_file, kms_endpoint or kms_region but no kms_key_id"
            ));
        }
        return Ok(None);
    };
    let wrapped = match (entry.wrapped.take(), entry.wrapped_file.take()) {
        (Some(text), None) => WrappedKey::Inline(text),
        (None, Some(path)) => WrappedKey::File(path),
        _ => {
            return Err(format!(
                "keys file {shown}: key version {version} (kms_key_id) needs exactly one of wrapped (base64) or wrapped_file"
            ))
        }
    };
    Ok(Some(KmsKey {
        key_id,
        wrapped,
        endpoint: entry.kms_endpoint.take(),
        region: entry.kms_region.take(),
    }))
}

/// Where the master keys come from: a keys file, else one key from `master_key_file`,
/// `master_key_command` or `PGSHROUD_MASTER_KEY` (version 1, never rotated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysConfig {
    File(PathBuf),
    Single(MasterKeySource),
}

impl KeysConfig {
    pub fn from_settings(
        keys_file: Option<&Path>,
        master_key_file: Option<&Path>,
        master_key_command: Option<&str>,
    ) -> KeysConfig {
        match keys_file {
            Some(path) => KeysConfig::File(path.to_owned()),
            None => KeysConfig::Single(MasterKeySource::from_settings(
                master_key_file,
                master_key_command,
            )),
        }
    }

    /// Loads the key ring (blocking).
    pub fn load(&self) -> Result<LoadedKeys, String> {
        self.load_observed(&NoKmsObserver)
    }

    /// Loads the key ring, telling `kms` of each KMS call (blocking).
    pub fn load_observed(&self, kms: &dyn KmsObserver) -> Result<LoadedKeys, String> {
        match self {
            KeysConfig::File(path) => KeysFile::read(path)?.load_observed(kms),
            KeysConfig::Single(source) => {
                let loaded = source
                    .load_observed(kms)
                    .map_err(|e| format!("master key ({source}): {e}"))?;
                Ok(LoadedKeys {
                    ring: KeyRing::single(loaded.key),
                    active_since: None,
                    warnings: loaded.warning.into_iter().collect(),
                })
            }
        }
    }

    /// The file to watch for changes, if any.
    pub fn watched_file(&self) -> Option<&Path> {
        match self {
            KeysConfig::File(path) => Some(path),
            KeysConfig::Single(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn parse(text: &str) -> Result<KeysFile, String> {
        KeysFile::parse(text, Path::new("keys.toml"))
    }

    #[test]
    fn a_keys_file_names_each_version_its_source_and_the_active_one() {
        let file = parse(
            r#"
active = 2
[[keys]]
version = 1
env = "OLD_KEY"
[[keys]]
version = 2
command = "echo secret"
activated_at = 2026-12-06T19:00:00Z
"#,
        )
        .unwrap();
        assert_eq!(file.active, KeyVersion::new(2));
        assert_eq!(
            file.entries[0].source,
            MasterKeySource::Env {
                var: "OLD_KEY".into()
            }
        );
        assert_eq!(
            file.entries[1].activated_at.unwrap().unix_timestamp(),
            1_796_583_600
        );
    }

    #[test]
    fn mistakes_are_named_with_the_fix() {
        let no_active = parse("active = 3\n[[keys]]\nversion = 1\nenv = \"K\"\n").unwrap_err();
        assert!(
            no_active.contains("no [[keys]] entry has version 3"),
            "{no_active}"
        );
        let two_sources = parse(
            "active = 1\n[[keys]]\nversion = 1\nenv = \"K\"\nfile = \"/k\"\nactivated_at = 2026-01-01T00:00:00Z\n",
        )
        .unwrap_err();
        assert!(
            two_sources.contains("exactly one of file, command, env or kms_key_id"),
            "{two_sources}"
        );
        let twice = parse(
            "active = 1\n[[keys]]\nversion = 1\nenv = \"K\"\n[[keys]]\nversion = 1\nenv = \"L\"\n",
        )
        .unwrap_err();
        assert!(twice.contains("more than once"), "{twice}");
        let no_time = parse("active = 1\n[[keys]]\nversion = 1\nenv = \"K\"\n").unwrap_err();
        assert!(no_time.contains("needs activated_at"), "{no_time}");
        let local_time = parse(
            "active = 1\n[[keys]]\nversion = 1\nenv = \"K\"\nactivated_at = 2026-01-01T00:00:00\n",
        )
        .unwrap_err();
        assert!(local_time.contains("with its offset"), "{local_time}");
        let zero = parse("active = 0\n[[keys]]\nversion = 0\nenv = \"K\"\n").unwrap_err();
        assert!(zero.contains("versions start at 1"), "{zero}");
    }

    #[test]
    fn a_kms_entry_names_the_kms_key_its_wrapped_blob_and_overrides() {
        let file = parse(
            r#"
active = 1
[[keys]]
version = 1
kms_key_id = "arn:aws:kms:eu-west-1:111122223333:key/k1"
wrapped_file = "/etc/pgshroud/v1.wrapped"
kms_endpoint = "https://vpce.example"
kms_region = "eu-west-1"
activated_at = 2026-12-06T19:00:00Z
"#,
        )
        .unwrap();
        assert_eq!(
            file.entries[0].source,
            MasterKeySource::Kms(KmsKey {
                key_id: "arn:aws:kms:eu-west-1:111122223333:key/k1".into(),
                wrapped: WrappedKey::File("/etc/pgshroud/v1.wrapped".into()),
                endpoint: Some("https://vpce.example".into()),
                region: Some("eu-west-1".into()),
            })
        );
        assert_eq!(
            file.entries[0].source.to_string(),
            "KMS key arn:aws:kms:eu-west-1:111122223333:key/k1"
        );
        let both = parse(
            "active = 1\n[[keys]]\nversion = 1\nkms_key_id = \"k\"\nwrapped = \"AA==\"\nwrapped_file = \"/w\"\nactivated_at = 2026-01-01T00:00:00Z\n",
        )
        .unwrap_err();
        assert!(
            both.contains("exactly one of wrapped (base64) or wrapped_file"),
            "{both}"
        );
        let orphan = parse(
            "active = 1\n[[keys]]\nversion = 1\nenv = \"K\"\nwrapped = \"AA==\"\nactivated_at = 2026-01-01T00:00:00Z\n",
        )
        .unwrap_err();
        assert!(orphan.contains("but no kms_key_id"), "{orphan}");
        let kms_and_env = parse(
            "active = 1\n[[keys]]\nversion = 1\nenv = \"K\"\nkms_key_id = \"k\"\nwrapped = \"AA==\"\nactivated_at = 2026-01-01T00:00:00Z\n",
        )
        .unwrap_err();
        assert!(
            kms_and_env.contains("exactly one of file, command, env or kms_key_id"),
            "{kms_and_env}"
        );
    }

    #[test]
    fn a_kms_blob_that_is_not_base64_is_refused_before_any_call() {
        let file = parse(
            "active = 1\n[[keys]]\nversion = 1\nkms_key_id = \"alias/pgshroud\"\nwrapped = \"not*base64\"\nkms_region = \"us-east-1\"\nactivated_at = 2026-01-01T00:00:00Z\n",
        )
        .unwrap();
        let err = file.load().unwrap_err();
        assert!(
            err.starts_with("key version 1 (KMS key alias/pgshroud)"),
            "{err}"
        );
        assert!(err.contains("not base64"), "{err}");
    }

    #[test]
    fn loading_builds_a_ring_of_every_version_with_the_active_one_sealing() {
        let file = parse(&format!(
            r#"
active = 2
[[keys]]
version = 1
command = "echo {KEY_A}"
[[keys]]
version = 2
command = "echo AQECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
activated_at = 2026-12-06T19:00:00Z
"#
        ))
        .unwrap();
        let loaded = file.load().unwrap();
        assert_eq!(loaded.ring.active_version(), KeyVersion::new(2));
        assert_eq!(
            loaded.ring.versions(),
            [KeyVersion::new(1), KeyVersion::new(2)]
        );
        assert!(loaded.active_since.is_some());
    }

    #[test]
    fn a_key_that_does_not_load_names_its_version_not_its_text() {
        let file = parse(
            "active = 1\n[[keys]]\nversion = 1\ncommand = \"echo c2VjcmV0\"\nactivated_at = 2026-01-01T00:00:00Z\n",
        )
        .unwrap();
        let err = file.load().unwrap_err();
        assert!(
            err.starts_with("key version 1 (master_key_command)"),
            "{err}"
        );
        assert!(!err.contains("c2VjcmV0"));
    }
}
