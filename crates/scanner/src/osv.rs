//! OSV records (schema 1.6): parsing JSON and YAML records and ecosystem
//! `all.zip` archives into [`Advisory`] values, and their severities.
//!
//! What is kept of a record: id, aliases, related, summary (or the first
//! line of details), `modified`, `withdrawn`, severities, and per affected
//! package its ecosystem (split at the first `:` into the ecosystem and
//! its release, `Debian:12` → `Debian` and `12`), name, `ECOSYSTEM` and
//! `SEMVER` ranges with their `introduced`, `fixed`, `last_affected` and
//! `limit` events, and explicit `versions`. `GIT` ranges name commits,
//! which cannot be compared with installed package versions, and are
//! dropped on purpose.
//!
//! Severity, first found wins, for the record: a CVSS v3.x vector, then a
//! CVSS v4.0 vector, each with its base score computed; Ubuntu's severity
//! type; `database_specific.severity` (GitHub's CRITICAL, HIGH, MODERATE,
//! LOW); the Red Hat family's summary prefix (`Important: …`). Per affected
//! package the same vectors, `ecosystem_specific`/`database_specific`
//! severities and Debian's `urgency`; the matcher prefers a package's own
//! severity to the record's.

use std::io::{Read, Seek};
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::advisory::{Advisory, Affected, Event, Range, RangeKind, Severity, SeverityLevel};

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OsvError {
    #[error("not an OSV record: {0}")]
    Syntax(String),
    #[error("{0}")]
    Invalid(String),
    #[error("reading: {0}")]
    Io(#[from] std::io::Error),
    #[error("archive: {0}")]
    Archive(String),
}

/// The largest record read from an archive (the largest OSV records, long
/// version lists, are a few megabytes).
pub const MAX_RECORD: u64 = 16 << 20;

#[derive(Deserialize)]
struct Record {
    id: String,
    modified: String,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default)]
    related: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Option<Vec<RecordSeverity>>,
    #[serde(default)]
    affected: Option<Vec<RecordAffected>>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RecordSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct RecordAffected {
    #[serde(default)]
    package: Option<RecordPackage>,
    #[serde(default)]
    severity: Option<Vec<RecordSeverity>>,
    #[serde(default)]
    ranges: Option<Vec<RecordRange>>,
    #[serde(default)]
    versions: Option<Vec<String>>,
    #[serde(default)]
    ecosystem_specific: Option<Value>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RecordPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RecordRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<serde_json::Map<String, Value>>,
}

/// Parses a JSON record.
pub fn parse_json(bytes: &[u8]) -> Result<Advisory, OsvError> {
    let record: Record =
        serde_json::from_slice(bytes).map_err(|e| OsvError::Syntax(e.to_string()))?;
    normalize(record)
}

/// Parses a YAML record (pypa/advisory-database publishes YAML).
pub fn parse_yaml(bytes: &[u8]) -> Result<Advisory, OsvError> {
    let record: Record =
        serde_yaml_ng::from_slice(bytes).map_err(|e| OsvError::Syntax(e.to_string()))?;
    normalize(record)
}

/// Parses a record by its file name's extension (`.json`, `.yaml`, `.yml`).
pub fn parse_file(name: &str, bytes: &[u8]) -> Result<Advisory, OsvError> {
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        parse_yaml(bytes)
    } else {
        parse_json(bytes)
    }
}

/// Reads every record of an OSV `all.zip` (one JSON file per record, as
/// osv.dev publishes per ecosystem), calling `record` with each result and
/// the entry's name. Entries that are not `.json` files are skipped;
/// records over [`MAX_RECORD`] are reported as errors, not read.
pub fn read_zip<R: Read + Seek>(
    reader: R,
    mut record: impl FnMut(&str, Result<Advisory, OsvError>),
) -> Result<(), OsvError> {
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| OsvError::Archive(e.to_string()))?;
    let mut buffer = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| OsvError::Archive(e.to_string()))?;
        let name = match entry.name() {
            Ok(name) => name.to_string(),
            Err(_) => continue,
        };
        if entry.is_dir() || !(name.ends_with(".json") || name.ends_with(".yaml")) {
            continue;
        }
        if entry.size() > MAX_RECORD {
            record(
                &name,
                Err(OsvError::Invalid(format!(
                    "{} bytes is over the cap",
                    entry.size()
                ))),
            );
            continue;
        }
        buffer.clear();
        let result = match (&mut entry).take(MAX_RECORD).read_to_end(&mut buffer) {
            Ok(_) => parse_file(&name, &buffer),
            Err(e) => Err(OsvError::Io(e)),
        };
        record(&name, result);
    }
    Ok(())
}

