//! The master key's care of tenant keys, against a real PostgreSQL through pgshroud:
//! `pgshroud rotate --tenant-keys-dir` rewraps every tenant key file under the active master
//! version without touching the tenants' values, `keys retire` refuses a master version that
//! still wraps one (or when it cannot see the store), and afterwards a pgshroud holding the
//! new master version alone starts and reads both tenants.

#[path = "tenant_rotation/fixture.rs"]
mod fixture;

use std::sync::Arc;

use fixture::{Fixture, PASSWORD};
use pgshroud::crypto::tenant_keys::{file, TenantKeysConfig, TenantStore};
use pgshroud::crypto::{KeyRing, KeyVersion, MasterKey};
use pgshroud_integration_tests::keys::write_keys;
use pgshroud_integration_tests::protected::{MASTER_KEY, OTHER_KEY};

#[tokio::test]
async fn a_master_rotation_rewraps_tenant_keys_and_retire_refuses_while_one_is_wrapped() {
    let f = Fixture::new().await;
    let acme = f.connect("app").await;
    acme.execute(
        "INSERT INTO notes (tenant, email, body, code) VALUES ('acme', $1, 'a', 'c1')",
        &[&"alice@example.com"],
    )
    .await
    .unwrap();
    let globex = f.connect("support").await;
    globex
        .execute(
            "INSERT INTO notes (tenant, email, body) VALUES ('globex', $1, 'g')",
            &[&"alice@example.com"],
        )
        .await
        .unwrap();
    let acme_before = f.stored_of("acme").await;
    let globex_before = f.stored_of("globex").await;

    write_keys(f.dir.path(), &[(1, MASTER_KEY), (2, OTHER_KEY)], 2);
    f.proxy.reload().unwrap();

    // Master version 2 alone cannot open the store yet: the tenant keys are under 1.
    let only_v2 = || {
        KeyRing::new(
            KeyVersion::new(2),
            [(
                KeyVersion::new(2),
                MasterKey::from_base64(OTHER_KEY).unwrap(),
            )],
        )
        .unwrap()
    };
    let config = TenantKeysConfig {
        dir: Some(f.store.path().to_owned()),
        ..Default::default()
    };
    let err = TenantStore::open(config.clone(), Arc::new(only_v2())).unwrap_err();
    assert!(
        err.contains("master key version 1, which is not live"),
        "{err}"
    );

    // A rotation without the store moves the shared column but says the files were not rewrapped.
    let mut without_store = f.rotate_args(None, false);
    without_store.tenant_keys_dir = None;
    let partial = pgshroud::cli::rotate::run(&without_store).await.unwrap();
    println!("{}\n", partial.text);
    assert!(!partial.ok, "{}", partial.text);
    assert!(
        partial.text.contains("Re-encrypted 1 values in 1 rows"),
        "{}",
        partial.text
    );
    assert!(
        partial.text.contains("no --tenant-keys-dir was given"),
        "{}",
        partial.text
    );

    // Retire refuses: without the store (it cannot check), and with it (keys are under 1).
    let url = f.url();
    let blind = pgshroud::cli::keys::retire_with_tenants(&url, &f.rules(), 1, None)
        .await
        .unwrap();
    println!("{}\n", blind.text);
    assert!(!blind.ok);
    assert!(
        blind.text.contains("Give --tenant-keys-dir"),
        "{}",
        blind.text
    );
    let refused =
        pgshroud::cli::keys::retire_with_tenants(&url, &f.rules(), 1, Some(f.store.path()))
            .await
            .unwrap();
    println!("{}\n", refused.text);
    assert!(!refused.ok);
    assert!(
        refused
            .text
            .contains("tenant acme key version 1, tenant globex key version 1"),
        "{}",
        refused.text
    );

    // The rotation with the store rewraps both files; the tenants' values are not touched.
    let done = pgshroud::cli::rotate::run(&f.rotate_args(None, false))
        .await
        .unwrap();
    println!("{}\n", done.text);
    assert!(done.ok, "{}", done.text);
    assert!(
        done.text.contains(
            "Tenant key files: rewrapped 2 key versions of 2 tenants under master key version 2"
        ),
        "{}",
        done.text
    );
    for tenant in ["acme", "globex"] {
        let stored = file::read(f.store.path(), tenant).unwrap().unwrap();
        assert!(
            stored.versions.iter().all(|v| v.master_key_version == 2),
            "{tenant}"
        );
    }
    assert_eq!(f.stored_of("acme").await, acme_before);
    assert_eq!(f.stored_of("globex").await, globex_before);
    let retired =
        pgshroud::cli::keys::retire_with_tenants(&url, &f.rules(), 1, Some(f.store.path()))
            .await
            .unwrap();
    println!("{}\n", retired.text);
    assert!(retired.ok, "{}", retired.text);

    // Master version 1 gone: a pgshroud holding version 2 only starts and reads both tenants.
    write_keys(f.dir.path(), &[(2, OTHER_KEY)], 2);
    TenantStore::open(config, Arc::new(only_v2())).unwrap();
    let proxy = Fixture::start_proxy(f.dir.path(), f.store.path()).await;
    let c = proxy
        .connect(&format!("{}_app", f.db), PASSWORD, &f.db)
        .await
        .unwrap();
    let r = c
        .query(
            "SELECT body, code FROM notes WHERE email = $1",
            &[&"alice@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get::<_, String>(0), "a");
    assert_eq!(r[0].get::<_, String>(1), "c1");
    let c = proxy
        .connect(&format!("{}_support", f.db), PASSWORD, &f.db)
        .await
        .unwrap();
    let r = c
        .query(
            "SELECT body FROM notes WHERE email = $1",
            &[&"alice@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(r[0].get::<_, String>(0), "g");
}
