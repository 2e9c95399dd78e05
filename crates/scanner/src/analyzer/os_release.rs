//! The operating system: `etc/os-release` (often a link to
//! `usr/lib/os-release`), and the older release files of distributions
//! that had no os-release or whose images strip it: `etc/alpine-release`,
//! `etc/debian_version`, `etc/redhat-release`, `etc/centos-release`,
//! `etc/almalinux-release`, `etc/rocky-release`. The coalesced report
//! prefers them in that order.

use super::{text, AnalyzeError, Analyzed, Analyzer, Candidate, Context};
use crate::report::{Distribution, FileContents};

pub(crate) struct OsRelease;

const FILES: [&str; 8] = [
    "etc/os-release",
    "usr/lib/os-release",
    "etc/alpine-release",
    "etc/debian_version",
    "etc/redhat-release",
    "etc/centos-release",
    "etc/almalinux-release",
    "etc/rocky-release",
];

impl Analyzer for OsRelease {
    fn wants(&self, file: &Candidate<'_>) -> bool {
        FILES.contains(&file.path)
    }

    fn analyze(&self, _ctx: &mut Context<'_>, path: &str, data: &[u8]) -> Analyzed {
        let text = text(data);
        let distribution = match path {
            "etc/os-release" | "usr/lib/os-release" => os_release(&text),
            "etc/alpine-release" => first_line(&text).map(|version| Distribution {
                id: "alpine".into(),
                version_id: Some(version.to_string()),
                ..Default::default()
            }),
            "etc/debian_version" => first_line(&text).map(|version| Distribution {
                id: "debian".into(),
                // `12.5` names the release `12`; `trixie/sid` has none.
                version_id: version
                    .split('.')
                    .next()
                    .filter(|major| major.bytes().all(|c| c.is_ascii_digit()))
                    .map(str::to_string),
                ..Default::default()
            }),
            _ => first_line(&text).and_then(redhat_release),
        };
        match distribution {
            Some(distribution) => Ok(FileContents::Distribution { distribution }),
            None => Err(AnalyzeError::malformed("no distribution named in the file")),
        }
    }
}

fn first_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty())
}

/// `KEY=value` lines, values optionally quoted (os-release(5)).
fn os_release(text: &str) -> Option<Distribution> {
    let mut distribution = Distribution::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key.trim() {
            "ID" => distribution.id = value.to_ascii_lowercase(),
            "VERSION_ID" => distribution.version_id = Some(value),
            "VERSION_CODENAME" if !value.is_empty() => distribution.version_codename = Some(value),
            "PRETTY_NAME" => distribution.pretty_name = Some(value),
            _ => {}
        }
    }
    (!distribution.id.is_empty()).then_some(distribution)
}

fn unquote(value: &str) -> String {
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    inner.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// `AlmaLinux release 9.4 (Seafoam Ocelot)`, `CentOS Linux release 7.9.2009
/// (Core)`, `Red Hat Enterprise Linux release 8.9 (Ootpa)`, `Rocky Linux
/// release 9.3 (Blue Onyx)`.
fn redhat_release(line: &str) -> Option<Distribution> {
    let (name, rest) = line.split_once(" release ")?;
    let version = rest.split_whitespace().next()?.to_string();
    let lower = name.to_ascii_lowercase();
    let id = if lower.starts_with("almalinux") {
        "almalinux"
    } else if lower.starts_with("rocky") {
        "rocky"
    } else if lower.starts_with("centos") {
        "centos"
    } else if lower.starts_with("red hat") {
        "rhel"
    } else if lower.starts_with("fedora") {
        "fedora"
    } else if lower.starts_with("oracle") {
        "ol"
    } else {
        return None;
    };
    Some(Distribution {
        id: id.into(),
        version_id: Some(version),
        pretty_name: Some(line.to_string()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Budget, Limits};

    fn analyze(path: &str, text: &str) -> Option<Distribution> {
        let limits = Limits::default();
        let budget = Budget::new(1 << 20);
        let mut ctx = Context {
            limits: &limits,
            budget: &budget,
            problems: Vec::new(),
        };
        match OsRelease.analyze(&mut ctx, path, text.as_bytes()) {
            Ok(FileContents::Distribution { distribution }) => Some(distribution),
            _ => None,
        }
    }

    #[test]
    fn release_files() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        let d = analyze("usr/lib/os-release", debian).unwrap();
        assert_eq!(
            (
                d.id.as_str(),
                d.version_id.as_deref(),
                d.version_codename.as_deref()
            ),
            ("debian", Some("12"), Some("bookworm"))
        );
        let alpine = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.3\n";
        assert_eq!(
            analyze("etc/os-release", alpine)
                .unwrap()
                .version_id
                .as_deref(),
            Some("3.20.3")
        );
        assert_eq!(
            analyze("etc/alpine-release", "3.19.1\n").unwrap().id,
            "alpine"
        );
        assert_eq!(
            analyze("etc/debian_version", "12.5\n")
                .unwrap()
                .version_id
                .as_deref(),
            Some("12")
        );
        assert_eq!(
            analyze("etc/debian_version", "trixie/sid\n")
                .unwrap()
                .version_id,
            None
        );
        let alma = analyze(
            "etc/redhat-release",
            "AlmaLinux release 9.4 (Seafoam Ocelot)\n",
        )
        .unwrap();
        assert_eq!(
            (alma.id.as_str(), alma.version_id.as_deref()),
            ("almalinux", Some("9.4"))
        );
        let centos = analyze("etc/centos-release", "CentOS Linux release 7.9.2009 (Core)").unwrap();
        assert_eq!(centos.id, "centos");
        assert!(analyze("etc/os-release", "NAME=nothing\n").is_none());
        assert!(analyze("etc/redhat-release", "Something else\n").is_none());
    }
}
