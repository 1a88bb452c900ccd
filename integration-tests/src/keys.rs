//! The key-versions fixture: a database with the protected tables and guards, and a proxy
//! whose keys come from a keys file the test rewrites (then `TestProxy::reload`).

use std::path::{Path, PathBuf};

use pgshroud::config::ConfigLayer;

use crate::protected::{install_guards, MASTER_KEY, RULES, SCHEMA};
use crate::proxy::TestProxy;
use crate::{cluster, proxy_with, users};

pub struct Keys {
    pub db: String,
    pub proxy: TestProxy,
    pub dir: tempfile::TempDir,
}

/// Writes `keys.toml` with `versions` (version, base64 key), `active` among them.
pub fn write_keys(dir: &Path, versions: &[(u32, &str)], active: u32) -> PathBuf {
    let mut text = format!("active = {active}\n");
    for (version, key) in versions {
        let key_file = dir.join(format!("v{version}.key"));
        std::fs::write(&key_file, key).unwrap();
        text.push_str(&format!(
            "[[keys]]\nversion = {version}\nfile = \"{}\"\nactivated_at = 2026-12-0{version}T00:00:00Z\n",
            key_file.display()
        ));
    }
    let path = dir.join("keys.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Keys {
    /// A fresh database with the protected tables and guards, and a proxy whose keys file
    /// holds version 1 only.
    pub async fn new() -> Keys {
        let db = cluster().fresh_database().await;
        let admin = cluster().admin_client_for(&db).await;
        admin.batch_execute(SCHEMA).await.unwrap();
        install_guards(&db, RULES).await;
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.toml");
        std::fs::write(&rules, RULES).unwrap();
        let keys_file = write_keys(dir.path(), &[(1, MASTER_KEY)], 1);
        let proxy = proxy_with(ConfigLayer {
            rules: Some(rules),
            keys_file: Some(keys_file),
            ..Default::default()
        })
        .await;
        Keys { db, proxy, dir }
    }

    pub async fn app(&self) -> tokio_postgres::Client {
        self.proxy
            .connect(users::SCRAM, users::SCRAM_PASSWORD, &self.db)
            .await
            .unwrap()
    }

    /// The key version of each stored email, by id, read without the proxy.
    pub async fn stored_versions(&self) -> Vec<(i32, u32)> {
        let admin = cluster().admin_client_for(&self.db).await;
        admin
            .query("SELECT id, email FROM customers ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let email: Vec<u8> = r.get(1);
                let version = u32::from_be_bytes(email[1..5].try_into().unwrap());
                (r.get(0), version)
            })
            .collect()
    }

    pub fn rules_path(&self) -> PathBuf {
        self.dir.path().join("rules.toml")
    }

    pub fn keys_path(&self) -> PathBuf {
        self.dir.path().join("keys.toml")
    }
}
