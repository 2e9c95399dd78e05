//! Advisories as the matcher uses them, the [`AdvisorySource`] trait a
//! store of them implements, and [`AdvisoryIndex`], the in-memory store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::version::Scheme;

/// A vulnerability advisory: one OSV record, normalized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// The record's id (`PYSEC-2018-28`, `DSA-5902-1`, `ALSA-2022:6224`).
    pub id: String,
    /// Other ids of the same vulnerability (`CVE-…`, `GHSA-…`).
    pub aliases: Vec<String>,
    /// Ids of closely related vulnerabilities (AlmaLinux lists the CVEs an
    /// erratum fixes here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    /// One line for people: the record's summary, or its details' first
    /// line.
    pub summary: String,
    /// When the record last changed: imports replace a stored record only
    /// with a newer one.
    #[serde(with = "time::serde::rfc3339")]
    pub modified: OffsetDateTime,
    /// When the record was withdrawn; a withdrawn advisory matches nothing.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub withdrawn: Option<OffsetDateTime>,
    /// The record's severity, when it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The packages and versions affected.
    pub affected: Vec<Affected>,
}

impl Advisory {
    /// The keys under which this advisory is stored and looked up.
    pub fn keys(&self) -> impl Iterator<Item = PackageKey> + '_ {
        self.affected
            .iter()
            .map(|a| PackageKey::new(&a.ecosystem, &a.name))
    }

    /// The CVE ids among the id, aliases and related ids.
    pub fn cves(&self) -> Vec<&str> {
        std::iter::once(self.id.as_str())
            .chain(self.aliases.iter().map(String::as_str))
            .chain(self.related.iter().map(String::as_str))
            .filter(|id| id.starts_with("CVE-"))
            .collect()
    }
}

/// One affected package of an advisory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affected {
    /// The OSV ecosystem without its release (`Debian`, `PyPI`).
    pub ecosystem: String,
    /// The release an OS ecosystem names (`12` of `Debian:12`, `v3.20` of
    /// `Alpine:v3.20`); `None` when the advisory covers every release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// The package name as the ecosystem writes it (a source package for
    /// Debian, Ubuntu and Alpine).
    pub name: String,
    /// Version ranges; `GIT` ranges (commits, not versions) are dropped when
    /// parsing.
    pub ranges: Vec<Range>,
    /// Versions listed one by one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// A severity for this package only, when the record gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

/// A version range: events in the ecosystem's order or in SemVer order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub kind: RangeKind,
    pub events: Vec<Event>,
}

/// How a range's versions are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RangeKind {
    /// The ecosystem's own order.
    Ecosystem,
    /// SemVer 2.0, whatever the ecosystem.
    Semver,
}

/// An OSV range event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Versions from here on are affected (`0`: from the first).
    Introduced(String),
    /// This version and later ones are not.
    Fixed(String),
    /// Versions after this one are not (no fix is known).
    LastAffected(String),
    /// Versions from here on are outside the range.
    Limit(String),
}

impl Event {
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

/// How bad a vulnerability is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Severity {
    pub level: SeverityLevel,
    /// The CVSS base score, computed from the vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Where the level comes from: a CVSS vector (`CVSS:3.1/AV:N/…`) or an
    /// ecosystem's word (`debian:urgency=high`, `ghsa:MODERATE`).
    pub source: String,
}

impl Eq for Severity {}

/// Severity levels, in increasing order.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SeverityLevel {
    #[default]
    Unknown,
    /// Debian's "unimportant", Ubuntu's "negligible".
    Negligible,
    Low,
    Medium,
    High,
    Critical,
}

impl SeverityLevel {
    /// The level of a CVSS base score (the CVSS qualitative scale).
    pub fn from_score(score: f64) -> SeverityLevel {
        if score >= 9.0 {
            SeverityLevel::Critical
        } else if score >= 7.0 {
            SeverityLevel::High
        } else if score >= 4.0 {
            SeverityLevel::Medium
        } else if score > 0.0 {
            SeverityLevel::Low
        } else {
            SeverityLevel::Negligible
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SeverityLevel::Unknown => "unknown",
            SeverityLevel::Negligible => "negligible",
            SeverityLevel::Low => "low",
            SeverityLevel::Medium => "medium",
            SeverityLevel::High => "high",
            SeverityLevel::Critical => "critical",
        }
    }
}

/// What advisories are looked up by: an ecosystem (without release) and a
/// package name in the ecosystem's normalized form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackageKey {
    pub ecosystem: String,
    pub name: String,
}

