//! The console's pages as a typed value, parsed once from the method, the
//! path and a form's fields, and the permission table that says what each
//! needs.

use axum::http::Method;
use berth_auth::{Action, Expiry, TokenScope};
use berth_oci::{Digest, Reference, RepoName, Tag};
use percent_encoding::percent_decode_str;

use super::assets::{self, Asset};
use crate::api::immutable::{NewImmutableRule, PatternParam, RuleScope};
use crate::api::permission::Permission;
use crate::api::quotas::QuotaLimits;
use crate::api::replications::{DirectionParam, NewReplicationRequest};
use crate::api::retention::{Keep, KeepTagsParam, MinAge, RetentionPolicyRequest, Untagged};
use crate::api::tokens::NewToken;
use crate::api::types::{ExpiryParam, Name, ScopeParam};
use crate::api::vulnerabilities::{ExemptionScope, NewExemption, VulnerabilityPolicy};

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
    /// `GET /namespaces/{namespace}/lifecycle`: its quotas, retention
    /// policy and immutable-tag rules.
    Lifecycle(Name),
    /// `POST /namespaces/{namespace}/quota` with `storage` and `traffic`.
    SetQuota(Name, QuotaLimits),
    /// `POST /namespaces/{namespace}/retention` with `keep`, `untagged`,
    /// `min_age` and `keep_tags`.
    SetRetention(Name, RetentionPolicyRequest),
    /// `POST /namespaces/{namespace}/retention/remove`.
    RemoveRetention(Name),
    /// `POST /namespaces/{namespace}/retention/run` with `dry_run`.
    RunRetention(Name, bool),
    /// `POST /namespaces/{namespace}/immutable` with `scope` and `tags`.
    AddImmutableRule(NewImmutableRule),
    /// `POST /namespaces/{namespace}/immutable/remove` with `scope` and
    /// `tags`.
    RemoveImmutableRule(RuleScope, PatternParam),
    /// `GET /namespaces/{namespace}/trash`: its deleted images, paged.
    Trash(Name),
    /// `POST /repositories/{repository}/-/images/{digest}/delete`.
    DeleteImage(RepoName, Digest),
    /// `POST /repositories/{repository}/-/images/{digest}/restore`.
    RestoreImage(RepoName, Digest),
    /// `GET /repositories/{repository}/-/images/{reference}/exempt/{issue}`:
    /// the form that exempts one finding of the image.
    ExemptForm(RepoName, Reference, String),
    /// `POST /exemptions` with `scope`, `issue`, `reason`, `expires` and
    /// `back` (the page to return to).
    Exempt(NewExemption, String),
    /// `POST /exemptions/remove` with `scope`, `issue` and `back`.
    RemoveExemption(ExemptionScope, String, String),
    /// `GET /namespaces/{namespace}/exemptions`: its vulnerability pull
    /// policy and the exemptions that apply to its images.
    Exemptions(Name),
    /// `POST /namespaces/{namespace}/vulnerability-policy` with `mode`,
    /// `severity` and `block_unscanned`.
    SetVulnerabilityPolicy(Name, VulnerabilityPolicy),
    /// `GET /admin/settings`: the effective configuration and the run-time
    /// settings, for administrators.
    Settings,
    /// `GET /account`: the signed-in user's account.
    Account,
    /// `POST /account/sign-out-everywhere`: ends every session of the
    /// signed-in user, this one included.
    SignOutEverywhere,
    /// `POST /admin/users/{name}/sign-out`: ends every session of a user.
    SignUserOut(Name),
    /// `GET /admin/replications`: every replication rule with its last
    /// run, and the form for a new one.
    Replications,
    /// `POST /admin/replications` with the fields of `berth replication
    /// add`: `name`, `direction`, `url`, `credentials`, `repositories`,
    /// `tags`, `on_push` and `interval`.
    CreateReplication(NewReplicationRequest),
    /// `GET /admin/replications/{name}`: a rule and its recent runs.
    Replication(Name),
    /// `POST /admin/replications/{name}/run`.
    RunReplication(Name),
    /// `POST /admin/replications/{name}/delete`.
    DeleteReplication(Name),
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
        // A form's page: its fields are read only when it was posted.
        let only_form = |allowed: bool, page: &dyn Fn() -> Result<Page, NoPage>| {
            if allowed {
                page()
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
            "/exemptions" => {
                return only_form(post, &|| {
                    let new = new_exemption(form)?;
                    Ok(Page::Exempt(new, back(form)))
                })
            }
            "/exemptions/remove" => {
                return only_form(post, &|| {
                    let scope = exemption_scope(form)?;
                    let issue = issue(form)?;
                    Ok(Page::RemoveExemption(scope, issue, back(form)))
                })
            }
            "/tokens" => {
                return match (get, post) {
                    (true, _) => Ok(Page::Tokens),
                    (_, true) => Ok(Page::CreateToken(new_token(form)?)),
                    _ => Err(NoPage::MethodNotAllowed),
                }
            }
            _ => {}
        }
        if let Some(rest) = path.strip_prefix("/namespaces/") {
            let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
            let name = Name::try_from(decode(name)?).map_err(|_| NoPage::NotFound)?;
            return match tail {
                "" => only(get, Page::Namespace(name)),
                "lifecycle" => only(get, Page::Lifecycle(name)),
                "trash" => only(get, Page::Trash(name)),
                "exemptions" => only(get, Page::Exemptions(name)),
                "vulnerability-policy" => only_form(post, &|| {
                    Ok(Page::SetVulnerabilityPolicy(
                        name.clone(),
                        vulnerability_policy(form)?,
                    ))
                }),
                "quota" => only_form(post, &|| {
                    Ok(Page::SetQuota(name.clone(), quota_limits(form)?))
                }),
                "retention" => only_form(post, &|| {
                    Ok(Page::SetRetention(name.clone(), retention_policy(form)?))
                }),
                "retention/remove" => only(post, Page::RemoveRetention(name)),
                "retention/run" => only(
                    post,
                    Page::RunRetention(name, form.get("dry_run") == Some("true")),
                ),
                "immutable" => only_form(post, &|| {
                    Ok(Page::AddImmutableRule(immutable_rule(&name, form)?))
                }),
                "immutable/remove" => only_form(post, &|| {
                    let rule = immutable_rule(&name, form)?;
                    Ok(Page::RemoveImmutableRule(rule.scope, rule.tags))
                }),
                _ => Err(NoPage::NotFound),
            };
        }
        match path {
            "/admin/users" => return only(get, Page::Users),
            "/admin/settings" => return only(get, Page::Settings),
            "/admin/replications" => {
                return match (get, post) {
                    (true, _) => Ok(Page::Replications),
                    (_, true) => Ok(Page::CreateReplication(new_replication(form)?)),
                    _ => Err(NoPage::MethodNotAllowed),
                }
            }
            "/account" => return only(get, Page::Account),
            "/account/sign-out-everywhere" => return only(post, Page::SignOutEverywhere),
            _ => {}
        }
        if let Some(rest) = path.strip_prefix("/admin/users/") {
            if let Some(name) = rest.strip_suffix("/sign-out") {
                let name = Name::try_from(decode(name)?).map_err(|_| NoPage::NotFound)?;
                return only(post, Page::SignUserOut(name));
            }
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
        if let Some(rest) = path.strip_prefix("/admin/replications/") {
            let (name, action) = rest.split_once('/').unwrap_or((rest, ""));
            let name = Name::try_from(decode(name)?).map_err(|_| NoPage::NotFound)?;
            return match action {
                "" => only(get, Page::Replication(name)),
                "run" => only(post, Page::RunReplication(name)),
                "delete" => only(post, Page::DeleteReplication(name)),
                _ => Err(NoPage::NotFound),
            };
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
                    if let Some((reference, action)) = tail
                        .strip_prefix("images/")
                        .and_then(|rest| rest.split_once('/'))
                    {
                        if let Some(issue) = action.strip_prefix("exempt/") {
                            let reference = Reference::parse(&decode(reference)?)
                                .map_err(|_| NoPage::NotFound)?;
                            let issue = decode(issue)?;
                            if issue.is_empty() || issue.len() > MAX_ISSUE_LEN {
                                return Err(NoPage::NotFound);
                            }
                            return only(get, Page::ExemptForm(repository, reference, issue));
                        }
                        let digest =
                            Digest::parse(&decode(reference)?).map_err(|_| NoPage::NotFound)?;
                        match action {
                            "delete" => only(post, Page::DeleteImage(repository, digest)),
                            "restore" => only(post, Page::RestoreImage(repository, digest)),
                            _ => Err(NoPage::NotFound),
                        }
                    } else if let Some(reference) = tail.strip_prefix("images/") {
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
            Page::Users | Page::SetUserDisabled(..) | Page::SignUserOut(_) => "console_users",
            Page::Settings => "console_settings",
            Page::Replications
            | Page::CreateReplication(_)
            | Page::Replication(_)
            | Page::RunReplication(_)
            | Page::DeleteReplication(_) => "console_replications",
            Page::Account | Page::SignOutEverywhere => "console_account",
            Page::Lifecycle(_)
            | Page::SetQuota(..)
            | Page::SetRetention(..)
            | Page::RemoveRetention(_)
            | Page::RunRetention(..)
            | Page::AddImmutableRule(_)
            | Page::RemoveImmutableRule(..) => "console_lifecycle",
            Page::Trash(_) | Page::RestoreImage(..) => "console_trash",
            Page::DeleteImage(..) => "console_delete_image",
            Page::ExemptForm(..)
            | Page::Exempt(..)
            | Page::RemoveExemption(..)
            | Page::Exemptions(_)
            | Page::SetVulnerabilityPolicy(..) => "console_exemptions",
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
                | Page::SetQuota(..)
                | Page::SetRetention(..)
                | Page::RemoveRetention(_)
                | Page::RunRetention(..)
                | Page::AddImmutableRule(_)
                | Page::RemoveImmutableRule(..)
                | Page::DeleteImage(..)
                | Page::RestoreImage(..)
                | Page::Exempt(..)
                | Page::RemoveExemption(..)
                | Page::SetVulnerabilityPolicy(..)
                | Page::SignOutEverywhere
                | Page::SignUserOut(_)
                | Page::CreateReplication(_)
                | Page::RunReplication(_)
                | Page::DeleteReplication(_)
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
        Page::Users | Page::SetUserDisabled(..) | Page::SignUserOut(_) | Page::Settings => {
            Administrator
        }
        // As `/api/v1/replications`: rules reach across namespaces and
        // call out, so they are the operator's.
        Page::Replications
        | Page::CreateReplication(_)
        | Page::Replication(_)
        | Page::RunReplication(_)
        | Page::DeleteReplication(_) => Administrator,
        Page::Account | Page::SignOutEverywhere => OwnAccount,
        Page::SetVulnerabilityPolicy(name, _) => Namespace(name.clone(), Action::ManageSettings),
        // The rows of the management API's endpoints these pages mirror.
        Page::Lifecycle(name) | Page::Trash(name) => SeeNamespace(name.clone()),
        Page::SetQuota(..) => Administrator,
        Page::SetRetention(name, _) | Page::RemoveRetention(name) | Page::RunRetention(name, _) => {
            Namespace(name.clone(), Action::ManageSettings)
        }
        Page::AddImmutableRule(new) => {
            Namespace(new.scope.namespace.clone(), Action::ManageSettings)
        }
        Page::RemoveImmutableRule(scope, _) => {
            Namespace(scope.namespace.clone(), Action::ManageSettings)
        }
        Page::DeleteImage(repository, _) | Page::RestoreImage(repository, _) => {
            Repositories(vec![(repository.clone(), Action::Delete)])
        }
        // Seeing the finding is seeing the image; the form's scopes are
        // offered by what the caller may change.
        Page::ExemptForm(repository, ..) => Repositories(vec![(repository.clone(), Action::Pull)]),
        Page::Exemptions(name) => SeeNamespace(name.clone()),
        // The management API's rows for adding and removing an exemption.
        Page::Exempt(new, _) => crate::api::permission::exemption_scope(&new.scope),
        Page::RemoveExemption(scope, ..) => crate::api::permission::exemption_scope(scope),
    }
}

/// The pull-policy form: `berth va policy set`'s fields, checked as the
/// API checks them.
fn vulnerability_policy(form: &Form) -> Result<VulnerabilityPolicy, NoPage> {
    let policy = VulnerabilityPolicy {
        mode: form.get("mode").unwrap_or("").to_string(),
        severity: form.get("severity").unwrap_or("critical").to_string(),
        block_unscanned: form.get("block_unscanned") == Some("true"),
        attach_sbom: form.get("attach_sbom") == Some("true"),
    };
    policy
        .validate()
        .map_err(|e| NoPage::BadForm(format!("Pull policy: {}.", e.message())))?;
    Ok(policy)
}

/// The longest advisory id or alias an exemption names (the API's bound).
pub const MAX_ISSUE_LEN: usize = 200;

/// Where a form returns to: a path of this site, else the overview.
fn back(form: &Form) -> String {
    let back = form.get("back").unwrap_or("/");
    if back.starts_with('/') && !back.starts_with("//") && !back.starts_with("/\\") {
        back.to_string()
    } else {
        "/".to_string()
    }
}

fn exemption_scope(form: &Form) -> Result<ExemptionScope, NoPage> {
    ExemptionScope::try_from(form.get("scope").unwrap_or("").trim().to_string())
        .map_err(|e| NoPage::BadForm(format!("Scope: {e}")))
}

fn issue(form: &Form) -> Result<String, NoPage> {
    let issue = form.get("issue").unwrap_or("").trim();
    if issue.is_empty() || issue.len() > MAX_ISSUE_LEN {
        return Err(NoPage::BadForm(format!(
            "Issue: an advisory id or alias of 1 to {MAX_ISSUE_LEN} characters."
        )));
    }
    Ok(issue.to_string())
}

/// The exemption form: scope, issue, reason and expiry (`30d`, `never`).
fn new_exemption(form: &Form) -> Result<NewExemption, NoPage> {
    let reason = form.get("reason").unwrap_or("").trim().to_string();
    if reason.is_empty() {
        return Err(NoPage::BadForm(
            "Reason: say why the finding does not matter here, for those who read it later.".into(),
        ));
    }
    let expires = match form.get("expires").unwrap_or("never").trim() {
        "" | "never" => None,
        text => Some(
            ExpiryParam::try_from(text.to_string())
                .map_err(|e| NoPage::BadForm(format!("Expires: {e}")))?,
        ),
    };
    Ok(NewExemption {
        scope: exemption_scope(form)?,
        issue: issue(form)?,
        reason,
        expires,
    })
}

/// A limit as the quota form gives it: empty keeps the limit, `default`
/// returns to the registry-wide default, `unlimited` exempts the namespace
/// from it, and a size (`10GB`, `500MiB`, `1048576`) sets it.
fn limit_field(form: &Form, field: &str, label: &str) -> Result<Option<Option<u64>>, NoPage> {
    match form.get(field).unwrap_or("").trim() {
        "" => Ok(None),
        "default" => Ok(Some(None)),
        "unlimited" => Ok(Some(Some(berth_registry::quotas::UNLIMITED))),
        text => berth_registry::quotas::parse_size(text)
            .map(|bytes| Some(Some(bytes)))
            .map_err(|e| NoPage::BadForm(format!("{label}: {e}, or unlimited, or default."))),
    }
}

fn quota_limits(form: &Form) -> Result<QuotaLimits, NoPage> {
    let limits = QuotaLimits {
        storage: limit_field(form, "storage", "Storage")?,
        traffic: limit_field(form, "traffic", "Pull traffic")?,
    };
    limits
        .validate()
        .map_err(|e| NoPage::BadForm(e.message().to_string()))?;
    Ok(limits)
}

/// The replication form: the fields of `berth replication add`. Empty
/// credentials, tags and interval are none.
fn new_replication(form: &Form) -> Result<NewReplicationRequest, NoPage> {
    let bad = NoPage::BadForm;
    let field = |name: &str| form.get(name).unwrap_or("").trim();
    let optional = |name: &str| Some(field(name)).filter(|v| !v.is_empty());
    let name = Name::try_from(field("name").to_string()).map_err(|e| bad(format!("Name: {e}.")))?;
    let direction = match field("direction") {
        "push" => DirectionParam::Push,
        "pull" => DirectionParam::Pull,
        other => return Err(bad(format!("Direction: {other:?} is not push or pull."))),
    };
    let interval_secs = match optional("interval") {
        None => None,
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| bad(format!("Interval: {text:?} is not a number of seconds.")))?,
        ),
    };
    // Credentials are taken as typed (a password may end in a space).
    let credentials = form
        .get("credentials")
        .filter(|v| !v.is_empty())
        .map(berth_auth::Secret::new);
    let new = NewReplicationRequest {
        name,
        direction,
        url: field("url").to_string(),
        credentials,
        repositories: field("repositories").to_string(),
        tags: optional("tags").map(str::to_string),
        on_push: form.get("on_push") == Some("true"),
        interval_secs,
    };
    new.validate()
        .map_err(|e| bad(format!("{}.", e.message())))?;
    Ok(new)
}

