//! The key store on disk: one TOML file per tenant (`<id>.toml`, mode 0600) in
//! `tenant_keys_dir`, holding wrapped key versions, or a tombstone once the tenant is
//! forgotten. Files are written whole and atomically (temp file, fsync, rename or link,
//! fsync of the directory) so instances sharing the directory never read half a file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// One key version as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredVersion {
    pub version: u32,
    /// The master key version that wrapped it.
    pub master_key_version: u32,
    /// base64 of AES-SIV `SIV || wrapped key` (48 bytes).
    pub wrapped: String,
    /// RFC 3339.
    pub created_at: String,
    /// New values are sealed with the active version; the others are read (and compared).
    pub active: bool,
}

impl StoredVersion {
    pub fn wrapped_bytes(&self) -> Option<Vec<u8>> {
        STANDARD.decode(&self.wrapped).ok()
    }

    pub fn encode(wrapped: &[u8]) -> String {
        STANDARD.encode(wrapped)
    }
}

/// A tenant's file: its key versions, or a tombstone (`forgotten_at`, no versions).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forgotten_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<StoredVersion>,
}

impl TenantFile {
    pub fn is_tombstone(&self) -> bool {
        self.forgotten_at.is_some()
    }

    pub fn tombstone(tenant: &str, at: String) -> TenantFile {
        TenantFile {
            tenant: tenant.to_owned(),
            forgotten_at: Some(at),
            versions: Vec::new(),
        }
    }
}

/// Path of a tenant's file.
pub fn path_of(dir: &Path, tenant: &str) -> PathBuf {
    dir.join(format!("{tenant}.toml"))
}

/// Reads a tenant's file; `Ok(None)` when there is none.
pub fn read(dir: &Path, tenant: &str) -> Result<Option<TenantFile>, String> {
    let path = path_of(dir, tenant);
    match fs::read_to_string(&path) {
        Ok(text) => parse(&path, &text).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "cannot read tenant key file {}: {e}",
            path.display()
        )),
    }
}

fn parse(path: &Path, text: &str) -> Result<TenantFile, String> {
    let file: TenantFile = toml::from_str(text).map_err(|e| {
        format!(
            "tenant key file {} is not valid: {}",
            path.display(),
            e.message()
        )
    })?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if file.tenant != stem {
        return Err(format!(
            "tenant key file {} names tenant \"{}\"; a tenant's file is named after it",
            path.display(),
            file.tenant
        ));
    }
    Ok(file)
}

