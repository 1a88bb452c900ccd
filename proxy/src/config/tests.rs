//! Resolving layers into settings: defaults, precedence, and errors that name the setting.

use super::*;

fn layer(upstream: &str) -> ConfigLayer {
    ConfigLayer {
        upstream: Some(upstream.into()),
        ..ConfigLayer::default()
    }
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let s = Settings::resolve(layer("postgres://127.0.0.1:5432")).unwrap();
    assert_eq!(s.listen, "127.0.0.1:6432".parse().unwrap());
    assert_eq!(s.admin_listen, Some("127.0.0.1:9930".parse().unwrap()));
    assert_eq!(s.limits.max_message_size, 256 * 1024 * 1024);
    assert_eq!(s.limits.idle_timeout, None);
    assert_eq!(s.log_format, LogFormat::Text);
}

#[test]
fn flags_win_over_file_and_file_over_defaults() {
    let file: ConfigLayer = toml::from_str(
        "listen = \"127.0.0.1:7000\"\nupstream = \"postgres://file:5432\"\nlog_level = \"debug\"\n",
    )
    .unwrap();
    let flags = ConfigLayer {
        listen: Some("127.0.0.1:7001".into()),
        ..ConfigLayer::default()
    };
    let s = Settings::resolve(flags.over(file)).unwrap();
    assert_eq!(s.listen.port(), 7001);
    assert_eq!(s.upstream.host, "file");
    assert_eq!(s.log_level, "debug");
}

#[test]
fn missing_upstream_names_the_setting() {
    let err = Settings::resolve(ConfigLayer::default()).unwrap_err();
    assert_eq!(err.setting, "upstream");
}

#[test]
fn wrong_values_name_the_setting() {
    let cases: Vec<(&str, ConfigLayer)> = vec![
        (
            "listen",
            ConfigLayer {
                listen: Some("nowhere".into()),
                ..layer("postgres://h")
            },
        ),
        ("upstream", layer("http://h")),
        (
            "tls_key",
            ConfigLayer {
                tls_cert: Some("/etc/hostname".into()),
                ..layer("postgres://h")
            },
        ),
        (
            "tls_client_ca_file",
            ConfigLayer {
                tls_client_ca_file: Some("/etc/hostname".into()),
                ..layer("postgres://h")
            },
        ),
        (
            "log_level",
            ConfigLayer {
                log_level: Some("loud[".into()),
                ..layer("postgres://h")
            },
        ),
        (
            "log_format",
            ConfigLayer {
                log_format: Some("xml".into()),
                ..layer("postgres://h")
            },
        ),
        (
            "max_client_connections",
            ConfigLayer {
                max_client_connections: Some(0),
                ..layer("postgres://h")
            },
        ),
        (
            "rules",
            ConfigLayer {
                rules: Some("/no/such/rules.toml".into()),
                ..layer("postgres://h")
            },
        ),
    ];
    for (setting, layer) in cases {
        assert_eq!(Settings::resolve(layer).unwrap_err().setting, setting);
    }
}

