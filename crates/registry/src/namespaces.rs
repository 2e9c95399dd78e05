//! Namespaces and whole repositories: creating, listing and deleting them,
//! and what a namespace holds.
//!
//! Every repository belongs to the namespace its name starts with. A push
//! into a namespace that does not exist creates it (private, without
//! members: with access control off nobody is asked; with it on, the
//! server has created it with its owner before the push is let through).
//! Deleting a namespace deletes its repositories first when asked to, in
//! bounded steps, and is refused otherwise while it holds any.

use berth_meta::{Actor, MetaError, Namespace, NamespaceUsage, RepositoryDeletion, Visibility};
use berth_oci::{RepoName, UploadId};
use berth_storage::UploadProgress;

use crate::{Registry, RegistryError};

/// How many manifests or links one step of a repository deletion removes:
/// few enough that a step's transaction, and the digest locks it holds on
/// PostgreSQL, stay small whatever the repository's size.
const DELETION_STEP: usize = 100;

/// How many times a forced namespace deletion goes over the namespace's
/// repositories before giving up because pushes keep adding new ones.
const DELETION_ROUNDS: usize = 5;

/// What deleting a namespace removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceDeletion {
    /// Repositories deleted with it (only when forced).
    pub repositories: Vec<RepoName>,
}

/// Checks that `name` can be a namespace: a valid repository name of one
/// component.
fn check_name(name: &str) -> Result<(), RegistryError> {
    match RepoName::parse(name) {
        Ok(parsed) if parsed.namespace() == name => Ok(()),
        _ => Err(RegistryError::InvalidParameter(format!(
            "{name:?} is not a namespace name (one path component of a repository name)"
        ))),
    }
}

