//! Replication's HTTP side: [`HttpUpstream`] as a [`RemoteRegistry`] (the
//! listings and writes replication needs beyond what the pull-through cache
//! uses, with the same token flow and bounds), and the [`RemoteConnector`]
//! that builds one per rule, unsealing its credentials.
//!
//! Safety of outbound calls, as for webhooks: only http(s) URLs (checked
//! when a rule is created), no redirects but a blob GET's (to object
//! storage), and unless `[server] outbound_allow_private`, no host that
//! resolves to (or is) a private, loopback or link-local address. An upload
//! location on another host than the remote's is refused. Credentials are
//! kept sealed in the database, unsealed for one run, never logged.

use std::net::IpAddr;
use std::sync::Arc;

use berth_auth::key_encryption::{unseal, KeyEncryptionKey};
use berth_meta::ReplicationRule;
use berth_oci::manifest::Descriptor;
use berth_oci::{Digest, Reference, RepoName, Tag};
use berth_registry::{ByteStream, RemoteConnector, RemoteRegistry, UpstreamError};
use berth_server::api::replications::credentials_binding;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use crate::upstream::{Credentials, HttpUpstream};
use crate::webhooks::{is_private, PublicOnlyResolver};

/// The largest listing answer (`_catalog`, tags, referrers) read.
const MAX_LISTING: usize = 4 * 1024 * 1024;

/// Whether a remote URL is acceptable: http(s), a host, no credentials,
/// query or fragment, and (unless private addresses are allowed) not a
/// private address literal. Host names are checked when resolved.
pub fn check_remote_url(text: &str, allow_private: bool) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} is not an http or https URL"));
    }
    if url.host().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "{text:?}: give the registry's base URL, with no user, query or fragment \
             (credentials go in --creds-file)"
        ));
    }
    if !allow_private {
        let literal = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        if let Some(address) = literal.filter(|a| is_private(*a)) {
            return Err(format!(
                "{address} is a private address (set [server] outbound_allow_private to allow it)"
            ));
        }
    }
    Ok(url)
}

/// Builds each rule's client.
pub struct HttpConnector {
    pub key: Option<KeyEncryptionKey>,
    pub allow_private: bool,
}

impl RemoteConnector for HttpConnector {
    fn connect(&self, rule: &ReplicationRule) -> Result<Arc<dyn RemoteRegistry>, String> {
        let base = check_remote_url(&rule.remote_url, self.allow_private)?;
        let credentials = match &rule.credentials {
            Some(stored) => {
                let text = unseal(self.key.as_ref(), &credentials_binding(&rule.name), stored)
                    .map_err(|_| {
                        "the rule's credentials cannot be unsealed (is the key-encryption key \
                         the one they were sealed with?)"
                            .to_string()
                    })?;
                Credentials::parse(&text)
            }
            None => Credentials::default(),
        };
        let resolver = (!self.allow_private).then(|| Arc::new(PublicOnlyResolver));
        Ok(Arc::new(HttpUpstream::build(
            base,
            credentials,
            "berth-replication",
            crate::upstream::Timeouts::default(),
            resolver,
        )?))
    }
}

fn push_scope(repository: &RepoName) -> String {
    format!("repository:{repository}:pull,push")
}

fn failed(what: &str, status: StatusCode) -> UpstreamError {
    match status {
        StatusCode::NOT_FOUND => UpstreamError::NotFound,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            UpstreamError::Denied(format!("{what}: the remote answered {status}"))
        }
        StatusCode::TOO_MANY_REQUESTS => UpstreamError::TooManyRequests { retry_after: None },
        other => UpstreamError::Failed(format!("{what}: the remote answered {other}")),
    }
}

#[derive(serde::Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Vec<String>,
}

#[derive(serde::Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct ReferrersIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

impl HttpUpstream {
    /// A JSON listing from `path` with `query`, read within [`MAX_LISTING`].
    async fn listing<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        scope: &str,
        what: &str,
    ) -> Result<T, UpstreamError> {
        let mut url = self.url(path)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut response = self
            .send_to(
                Method::GET,
                url,
                scope,
                Some("application/json"),
                None,
                false,
            )
            .await?;
        if !response.status().is_success() {
            return Err(failed(what, response.status()));
        }
        let body = crate::upstream::read_capped(&mut response, MAX_LISTING).await?;
        serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Failed(format!("{what}: the remote's answer: {e}")))
    }

    /// An upload location: on the remote's own host, never elsewhere.
    fn upload_location(&self, response: &reqwest::Response) -> Result<url::Url, UpstreamError> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| UpstreamError::Failed("the remote gave no upload location".into()))?;
        let url = self
            .base()
            .join(location)
            .map_err(|e| UpstreamError::Failed(format!("the remote's upload location: {e}")))?;
        if url.host() != self.base().host()
            || url.port_or_known_default() != self.base().port_or_known_default()
        {
            return Err(UpstreamError::Failed(
                "the remote's upload location is on another host".into(),
            ));
        }
        Ok(url)
    }
}

