//! Assessment: an index report against advisories, giving findings.
//!
//! For each package, the matcher works out the OSV ecosystem it is
//! advised under and the name and version advisories use for it:
//!
//! - Debian and Ubuntu packages under `Debian`/`Ubuntu` with the image's
//!   release, by their **source** package and source version (Debian's
//!   advisories name source packages; `libc6` is matched through `glibc`);
//! - Alpine packages under `Alpine` and the image's `vMAJOR.MINOR`, by
//!   origin;
//! - rpm packages under `AlmaLinux` or `Rocky Linux` and the major
//!   release, by binary package name and `[epoch:]version-release`;
//! - language packages under their ecosystem (`PyPI`, `npm`, `crates.io`,
//!   `Go`, `Maven`, `RubyGems`, `Packagist`, `NuGet`) with no release.
//!
//! An advisory's affected entry applies when its ecosystem and name match
//! and, for a release-qualified ecosystem (`Debian:12`), the release is the
//! image's. The package is affected when its version is listed in
//! `versions` or lies in a range: walking the range's events in version
//! order, `introduced` opens, `fixed` closes (that version is not
//! affected), `last_affected` closes after its version, and `limit` bounds
//! the range from above (OSV's evaluation). The fixed version reported is
//! the smallest `fixed` above the installed version in a range that
//! applies. Versions a scheme cannot read never match: a finding is never
//! guessed.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::advisory::{
    Advisory, AdvisorySource, Affected, Event, PackageKey, Range, RangeKind, Severity, SourceError,
};
use crate::report::{Distribution, IndexReport, Package, PackageKind};
use crate::version::Scheme;

/// A package affected by an advisory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The advisory's id.
    pub advisory: String,
    /// Its aliases and related CVE ids, so a finding shows its CVE.
    pub aliases: Vec<String>,
    pub summary: String,
    /// The affected package as indexed (name, version, purl, location,
    /// layer).
    pub package: Package,
    /// The version installed, as compared (a Debian binary package's
    /// source version).
    pub installed_version: String,
    /// The first version with the fix, when the advisory names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

impl Finding {
    /// Whether a fix is published (the default view shows only these).
    pub fn is_fixable(&self) -> bool {
        self.fixed_version.is_some()
    }
}

/// How one package is looked up and compared.
struct Subject<'a> {
    package: &'a Package,
    key: PackageKey,
    release: Option<String>,
    version: &'a str,
    scheme: Scheme,
}

/// The lookup key, release and compared version of a package; `None` when
/// no advisory ecosystem covers it (an OS package of an unknown
/// distribution).
fn subject<'a>(package: &'a Package, distribution: Option<&Distribution>) -> Option<Subject<'a>> {
    let (ecosystem, release, name, version): (&str, Option<String>, &str, &str) = match package.kind
    {
        PackageKind::Dpkg | PackageKind::Apk => {
            let (ecosystem, release) = distribution?.osv_ecosystem()?;
            (
                ecosystem,
                Some(release),
                package.source_name(),
                package.source_version(),
            )
        }
        PackageKind::Rpm => {
            let (ecosystem, release) = distribution?.osv_ecosystem()?;
            (ecosystem, Some(release), &package.name, &package.version)
        }
        kind => (
            kind.language_ecosystem()?,
            None,
            &package.name,
            &package.version,
        ),
    };
    Some(Subject {
        package,
        key: PackageKey::new(ecosystem, name),
        release,
        version,
        scheme: package.kind.scheme(),
    })
}

/// Whether an advisory's release covers the image's. Ubuntu writes
/// `22.04:LTS` and `Pro:18.04:LTS`; the numeric part is what counts.
fn release_matches(affected: Option<&str>, image: Option<&str>) -> bool {
    let Some(affected) = affected else {
        return true;
    };
    let Some(image) = image else {
        return false;
    };
    if affected == image {
        return true;
    }
    affected
        .split(':')
        .find(|part| part.starts_with(|c: char| c.is_ascii_digit()))
        .is_some_and(|numeric| numeric == image)
}

