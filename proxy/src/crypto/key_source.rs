//! Where the master key comes from: an environment variable, a key file, a command's stdout
//! (vault CLIs), or a blob wrapped by an AWS KMS key (`kms`). Errors say what is wrong but
//! never show key text or command output.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use zeroize::Zeroizing;

use super::kms::{KmsError, KmsKey, KmsObserver, NoKmsObserver};
use super::master_key::{KeyFormatError, MasterKey, MASTER_KEY_ENV};

/// One configured origin of the master key.
#[derive(Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// An environment variable holding the base64 key (normally [`MASTER_KEY_ENV`]).
    Env { var: String },
    /// A file holding the base64 key (`--master-key-file`).
    File { path: PathBuf },
    /// A shell command (`sh -c`) printing the base64 key on stdout (`master_key_command`).
    Command { command: String },
    /// A blob wrapped by an AWS KMS key, unwrapped with KMS `Decrypt` (`kms_key_id`).
    Kms(KmsKey),
}

/// A master key with anything about its loading the operator should be warned about.
#[derive(Debug)]
pub struct LoadedMasterKey {
    pub key: MasterKey,
    pub warning: Option<KeyLoadWarning>,
}

/// Something worth a log line at startup, though the key loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyLoadWarning {
    /// The key file can be read by its group or by everyone.
    #[error(
        "master key file {} is readable by group or others (mode {mode:o}); restrict it with chmod 600",
        path.display()
    )]
    FileReadableByOthers { path: PathBuf, mode: u32 },
}

/// Why no master key could be loaded. Never carries key text or a command's output.
#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error("no master key: set {var}, or configure master_key_file or master_key_command")]
    EnvMissing { var: String },
    #[error("master key in environment variable {var}: {source}")]
    EnvFormat { var: String, source: KeyFormatError },
    #[error("cannot read master key file {}: {source}", path.display())]
    FileRead { path: PathBuf, source: io::Error },
    #[error("master key file {}: {source}", path.display())]
    FileFormat {
        path: PathBuf,
        source: KeyFormatError,
    },
    #[error("cannot run master_key_command: {source}")]
    CommandSpawn { source: io::Error },
    #[error("master_key_command failed ({status}); its output is not shown")]
    CommandFailed { status: ExitStatus },
    #[error("output of master_key_command: {source} (the output is not shown)")]
    CommandFormat { source: KeyFormatError },
    #[error(transparent)]
    Kms(#[from] KmsError),
}

impl MasterKeySource {
    /// The source the settings ask for: the key file if set, else the command, else the
    /// `PGSHROUD_MASTER_KEY` environment variable. (The config refuses file and command together.)
    pub fn from_settings(file: Option<&Path>, command: Option<&str>) -> MasterKeySource {
        match (file, command) {
            (Some(path), _) => MasterKeySource::File {
                path: path.to_path_buf(),
            },
            (None, Some(command)) => MasterKeySource::Command {
                command: command.to_owned(),
            },
            (None, None) => MasterKeySource::Env {
                var: MASTER_KEY_ENV.to_owned(),
            },
        }
    }

    /// Loads the key. Blocking (reads a file or waits for a command): call it at startup,
    /// or from `spawn_blocking`.
    pub fn load(&self) -> Result<LoadedMasterKey, KeyLoadError> {
        self.load_observed(&NoKmsObserver)
    }

    /// Loads the key, telling `kms` of every KMS call (the proxy's metrics). Blocking.
    pub fn load_observed(&self, kms: &dyn KmsObserver) -> Result<LoadedMasterKey, KeyLoadError> {
        match self {
            MasterKeySource::Env { var } => {
                key_from_env_value(var, std::env::var_os(var)).map(without_warning)
            }
            MasterKeySource::File { path } => load_file(path),
            MasterKeySource::Command { command } => load_command(command).map(without_warning),
            MasterKeySource::Kms(key) => Ok(without_warning(super::kms::unwrap(key, kms)?)),
        }
    }
}

/// Names the source for logs; a command is not shown, as it may carry a token.
impl fmt::Display for MasterKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterKeySource::Env { var } => write!(f, "environment variable {var}"),
            MasterKeySource::File { path } => write!(f, "file {}", path.display()),
            MasterKeySource::Command { .. } => f.write_str("master_key_command"),
            MasterKeySource::Kms(key) => write!(f, "{key}"),
        }
    }
}

impl fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKeySource({self})")
    }
}

