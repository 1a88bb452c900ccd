//! Reading a rules file: TOML into raw structs, then validation into [`Rules`], stopping at
//! the first problem with its file and line.

mod raw;
mod roles;
mod tables;
mod tenants;

use std::ops::Range;
use std::path::Path;

use crate::error::{Location, Problem, RulesError};
use crate::role::Role;
use crate::rules::Rules;
use crate::template::Template;
use raw::RawFile;

/// Reads and validates the rules file at `path`.
pub fn load(path: &Path) -> Result<Rules, RulesError> {
    let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Validates rules file text; `source` is the file name errors start with.
pub fn parse(text: &str, source: &str) -> Result<Rules, RulesError> {
    let file = File { text, source };
    let raw: RawFile = toml::from_str(text).map_err(|e| file.toml_error(&e))?;
    let tables = tables::build(raw.tables, &file)?;
    let roles = roles::build(raw.roles, &tables, &file)?;
    let default_role = default_role(raw.default_role, &roles, &file)?;
    let tenants = tenants::build(raw.tenants, &file)?;
    tenants::check_sources(&tables, &roles, &tenants, &file)?;
    Ok(Rules::new(tables, roles, default_role).with_tenants(tenants))
}

/// The file being validated: turns spans into `FILE:LINE` errors.
pub(crate) struct File<'a> {
    text: &'a str,
    source: &'a str,
}

impl File<'_> {
    pub(crate) fn error(&self, span: Range<usize>, problem: Problem) -> RulesError {
        RulesError::Invalid {
            at: self.at(Some(span)),
            problem: Box::new(problem),
        }
    }

    pub(crate) fn line(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(crate) fn at(&self, span: Option<Range<usize>>) -> Location {
        Location {
            source: self.source.to_owned(),
            line: span.map(|s| self.line(s)),
        }
    }

    fn toml_error(&self, error: &toml::de::Error) -> RulesError {
        let mut message = error.message().trim().to_owned();
        // serde's wording names the key but not the remedy.
        if message.starts_with("missing field") {
            message.push_str("; add it to this entry");
        }
        RulesError::Invalid {
            at: self.at(error.span()),
            problem: Box::new(Problem::Syntax(message)),
        }
    }
}

/// `*` patterns of a matcher list; `problem` names what an invalid one is (from its text).
pub(crate) fn globs(
    raw: Vec<toml::Spanned<String>>,
    file: &File,
    problem: impl Fn(String) -> Problem,
) -> Result<Vec<crate::glob::Glob>, RulesError> {
    raw.into_iter()
        .map(|pattern| {
            crate::glob::Glob::new(pattern.get_ref())
                .ok_or_else(|| file.error(pattern.span(), problem(pattern.get_ref().clone())))
        })
        .collect()
}

/// `default_role` must name a defined role; with no roles it may name a template and
/// defaults to `app`, so a file with only tables keeps today's plaintext behaviour.
fn default_role(
    raw: Option<toml::Spanned<String>>,
    roles: &[Role],
    file: &File,
) -> Result<String, RulesError> {
    let role_names = || {
        let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
        names.join(", ")
    };
    match (raw, roles.first()) {
        (None, None) => Ok(Template::App.name().to_owned()),
        (None, Some(_)) => Err(RulesError::Invalid {
            at: Location {
                source: file.source.to_owned(),
                line: Some(1),
            },
            problem: Box::new(Problem::MissingDefaultRole {
                roles: role_names(),
            }),
        }),
        (Some(name), None) => match Template::from_name(name.get_ref()) {
            Some(t) => Ok(t.name().to_owned()),
            None => Err(file.error(
                name.span(),
                Problem::UnknownDefaultRole {
                    found: name.get_ref().clone(),
                    choices: format!("the templates {}, or define [[roles]]", Template::names()),
                },
            )),
        },
        (Some(name), Some(_)) => {
            if roles.iter().any(|r| &r.name == name.get_ref()) {
                Ok(name.into_inner())
            } else {
                Err(file.error(
                    name.span(),
                    Problem::UnknownDefaultRole {
                        found: name.get_ref().clone(),
                        choices: role_names(),
                    },
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests;