/// The retention form: the fields of `berth retention set`.
fn retention_policy(form: &Form) -> Result<RetentionPolicyRequest, NoPage> {
    let bad = NoPage::BadForm;
    let keep = form.get("keep").unwrap_or("").trim();
    let keep = keep
        .parse::<u64>()
        .map_err(|_| bad(format!("Keep: {keep:?} is not a number of images.")))
        .and_then(|n| Keep::try_from(n).map_err(|e| bad(format!("Keep: {e}."))))?;
    let untagged = match form.get("untagged").unwrap_or("keep") {
        "keep" => Untagged::Keep,
        "delete" => Untagged::Delete,
        other => {
            return Err(bad(format!(
                "Untagged images: {other:?} is not keep or delete."
            )))
        }
    };
    let min_age = match form.get("min_age").unwrap_or("").trim() {
        "" | "0" => MinAge(0),
        text => match Expiry::parse(text) {
            Ok(Expiry::After(age)) => MinAge::try_from(age.whole_seconds().max(0) as u64)
                .map_err(|e| bad(format!("Minimum age: {e}.")))?,
            _ => {
                return Err(bad(format!(
                    "Minimum age: {text:?} is not an age such as 7d, 12h or 2w."
                )))
            }
        },
    };
    let keep_tags = match form.get("keep_tags").unwrap_or("").trim() {
        "" => None,
        text => Some(
            KeepTagsParam::try_from(text.to_string())
                .map_err(|e| bad(format!("Tags always kept: {e}")))?,
        ),
    };
    Ok(RetentionPolicyRequest {
        keep,
        untagged,
        min_age,
        keep_tags,
    })
}

