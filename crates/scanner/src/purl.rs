//! Package URLs (the package-url spec) for indexed packages, built with the
//! `packageurl` crate so each type's canonical form and encoding are the
//! spec's.

use packageurl::PackageUrl;

use crate::report::{Distribution, Package, PackageKind};

/// The purl of a package. OS packages name their distribution (namespace
/// and the `distro` qualifier); without a known distribution a dpkg
/// package is taken to be Debian's, an apk package Alpine's and an rpm
/// package has no namespace. Never fails: a name the purl rules refuse
/// (an empty one) gives an empty string.
pub fn for_package(package: &Package, distribution: Option<&Distribution>) -> String {
    build(package, distribution)
        .map(|p| p.to_string())
        .unwrap_or_default()
}

fn build<'a>(
    package: &'a Package,
    distribution: Option<&'a Distribution>,
) -> Result<PackageUrl<'a>, packageurl::Error> {
    let (ty, namespace, name): (&str, Option<&str>, &str) = match package.kind {
        PackageKind::Dpkg => (
            "deb",
            Some(distribution.map_or("debian", |d| d.purl_namespace())),
            &package.name,
        ),
        PackageKind::Apk => (
            "apk",
            Some(distribution.map_or("alpine", |d| d.purl_namespace())),
            &package.name,
        ),
        PackageKind::Rpm => (
            "rpm",
            distribution.map(|d| d.purl_namespace()),
            &package.name,
        ),
        PackageKind::Python => ("pypi", None, &package.name),
        PackageKind::Npm => match package
            .name
            .strip_prefix('@')
            .and_then(|n| n.split_once('/'))
        {
            Some((scope, name)) => ("npm", Some(&package.name[..scope.len() + 1]), name),
            None => ("npm", None, &package.name),
        },
        PackageKind::Cargo => ("cargo", None, &package.name),
        PackageKind::Go => match package.name.rsplit_once('/') {
            Some((namespace, name)) => ("golang", Some(namespace), name),
            None => ("golang", None, &package.name),
        },
        PackageKind::Maven => match package.name.split_once(':') {
            Some((group, artifact)) => ("maven", Some(group), artifact),
            None => ("maven", None, &package.name),
        },
        PackageKind::Gem => ("gem", None, &package.name),
        PackageKind::Composer => match package.name.split_once('/') {
            Some((vendor, name)) => ("composer", Some(vendor), name),
            None => ("composer", None, &package.name),
        },
        PackageKind::NuGet => ("nuget", None, &package.name),
    };
    let mut purl = PackageUrl::new(ty, name)?;
    if let Some(namespace) = namespace.filter(|n| !n.is_empty()) {
        purl.with_namespace(namespace)?;
    }
    let version = match package.kind {
        // rpm purls carry the epoch as a qualifier, not in the version.
        PackageKind::Rpm => package
            .version
            .split_once(':')
            .filter(|(epoch, _)| epoch.bytes().all(|c| c.is_ascii_digit()))
            .map_or(package.version.as_str(), |(_, rest)| rest),
        _ => package.version.as_str(),
    };
    if !version.is_empty() {
        purl.with_version(version)?;
    }
    if package.kind == PackageKind::Rpm {
        if let Some((epoch, _)) = package.version.split_once(':') {
            if epoch.bytes().all(|c| c.is_ascii_digit()) && epoch != "0" {
                purl.add_qualifier("epoch", epoch)?;
            }
        }
    }
    if let Some(arch) = package.arch.as_deref().filter(|a| !a.is_empty()) {
        purl.add_qualifier("arch", arch)?;
    }
    if package.kind.is_os() {
        if let Some(d) = distribution {
            let distro = match &d.version_id {
                Some(version) => format!("{}-{version}", d.id),
                None => d.id.clone(),
            };
            purl.add_qualifier("distro", distro)?;
        }
        if let Some(source) = &package.source {
            if source.name != package.name {
                purl.add_qualifier("upstream", source.name.as_str())?;
            }
        }
    }
    Ok(purl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SourcePackage;

    fn package(kind: PackageKind, name: &str, version: &str) -> Package {
        Package::new(kind, name, version)
    }

    #[test]
    fn purls_per_type() {
        let debian = Distribution {
            id: "debian".into(),
            version_id: Some("12".into()),
            ..Default::default()
        };
        let mut libc = package(PackageKind::Dpkg, "libc6", "2.36-9+deb12u10");
        libc.arch = Some("amd64".into());
        libc.source = Some(SourcePackage {
            name: "glibc".into(),
            version: "2.36-9+deb12u10".into(),
        });
        let mut openssl = package(PackageKind::Rpm, "openssl-libs", "1:3.0.7-27.el9");
        openssl.arch = Some("x86_64".into());
        let alma = Distribution {
            id: "almalinux".into(),
            version_id: Some("9.4".into()),
            ..Default::default()
        };
        for (got, want) in [
            (
                for_package(&libc, Some(&debian)),
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?arch=amd64&distro=debian-12&upstream=glibc",
            ),
            (
                for_package(&openssl, Some(&alma)),
                "pkg:rpm/almalinux/openssl-libs@3.0.7-27.el9?arch=x86_64&distro=almalinux-9.4&epoch=1",
            ),
            (
                for_package(&package(PackageKind::Python, "Django_Utils", "1.0"), None),
                "pkg:pypi/django-utils@1.0",
            ),
            (
                for_package(&package(PackageKind::Npm, "@babel/core", "7.0.0"), None),
                "pkg:npm/%40babel/core@7.0.0",
            ),
            (
                for_package(&package(PackageKind::Go, "github.com/foo/bar", "v1.2.3"), None),
                "pkg:golang/github.com/foo/bar@v1.2.3",
            ),
            (
                for_package(
                    &package(PackageKind::Maven, "org.apache.commons:commons-lang3", "3.11"),
                    None,
                ),
                "pkg:maven/org.apache.commons/commons-lang3@3.11",
            ),
            (
                for_package(&package(PackageKind::Composer, "pear/log", "1.13.1"), None),
                "pkg:composer/pear/log@1.13.1",
            ),
            (
                for_package(&package(PackageKind::NuGet, "Newtonsoft.Json", "12.0.3"), None),
                "pkg:nuget/Newtonsoft.Json@12.0.3",
            ),
            (
                for_package(&package(PackageKind::Cargo, "libc", "0.2.54"), None),
                "pkg:cargo/libc@0.2.54",
            ),
            (
                for_package(&package(PackageKind::Gem, "rake", "13.0.3"), None),
                "pkg:gem/rake@13.0.3",
            ),
            (for_package(&package(PackageKind::Gem, "", "1"), None), ""),
        ] {
            assert_eq!(got, want);
        }
    }
}
