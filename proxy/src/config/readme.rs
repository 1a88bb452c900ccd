//! The README's configuration table documents every setting with its default: a key added to
//! the settings table without a README row (or a row left behind) fails here.

use super::layer::{SettingDefault, SETTINGS};

const README: &str = include_str!("../../../README.md");

/// `(keys, default)` of each row of the table under `## Configuration`.
fn rows() -> Vec<(Vec<String>, String)> {
    let section = README
        .split("\n## Configuration\n")
        .nth(1)
        .expect("README has a `## Configuration` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let keys = cells[1]
                .split(',')
                .map(|k| k.trim().trim_matches('`').to_owned())
                .collect();
            (keys, cells[2].to_owned())
        })
        .collect()
}

#[test]
fn readme_table_lists_every_setting_with_its_default() {
    let rows = rows();
    for setting in SETTINGS {
        let matching: Vec<&String> = rows
            .iter()
            .filter(|(keys, _)| keys.iter().any(|k| k == setting.key))
            .map(|(_, default)| default)
            .collect();
        let [default] = matching[..] else {
            panic!(
                "README's configuration table should have one row for `{}`, has {}",
                setting.key,
                matching.len()
            );
        };
        match setting.default {
            SettingDefault::Unset => assert_eq!(default, "", "`{}` has no default", setting.key),
            SettingDefault::Value(value) => assert!(
                default.starts_with(&format!("`{value}`")),
                "README gives `{}` the default {default:?}; it is `{value}`",
                setting.key
            ),
            SettingDefault::Described(text) => assert_eq!(
                default, text,
                "README's default for `{}` differs from the settings table",
                setting.key
            ),
        }
    }
}

#[test]
fn readme_table_lists_no_setting_that_does_not_exist() {
    for (keys, _) in rows() {
        for key in keys {
            assert!(
                SETTINGS.iter().any(|s| s.key == key),
                "README documents `{key}`, which is not a setting"
            );
        }
    }
}
