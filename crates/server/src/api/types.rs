//! Values the management API's requests and responses share: validated
//! names, secrets, token scopes and expiries parsed while the JSON is read
//! (so a bad one is a 400 naming the field), and the schemas of the domain
//! enums the document shows.

use std::borrow::Cow;

use berth_auth::model::validate_account_name;
use berth_auth::{Expiry, Role, Secret, TokenScope, Visibility};
use berth_oci::{Digest, Reference, RepoName, Tag};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::error::ManagementError;

/// The grammar of a user, token or namespace name, as the document states
/// it: one repository path component, at most [`NAME_MAX_LEN`] characters
/// (`berth_auth::model::validate_account_name` is what checks it).
pub const NAME_PATTERN: &str = "^[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*$";
pub const NAME_MAX_LEN: usize = 64;

/// A user, token or namespace name, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// Parses the path parameter `param`.
    pub fn from_param(param: &str, value: &str) -> Result<Name, ManagementError> {
        Name::try_from(value.to_string()).map_err(|error| {
            ManagementError::invalid_request(format!("path parameter {param}: {error}"))
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(value: String) -> Result<Name, String> {
        match validate_account_name(&value) {
            Ok(()) => Ok(Name(value)),
            Err(_) => Err(format!(
                "{value:?} is not a valid name (lowercase letters and digits, \
                 separated by '.', '_', '__' or '-', at most {NAME_MAX_LEN} characters)"
            )),
        }
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        name.0
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A user, token or namespace name: lowercase letters and digits, \
                 separated by '.', '_', '__' or '-'.",
            ))
            .pattern(Some(NAME_PATTERN))
            .min_length(Some(1))
            .max_length(Some(NAME_MAX_LEN))
            .examples(["team-a"])
            .into()
    }
}

impl ToSchema for Name {}

/// A password in a request; its `Debug` hides it (see [`Secret`]).
pub fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
    String::deserialize(deserializer).map(Secret::new)
}

/// The grammar of an access token's scope, `NAMESPACE[/REPOSITORY]:ACTIONS`.
pub const TOKEN_SCOPE_PATTERN: &str = concat!(
    "^[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*",
    "(?:/[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*)*",
    ":(?:pull|push|delete|\\*)(?:,(?:pull|push|delete|\\*))*$"
);

/// An access token's scope in a request (`team-a:pull,push`), parsed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ScopeParam(pub TokenScope);

impl TryFrom<String> for ScopeParam {
    type Error = String;
    fn try_from(value: String) -> Result<ScopeParam, String> {
        TokenScope::parse(&value)
            .map(ScopeParam)
            .map_err(|e| e.to_string())
    }
}

impl PartialSchema for ScopeParam {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "What an access token may do: a namespace (every repository in it) \
                 or one repository, then `:` and actions among pull, push, delete, \
                 or `*` for all three.",
            ))
            .pattern(Some(TOKEN_SCOPE_PATTERN))
            .examples(["team-a:pull", "team-a/api:pull,push"])
            .into()
    }
}

impl ToSchema for ScopeParam {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TokenScope")
    }
}

/// The syntax of an expiry (the parser also refuses zero and more than a
/// hundred years).
pub const EXPIRY_PATTERN: &str = "^(?:never|[0-9]+[mhdw])$";

/// How long a new access token lives (`30d`), parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ExpiryParam(pub Expiry);

impl TryFrom<String> for ExpiryParam {
    type Error = String;
    fn try_from(value: String) -> Result<ExpiryParam, String> {
        Expiry::parse(&value)
            .map(ExpiryParam)
            .map_err(|e| e.to_string())
    }
}

impl PartialSchema for ExpiryParam {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A number and a unit (m, h, d, w), at most 100 years, or `never`.",
            ))
            .pattern(Some(EXPIRY_PATTERN))
            .examples(["30d", "never"])
            .into()
    }
}

impl ToSchema for ExpiryParam {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Expiry")
    }
}

