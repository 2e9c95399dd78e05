//! The routing table of the management API: every operation with its
//! method and path, and the matching of a request's path against it.
//!
//! The paths are OpenAPI templates (`/api/v1/namespaces/{namespace}`), the
//! very strings the OpenAPI document lists (a
//! test holds the two to each other), so what is routed is what is
//! documented. A `{param}` matches one non-empty path segment, percent-decoded;
//! what it must look like is checked when the request is parsed into an
//! [`super::Endpoint`].

use axum::http::Method;

use super::error::ManagementError;

/// One operation of the API: a method on a path. Adding an endpoint starts
/// with a variant here and its row in [`Route::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    OpenApi,
    ListUsers,
    CreateUser,
    UpdateUser,
    DeleteUser,
    SetUserPassword,
    ChangeOwnPassword,
    ListNamespaces,
    CreateNamespace,
    GetNamespace,
    UpdateNamespace,
    ListMembers,
    SetMember,
    RemoveMember,
    ListTokens,
    CreateToken,
    RevokeToken,
    ListNamespaceTokens,
    ListImages,
    ListTags,
    GetImage,
    DeleteImage,
    TagImage,
    UntagImage,
    ListRepositories,
    DeleteNamespace,
    GetVulnerabilityReport,
    GetSbom,
    GetVulnerabilityPolicy,
    SetVulnerabilityPolicy,
    ListVulnerabilityPolicies,
    GetVulnerabilitySummary,
    ListExemptions,
    AddExemption,
    RemoveExemption,
    GetAdvisoryData,
    ImportAdvisories,
    ListAdvisorySources,
    SyncAdvisorySources,
    ListImmutableRules,
    AddImmutableRule,
    RemoveImmutableRule,
    ListWebhooks,
    CreateWebhook,
    DeleteWebhook,
    ListWebhookDeliveries,
    ListAudit,
    ListTrash,
    RestoreImage,
    ListRetentionPolicies,
    SetRetentionPolicy,
    RemoveRetentionPolicy,
    RunRetentionPolicy,
    ListQuotas,
    GetQuota,
    GetUsageHistory,
    SetQuota,
    RecomputeQuotas,
    ListReplications,
    CreateReplication,
    GetReplication,
    RunReplication,
    DeleteReplication,
}

impl Route {
    /// Every route, in the order the OpenAPI document lists them.
    pub const ALL: [Route; 63] = [
        Route::OpenApi,
        Route::ListUsers,
        Route::CreateUser,
        Route::UpdateUser,
        Route::DeleteUser,
        Route::SetUserPassword,
        Route::ChangeOwnPassword,
        Route::ListNamespaces,
        Route::CreateNamespace,
        Route::GetNamespace,
        Route::UpdateNamespace,
        Route::ListMembers,
        Route::SetMember,
        Route::RemoveMember,
        Route::ListTokens,
        Route::CreateToken,
        Route::RevokeToken,
        Route::ListNamespaceTokens,
        Route::ListImages,
        Route::ListTags,
        Route::GetImage,
        Route::DeleteImage,
        Route::TagImage,
        Route::UntagImage,
        Route::ListRepositories,
        Route::DeleteNamespace,
        Route::GetVulnerabilityReport,
        Route::GetSbom,
        Route::GetVulnerabilityPolicy,
        Route::SetVulnerabilityPolicy,
        Route::ListVulnerabilityPolicies,
        Route::GetVulnerabilitySummary,
        Route::ListExemptions,
        Route::AddExemption,
        Route::RemoveExemption,
        Route::GetAdvisoryData,
        Route::ImportAdvisories,
        Route::ListAdvisorySources,
        Route::SyncAdvisorySources,
        Route::ListImmutableRules,
        Route::AddImmutableRule,
        Route::RemoveImmutableRule,
        Route::ListWebhooks,
        Route::CreateWebhook,
        Route::DeleteWebhook,
        Route::ListWebhookDeliveries,
        Route::ListAudit,
        Route::ListTrash,
        Route::RestoreImage,
        Route::ListRetentionPolicies,
        Route::SetRetentionPolicy,
        Route::RemoveRetentionPolicy,
        Route::RunRetentionPolicy,
        Route::ListQuotas,
        Route::GetQuota,
        Route::GetUsageHistory,
        Route::SetQuota,
        Route::RecomputeQuotas,
        Route::ListReplications,
        Route::CreateReplication,
        Route::GetReplication,
        Route::RunReplication,
        Route::DeleteReplication,
    ];