/// The immutable-tag form: a scope (the namespace, or a repository in it)
/// and a tag pattern.
fn immutable_rule(namespace: &Name, form: &Form) -> Result<NewImmutableRule, NoPage> {
    let bad = NoPage::BadForm;
    let scope = match form.get("scope").unwrap_or("").trim() {
        "" => namespace.to_string(),
        text => text.to_string(),
    };
    let scope = RuleScope::try_from(scope).map_err(|e| bad(format!("Where: {e}")))?;
    if scope.namespace != *namespace {
        return Err(bad(format!(
            "Where: a rule of {namespace} applies to {namespace} or a repository in it."
        )));
    }
    let tags = PatternParam::try_from(form.get("tags").unwrap_or("").trim().to_string())
        .map_err(|e| bad(format!("Tags: {e}")))?;
    Ok(NewImmutableRule { scope, tags })
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
        let restore_by_digest = format!("{image_by_digest}/restore");
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
            (
                Method::GET,
                "/namespaces/team-a/lifecycle",
                Ok("console_lifecycle"),
            ),
            (Method::GET, "/namespaces/team-a/trash", Ok("console_trash")),
            (
                Method::POST,
                "/namespaces/team-a/retention/remove",
                Ok("console_lifecycle"),
            ),
            (
                Method::POST,
                "/namespaces/team-a/retention/run",
                Ok("console_lifecycle"),
            ),
            (
                Method::GET,
                "/namespaces/team-a/retention/run",
                Err(NoPage::MethodNotAllowed),
            ),
            (
                Method::GET,
                "/namespaces/team-a/quota",
                Err(NoPage::MethodNotAllowed),
            ),
            (
                Method::GET,
                "/namespaces/team-a/other",
                Err(NoPage::NotFound),
            ),
            (Method::POST, &restore_by_digest, Ok("console_trash")),
            (
                Method::POST,
                "/repositories/team/app/-/images/latest/restore",
                Err(NoPage::NotFound),
            ),
            (
                Method::GET,
                "/repositories/team/app/-/images/v1/exempt/CVE-2024-1",
                Ok("console_exemptions"),
            ),
            (
                Method::POST,
                "/repositories/team/app/-/images/v1/exempt/CVE-2024-1",
                Err(NoPage::MethodNotAllowed),
            ),
            (
                Method::GET,
                "/namespaces/team-a/exemptions",
                Ok("console_exemptions"),
            ),
            (Method::GET, "/exemptions", Err(NoPage::MethodNotAllowed)),
            (Method::GET, "/admin/settings", Ok("console_settings")),
            (Method::GET, "/account", Ok("console_account")),
            (
                Method::POST,
                "/account/sign-out-everywhere",
                Ok("console_account"),
            ),
            (
                Method::GET,
                "/account/sign-out-everywhere",
                Err(NoPage::MethodNotAllowed),
            ),
            (
                Method::POST,
                "/admin/users/alice/sign-out",
                Ok("console_users"),
            ),
            (Method::POST, "/", Err(NoPage::MethodNotAllowed)),
            (Method::GET, "/nowhere", Err(NoPage::NotFound)),
        ];
        for (method, path, expected) in cases {
            assert_eq!(parse(method.clone(), path), expected, "{method} {path}");
        }
    }

    /// A form with these fields, as the console's form parser hands it over.
    fn form(fields: &[(&str, &str)]) -> Form {
        Form(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn lifecycle_forms_are_validated() {
        let parse =
            |path: &str, fields: &[(&str, &str)]| Page::parse(&Method::POST, path, &form(fields));
        match parse(
            "/namespaces/team-a/quota",
            &[("storage", "10GB"), ("traffic", "")],
        ) {
            Ok(Page::SetQuota(_, limits)) => {
                assert_eq!(limits.storage, Some(Some(10_000_000_000)));
                assert_eq!(limits.traffic, None);
            }
            other => panic!("{other:?}"),
        }
        match parse(
            "/namespaces/team-a/quota",
            &[("storage", "unlimited"), ("traffic", "default")],
        ) {
            Ok(Page::SetQuota(_, limits)) => {
                assert_eq!(
                    limits.storage,
                    Some(Some(berth_registry::quotas::UNLIMITED))
                );
                assert_eq!(limits.traffic, Some(None));
            }
            other => panic!("{other:?}"),
        }
        match parse(
            "/namespaces/team-a/retention",
            &[
                ("keep", "3"),
                ("untagged", "delete"),
                ("min_age", "7d"),
                ("keep_tags", "^v"),
            ],
        ) {
            Ok(Page::SetRetention(_, policy)) => {
                assert_eq!(policy.keep.0, 3);
                assert_eq!(policy.untagged, Untagged::Delete);
                assert_eq!(policy.min_age.0, 7 * 86_400);
                assert!(policy.keep_tags.is_some());
            }
            other => panic!("{other:?}"),
        }
        match parse(
            "/namespaces/team-a/immutable",
            &[("scope", ""), ("tags", "v*")],
        ) {
            Ok(Page::AddImmutableRule(rule)) => {
                assert_eq!(rule.scope.namespace.as_str(), "team-a");
                assert_eq!(rule.scope.repository, None);
            }
            other => panic!("{other:?}"),
        }
        for (path, fields) in [
            ("/namespaces/team-a/quota", vec![("storage", "ten")]),
            ("/namespaces/team-a/quota", vec![("traffic", "-1")]),
            ("/namespaces/team-a/retention", vec![("keep", "")]),
            ("/namespaces/team-a/retention", vec![("keep", "2000000")]),
            (
                "/namespaces/team-a/retention",
                vec![("keep", "1"), ("untagged", "maybe")],
            ),
            (
                "/namespaces/team-a/retention",
                vec![("keep", "1"), ("min_age", "never")],
            ),
            (
                "/namespaces/team-a/retention",
                vec![("keep", "1"), ("keep_tags", "(")],
            ),
            ("/namespaces/team-a/immutable", vec![("tags", "")]),
            ("/namespaces/team-a/immutable", vec![("tags", "v 1")]),
            (
                "/namespaces/team-a/immutable",
                vec![("scope", "team-b/app"), ("tags", "v*")],
            ),
        ] {
            let result = parse(path, &fields);
            assert!(
                matches!(result, Err(NoPage::BadForm(_))),
                "{path} {fields:?}: {result:?}"
            );
        }
    }

    #[test]
    fn every_form_but_signing_in_needs_the_csrf_token() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let fields = [
            ("storage", "1GB"),
            ("keep", "1"),
            ("tags", "v*"),
            ("scope", "team-a"),
            ("issue", "CVE-1"),
            ("reason", "r"),
            ("mode", "off"),
            ("name", "ci-bot"),
            ("scopes", "team-a:pull"),
        ];
        let form = Form(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let restore = format!("/repositories/team-a/app/-/images/{digest}/restore");
        let delete = format!("/repositories/team-a/app/-/images/{digest}/delete");
        for path in [
            "/sign-out",
            "/tokens",
            "/tokens/ci-bot/revoke",
            "/admin/users/alice/disable",
            "/admin/users/alice/sign-out",
            "/account/sign-out-everywhere",
            "/repositories/team-a/app/-/tags/v1/delete",
            &restore,
            &delete,
            "/namespaces/team-a/quota",
            "/namespaces/team-a/retention",
            "/namespaces/team-a/retention/remove",
            "/namespaces/team-a/retention/run",
            "/namespaces/team-a/immutable",
            "/namespaces/team-a/immutable/remove",
            "/namespaces/team-a/vulnerability-policy",
            "/exemptions",
            "/exemptions/remove",
        ] {
            let page = Page::parse(&Method::POST, path, &form)
                .unwrap_or_else(|refusal| panic!("{path}: {refusal:?}"));
            assert!(page.needs_csrf_token(), "{path}");
        }
        let sign_in = Page::parse(&Method::POST, "/sign-in", &form).unwrap();
        assert!(
            !sign_in.needs_csrf_token(),
            "no session to take a token from yet"
        );
    }

    #[test]
    fn exemption_forms_are_validated() {
        let ok = Page::parse(
            &Method::POST,
            "/exemptions",
            &form(&[
                ("scope", "team-a/app:v1"),
                ("issue", "CVE-2024-1"),
                ("reason", "not reachable"),
                ("expires", "30d"),
                ("back", "//evil.example/"),
            ]),
        );
        match ok {
            Ok(Page::Exempt(new, back)) => {
                assert_eq!(new.scope.as_str(), "team-a/app:v1");
                assert!(new.expires.is_some());
                assert_eq!(back, "/", "only paths of this site");
            }
            other => panic!("{other:?}"),
        }
        let long = "C".repeat(MAX_ISSUE_LEN + 1);
        for fields in [
            vec![("scope", "team-a"), ("issue", "CVE-1"), ("reason", "")],
            vec![("scope", "Team A"), ("issue", "CVE-1"), ("reason", "r")],
            vec![("scope", "team-a"), ("issue", ""), ("reason", "r")],
            vec![
                ("scope", "team-a"),
                ("issue", long.as_str()),
                ("reason", "r"),
            ],
            vec![
                ("scope", "team-a"),
                ("issue", "CVE-1"),
                ("reason", "r"),
                ("expires", "soon"),
            ],
        ] {
            let result = Page::parse(&Method::POST, "/exemptions", &form(&fields));
            assert!(
                matches!(result, Err(NoPage::BadForm(_))),
                "{fields:?}: {result:?}"
            );
        }
    }

    #[test]
    fn the_new_token_form_is_validated() {
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