/// The grammar of a repository name (`team-a/tools/api`): path components
/// of lowercase letters and digits separated by `.`, `_`, `__` or dashes,
/// joined by `/`, at most [`berth_oci::name::MAX_NAME_LEN`] characters.
/// In a path it is one segment, its slashes percent-encoded (`team-a%2Fapi`).
pub const REPOSITORY_PATTERN: &str = concat!(
    "^[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*",
    "(?:/[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*)*$"
);

/// The grammar of a tag.
pub const TAG_PATTERN: &str = "^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$";

/// The grammar of a digest the registry accepts.
pub const DIGEST_PATTERN: &str = "^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$";

/// A tag or a digest.
pub const REFERENCE_PATTERN: &str =
    "^(?:[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}|sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$";

/// Parses the path parameter `param` with `parse`, or answers 400 naming it.
fn path_param<T, E: std::fmt::Display>(
    param: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, ManagementError> {
    parse(value).map_err(|error| {
        ManagementError::invalid_request(format!("path parameter {param}: {error}"))
    })
}

/// A repository name, validated.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RepositoryParam(pub RepoName);

impl RepositoryParam {
    pub fn from_param(param: &str, value: &str) -> Result<RepositoryParam, ManagementError> {
        path_param(param, value, RepoName::parse).map(RepositoryParam)
    }
}

impl TryFrom<String> for RepositoryParam {
    type Error = String;
    fn try_from(value: String) -> Result<RepositoryParam, String> {
        RepoName::parse(&value)
            .map(RepositoryParam)
            .map_err(|e| e.to_string())
    }
}

impl PartialSchema for RepositoryParam {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A repository name: its namespace, then more path components, joined \
                 by '/' (percent-encoded as %2F in a path).",
            ))
            .pattern(Some(REPOSITORY_PATTERN))
            .min_length(Some(1))
            .max_length(Some(berth_oci::name::MAX_NAME_LEN))
            .examples(["team-a/api"])
            .into()
    }
}

impl ToSchema for RepositoryParam {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Repository")
    }
}

/// A tag, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagParam(pub Tag);

impl TagParam {
    pub fn from_param(param: &str, value: &str) -> Result<TagParam, ManagementError> {
        path_param(param, value, Tag::parse).map(TagParam)
    }
}

impl PartialSchema for TagParam {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A tag."))
            .pattern(Some(TAG_PATTERN))
            .examples(["latest"])
            .into()
    }
}

impl ToSchema for TagParam {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Tag")
    }
}

/// A tag or a digest, validated.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ReferenceParam(pub Reference);

impl ReferenceParam {
    pub fn from_param(param: &str, value: &str) -> Result<ReferenceParam, ManagementError> {
        path_param(param, value, parse_reference).map(ReferenceParam)
    }
}

/// A digest if it has the form of one (and then it must be valid), else a tag.
fn parse_reference(value: &str) -> Result<Reference, String> {
    if value.contains(':') {
        Digest::parse(value)
            .map(Reference::Digest)
            .map_err(|e| format!("{value:?} is not a valid digest: {e}"))
    } else {
        Tag::parse(value)
            .map(Reference::Tag)
            .map_err(|e| e.to_string())
    }
}

impl TryFrom<String> for ReferenceParam {
    type Error = String;
    fn try_from(value: String) -> Result<ReferenceParam, String> {
        parse_reference(&value).map(ReferenceParam)
    }
}

impl PartialSchema for ReferenceParam {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A tag, or a digest (`sha256:` and 64 hex digits)."))
            .pattern(Some(REFERENCE_PATTERN))
            .examples(["latest"])
            .into()
    }
}

impl ToSchema for ReferenceParam {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Reference")
    }
}

/// [`Role`] in the document: its names, taken from the domain.
pub struct RoleSchema;

impl PartialSchema for RoleSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A member's role; each may do what the one before it may, and more: \
                 reader pulls, writer pushes, maintainer deletes, owner manages \
                 members and settings.",
            ))
            .enum_values(Some(Role::ALL.map(Role::as_str)))
            .into()
    }
}

impl ToSchema for RoleSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Role")
    }
}