    /// The method and path template of the route: the routing table.
    pub fn method_and_path(self) -> (Method, &'static str) {
        match self {
            Route::OpenApi => (Method::GET, "/api/v1/openapi.json"),
            Route::ListUsers => (Method::GET, "/api/v1/users"),
            Route::CreateUser => (Method::POST, "/api/v1/users"),
            Route::UpdateUser => (Method::PATCH, "/api/v1/users/{name}"),
            Route::DeleteUser => (Method::DELETE, "/api/v1/users/{name}"),
            Route::SetUserPassword => (Method::PUT, "/api/v1/users/{name}/password"),
            Route::ChangeOwnPassword => (Method::PUT, "/api/v1/user/password"),
            Route::ListNamespaces => (Method::GET, "/api/v1/namespaces"),
            Route::CreateNamespace => (Method::POST, "/api/v1/namespaces"),
            Route::GetNamespace => (Method::GET, "/api/v1/namespaces/{namespace}"),
            Route::UpdateNamespace => (Method::PATCH, "/api/v1/namespaces/{namespace}"),
            Route::ListMembers => (Method::GET, "/api/v1/namespaces/{namespace}/members"),
            Route::SetMember => (Method::PUT, "/api/v1/namespaces/{namespace}/members/{user}"),
            Route::RemoveMember => (
                Method::DELETE,
                "/api/v1/namespaces/{namespace}/members/{user}",
            ),
            Route::ListTokens => (Method::GET, "/api/v1/tokens"),
            Route::CreateToken => (Method::POST, "/api/v1/tokens"),
            Route::RevokeToken => (Method::DELETE, "/api/v1/tokens/{name}"),
            Route::ListNamespaceTokens => (Method::GET, "/api/v1/namespaces/{namespace}/tokens"),
            Route::ListImages => (Method::GET, "/api/v1/repositories/{repository}/images"),
            Route::ListTags => (Method::GET, "/api/v1/repositories/{repository}/tags"),
            Route::GetImage => (
                Method::GET,
                "/api/v1/repositories/{repository}/images/{reference}",
            ),
            Route::DeleteImage => (
                Method::DELETE,
                "/api/v1/repositories/{repository}/images/{reference}",
            ),
            Route::TagImage => (Method::PUT, "/api/v1/repositories/{repository}/tags/{tag}"),
            Route::UntagImage => (
                Method::DELETE,
                "/api/v1/repositories/{repository}/tags/{tag}",
            ),
            Route::ListRepositories => (Method::GET, "/api/v1/repositories"),
            Route::DeleteNamespace => (Method::DELETE, "/api/v1/namespaces/{namespace}"),
            Route::GetVulnerabilityReport => {
                (Method::GET, "/api/v1/images/{image}/vulnerabilities")
            }
            Route::GetSbom => (Method::GET, "/api/v1/images/{image}/sbom/{format}"),
            Route::GetVulnerabilityPolicy => (
                Method::GET,
                "/api/v1/namespaces/{namespace}/vulnerability-policy",
            ),
            Route::SetVulnerabilityPolicy => (
                Method::PUT,
                "/api/v1/namespaces/{namespace}/vulnerability-policy",
            ),
            Route::ListVulnerabilityPolicies => (Method::GET, "/api/v1/vulnerability-policies"),
            Route::GetVulnerabilitySummary => (Method::GET, "/api/v1/vulnerabilities/summary"),
            Route::ListExemptions => (Method::GET, "/api/v1/exemptions"),
            Route::AddExemption => (Method::POST, "/api/v1/exemptions"),
            Route::RemoveExemption => (Method::DELETE, "/api/v1/exemptions/{scope}/{issue}"),
            Route::GetAdvisoryData => (Method::GET, "/api/v1/advisories"),
            Route::ImportAdvisories => (Method::POST, "/api/v1/advisories"),
            Route::ListAdvisorySources => (Method::GET, "/api/v1/advisories/sources"),
            Route::SyncAdvisorySources => (Method::POST, "/api/v1/advisories/sources/sync"),
            Route::ListImmutableRules => (Method::GET, "/api/v1/immutable-rules"),
            Route::AddImmutableRule => (Method::POST, "/api/v1/immutable-rules"),
            Route::RemoveImmutableRule => {
                (Method::DELETE, "/api/v1/immutable-rules/{scope}/{tags}")
            }
            Route::ListWebhooks => (Method::GET, "/api/v1/webhooks"),
            Route::CreateWebhook => (Method::POST, "/api/v1/webhooks"),
            Route::DeleteWebhook => (Method::DELETE, "/api/v1/webhooks/{scope}/{id}"),
            Route::ListWebhookDeliveries => {
                (Method::GET, "/api/v1/webhooks/{scope}/{id}/deliveries")
            }
            Route::ListAudit => (Method::GET, "/api/v1/audit"),
            Route::ListTrash => (Method::GET, "/api/v1/trash"),
            Route::RestoreImage => (
                Method::POST,
                "/api/v1/repositories/{repository}/images/{digest}/restore",
            ),
            Route::ListRetentionPolicies => (Method::GET, "/api/v1/retention-policies"),
            Route::SetRetentionPolicy => (
                Method::PUT,
                "/api/v1/namespaces/{namespace}/retention-policy",
            ),
            Route::RemoveRetentionPolicy => (
                Method::DELETE,
                "/api/v1/namespaces/{namespace}/retention-policy",
            ),
            Route::RunRetentionPolicy => (
                Method::POST,
                "/api/v1/namespaces/{namespace}/retention-policy/run",
            ),
            Route::ListQuotas => (Method::GET, "/api/v1/quotas"),
            Route::GetQuota => (Method::GET, "/api/v1/quotas/{namespace}"),
            Route::GetUsageHistory => (Method::GET, "/api/v1/namespaces/{namespace}/usage-history"),
            Route::SetQuota => (Method::PUT, "/api/v1/quotas/{namespace}"),
            Route::RecomputeQuotas => (Method::POST, "/api/v1/quota-recompute"),
            Route::ListReplications => (Method::GET, "/api/v1/replications"),
            Route::CreateReplication => (Method::POST, "/api/v1/replications"),
            Route::GetReplication => (Method::GET, "/api/v1/replications/{name}"),
            Route::RunReplication => (Method::POST, "/api/v1/replications/{name}/run"),
            Route::DeleteReplication => (Method::DELETE, "/api/v1/replications/{name}"),
        }
    }