impl Registry {
    /// Creates a namespace, owned by the user `owner` if given.
    pub async fn create_namespace(
        &self,
        actor: &Actor,
        name: &str,
        visibility: Visibility,
        owner: Option<&str>,
    ) -> Result<Namespace, RegistryError> {
        check_name(name)?;
        let namespace = Namespace {
            name: name.to_string(),
            visibility,
            created_at: self.now(),
        };
        match self
            .meta()
            .create_namespace(&self.change(actor), &namespace, owner)
            .await
        {
            Ok(()) => Ok(namespace),
            Err(MetaError::AlreadyExists) => Err(RegistryError::NamespaceExists),
            Err(MetaError::NotFound) => Err(RegistryError::InvalidParameter(format!(
                "no user {:?}",
                owner.unwrap_or_default()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The namespace named `name`.
    pub async fn namespace(&self, name: &str) -> Result<Namespace, RegistryError> {
        self.meta()
            .get_namespace(name)
            .await?
            .ok_or(RegistryError::NamespaceUnknown)
    }

    /// Lists namespaces by name, strictly after `after`, at most `limit`.
    pub async fn list_namespaces(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Namespace>, RegistryError> {
        Ok(self.meta().list_namespaces(after, limit).await?)
    }

    /// Makes a namespace public or private.
    pub async fn set_namespace_visibility(
        &self,
        actor: &Actor,
        name: &str,
        visibility: Visibility,
    ) -> Result<(), RegistryError> {
        match self
            .meta()
            .set_visibility(&self.change(actor), name, visibility)
            .await
        {
            Err(MetaError::NotFound) => Err(RegistryError::NamespaceUnknown),
            other => Ok(other?),
        }
    }

    /// Counts what a namespace holds.
    pub async fn namespace_usage(&self, name: &str) -> Result<NamespaceUsage, RegistryError> {
        self.meta()
            .namespace_usage(name)
            .await?
            .ok_or(RegistryError::NamespaceUnknown)
    }

    /// [`Registry::namespace_usage`] of each of `names` that exists, by
    /// name, in one query.
    pub async fn namespaces_usage(
        &self,
        names: &[&str],
    ) -> Result<Vec<(String, NamespaceUsage)>, RegistryError> {
        Ok(self.meta().namespaces_usage(names).await?)
    }

    /// Lists the repositories of a namespace, strictly after `after`, at
    /// most `limit`.
    pub async fn namespace_repositories(
        &self,
        name: &str,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, RegistryError> {
        Ok(self
            .meta()
            .list_namespace_repositories(name, after, limit)
            .await?)
    }

    /// Deletes a namespace. While it holds repositories this is refused
    /// (`NamespaceNotEmpty`) unless `force`, which deletes them first, with
    /// everything in them, for good (not to the trash: the trash is the
    /// namespace's, and goes with it); refused (`ImmutableTag`) while a tag
    /// an immutable-tag rule covers is in it.
    pub async fn delete_namespace(
        &self,
        actor: &Actor,
        name: &str,
        force: bool,
    ) -> Result<NamespaceDeletion, RegistryError> {
        let mut deletion = NamespaceDeletion::default();
        if force {
            // Nothing goes while an immutable tag is in the namespace.
            let mut repositories = Vec::new();
            let mut after: Option<RepoName> = None;
            loop {
                let batch = self
                    .meta()
                    .list_namespace_repositories(name, after.as_ref(), DELETION_STEP)
                    .await?;
                let full = batch.len() == DELETION_STEP;
                after = batch.last().cloned();
                repositories.extend(batch);
                if !full {
                    break;
                }
            }
            self.refuse_deleting_immutable_tags(name, &repositories)
                .await?;
        }
        for _ in 0..DELETION_ROUNDS {
            if force {
                loop {
                    let batch = self
                        .meta()
                        .list_namespace_repositories(name, None, DELETION_STEP)
                        .await?;
                    if batch.is_empty() {
                        break;
                    }
                    for repository in batch {
                        self.delete_repository(actor, &repository).await?;
                        deletion.repositories.push(repository);
                    }
                }
            }
            match self
                .meta()
                .delete_namespace(&self.change(actor), name)
                .await
            {
                Ok(()) => return Ok(deletion),
                Err(MetaError::NotFound) => return Err(RegistryError::NamespaceUnknown),
                // A push created a repository since the last listing.
                Err(MetaError::NamespaceNotEmpty) if force => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RegistryError::NamespaceNotEmpty)
    }

    /// Deletes a repository with its manifests, tags, blob links and upload
    /// sessions. Blobs nothing else references are left to garbage
    /// collection, as after any deletion.
    pub async fn delete_repository(
        &self,
        actor: &Actor,
        repository: &RepoName,
    ) -> Result<(), RegistryError> {
        self.refuse_deleting_immutable_tags(
            repository.namespace(),
            std::slice::from_ref(repository),
        )
        .await?;
        // As for manifests: invalidated before and after, so a reader that
        // refilled the cache meanwhile sees the change no later than the
        // second invalidation.
        self.invalidate(repository);
        let result = self.delete_repository_steps(actor, repository).await;
        self.invalidate(repository);
        if result.is_ok() {
            self.settle().await;
        }
        result
    }

    async fn delete_repository_steps(
        &self,
        actor: &Actor,
        repository: &RepoName,
    ) -> Result<(), RegistryError> {
        loop {
            match self
                .meta()
                .delete_repository_step(&self.change(actor), repository, DELETION_STEP)
                .await?
            {
                RepositoryDeletion::Missing => return Err(RegistryError::NameUnknown),
                RepositoryDeletion::Progress { .. } => {}
                RepositoryDeletion::Deleted { uploads } => {
                    // The sessions' rows are gone; their stored data is
                    // removed here, best effort: what fails is left to the
                    // storage backend's own expiry, like a crashed upload.
                    for upload in uploads {
                        let progress: Option<UploadProgress> =
                            serde_json::from_str(&upload.progress).ok();
                        if let Some(id) = UploadId::parse(&upload.id) {
                            if let Err(error) =
                                self.blobs().abort_upload(&id, progress.as_ref()).await
                            {
                                tracing::warn!(upload = %upload.id, %error,
                                    "could not remove a deleted repository's upload data");
                            }
                        }
                    }
                    return Ok(());
                }
            }
        }
    }
}