/// [`Visibility`] in the document.
pub struct VisibilitySchema;

impl PartialSchema for VisibilitySchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Who may pull without being a member: anyone (public) or nobody (private).",
            ))
            .enum_values(Some(
                [Visibility::Public, Visibility::Private].map(Visibility::as_str),
            ))
            .into()
    }
}

impl ToSchema for VisibilitySchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Visibility")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document's patterns accept exactly what the parsers accept, so
    /// the document neither refuses good input nor promises bad input works.
    #[test]
    fn patterns_agree_with_the_parsers() {
        let name = regex::Regex::new(NAME_PATTERN).unwrap();
        for candidate in [
            "alice", "team-a", "a.b", "a__b", "a---b", "x1", "", "A", "a/b", "-a", "a-", "a..b",
            "a___b", "a b", "é", "a_-b",
        ] {
            assert_eq!(
                Name::try_from(candidate.to_string()).is_ok(),
                name.is_match(candidate),
                "{candidate:?}"
            );
        }
        let long = "a".repeat(NAME_MAX_LEN + 1);
        assert!(
            name.is_match(&long) && Name::try_from(long).is_err(),
            "maxLength says it"
        );
        let scope = regex::Regex::new(TOKEN_SCOPE_PATTERN).unwrap();
        for candidate in [
            "team-a:pull",
            "team-a/api/x:pull,push,delete",
            "team-a:*",
            "team-a:*,pull",
            "team-a:pull,",
            "team-a",
            "team-a:admin",
            "Team:pull",
            "a//b:pull",
            "a/:pull",
            "a.b__c/d-e:push",
            ":pull",
        ] {
            assert_eq!(
                ScopeParam::try_from(candidate.to_string()).is_ok(),
                scope.is_match(candidate),
                "{candidate:?}"
            );
        }
        let expiry = regex::Regex::new(EXPIRY_PATTERN).unwrap();
        for candidate in [
            "30d", "12h", "90m", "2w", "never", "1y", "30", "d", "-1d", "30 d",
        ] {
            assert_eq!(
                ExpiryParam::try_from(candidate.to_string()).is_ok(),
                expiry.is_match(candidate),
                "{candidate:?}"
            );
        }
        let repository = regex::Regex::new(REPOSITORY_PATTERN).unwrap();
        for candidate in [
            "team-a/api",
            "a",
            "a/b/c",
            "a.b__c/d-e",
            "A/b",
            "a//b",
            "a/",
            "/a",
            "a b",
            "a/B",
        ] {
            assert_eq!(
                RepositoryParam::try_from(candidate.to_string()).is_ok(),
                repository.is_match(candidate),
                "{candidate:?}"
            );
        }
        let reference = regex::Regex::new(REFERENCE_PATTERN).unwrap();
        let sha256 = format!("sha256:{}", "a".repeat(64));
        let sha512 = format!("sha512:{}", "0".repeat(128));
        let short = format!("sha256:{}", "a".repeat(63));
        let upper = format!("sha256:{}", "A".repeat(64));
        for candidate in [
            "latest",
            "v1.2.3-rc_1",
            "_x",
            ".x",
            "-x",
            "a:b",
            "",
            sha256.as_str(),
            sha512.as_str(),
            short.as_str(),
            upper.as_str(),
            "md5:abc",
        ] {
            assert_eq!(
                ReferenceParam::try_from(candidate.to_string()).is_ok(),
                reference.is_match(candidate),
                "{candidate:?}"
            );
        }
        let tag = regex::Regex::new(TAG_PATTERN).unwrap();
        for candidate in ["latest", "_x", ".x", "a:b", ""] {
            assert_eq!(
                TagParam::from_param("tag", candidate).is_ok(),
                tag.is_match(candidate),
                "{candidate:?}"
            );
        }
        // Syntax the pattern allows and the parser refuses: zero and more
        // than a hundred years, which the description states.
        assert!(ExpiryParam::try_from("0d".to_string()).is_err());
        assert!(ExpiryParam::try_from("99999w".to_string()).is_err());
    }
}
