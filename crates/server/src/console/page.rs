//! The console's pages as a typed value, parsed once from the method, the
//! path and a form's fields, and the permission table that says what each
//! needs.

use axum::http::Method;
use berth_auth::{Action, TokenScope};
use berth_oci::{Reference, RepoName, Tag};
use percent_encoding::percent_decode_str;

use super::assets::{self, Asset};
use crate::api::permission::Permission;
use crate::api::tokens::NewToken;
use crate::api::types::{ExpiryParam, Name, ScopeParam};

/// The most fields a console form may have, and the longest value: far
/// more than any form here has, and a bound on what one request makes the
/// server keep.
pub const MAX_FORM_FIELDS: usize = 32;
pub const MAX_FIELD_LEN: usize = 4096;

/// The separator between a repository's name and what follows it in a
/// path: `-` alone is no valid name component, so it cannot be part of a
/// repository's name (`/repositories/team/app/-/images/latest`).
pub const REPOSITORY_END: &str = "/-/";

/// A console page or form, validated.
#[derive(Debug)]
pub enum Page {
    /// An embedded file: `GET /static/…`.
    Asset(&'static Asset),
    /// `GET /`: totals, charts and the latest pushes.
    Overview,
    /// `GET /namespaces`.
    Namespaces,
    /// `GET /namespaces/{namespace}`: its repositories and members.
    Namespace(Name),
    /// `GET /repositories/{repository}`: its tagged and untagged images.
    Repository(RepoName),
    /// `GET /repositories/{repository}/-/images/{tag or digest}`.
    Image(RepoName, Reference),
    /// `POST /repositories/{repository}/-/tags/{tag}/delete`.
    DeleteTag(RepoName, Tag),
    /// `GET /sign-in`.
    SignInForm,
    /// `POST /sign-in` with `username`, `password` and `next`.
    SignIn,
    /// `POST /sign-out`.
    SignOut,
    /// `GET /tokens`: the caller's access tokens, and the form for a new one.
    Tokens,
    /// `POST /tokens` with `name`, `scopes` and `expires`.
    CreateToken(NewToken),
    /// `POST /tokens/{name}/revoke`.
    RevokeToken(Name),
    /// `GET /admin/users`: every user, for administrators.
    Users,
    /// `POST /admin/users/{name}/disable` (`true`) or `…/enable` (`false`).
    SetUserDisabled(Name, bool),
}

/// Why a request names no page.
#[derive(Debug, PartialEq, Eq)]
pub enum NoPage {
    /// No such page (404).
    NotFound,
    /// The page exists for other methods (405).
    MethodNotAllowed,
    /// A form's field is missing or malformed (400), with what to fix.
    BadForm(String),
}

/// A form's fields, in order, as sent (`application/x-www-form-urlencoded`).
#[derive(Debug, Default)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    /// Parses a form body, within [`MAX_FORM_FIELDS`] and [`MAX_FIELD_LEN`].
    pub fn parse(body: &[u8]) -> Result<Form, NoPage> {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| NoPage::BadForm("the form could not be read".into()))?;
        if fields.len() > MAX_FORM_FIELDS
            || fields.iter().any(|(_, value)| value.len() > MAX_FIELD_LEN)
        {
            return Err(NoPage::BadForm("the form is too large".into()));
        }
        Ok(Form(fields))
    }

    /// The first value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Page {
    /// The page `method` and `path` ask for, with the fields of the form
    /// posted to it.
    pub fn parse(method: &Method, path: &str, form: &Form) -> Result<Page, NoPage> {
        let get = *method == Method::GET || *method == Method::HEAD;
        let post = *method == Method::POST;
        let only = |allowed: bool, page: Page| {
            if allowed {
                Ok(page)
            } else {
                Err(NoPage::MethodNotAllowed)
            }
        };
        if let Some(asset) = assets::find(path) {
            return only(get, Page::Asset(asset));
        }
        match path {
            "/" => return only(get, Page::Overview),
            "/namespaces" | "/namespaces/" => return only(get, Page::Namespaces),
            "/sign-in" => {
                return match (get, post) {
                    (true, _) => Ok(Page::SignInForm),
                    (_, true) => Ok(Page::SignIn),
                    _ => Err(NoPage::MethodNotAllowed),
                }
            }
            "/sign-out" => return only(post, Page::SignOut),
            "/tokens" => {
                return match (get, post) {
                    (true, _) => Ok(Page::Tokens),
                    (_, true) => Ok(Page::CreateToken(new_token(form)?)),
                    _ => Err(NoPage::MethodNotAllowed),
                }
            }
            _ => {}
        }
        if let Some(name) = path.strip_prefix("/namespaces/") {
            let name = Name::try_from(decode(name)?).map_err(|_| NoPage::NotFound)?;
            return only(get, Page::Namespace(name));
        }
        if path == "/admin/users" {
            return only(get, Page::Users);
        }
        if let Some(rest) = path.strip_prefix("/admin/users/") {
            let (name, disabled) = if let Some(name) = rest.strip_suffix("/disable") {
                (name, true)
            } else if let Some(name) = rest.strip_suffix("/enable") {
                (name, false)
            } else {
                return Err(NoPage::NotFound);
            };
            let name = Name::try_from(decode(name)?).map_err(|_| NoPage::NotFound)?;
            return only(post, Page::SetUserDisabled(name, disabled));
        }
        if let Some(rest) = path.strip_prefix("/tokens/") {
            let name = rest.strip_suffix("/revoke").ok_or(NoPage::NotFound)?;
            let name = Name::try_from(decode(name)?).map_err(|_| NoPage::NotFound)?;
            return only(post, Page::RevokeToken(name));
        }
        if let Some(rest) = path.strip_prefix("/repositories/") {
            let (name, tail) = match rest.split_once(REPOSITORY_END) {
                Some((name, tail)) => (name, Some(tail)),
                None => (rest.trim_end_matches('/'), None),
            };
            let repository = RepoName::parse(name).map_err(|_| NoPage::NotFound)?;
            return match tail {
                None => only(get, Page::Repository(repository)),
                Some(tail) => {
                    if let Some(reference) = tail.strip_prefix("images/") {
                        let reference =
                            Reference::parse(&decode(reference)?).map_err(|_| NoPage::NotFound)?;
                        only(get, Page::Image(repository, reference))
                    } else if let Some(tag) = tail
                        .strip_prefix("tags/")
                        .and_then(|t| t.strip_suffix("/delete"))
                    {
                        let tag = Tag::parse(&decode(tag)?).map_err(|_| NoPage::NotFound)?;
                        only(post, Page::DeleteTag(repository, tag))
                    } else {
                        Err(NoPage::NotFound)
                    }
                }
            };
        }
        Err(NoPage::NotFound)
    }

    /// A short name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Page::Asset(_) => "console_asset",
            Page::Overview => "console_overview",
            Page::Namespaces => "console_namespaces",
            Page::Namespace(_) => "console_namespace",
            Page::Repository(_) => "console_repository",
            Page::Image(..) => "console_image",
            Page::DeleteTag(..) => "console_delete_tag",
            Page::SignInForm | Page::SignIn => "console_sign_in",
            Page::SignOut => "console_sign_out",
            Page::Tokens | Page::CreateToken(_) | Page::RevokeToken(_) => "console_tokens",
            Page::Users | Page::SetUserDisabled(..) => "console_users",
        }
    }

    /// Whether the page is a form's target, which must carry the session's
    /// CSRF token. Signing in has no session yet: the origin check and
    /// `SameSite=Strict` guard it.
    pub fn needs_csrf_token(&self) -> bool {
        matches!(
            self,
            Page::DeleteTag(..)
                | Page::SignOut
                | Page::CreateToken(_)
                | Page::RevokeToken(_)
                | Page::SetUserDisabled(..)
        )
    }
}