/// Reads records from a path: an `all.zip`, a single record, or a
/// directory searched recursively for `.json`, `.yaml` and `.yml` files
/// (in name order, so imports are repeatable).
pub fn read_path(
    path: &Path,
    mut record: impl FnMut(&str, Result<Advisory, OsvError>),
) -> Result<(), OsvError> {
    if path.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        let mut files = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let file_type = entry.file_type()?;
                let p = entry.path();
                if file_type.is_dir() {
                    stack.push(p);
                } else if file_type.is_file() {
                    let name = p.to_string_lossy();
                    if name.ends_with(".json") || name.ends_with(".yaml") || name.ends_with(".yml")
                    {
                        files.push(p);
                    }
                }
            }
        }
        files.sort();
        for file in files {
            let name = file.to_string_lossy().into_owned();
            let result = read_capped(&file).and_then(|bytes| parse_file(&name, &bytes));
            record(&name, result);
        }
        return Ok(());
    }
    let name = path.to_string_lossy().into_owned();
    if name.ends_with(".zip") {
        return read_zip(std::fs::File::open(path)?, record);
    }
    let result = read_capped(path).and_then(|bytes| parse_file(&name, &bytes));
    record(&name, result);
    Ok(())
}

fn read_capped(path: &Path) -> Result<Vec<u8>, OsvError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_RECORD + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECORD {
        return Err(OsvError::Invalid(format!("over {MAX_RECORD} bytes")));
    }
    Ok(bytes)
}

fn timestamp(text: &str) -> Result<OffsetDateTime, OsvError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| OsvError::Invalid(format!("bad timestamp {text:?}: {e}")))
}

fn normalize(record: Record) -> Result<Advisory, OsvError> {
    if record.id.trim().is_empty() {
        return Err(OsvError::Invalid("an empty id".into()));
    }
    let modified = timestamp(&record.modified)?;
    let withdrawn = record.withdrawn.as_deref().map(timestamp).transpose()?;
    let summary = record
        .summary
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            record
                .details
                .as_deref()
                .and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
                .map(str::to_string)
        })
        .unwrap_or_default();
    let record_severities = record.severity.as_deref().unwrap_or_default();
    let severity = cvss(record_severities)
        .or_else(|| ubuntu(record_severities))
        .or_else(|| ecosystem_word(record.database_specific.as_ref(), "severity", "database"))
        .or_else(|| summary_prefix(&summary));
    let mut affected = Vec::new();
    for entry in record.affected.unwrap_or_default() {
        let Some(package) = entry.package else {
            continue;
        };
        let (ecosystem, release) = split_ecosystem(&package.ecosystem);
        let mut ranges = Vec::new();
        for range in entry.ranges.unwrap_or_default() {
            let kind = match range.kind.as_str() {
                "ECOSYSTEM" => RangeKind::Ecosystem,
                "SEMVER" => RangeKind::Semver,
                // GIT ranges name commits: they cannot be matched against
                // installed versions.
                _ => continue,
            };
            let mut events = Vec::new();
            for event in range.events {
                for (key, value) in event {
                    let Some(version) = value.as_str().map(str::to_string) else {
                        continue;
                    };
                    events.push(match key.as_str() {
                        "introduced" => Event::Introduced(version),
                        "fixed" => Event::Fixed(version),
                        "last_affected" => Event::LastAffected(version),
                        "limit" => Event::Limit(version),
                        _ => continue,
                    });
                }
            }
            if !events.is_empty() {
                ranges.push(Range { kind, events });
            }
        }
        let package_severity = cvss(entry.severity.as_deref().unwrap_or_default())
            .or_else(|| ecosystem_word(entry.ecosystem_specific.as_ref(), "severity", "ecosystem"))
            .or_else(|| ecosystem_word(entry.database_specific.as_ref(), "severity", "database"))
            .or_else(|| debian_urgency(entry.ecosystem_specific.as_ref()));
        affected.push(Affected {
            ecosystem,
            release,
            name: package.name,
            ranges,
            versions: entry.versions.unwrap_or_default(),
            severity: package_severity,
        });
    }
    Ok(Advisory {
        id: record.id,
        aliases: record.aliases.unwrap_or_default(),
        related: record.related.unwrap_or_default(),
        summary,
        modified,
        withdrawn,
        severity,
        affected,
    })
}

/// `Debian:12` → (`Debian`, `12`); `Ubuntu:22.04:LTS` → (`Ubuntu`,
/// `22.04:LTS`); `PyPI` → (`PyPI`, none).
pub fn split_ecosystem(ecosystem: &str) -> (String, Option<String>) {
    match ecosystem.split_once(':') {
        Some((base, release)) if !release.is_empty() => {
            (base.to_string(), Some(release.to_string()))
        }
        _ => (ecosystem.trim_end_matches(':').to_string(), None),
    }
}