fn without_warning(key: MasterKey) -> LoadedMasterKey {
    LoadedMasterKey { key, warning: None }
}

/// The environment part without touching the environment, so tests need no `set_var`.
fn key_from_env_value(var: &str, value: Option<OsString>) -> Result<MasterKey, KeyLoadError> {
    let value = value.ok_or_else(|| KeyLoadError::EnvMissing {
        var: var.to_owned(),
    })?;
    let format_error = |source| KeyLoadError::EnvFormat {
        var: var.to_owned(),
        source,
    };
    let value = Zeroizing::new(
        value
            .into_string()
            .map_err(|_| format_error(KeyFormatError::NotBase64))?,
    );
    MasterKey::from_base64(&value).map_err(format_error)
}

fn load_file(path: &Path) -> Result<LoadedMasterKey, KeyLoadError> {
    let read_error = |source| KeyLoadError::FileRead {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let warning = exposure_warning(path, &file).map_err(read_error)?;
    let mut content = Zeroizing::new(Vec::new());
    file.read_to_end(&mut content).map_err(read_error)?;
    let key = key_from_text_bytes(&content).map_err(|source| KeyLoadError::FileFormat {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(LoadedMasterKey { key, warning })
}

/// Checks the already opened file, so the answer is about the bytes we read.
#[cfg(unix)]
fn exposure_warning(path: &Path, file: &File) -> io::Result<Option<KeyLoadWarning>> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    let readable_by_others = mode & 0o044 != 0;
    Ok(
        readable_by_others.then(|| KeyLoadWarning::FileReadableByOthers {
            path: path.to_path_buf(),
            mode,
        }),
    )
}

#[cfg(not(unix))]
fn exposure_warning(_path: &Path, _file: &File) -> io::Result<Option<KeyLoadWarning>> {
    Ok(None)
}

/// Runs the command with `sh -c`; stdin is closed and its stderr goes to ours, so the
/// operator sees a CLI's own complaint while its stdout (the key) stays in memory only.
fn load_command(command: &str) -> Result<MasterKey, KeyLoadError> {
    let output = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| KeyLoadError::CommandSpawn { source })?;
    let stdout = Zeroizing::new(output.stdout);
    if !output.status.success() {
        return Err(KeyLoadError::CommandFailed {
            status: output.status,
        });
    }
    key_from_text_bytes(&stdout).map_err(|source| KeyLoadError::CommandFormat { source })
}

fn key_from_text_bytes(text: &[u8]) -> Result<MasterKey, KeyFormatError> {
    let text = std::str::from_utf8(text).map_err(|_| KeyFormatError::NotBase64)?;
    MasterKey::from_base64(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_0_TO_31: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn key_bytes(key: &MasterKey) -> Vec<u8> {
        key.as_bytes().to_vec()
    }

    /// A key file in the temp dir, removed when dropped.
    struct TempKeyFile(PathBuf);

    impl TempKeyFile {
        fn new(name: &str, content: &str) -> TempKeyFile {
            let path = std::env::temp_dir()
                .join(format!("pgshroud-test-{}-{name}.key", std::process::id()));
            std::fs::write(&path, content).unwrap();
            TempKeyFile(path)
        }
    }

    impl Drop for TempKeyFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn settings_prefer_file_then_command_then_environment() {
        let file = Path::new("/etc/pgshroud/master.key");
        assert_eq!(
            MasterKeySource::from_settings(Some(file), Some("vault read")),
            MasterKeySource::File {
                path: file.to_path_buf()
            }
        );
        assert_eq!(
            MasterKeySource::from_settings(None, Some("vault read")),
            MasterKeySource::Command {
                command: "vault read".into()
            }
        );
        assert_eq!(
            MasterKeySource::from_settings(None, None),
            MasterKeySource::Env {
                var: MASTER_KEY_ENV.into()
            }
        );
    }

    #[test]
    fn environment_value_is_parsed_as_base64() {
        let key = key_from_env_value(MASTER_KEY_ENV, Some(KEY_0_TO_31.into())).unwrap();
        assert_eq!(key_bytes(&key), (0u8..32).collect::<Vec<_>>());
    }

    #[test]
    fn missing_environment_variable_names_it() {
        let err = key_from_env_value(MASTER_KEY_ENV, None).unwrap_err();
        assert!(matches!(err, KeyLoadError::EnvMissing { .. }));
        assert!(err.to_string().contains("PGSHROUD_MASTER_KEY"));
    }

    #[test]
    fn unset_environment_variable_is_reported_by_load() {
        let source = MasterKeySource::Env {
            var: "PGSHROUD_TEST_VARIABLE_THAT_IS_NEVER_SET".into(),
        };
        assert!(matches!(
            source.load().unwrap_err(),
            KeyLoadError::EnvMissing { .. }
        ));
    }

    #[test]
    fn malformed_environment_value_is_refused_without_echoing_it() {
        let err = key_from_env_value(MASTER_KEY_ENV, Some("hunter2-hunter2".into())).unwrap_err();
        assert!(matches!(
            err,
            KeyLoadError::EnvFormat {
                source: KeyFormatError::NotBase64,
                ..
            }
        ));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[cfg(unix)]
    #[test]
    fn environment_value_that_is_not_unicode_is_not_base64() {
        use std::os::unix::ffi::OsStringExt as _;
        let value = OsString::from_vec(vec![0xff, 0xfe]);
        let err = key_from_env_value(MASTER_KEY_ENV, Some(value)).unwrap_err();
        assert!(matches!(
            err,
            KeyLoadError::EnvFormat {
                source: KeyFormatError::NotBase64,
                ..
            }
        ));
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn private_key_file_loads_trimmed_without_warning() {
        let file = TempKeyFile::new("private", &format!("\n {KEY_0_TO_31} \n"));
        set_mode(&file.0, 0o600);
        let loaded = MasterKeySource::File {
            path: file.0.clone(),
        }
        .load()
        .unwrap();
        assert_eq!(key_bytes(&loaded.key), (0u8..32).collect::<Vec<_>>());
        assert_eq!(loaded.warning, None);
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_key_file_loads_with_a_warning() {
        let file = TempKeyFile::new("exposed", KEY_0_TO_31);
        set_mode(&file.0, 0o644);
        let loaded = MasterKeySource::File {
            path: file.0.clone(),
        }
        .load()
        .unwrap();
        assert_eq!(
            loaded.warning,
            Some(KeyLoadWarning::FileReadableByOthers {
                path: file.0.clone(),
                mode: 0o644
            })
        );
    }

    #[test]
    fn key_file_with_wrong_length_names_the_file_not_the_content() {
        let file = TempKeyFile::new("short", "c2VjcmV0\n");
        let err = MasterKeySource::File {
            path: file.0.clone(),
        }
        .load()
        .unwrap_err();
        assert!(matches!(
            err,
            KeyLoadError::FileFormat {
                source: KeyFormatError::WrongLength { got: 6 },
                ..
            }
        ));
        let text = err.to_string();
        assert!(text.contains("expected 32 bytes, got 6"), "{text}");
        assert!(!text.contains("c2VjcmV0"));
    }

    #[test]
    fn missing_key_file_is_a_read_error() {
        let err = MasterKeySource::File {
            path: PathBuf::from("/nonexistent/pgshroud/master.key"),
        }
        .load()
        .unwrap_err();
        assert!(matches!(err, KeyLoadError::FileRead { .. }));
    }

    #[test]
    fn command_stdout_is_the_key() {
        let loaded = MasterKeySource::Command {
            command: format!("echo {KEY_0_TO_31}"),
        }
        .load()
        .unwrap();
        assert_eq!(key_bytes(&loaded.key), (0u8..32).collect::<Vec<_>>());
    }

    #[test]
    fn failing_command_is_an_error_without_its_output() {
        let err = MasterKeySource::Command {
            command: "echo leaked-output; false".into(),
        }
        .load()
        .unwrap_err();
        assert!(matches!(err, KeyLoadError::CommandFailed { .. }));
        assert!(!err.to_string().contains("leaked-output"));
    }

    #[test]
    fn command_printing_a_short_key_is_an_error_without_its_output() {
        let err = MasterKeySource::Command {
            command: "echo c2VjcmV0".into(),
        }
        .load()
        .unwrap_err();
        assert!(matches!(
            err,
            KeyLoadError::CommandFormat {
                source: KeyFormatError::WrongLength { got: 6 }
            }
        ));
        assert!(!err.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn command_text_is_not_shown_in_debug_or_display() {
        let source = MasterKeySource::Command {
            command: "VAULT_TOKEN=s.abc vault read -field=key secret/pgshroud".into(),
        };
        assert!(!format!("{source:?}").contains("s.abc"));
        assert!(!source.to_string().contains("s.abc"));
    }
}