/// The tenant ids with a file in `dir` (names of `*.toml` files that are valid tenant ids).
pub fn list(dir: &Path) -> Result<Vec<String>, String> {
    let entries = fs::read_dir(dir)
        .map_err(|e| format!("cannot read tenant_keys_dir {}: {e}", dir.display()))?;
    let mut ids = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".toml")) else {
            continue;
        };
        if pgshroud_rules::is_valid_tenant_id(id) {
            ids.push(id.to_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

fn render(file: &TenantFile) -> String {
    format!(
        "# pgshroud tenant key file: keep it private, and back it up apart from the database.\n{}",
        toml::to_string(file).expect("a tenant file always serialises")
    )
}

/// Writes `file` into a new temporary file of `dir` (0600, fsynced) and returns its path.
fn write_temp(dir: &Path, file: &TenantFile) -> io::Result<PathBuf> {
    let temp = dir.join(format!(
        ".{}.{}.{:x}.tmp",
        file.tenant,
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    out.write_all(render(file).as_bytes())?;
    out.sync_all()?;
    Ok(temp)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a tenant's file only if none exists. Racing writers agree: the temporary file is
/// hard-linked into place, which (unlike rename) fails when the name is taken; the loser
/// gets `Ok(false)` and reads the winner's file.
pub fn create(dir: &Path, file: &TenantFile) -> Result<bool, String> {
    let target = path_of(dir, &file.tenant);
    let failed = |e: io::Error| format!("cannot write tenant key file {}: {e}", target.display());
    let temp = write_temp(dir, file).map_err(failed)?;
    let linked = fs::hard_link(&temp, &target);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_dir(dir).map_err(failed)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(failed(e)),
    }
}

/// Replaces a tenant's file (a new key version, a tombstone): temp, fsync, rename, fsync dir.
pub fn replace(dir: &Path, file: &TenantFile) -> Result<(), String> {
    let target = path_of(dir, &file.tenant);
    let failed = |e: io::Error| format!("cannot write tenant key file {}: {e}", target.display());
    let temp = write_temp(dir, file).map_err(failed)?;
    if let Err(e) = fs::rename(&temp, &target) {
        let _ = fs::remove_file(&temp);
        return Err(failed(e));
    }
    sync_dir(dir).map_err(failed)
}

/// Replaces a tenant's file like [`replace`], then overwrites the replaced file's bytes with
/// zeros through a handle opened before the rename (readers opening the path already get the
/// new file): a retired key version's wrapped key does not stay in the old blocks on file
/// systems that write in place (the limits of [`overwrite_in_place`] apply).
pub fn replace_destroying_old(dir: &Path, file: &TenantFile) -> Result<(), String> {
    let target = path_of(dir, &file.tenant);
    let failed = |e: io::Error| format!("cannot overwrite {}: {e}", target.display());
    let mut old = OpenOptions::new()
        .write(true)
        .open(&target)
        .map_err(failed)?;
    let len = old.metadata().map_err(failed)?.len();
    replace(dir, file)?;
    old.write_all(&vec![0u8; len as usize]).map_err(failed)?;
    old.sync_all().map_err(failed)
}

/// Overwrites the bytes of a tenant's current file with zeros in place (and fsyncs), before
/// the tombstone replaces it: on file systems that write in place the old blocks then no
/// longer hold the wrapped keys. Copy-on-write file systems, SSD wear levelling and backups
/// keep old copies regardless (README: key-store backups must be destroyed too).
pub fn overwrite_in_place(dir: &Path, tenant: &str) -> Result<(), String> {
    let path = path_of(dir, tenant);
    let failed = |e: io::Error| format!("cannot overwrite {}: {e}", path.display());
    let len = fs::metadata(&path).map_err(failed)?.len();
    let mut out = OpenOptions::new().write(true).open(&path).map_err(failed)?;
    out.write_all(&vec![0u8; len as usize]).map_err(failed)?;
    out.sync_all().map_err(failed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pgshroud-tk-{:x}", rand::random::<u64>()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn file(tenant: &str, wrapped: &str) -> TenantFile {
        TenantFile {
            tenant: tenant.into(),
            forgotten_at: None,
            versions: vec![StoredVersion {
                version: 1,
                master_key_version: 1,
                wrapped: wrapped.into(),
                created_at: "2026-12-07T00:00:00Z".into(),
                active: true,
            }],
        }
    }

    #[test]
    fn create_is_exclusive_and_private() {
        let dir = dir();
        assert!(create(&dir, &file("acme", "AAAA")).unwrap());
        assert!(!create(&dir, &file("acme", "BBBB")).unwrap(), "loser");
        let read_back = read(&dir, "acme").unwrap().unwrap();
        assert_eq!(read_back, file("acme", "AAAA"), "the winner's file stays");
        let mode = fs::metadata(path_of(&dir, "acme"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(list(&dir).unwrap(), ["acme"]);
        let leftovers = fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tombstone_replaces_the_keys() {
        let dir = dir();
        create(&dir, &file("acme", "AAAA")).unwrap();
        overwrite_in_place(&dir, "acme").unwrap();
        replace(
            &dir,
            &TenantFile::tombstone("acme", "2026-12-07T01:00:00Z".into()),
        )
        .unwrap();
        let text = fs::read_to_string(path_of(&dir, "acme")).unwrap();
        assert!(
            !text.contains("AAAA") && !text.contains("wrapped"),
            "{text}"
        );
        assert!(read(&dir, "acme").unwrap().unwrap().is_tombstone());
        assert_eq!(read(&dir, "globex").unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_replace_destroying_the_old_file_zeroes_its_bytes() {
        let dir = dir();
        create(&dir, &file("acme", "AAAA")).unwrap();
        let path = path_of(&dir, "acme");
        // A second name for the old inode shows what became of its bytes.
        let witness = dir.join("witness");
        fs::hard_link(&path, &witness).unwrap();
        replace_destroying_old(&dir, &file("acme", "BBBB")).unwrap();
        assert_eq!(read(&dir, "acme").unwrap().unwrap(), file("acme", "BBBB"));
        let old = fs::read(&witness).unwrap();
        assert!(!old.is_empty() && old.iter().all(|b| *b == 0), "{old:?}");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_must_name_its_own_tenant() {
        let dir = dir();
        fs::write(path_of(&dir, "acme"), render(&file("globex", "AAAA"))).unwrap();
        let err = read(&dir, "acme").unwrap_err();
        assert!(err.contains("names tenant \"globex\""), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }
}