    /// Whether the operation takes a JSON request body.
    pub fn takes_body(self) -> bool {
        matches!(
            self,
            Route::CreateUser
                | Route::UpdateUser
                | Route::SetUserPassword
                | Route::ChangeOwnPassword
                | Route::CreateNamespace
                | Route::UpdateNamespace
                | Route::SetMember
                | Route::CreateToken
                | Route::TagImage
                | Route::SetVulnerabilityPolicy
                | Route::AddExemption
                | Route::ImportAdvisories
                | Route::AddImmutableRule
                | Route::CreateWebhook
                | Route::SetRetentionPolicy
                | Route::RunRetentionPolicy
                | Route::SetQuota
                | Route::CreateReplication
        )
    }

    /// Whether anonymous callers may call it. Every other route answers an
    /// anonymous caller 401 before its body is read; the permission table
    /// agrees (a test checks that these are exactly its `Anyone` rows).
    pub fn is_public(self) -> bool {
        matches!(self, Route::OpenApi)
    }

    /// The route's name: its OpenAPI `operationId` and its metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Route::OpenApi => "openapi",
            Route::ListUsers => "list_users",
            Route::CreateUser => "create_user",
            Route::UpdateUser => "update_user",
            Route::DeleteUser => "delete_user",
            Route::SetUserPassword => "set_user_password",
            Route::ChangeOwnPassword => "change_own_password",
            Route::ListNamespaces => "list_namespaces",
            Route::CreateNamespace => "create_namespace",
            Route::GetNamespace => "get_namespace",
            Route::UpdateNamespace => "update_namespace",
            Route::ListMembers => "list_members",
            Route::SetMember => "set_member",
            Route::RemoveMember => "remove_member",
            Route::ListTokens => "list_tokens",
            Route::CreateToken => "create_token",
            Route::RevokeToken => "revoke_token",
            Route::ListNamespaceTokens => "list_namespace_tokens",
            Route::ListImages => "list_images",
            Route::ListTags => "list_tags",
            Route::GetImage => "get_image",
            Route::DeleteImage => "delete_image",
            Route::TagImage => "tag_image",
            Route::UntagImage => "untag_image",
            Route::ListRepositories => "list_repositories",
            Route::DeleteNamespace => "delete_namespace",
            Route::GetVulnerabilityReport => "get_vulnerability_report",
            Route::GetSbom => "get_sbom",
            Route::GetVulnerabilityPolicy => "get_vulnerability_policy",
            Route::SetVulnerabilityPolicy => "set_vulnerability_policy",
            Route::ListVulnerabilityPolicies => "list_vulnerability_policies",
            Route::GetVulnerabilitySummary => "get_vulnerability_summary",
            Route::ListExemptions => "list_exemptions",
            Route::AddExemption => "add_exemption",
            Route::RemoveExemption => "remove_exemption",
            Route::GetAdvisoryData => "get_advisory_data",
            Route::ImportAdvisories => "import_advisories",
            Route::ListAdvisorySources => "list_advisory_sources",
            Route::SyncAdvisorySources => "sync_advisory_sources",
            Route::ListImmutableRules => "list_immutable_rules",
            Route::AddImmutableRule => "add_immutable_rule",
            Route::RemoveImmutableRule => "remove_immutable_rule",
            Route::ListWebhooks => "list_webhooks",
            Route::CreateWebhook => "create_webhook",
            Route::DeleteWebhook => "delete_webhook",
            Route::ListWebhookDeliveries => "list_webhook_deliveries",
            Route::ListAudit => "list_audit",
            Route::ListTrash => "list_trash",
            Route::RestoreImage => "restore_image",
            Route::ListRetentionPolicies => "list_retention_policies",
            Route::SetRetentionPolicy => "set_retention_policy",
            Route::RemoveRetentionPolicy => "remove_retention_policy",
            Route::RunRetentionPolicy => "run_retention_policy",
            Route::ListQuotas => "list_quotas",
            Route::GetQuota => "get_quota",
            Route::GetUsageHistory => "get_usage_history",
            Route::SetQuota => "set_quota",
            Route::RecomputeQuotas => "recompute_quotas",
            Route::ListReplications => "list_replications",
            Route::CreateReplication => "create_replication",
            Route::GetReplication => "get_replication",
            Route::RunReplication => "run_replication",
            Route::DeleteReplication => "delete_replication",
        }
    }

    /// Finds the route for `method` on `path` and
    /// its path parameters. A path no route has is 404; a path that exists
    /// for other methods is 405, naming them.
    pub fn find(method: &Method, path: &str) -> Result<(Route, PathParams), ManagementError> {
        let mut allowed = Vec::new();
        for route in Route::ALL {
            let (route_method, template) = route.method_and_path();
            let Some(params) = match_template(template, path)? else {
                continue;
            };
            if route_method == *method {
                return Ok((route, params));
            }
            allowed.push(route_method);
        }
        if allowed.is_empty() {
            Err(ManagementError::not_found("no such API path"))
        } else {
            Err(ManagementError::method_not_allowed(&allowed))
        }
    }
}