/// The first CVSS v3 vector, else the first CVSS v4 vector, with its
/// base score.
fn cvss(severities: &[RecordSeverity]) -> Option<Severity> {
    let v3 = severities
        .iter()
        .filter(|s| s.kind == "CVSS_V3")
        .find_map(|s| cvss_score(&s.score));
    v3.or_else(|| {
        severities
            .iter()
            .filter(|s| s.kind == "CVSS_V4")
            .find_map(|s| cvss_score(&s.score))
    })
}

/// The base score of a CVSS v3.0, v3.1 or v4.0 vector, computed with the
/// specification's formulas (RustSec's `cvss` crate).
pub fn cvss_score(vector: &str) -> Option<Severity> {
    let vector = vector.trim();
    let score = if vector.starts_with("CVSS:3.") {
        cvss::v3::Vector::from_str(vector)
            .ok()?
            .base_score()
            .value()
    } else if vector.starts_with("CVSS:4.") {
        cvss::v4::Vector::from_str(vector).ok()?.score().value()
    } else {
        return None;
    };
    Some(Severity {
        level: SeverityLevel::from_score(score),
        score: Some(score),
        source: vector.to_string(),
    })
}

/// An ecosystem's severity word under `key` of a `*_specific` object.
fn ecosystem_word(object: Option<&Value>, key: &str, origin: &str) -> Option<Severity> {
    let word = object?.get(key)?.as_str()?;
    let level = level_of_word(word)?;
    Some(Severity {
        level,
        score: None,
        source: format!("{origin}:{word}"),
    })
}

/// Debian's urgency (`unimportant`, `low`, `medium`, `high`; `not yet
/// assigned` says nothing).
fn debian_urgency(object: Option<&Value>) -> Option<Severity> {
    let word = object?.get("urgency")?.as_str()?;
    let level = match word.trim_end_matches('*').to_ascii_lowercase().as_str() {
        "unimportant" => SeverityLevel::Negligible,
        "low" => SeverityLevel::Low,
        "medium" => SeverityLevel::Medium,
        "high" => SeverityLevel::High,
        _ => return None,
    };
    Some(Severity {
        level,
        score: None,
        source: format!("debian:urgency={word}"),
    })
}

/// Ubuntu's severity entries: `{"type": "Ubuntu", "score": "medium"}`.
fn ubuntu(severities: &[RecordSeverity]) -> Option<Severity> {
    let word = &severities.iter().find(|s| s.kind == "Ubuntu")?.score;
    Some(Severity {
        level: level_of_word(word)?,
        score: None,
        source: format!("ubuntu:{word}"),
    })
}

/// Red Hat family errata summaries start with their severity:
/// `Important: openssl security update`.
fn summary_prefix(summary: &str) -> Option<Severity> {
    let (word, _) = summary.split_once(':')?;
    let level = match word.trim() {
        "Critical" => SeverityLevel::Critical,
        "Important" => SeverityLevel::High,
        "Moderate" => SeverityLevel::Medium,
        "Low" => SeverityLevel::Low,
        _ => return None,
    };
    Some(Severity {
        level,
        score: None,
        source: format!("summary:{}", word.trim()),
    })
}

fn level_of_word(word: &str) -> Option<SeverityLevel> {
    Some(match word.trim().to_ascii_lowercase().as_str() {
        "critical" => SeverityLevel::Critical,
        "high" | "important" => SeverityLevel::High,
        "moderate" | "medium" => SeverityLevel::Medium,
        "low" => SeverityLevel::Low,
        "negligible" | "unimportant" => SeverityLevel::Negligible,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystems_split() {
        for (ecosystem, base, release) in [
            ("Debian:12", "Debian", Some("12")),
            ("Alpine:v3.20", "Alpine", Some("v3.20")),
            ("Ubuntu:22.04:LTS", "Ubuntu", Some("22.04:LTS")),
            ("PyPI", "PyPI", None),
            ("Rocky Linux:9", "Rocky Linux", Some("9")),
        ] {
            let (b, r) = split_ecosystem(ecosystem);
            assert_eq!((b.as_str(), r.as_deref()), (base, release));
        }
    }

    #[test]
    fn words() {
        for (word, level) in [
            ("MODERATE", Some(SeverityLevel::Medium)),
            ("Important", Some(SeverityLevel::High)),
            ("weird", None),
        ] {
            assert_eq!(level_of_word(word), level);
        }
        assert_eq!(
            summary_prefix("Important: openssl security update")
                .unwrap()
                .level,
            SeverityLevel::High
        );
        assert!(summary_prefix("openssl: a bug").is_none());
    }
}
