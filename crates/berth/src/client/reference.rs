//! Image references as docker parses them: `[HOST[:PORT]/]NAME[:TAG][@DIGEST]`.
//!
//! The first path component is a registry host when it looks like one (it
//! has a `.` or a `:`, or is `localhost`), as docker decides; otherwise the
//! reference is on the default registry (`berth registry`). A digest wins
//! over a tag; neither means `latest`. Unlike docker, no `library/` is
//! added: on Berth a one-component name is a repository named like its
//! namespace.

use berth_oci::{Digest, RepoName, Tag};

use super::error::ClientError;

/// What an image reference names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Tag(Tag),
    Digest(Digest),
}

impl Target {
    pub fn as_str(&self) -> &str {
        match self {
            Target::Tag(tag) => tag.as_str(),
            Target::Digest(digest) => digest.as_str(),
        }
    }
}

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry named in the reference, if any.
    pub registry: Option<String>,
    pub repository: RepoName,
    pub target: Target,
    /// Whether a tag or digest was written (`latest` is implied otherwise).
    pub explicit: bool,
}

impl ImageRef {
    pub fn parse(input: &str) -> Result<ImageRef, ClientError> {
        let bad =
            |why: &str| ClientError::Usage(format!("invalid image reference {input:?}: {why}"));
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(Digest::parse(digest).map_err(|e| bad(&e.to_string()))?),
            ),
            None => (input, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_string()), path)
            }
            _ => (None, rest),
        };
        // A tag is after the last ':' of the last component.
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match path[last_slash..].rfind(':') {
            Some(colon) => {
                let at = last_slash + colon;
                (&path[..at], Some(&path[at + 1..]))
            }
            None => (path, None),
        };
        let repository = RepoName::parse(name).map_err(|e| bad(&e.to_string()))?;
        let tag = tag
            .map(|tag| Tag::parse(tag).map_err(|e| bad(&e.to_string())))
            .transpose()?;
        let explicit = tag.is_some() || digest.is_some();
        let target = match (digest, tag) {
            (Some(digest), _) => Target::Digest(digest),
            (None, Some(tag)) => Target::Tag(tag),
            (None, None) => Target::Tag(Tag::parse("latest").expect("latest is a tag")),
        };
        Ok(ImageRef {
            registry,
            repository,
            target,
            explicit,
        })
    }

    /// `NS/REPO:TAG` or `NS/REPO@DIGEST`, without the registry.
    pub fn name(&self) -> String {
        match &self.target {
            Target::Tag(tag) => format!("{}:{}", self.repository.as_str(), tag.as_str()),
            Target::Digest(digest) => format!("{}@{}", self.repository.as_str(), digest.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_as_docker_parses_them() {
        let digest = format!("sha256:{}", "a".repeat(64));
        // (input, registry, repository, target, explicit)
        let table: Vec<(String, Option<&str>, &str, String, bool)> = vec![
            ("team/app".into(), None, "team/app", "latest".into(), false),
            ("team/app:v1".into(), None, "team/app", "v1".into(), true),
            ("app".into(), None, "app", "latest".into(), false),
            (
                "team/sub/app:1.0".into(),
                None,
                "team/sub/app",
                "1.0".into(),
                true,
            ),
            (
                "localhost/team/app".into(),
                Some("localhost"),
                "team/app",
                "latest".into(),
                false,
            ),
            (
                "localhost:5000/team/app:v2".into(),
                Some("localhost:5000"),
                "team/app",
                "v2".into(),
                true,
            ),
            (
                "registry.example.com/team/app".into(),
                Some("registry.example.com"),
                "team/app",
                "latest".into(),
                false,
            ),
            (
                format!("team/app@{digest}"),
                None,
                "team/app",
                digest.clone(),
                true,
            ),
            (
                format!("team/app:v1@{digest}"),
                None,
                "team/app",
                digest.clone(),
                true,
            ),
            (
                format!("127.0.0.1:8080/a/b:c@{digest}"),
                Some("127.0.0.1:8080"),
                "a/b",
                digest.clone(),
                true,
            ),
        ];
        for (input, registry, repository, target, explicit) in table {
            let parsed = ImageRef::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed.registry.as_deref(), registry, "{input}");
            assert_eq!(parsed.repository.as_str(), repository, "{input}");
            assert_eq!(parsed.target.as_str(), target, "{input}");
            assert_eq!(parsed.explicit, explicit, "{input}");
        }
        for bad in [
            "",
            "Team/app",
            "team/app:",
            "team/app:-x",
            "team/app@sha256:abc",
            "team//app",
            "a/b@",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
    }
}