#[async_trait::async_trait]
impl RemoteRegistry for HttpUpstream {
    async fn catalog(
        &self,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, UpstreamError> {
        let mut query = vec![("n", limit.to_string())];
        if let Some(after) = after {
            query.push(("last", after.to_string()));
        }
        let catalog: Catalog = self
            .listing(
                "v2/_catalog",
                &query,
                "registry:catalog:*",
                "listing the catalog",
            )
            .await?;
        Ok(catalog
            .repositories
            .iter()
            .filter_map(|name| RepoName::parse(name).ok())
            .take(limit)
            .collect())
    }

    async fn tags(
        &self,
        repository: &RepoName,
        after: Option<&Tag>,
        limit: usize,
    ) -> Result<Vec<Tag>, UpstreamError> {
        let mut query = vec![("n", limit.to_string())];
        if let Some(after) = after {
            query.push(("last", after.to_string()));
        }
        let list: TagList = self
            .listing(
                &format!("v2/{repository}/tags/list"),
                &query,
                &format!("repository:{repository}:pull"),
                "listing tags",
            )
            .await?;
        let mut tags: Vec<Tag> = list
            .tags
            .unwrap_or_default()
            .iter()
            .filter_map(|name| Tag::parse(name).ok())
            .collect();
        // Not every registry pages (or sorts) tags; what is after `after`
        // is kept, in order, so that paging ends.
        tags.sort();
        if let Some(after) = after {
            tags.retain(|t| t > after);
        }
        tags.truncate(limit);
        Ok(tags)
    }

    async fn has_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<bool, UpstreamError> {
        let url = self.url(&format!("v2/{repository}/blobs/{digest}"))?;
        let response = self
            .send_to(
                Method::HEAD,
                url,
                &push_scope(repository),
                None,
                None,
                false,
            )
            .await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            // A redirect to object storage means the remote has it.
            status if status.is_redirection() => Ok(true),
            status => Err(failed("asking for a blob", status)),
        }
    }

    async fn mount_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool, UpstreamError> {
        let mut url = self.url(&format!("v2/{repository}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from.as_str());
        let scope = format!("{} repository:{from}:pull", push_scope(repository));
        let response = self
            .send_to(
                Method::POST,
                url,
                &scope,
                None,
                Some(("application/octet-stream", bytes::Bytes::new())),
                false,
            )
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => Ok(false),
            status => Err(failed("mounting a blob", status)),
        }
    }

    async fn push_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        size: u64,
        body: ByteStream,
    ) -> Result<(), UpstreamError> {
        // The POST authenticates (a body-less request may answer a
        // challenge and be sent again); the streamed PUT then goes once,
        // with the token the POST got.
        let scope = push_scope(repository);
        let url = self.url(&format!("v2/{repository}/blobs/uploads/"))?;
        let started = self
            .send_to(
                Method::POST,
                url,
                &scope,
                None,
                Some(("application/octet-stream", bytes::Bytes::new())),
                false,
            )
            .await?;
        if started.status() != StatusCode::ACCEPTED {
            return Err(failed("starting an upload", started.status()));
        }
        let mut location = self.upload_location(&started)?;
        location
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let mut request = self
            .blob_put_client()
            .put(location)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(body));
        if let Some(authorization) = self.authorization_for(&scope) {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let response = request
            .send()
            .await
            .map_err(|e| UpstreamError::Failed(crate::upstream::describe(&e)))?;
        if response.status() != StatusCode::CREATED {
            return Err(failed("uploading a blob", response.status()));
        }
        Ok(())
    }

    async fn put_manifest(
        &self,
        repository: &RepoName,
        reference: &Reference,
        media_type: &str,
        payload: &[u8],
    ) -> Result<(), UpstreamError> {
        let url = self.url(&crate::upstream::manifest_path(repository, reference))?;
        let response = self
            .send_to(
                Method::PUT,
                url,
                &push_scope(repository),
                None,
                Some((media_type, bytes::Bytes::copy_from_slice(payload))),
                false,
            )
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(failed("putting a manifest", response.status()));
        }
        Ok(())
    }

    async fn referrers(
        &self,
        repository: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, UpstreamError> {
        let index: ReferrersIndex = match self
            .listing(
                &format!("v2/{repository}/referrers/{subject}"),
                &[],
                &format!("repository:{repository}:pull"),
                "listing referrers",
            )
            .await
        {
            Ok(index) => index,
            // No referrers API (Distribution 2): none to copy.
            Err(UpstreamError::NotFound) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(index.manifests)
    }

    async fn delete_manifest(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<(), UpstreamError> {
        let url = self.url(&crate::upstream::manifest_path(repository, reference))?;
        let response = self
            .send_to(
                Method::DELETE,
                url,
                &format!("repository:{repository}:pull,push,delete"),
                None,
                None,
                false,
            )
            .await?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(failed("deleting", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls_are_checked() {
        for (url, allow_private, accepted) in [
            ("https://registry.example", false, true),
            ("http://registry.example:5000/", false, true),
            ("http://127.0.0.1:5000", false, false),
            ("http://127.0.0.1:5000", true, true),
            ("http://[::1]:5000", false, false),
            ("http://10.1.2.3", false, false),
            ("http://169.254.169.254", false, false),
            ("ftp://registry.example", true, false),
            ("https://user:pw@registry.example", true, false),
            ("https://registry.example/?token=x", true, false),
            ("not a url", true, false),
        ] {
            assert_eq!(
                check_remote_url(url, allow_private).is_ok(),
                accepted,
                "{url} (private allowed: {allow_private})"
            );
        }
    }

    #[test]
    fn credentials_are_a_user_and_password_or_a_token() {
        let basic = Credentials::parse("robot:pa:ss\n");
        assert_eq!(basic.username.as_deref(), Some("robot"));
        assert_eq!(basic.password.as_deref(), Some("pa:ss"));
        assert_eq!(basic.token, None);
        let token = Credentials::parse("eyJhbGciOi\r\n");
        assert_eq!(token.token.as_deref(), Some("eyJhbGciOi"));
        assert_eq!((token.username, token.password), (None, None));
    }
}