impl PackageKey {
    /// The key of a package in an ecosystem, its name normalized the way
    /// the ecosystem compares names: PyPI per PEP 503, NuGet and Packagist
    /// case-insensitively; every other ecosystem as written.
    pub fn new(ecosystem: &str, name: &str) -> Self {
        let name = match ecosystem {
            "PyPI" => crate::analyzer::python::normalize_name(name),
            "NuGet" | "Packagist" => name.to_ascii_lowercase(),
            _ => name.to_string(),
        };
        PackageKey {
            ecosystem: ecosystem.to_string(),
            name,
        }
    }

    /// The version order of this key's ecosystem.
    pub fn scheme(&self) -> Option<Scheme> {
        Scheme::for_osv_ecosystem(&self.ecosystem)
    }
}

/// Why an advisory source could not answer.
#[derive(Debug, thiserror::Error)]
#[error("advisory source: {0}")]
pub struct SourceError(pub String);

/// A store of advisories the matcher can ask.
///
/// The contract: `advisories_for` returns every advisory that is not
/// withdrawn and has an `affected` entry under one of `keys`, each once, in
/// any order; it may return more (the matcher checks every entry again).
/// `data_version` changes whenever the answer to some query may change, so
/// a caller can cache assessments per data version. Implementations keep
/// their own consistency (an answer reflects one state of the data).
#[async_trait]
pub trait AdvisorySource: Send + Sync {
    async fn advisories_for(&self, keys: &[PackageKey]) -> Result<Vec<Arc<Advisory>>, SourceError>;

    /// An opaque token of the data's state.
    async fn data_version(&self) -> Result<String, SourceError>;
}

/// What storing an advisory did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    /// A newer version of a stored advisory replaced it.
    Updated,
    /// The stored version is as new or newer: nothing changed.
    Unchanged,
    /// The advisory was withdrawn and removed.
    Removed,
}

/// Advisories in memory, indexed by package key: the reference
/// [`AdvisorySource`] and the one the benchmarks use.
#[derive(Default)]
pub struct AdvisoryIndex {
    by_id: HashMap<String, Arc<Advisory>>,
    by_key: HashMap<PackageKey, Vec<Arc<Advisory>>>,
    /// Bumped by every change.
    generation: u64,
}

impl AdvisoryIndex {
    pub fn new() -> Self {
        AdvisoryIndex::default()
    }

    /// Stores an advisory, incrementally: a record replaces a stored one
    /// with the same id only if its `modified` is later; a withdrawn record
    /// removes the stored one.
    pub fn upsert(&mut self, advisory: Advisory) -> Change {
        if let Some(current) = self.by_id.get(&advisory.id) {
            if advisory.modified <= current.modified {
                return Change::Unchanged;
            }
        }
        let existed = self.remove(&advisory.id);
        if advisory.withdrawn.is_some() {
            return if existed {
                Change::Removed
            } else {
                Change::Unchanged
            };
        }
        let advisory = Arc::new(advisory);
        let mut keys: Vec<PackageKey> = advisory.keys().collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            self.by_key.entry(key).or_default().push(advisory.clone());
        }
        self.by_id.insert(advisory.id.clone(), advisory);
        self.generation += 1;
        if existed {
            Change::Updated
        } else {
            Change::Added
        }
    }

    /// Removes an advisory by id; whether it was there.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(advisory) = self.by_id.remove(id) else {
            return false;
        };
        for key in advisory.keys() {
            if let Some(list) = self.by_key.get_mut(&key) {
                list.retain(|a| a.id != id);
                if list.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
        self.generation += 1;
        true
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Advisory>> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The latest `modified` per ecosystem: where an incremental refresh
    /// can start.
    pub fn latest_modified(&self) -> BTreeMap<String, OffsetDateTime> {
        let mut latest: BTreeMap<String, OffsetDateTime> = BTreeMap::new();
        for advisory in self.by_id.values() {
            for affected in &advisory.affected {
                let entry = latest
                    .entry(affected.ecosystem.clone())
                    .or_insert(advisory.modified);
                *entry = (*entry).max(advisory.modified);
            }
        }
        latest
    }

    /// The advisories under some keys, synchronously (what the
    /// [`AdvisorySource`] implementation answers).
    pub fn lookup(&self, keys: &[PackageKey]) -> Vec<Arc<Advisory>> {
        let mut found: Vec<Arc<Advisory>> = Vec::new();
        for key in keys {
            if let Some(list) = self.by_key.get(key) {
                found.extend(list.iter().cloned());
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found.dedup_by(|a, b| a.id == b.id);
        found
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

#[async_trait]
impl AdvisorySource for AdvisoryIndex {
    async fn advisories_for(&self, keys: &[PackageKey]) -> Result<Vec<Arc<Advisory>>, SourceError> {
        Ok(self.lookup(keys))
    }

    async fn data_version(&self) -> Result<String, SourceError> {
        Ok(self.generation.to_string())
    }
}