/// The permission table: what each page needs, in the management API's
/// vocabulary, so the console and the API decide alike. Listings
/// ([`Page::Overview`], [`Page::Namespaces`]) are open to anyone and show
/// what the caller may see. Note that `authorize_policy` lets anonymous
/// visitors through `LoggedIn`, so no page here relies on it.
pub fn required(page: &Page) -> Permission {
    use Permission::*;
    match page {
        Page::Asset(_)
        | Page::Overview
        | Page::Namespaces
        | Page::SignInForm
        | Page::SignIn
        | Page::SignOut => Anyone,
        Page::Namespace(name) => SeeNamespace(name.clone()),
        Page::Repository(repository) | Page::Image(repository, _) => {
            Repositories(vec![(repository.clone(), Action::Pull)])
        }
        Page::DeleteTag(repository, _) => Repositories(vec![(repository.clone(), Action::Delete)]),
        Page::Tokens => OwnTokens,
        Page::CreateToken(new) => {
            GrantTokenScopes(new.scopes.iter().map(|s| s.0.clone()).collect())
        }
        Page::RevokeToken(name) => TokenCreator(name.clone()),
        Page::Users | Page::SetUserDisabled(..) => Administrator,
    }
}

/// A path segment, percent-decoded.
fn decode(segment: &str) -> Result<String, NoPage> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| NoPage::NotFound)
}