/// The package keys a report's findings are looked up by (source packages
/// for Debian binaries, each once, sorted): what an advisory must name to
/// touch the image.
pub fn lookup_keys(report: &IndexReport) -> Vec<PackageKey> {
    let distribution = report.distribution.as_ref();
    let mut keys: Vec<PackageKey> = report
        .packages
        .iter()
        .filter_map(|p| subject(p, distribution).map(|s| s.key))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Assesses an index report against an advisory source: one lookup for all
/// the report's packages, then [`assess_with`].
pub async fn assess(
    report: &IndexReport,
    source: &dyn AdvisorySource,
) -> Result<Vec<Finding>, SourceError> {
    let keys = lookup_keys(report);
    let advisories = source.advisories_for(&keys).await?;
    Ok(assess_with(report, &advisories))
}

/// Matches a report's packages against the given advisories (any set; only
/// those naming a package count), in a deterministic order: by package
/// (kind, name, version, location), then advisory id.
pub fn assess_with(report: &IndexReport, advisories: &[Arc<Advisory>]) -> Vec<Finding> {
    let distribution = report.distribution.as_ref();
    let mut by_key: std::collections::HashMap<PackageKey, Vec<(&Advisory, &Affected)>> =
        Default::default();
    for advisory in advisories {
        if advisory.withdrawn.is_some() {
            continue;
        }
        for affected in &advisory.affected {
            by_key
                .entry(PackageKey::new(&affected.ecosystem, &affected.name))
                .or_default()
                .push((advisory, affected));
        }
    }
    let mut findings = Vec::new();
    for package in &report.packages {
        let Some(subject) = subject(package, distribution) else {
            continue;
        };
        let Some(candidates) = by_key.get(&subject.key) else {
            continue;
        };
        let mut seen: Vec<&str> = Vec::new();
        for (advisory, affected) in candidates {
            if seen.contains(&advisory.id.as_str()) {
                continue;
            }
            if !release_matches(affected.release.as_deref(), subject.release.as_deref()) {
                continue;
            }
            let Some(fixed) = affects(affected, subject.scheme, subject.version) else {
                continue;
            };
            seen.push(&advisory.id);
            findings.push(Finding {
                advisory: advisory.id.clone(),
                aliases: aliases(advisory),
                summary: advisory.summary.clone(),
                package: subject.package.clone(),
                installed_version: subject.version.to_string(),
                fixed_version: fixed,
                severity: best_severity(advisory.severity.as_ref(), affected.severity.as_ref()),
            });
        }
    }
    findings.sort_by(|a, b| {
        (
            a.package.kind,
            &a.package.name,
            &a.package.version,
            &a.package.location,
            &a.advisory,
        )
            .cmp(&(
                b.package.kind,
                &b.package.name,
                &b.package.version,
                &b.package.location,
                &b.advisory,
            ))
    });
    findings
}

/// The aliases, then related CVE ids not already among them.
fn aliases(advisory: &Advisory) -> Vec<String> {
    let mut out = advisory.aliases.clone();
    for related in &advisory.related {
        if related.starts_with("CVE-") && !out.contains(related) {
            out.push(related.clone());
        }
    }
    out
}

/// A scored severity first (the record's, then the package's), then the
/// package's own word, then the record's.
fn best_severity(record: Option<&Severity>, package: Option<&Severity>) -> Option<Severity> {
    let scored = |s: &Option<&Severity>| s.filter(|s| s.score.is_some()).cloned();
    scored(&record)
        .or_else(|| scored(&package))
        .or_else(|| package.cloned())
        .or_else(|| record.cloned())
}

/// Whether `version` is affected; `Some(fixed version, if any)` when it is.
pub fn affects(affected: &Affected, scheme: Scheme, version: &str) -> Option<Option<String>> {
    let mut hit = false;
    let mut fixed: Option<String> = None;
    for range in &affected.ranges {
        let range_scheme = match range.kind {
            RangeKind::Ecosystem => scheme,
            RangeKind::Semver => Scheme::SemVer,
        };
        if let Some(range_fixed) = in_range(range, range_scheme, version) {
            hit = true;
            if let Some(candidate) = range_fixed {
                fixed = Some(match fixed {
                    Some(current)
                        if range_scheme.compare(&current, &candidate) == Some(Ordering::Less) =>
                    {
                        current
                    }
                    _ => candidate,
                });
            }
        }
    }
    if !hit {
        let listed = affected
            .versions
            .iter()
            .any(|v| v == version || scheme.compare(v, version) == Some(Ordering::Equal));
        if !listed {
            return None;
        }
    }
    Some(fixed)
}

/// OSV's range evaluation: `Some(the fixed version closing the interval
/// that holds it, if any)` when `version` is in the range.
fn in_range(range: &Range, scheme: Scheme, version: &str) -> Option<Option<String>> {
    // Events in version order; "0" (introduced at the start) first. An
    // event whose version the scheme cannot read makes the range unusable.
    // An insertion sort by hand: a version order that is not a total order
    // on odd input must give a wrong answer at worst, never a panic (the
    // standard sorts may panic on an inconsistent comparison).
    if range.events.len() > MAX_EVENTS {
        return None;
    }
    let mut events: Vec<&Event> = Vec::with_capacity(range.events.len());
    for event in &range.events {
        let mut at = events.len();
        while at > 0 && event_order(scheme, event, events[at - 1])? == Ordering::Less {
            at -= 1;
        }
        events.insert(at, event);
    }
    // Versions at or above a limit are outside the range.
    for event in &events {
        if let Event::Limit(limit) = event {
            if limit != "*" && scheme.compare(version, limit)? != Ordering::Less {
                return None;
            }
        }
    }
    let mut affected = false;
    let mut opened_at = 0;
    for (i, event) in events.iter().enumerate() {
        match event {
            Event::Introduced(v) => {
                if is_zero(event) || scheme.compare(version, v)? != Ordering::Less {
                    affected = true;
                    opened_at = i;
                }
            }
            Event::Fixed(v) => {
                if scheme.compare(version, v)? != Ordering::Less {
                    affected = false;
                }
            }
            Event::LastAffected(v) => {
                if scheme.compare(version, v)? == Ordering::Greater {
                    affected = false;
                }
            }
            Event::Limit(_) => {}
        }
    }
    if !affected {
        return None;
    }
    // The fix: the first `fixed` after the interval's opening that is above
    // the version.
    let fixed = events[opened_at..].iter().find_map(|event| match event {
        Event::Fixed(v) if scheme.compare(version, v) == Some(Ordering::Less) => Some(v.clone()),
        _ => None,
    });
    Some(fixed)
}

/// More events than any real range has: such a range is not evaluated.
const MAX_EVENTS: usize = 256;

/// The order of two events: by version, `introduced: 0` first, then by
/// kind at equal versions; `None` when a version cannot be read.
fn event_order(scheme: Scheme, a: &Event, b: &Event) -> Option<Ordering> {
    let (va, vb) = (a.version(), b.version());
    if va == vb {
        return Some(event_rank(a).cmp(&event_rank(b)));
    }
    // `limit: "*"` (no limit) is above every version.
    if matches!(a, Event::Limit(v) if v == "*") {
        return Some(Ordering::Greater);
    }
    if matches!(b, Event::Limit(v) if v == "*") {
        return Some(Ordering::Less);
    }
    if is_zero(a) {
        return Some(Ordering::Less);
    }
    if is_zero(b) {
        return Some(Ordering::Greater);
    }
    Some(
        scheme
            .compare(va, vb)?
            .then_with(|| event_rank(a).cmp(&event_rank(b))),
    )
}

fn is_zero(event: &Event) -> bool {
    matches!(event, Event::Introduced(v) if v == "0")
}

/// At equal versions: introduced, then last_affected, then fixed and
/// limit, so `introduced: 1.0, fixed: 1.0` leaves 1.0 unaffected.
fn event_rank(event: &Event) -> u8 {
    match event {
        Event::Introduced(_) => 0,
        Event::LastAffected(_) => 1,
        Event::Fixed(_) => 2,
        Event::Limit(_) => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affected(events: Vec<Event>, versions: Vec<&str>) -> Affected {
        Affected {
            ecosystem: "PyPI".into(),
            release: None,
            name: "x".into(),
            ranges: vec![Range {
                kind: RangeKind::Ecosystem,
                events,
            }],
            versions: versions.into_iter().map(String::from).collect(),
            severity: None,
        }
    }

    use Event::*;

    #[test]
    fn ranges_follow_osv_evaluation() {
        let s = |v: &str| v.to_string();
        // (events, installed version, Some(fixed version) when affected)
        type Case<'a> = (Vec<Event>, &'a str, Option<Option<&'a str>>);
        let cases: Vec<Case> = vec![
            (
                vec![Introduced(s("0")), Fixed(s("2.20.0"))],
                "2.19.0",
                Some(Some("2.20.0")),
            ),
            (vec![Introduced(s("0")), Fixed(s("2.20.0"))], "2.20.0", None),
            (
                vec![Introduced(s("0")), Fixed(s("2.20.0"))],
                "2.20.0rc1",
                Some(Some("2.20.0")),
            ),
            (
                vec![
                    Introduced(s("1.0")),
                    Fixed(s("1.5")),
                    Introduced(s("2.0")),
                    Fixed(s("2.3")),
                ],
                "1.7",
                None,
            ),
            (
                vec![
                    Introduced(s("1.0")),
                    Fixed(s("1.5")),
                    Introduced(s("2.0")),
                    Fixed(s("2.3")),
                ],
                "2.1",
                Some(Some("2.3")),
            ),
            (
                vec![
                    Fixed(s("2.3")),
                    Introduced(s("2.0")),
                    Fixed(s("1.5")),
                    Introduced(s("1.0")),
                ],
                "1.2",
                Some(Some("1.5")),
            ),
            (
                vec![Introduced(s("0")), LastAffected(s("3.1"))],
                "3.1",
                Some(None),
            ),
            (
                vec![Introduced(s("0")), LastAffected(s("3.1"))],
                "3.2",
                None,
            ),
            (vec![Introduced(s("0")), Limit(s("2.0"))], "2.0", None),
            (vec![Introduced(s("0")), Limit(s("2.0"))], "1.9", Some(None)),
            (vec![Introduced(s("1.0"))], "0.9", None),
            (vec![Introduced(s("1.0"))], "1.0", Some(None)),
            (vec![Introduced(s("1.0")), Fixed(s("1.0"))], "1.0", None),
            (
                vec![Introduced(s("0")), Fixed(s("not a version!"))],
                "1.0",
                None,
            ),
        ];
        for (events, version, want) in cases {
            let got = affects(&affected(events.clone(), vec![]), Scheme::Pep440, version);
            let want = want.map(|f| f.map(String::from));
            assert_eq!(got, want, "{events:?} {version}");
        }
        // Explicit versions.
        assert_eq!(
            affects(
                &affected(vec![], vec!["1.0", "1.1"]),
                Scheme::Pep440,
                "1.1.0"
            ),
            Some(None)
        );
        assert_eq!(
            affects(&affected(vec![], vec!["1.0"]), Scheme::Pep440, "1.2"),
            None
        );
    }

    #[test]
    fn releases() {
        for (affected, image, want) in [
            (Some("12"), Some("12"), true),
            (Some("11"), Some("12"), false),
            (None, Some("12"), true),
            (Some("22.04:LTS"), Some("22.04"), true),
            (Some("Pro:18.04:LTS"), Some("18.04"), true),
            (Some("v3.20"), Some("v3.19"), false),
            (Some("12"), None, false),
        ] {
            assert_eq!(
                release_matches(affected, image),
                want,
                "{affected:?} {image:?}"
            );
        }
    }
}