#[test]
fn unknown_config_key_is_an_error_with_its_line() {
    let dir = std::env::temp_dir().join(format!("pgshroud-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:1\"\nlisten_port = 5\n").unwrap();
    let err = ConfigLayer::from_file(&path).unwrap_err().to_string();
    assert!(err.contains("bad.toml:2:1"), "{err}");
    assert!(err.contains("listen_port"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn syslog_settings_are_validated_and_named() {
    let with = |extra: ConfigLayer| Settings::resolve(extra.over(layer("postgres://h")));
    let tcp = with(ConfigLayer {
        audit_syslog: Some("tcp://collector:1514".into()),
        audit_on_full: Some("drop".into()),
        ..ConfigLayer::default()
    })
    .unwrap();
    let syslog = tcp.audit.syslog.unwrap();
    assert_eq!((syslog.host.as_str(), syslog.port), ("collector", 1514));
    assert_eq!(syslog.transport, Transport::Tcp);
    assert_eq!(
        (syslog.facility, syslog.app_name.as_str()),
        (16, "pgshroud")
    );
    assert_eq!(syslog.format, MessageFormat::Json);
    assert_eq!(syslog.on_full, OnFull::Drop, "follows audit_on_full");
    let tls = with(ConfigLayer {
        audit_syslog: Some("tls://siem.example:6514".into()),
        audit_syslog_ca_file: Some("/etc/hostname".into()),
        audit_syslog_on_full: Some("block".into()),
        audit_syslog_format: Some("cef".into()),
        ..ConfigLayer::default()
    })
    .unwrap()
    .audit
    .syslog
    .unwrap();
    assert!(matches!(
        &tls.transport,
        Transport::Tls { server_name, client_cert: None, .. } if server_name == "siem.example"
    ));
    assert_eq!(tls.on_full, OnFull::Block);
    assert_eq!(tls.format, MessageFormat::Cef);

    let cases: Vec<(&str, ConfigLayer)> = vec![
        (
            "audit_syslog",
            ConfigLayer {
                audit_syslog: Some("udp://collector:514".into()),
                ..ConfigLayer::default()
            },
        ),
        (
            "audit_syslog_key",
            ConfigLayer {
                audit_syslog: Some("tls://c:6514".into()),
                audit_syslog_ca_file: Some("/etc/hostname".into()),
                audit_syslog_cert: Some("/etc/hostname".into()),
                ..ConfigLayer::default()
            },
        ),
        (
            "audit_syslog_facility",
            ConfigLayer {
                audit_syslog: Some("tcp://c:601".into()),
                audit_syslog_facility: Some("local9".into()),
                ..ConfigLayer::default()
            },
        ),
        (
            "audit_syslog_app_name",
            ConfigLayer {
                audit_syslog: Some("tcp://c:601".into()),
                audit_syslog_app_name: Some("pg shroud".into()),
                ..ConfigLayer::default()
            },
        ),
        (
            "audit_syslog_format",
            ConfigLayer {
                audit_syslog: Some("tcp://c:601".into()),
                audit_syslog_format: Some("leef".into()),
                ..ConfigLayer::default()
            },
        ),
        (
            "audit_syslog_on_full",
            ConfigLayer {
                audit_syslog: Some("tcp://c:601".into()),
                audit_syslog_on_full: Some("wait".into()),
                ..ConfigLayer::default()
            },
        ),
        (
            "audit_syslog_facility",
            ConfigLayer {
                audit_syslog_facility: Some("local0".into()),
                ..ConfigLayer::default()
            },
        ),
    ];
    for (setting, extra) in cases {
        assert_eq!(with(extra).unwrap_err().setting, setting);
    }
}

#[test]
fn auth_mode_follows_the_verifier_source_and_wrong_combinations_name_the_setting() {
    let with = |extra: ConfigLayer| Settings::resolve(extra.over(layer("postgres://h")));
    assert_eq!(
        with(ConfigLayer::default()).unwrap().auth_mode,
        AuthMode::Relay
    );
    let query = with(ConfigLayer {
        auth_user: Some("pgshroud_auth".into()),
        ..ConfigLayer::default()
    })
    .unwrap();
    assert_eq!(
        query.auth_mode,
        AuthMode::Proxy(SecretSettings::Query {
            user: "pgshroud_auth".into(),
            password_file: None,
            dbname: "postgres".into(),
            query: crate::auth::secrets::DEFAULT_AUTH_QUERY.into(),
        })
    );
    let file = with(ConfigLayer {
        auth_file: Some("/etc/hostname".into()),
        ..ConfigLayer::default()
    })
    .unwrap();
    assert_eq!(
        file.auth_mode,
        AuthMode::Proxy(SecretSettings::File("/etc/hostname".into()))
    );
    let cases: Vec<(&str, ConfigLayer)> = vec![
        (
            "auth_mode",
            ConfigLayer {
                auth_mode: Some("proxy".into()),
                ..ConfigLayer::default()
            },
        ),
        (
            "auth_mode",
            ConfigLayer {
                auth_mode: Some("relay".into()),
                auth_user: Some("a".into()),
                ..ConfigLayer::default()
            },
        ),
        (
            "auth_file",
            ConfigLayer {
                auth_file: Some("/etc/hostname".into()),
                auth_user: Some("a".into()),
                ..ConfigLayer::default()
            },
        ),
        (
            "auth_query",
            ConfigLayer {
                auth_query: Some("SELECT 1".into()),
                ..ConfigLayer::default()
            },
        ),
        (
            "tls_client_cert",
            ConfigLayer {
                tls_cert: Some("/etc/hostname".into()),
                tls_key: Some("/etc/hostname".into()),
                tls_client_cert: Some("verify-full".into()),
                ..ConfigLayer::default()
            },
        ),
    ];
    for (setting, extra) in cases {
        assert_eq!(with(extra).unwrap_err().setting, setting);
    }
}

#[test]
fn admin_listener_can_be_turned_off() {
    let s = Settings::resolve(ConfigLayer {
        admin_listen: Some("off".into()),
        ..layer("postgres://h")
    })
    .unwrap();
    assert_eq!(s.admin_listen, None);
}

#[test]
fn clients_need_tls_by_default_once_a_certificate_is_set() {
    let readable = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    let with_cert = |mode: Option<&str>| ConfigLayer {
        tls_cert: Some(readable.clone()),
        tls_key: Some(readable.clone()),
        tls_client_sslmode: mode.map(String::from),
        ..layer("postgres://127.0.0.1:5432")
    };
    let sslmode = |l| Settings::resolve(l).map(|s| s.client_tls.map(|t| t.sslmode));
    assert_eq!(sslmode(with_cert(None)), Ok(Some(ClientSslMode::Require)));
    assert_eq!(
        sslmode(with_cert(Some("prefer"))),
        Ok(Some(ClientSslMode::Prefer))
    );
    for refused in [Some("disable"), Some("verify-full")] {
        let e = Settings::resolve(with_cert(refused)).unwrap_err();
        assert_eq!(e.setting, "tls_client_sslmode");
    }
    let without_cert = ConfigLayer {
        tls_client_sslmode: Some("require".into()),
        ..layer("postgres://127.0.0.1:5432")
    };
    let e = Settings::resolve(without_cert).unwrap_err();
    assert_eq!(e.setting, "tls_client_sslmode");
    let disabled = ConfigLayer {
        tls_client_sslmode: Some("disable".into()),
        ..layer("postgres://127.0.0.1:5432")
    };
    assert_eq!(Settings::resolve(disabled).unwrap().client_tls, None);
}

#[test]
fn replication_users_are_a_list_defaulting_to_nobody() {
    let file: ConfigLayer =
        toml::from_str("upstream = \"postgres://db:5432\"\nreplication_users = [\"replicator\"]\n")
            .unwrap();
    let s = Settings::resolve(file).unwrap();
    assert_eq!(s.replication_users, ["replicator"]);
    let s = Settings::resolve(layer("postgres://db:5432")).unwrap();
    assert!(s.replication_users.is_empty());
}