/// The token the new-token form asks for: a name, scopes separated by
/// spaces or lines (`team-a:pull team-b/app:pull,push`), and an expiry
/// (`30d`, `never`).
fn new_token(form: &Form) -> Result<NewToken, NoPage> {
    let bad = NoPage::BadForm;
    let name = form.get("name").unwrap_or("").trim().to_string();
    let name = Name::try_from(name).map_err(|e| {
        bad(format!(
            "Name: {e}. Use lowercase letters, digits, '-', '_' and '.'."
        ))
    })?;
    let scopes: Vec<ScopeParam> = form
        .get("scopes")
        .unwrap_or("")
        .split_whitespace()
        .map(|text| {
            TokenScope::parse(text)
                .map(ScopeParam)
                .map_err(|e| bad(format!("Scope {text}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    if scopes.is_empty() {
        return Err(bad(
            "Scopes: give at least one, such as team-a:pull or team-a/app:pull,push.".into(),
        ));
    }
    if scopes.len() > crate::api::tokens::MAX_SCOPES {
        return Err(bad(format!(
            "Scopes: at most {}.",
            crate::api::tokens::MAX_SCOPES
        )));
    }
    let expires = match form.get("expires").unwrap_or("never").trim() {
        "" | "never" => None,
        text => Some(
            ExpiryParam::try_from(text.to_string()).map_err(|e| bad(format!("Expires: {e}")))?,
        ),
    };
    Ok(NewToken {
        name,
        scopes,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, path: &str) -> Result<&'static str, NoPage> {
        Page::parse(&method, path, &Form::default()).map(|page| page.label())
    }

    #[test]
    fn paths_name_their_pages() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let image_by_digest = format!("/repositories/team/app/-/images/{digest}");
        let cases: Vec<(Method, &str, Result<&str, NoPage>)> = vec![
            (Method::GET, "/", Ok("console_overview")),
            (Method::GET, "/static/console.css", Ok("console_asset")),
            (Method::GET, "/static/other.css", Err(NoPage::NotFound)),
            (Method::GET, "/namespaces", Ok("console_namespaces")),
            (Method::GET, "/namespaces/team-a", Ok("console_namespace")),
            (Method::GET, "/namespaces/Team", Err(NoPage::NotFound)),
            (
                Method::GET,
                "/repositories/team/app",
                Ok("console_repository"),
            ),
            (
                Method::GET,
                "/repositories/team/sub/app",
                Ok("console_repository"),
            ),
            (
                Method::GET,
                "/repositories/team/app/-/images/latest",
                Ok("console_image"),
            ),
            (Method::GET, &image_by_digest, Ok("console_image")),
            (
                Method::POST,
                "/repositories/team/app/-/tags/v1/delete",
                Ok("console_delete_tag"),
            ),
            (
                Method::GET,
                "/repositories/team/app/-/tags/v1/delete",
                Err(NoPage::MethodNotAllowed),
            ),
            (
                Method::GET,
                "/repositories/team/app/-/other",
                Err(NoPage::NotFound),
            ),
            (Method::GET, "/repositories/Team/app", Err(NoPage::NotFound)),
            (Method::GET, "/sign-in", Ok("console_sign_in")),
            (Method::POST, "/sign-in", Ok("console_sign_in")),
            (Method::GET, "/sign-out", Err(NoPage::MethodNotAllowed)),
            (Method::POST, "/sign-out", Ok("console_sign_out")),
            (Method::GET, "/tokens", Ok("console_tokens")),
            (Method::POST, "/tokens/ci-bot/revoke", Ok("console_tokens")),
            (Method::GET, "/admin/users", Ok("console_users")),
            (
                Method::POST,
                "/admin/users/alice/disable",
                Ok("console_users"),
            ),
            (
                Method::POST,
                "/admin/users/alice/enable",
                Ok("console_users"),
            ),
            (
                Method::POST,
                "/admin/users/alice/delete",
                Err(NoPage::NotFound),
            ),
            (
                Method::GET,
                "/admin/users/alice/enable",
                Err(NoPage::MethodNotAllowed),
            ),
            (Method::POST, "/", Err(NoPage::MethodNotAllowed)),
            (Method::GET, "/nowhere", Err(NoPage::NotFound)),
        ];
        for (method, path, expected) in cases {
            assert_eq!(parse(method.clone(), path), expected, "{method} {path}");
        }
    }

    #[test]
    fn the_new_token_form_is_validated() {
        let form = |fields: &[(&str, &str)]| {
            Form(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let ok = Page::parse(
            &Method::POST,
            "/tokens",
            &form(&[
                ("name", "ci-bot"),
                ("scopes", "team-a:pull\r\nteam-b/app:pull,push"),
                ("expires", "30d"),
            ]),
        )
        .unwrap();
        match ok {
            Page::CreateToken(new) => {
                assert_eq!(new.name.as_str(), "ci-bot");
                assert_eq!(new.scopes.len(), 2);
                assert!(new.expires.is_some());
            }
            other => panic!("{other:?}"),
        }
        for fields in [
            vec![("name", "ci-bot"), ("scopes", "")],
            vec![("name", "Bad Name"), ("scopes", "team-a:pull")],
            vec![("name", "ci-bot"), ("scopes", "team-a:fly")],
            vec![
                ("name", "ci-bot"),
                ("scopes", "team-a:pull"),
                ("expires", "soon"),
            ],
        ] {
            let result = Page::parse(&Method::POST, "/tokens", &form(&fields));
            assert!(
                matches!(result, Err(NoPage::BadForm(_))),
                "{fields:?}: {result:?}"
            );
        }
    }
}