/// The path parameters of a request, by template name, percent-decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathParams(Vec<(&'static str, String)>);

impl PathParams {
    /// The parameter `name`; routes only ask for the names their template has.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| *key == name)
            .map_or("", |(_, value)| value.as_str())
    }
}

/// Matches `path` against `template`: `Ok(None)` when it does not match,
/// an error when a segment that would match is not valid UTF-8 once decoded.
fn match_template(
    template: &'static str,
    path: &str,
) -> Result<Option<PathParams>, ManagementError> {
    let mut wanted = template.split('/');
    let mut given = path.split('/');
    let mut params = Vec::new();
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Ok(Some(PathParams(params))),
            (Some(expected), Some(segment)) => {
                match expected.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(_) if segment.is_empty() => return Ok(None),
                    Some(name) => params.push((name, decode(name, segment)?)),
                    None if expected == segment => {}
                    None => return Ok(None),
                }
            }
            _ => return Ok(None),
        }
    }
}

fn decode(name: &str, segment: &str) -> Result<String, ManagementError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| {
            ManagementError::invalid_request(format!(
                "path parameter {name} is not UTF-8 once percent-decoded"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_routes() {
        // (method, path, expected route and parameters, or the status)
        type Expected = Result<(Route, &'static [(&'static str, &'static str)]), u16>;
        let table: &[(Method, &str, Expected)] = &[
            (Method::GET, "/api/v1/users", Ok((Route::ListUsers, &[]))),
            (Method::POST, "/api/v1/users", Ok((Route::CreateUser, &[]))),
            (
                Method::PATCH,
                "/api/v1/namespaces/team-a",
                Ok((Route::UpdateNamespace, &[("namespace", "team-a")])),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/team-a/members/bob",
                Ok((
                    Route::SetMember,
                    &[("namespace", "team-a"), ("user", "bob")],
                )),
            ),
            (
                Method::DELETE,
                "/api/v1/tokens/%63i",
                Ok((Route::RevokeToken, &[("name", "ci")])),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/A%20B",
                Ok((Route::GetNamespace, &[("namespace", "A B")])),
            ),
            (
                Method::GET,
                "/api/v1/repositories/team-a%2Fapi/images",
                Ok((Route::ListImages, &[("repository", "team-a/api")])),
            ),
            (
                Method::DELETE,
                "/api/v1/repositories/a%2Fb%2Fc/tags/v1",
                Ok((Route::UntagImage, &[("repository", "a/b/c"), ("tag", "v1")])),
            ),
            (
                Method::GET,
                "/api/v1/repositories/team-a/api/images",
                Err(404),
            ),
            (Method::GET, "/api/v1/namespaces/%ff", Err(400)),
            (Method::DELETE, "/api/v1/users", Err(405)),
            (
                Method::DELETE,
                "/api/v1/users/alice",
                Ok((Route::DeleteUser, &[("name", "alice")])),
            ),
            (
                Method::PUT,
                "/api/v1/users/alice/password",
                Ok((Route::SetUserPassword, &[("name", "alice")])),
            ),
            (
                Method::PUT,
                "/api/v1/user/password",
                Ok((Route::ChangeOwnPassword, &[])),
            ),
            (Method::POST, "/api/v1/tokens/ci", Err(405)),
            (Method::GET, "/api/v1/users/", Err(404)),
            (Method::GET, "/api/v1/namespaces//members", Err(404)),
            (Method::GET, "/api/v1/namespaces/a/members/b/c", Err(404)),
            (Method::GET, "", Err(404)),
            (Method::GET, "/api/v1", Err(404)),
            (Method::GET, "/api/v2/users", Err(404)),
            (Method::GET, "/api/v1/nothing", Err(404)),
        ];
        for (method, path, expected) in table {
            let found = Route::find(method, path);
            match (found, expected) {
                (Ok((route, params)), Ok((expected, expected_params))) => {
                    assert_eq!(route, *expected, "{method} {path}");
                    for (name, value) in *expected_params {
                        assert_eq!(params.get(name), *value, "{method} {path} {name}");
                    }
                }
                (Err(error), Err(status)) => {
                    assert_eq!(error.status().as_u16(), *status, "{method} {path}")
                }
                (found, _) => panic!("{method} {path}: {found:?}"),
            }
        }
    }

    #[test]
    fn every_route_is_found_by_its_own_template() {
        for route in Route::ALL {
            let (method, template) = route.method_and_path();
            let path = template.replace('{', "x").replace('}', "");
            assert_eq!(Route::find(&method, &path).unwrap().0, route, "{template}");
        }
        let mut names: Vec<_> = Route::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Route::ALL.len(), "route names are unique");
    }
}
