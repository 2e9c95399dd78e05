//! Software bills of materials from an index report: CycloneDX 1.6 JSON
//! (what the registry attaches to images as a referrer) and SPDX 2.3 JSON.
//!
//! Both list the image as the described component and every indexed
//! package with its name, version and purl; CycloneDX also records each
//! package's layer and file as properties, and the operating system as a
//! component. Documents are deterministic for a given report, subject and
//! time: the serial number and namespace derive from their content.

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::report::{IndexReport, Package};

/// What the document describes.
#[derive(Clone, Debug)]
pub struct Subject {
    /// The image's name (`registry/ns/repo:tag` or `ns/repo`).
    pub name: String,
    /// The manifest digest (`sha256:…`), when known.
    pub digest: Option<String>,
}

/// The tool named as the document's creator.
pub const TOOL_NAME: &str = "berth";

/// CycloneDX media type, for referrers.
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
/// SPDX media type.
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";

/// A CycloneDX 1.6 JSON document.
pub fn cyclonedx(
    report: &IndexReport,
    subject: &Subject,
    now: OffsetDateTime,
    tool_version: &str,
) -> Value {
    let image_ref = format!(
        "image:{}",
        subject.digest.as_deref().unwrap_or(&subject.name)
    );
    let mut components = Vec::new();
    let mut refs: Vec<String> = Vec::new();
    if let Some(d) = &report.distribution {
        let bom_ref = format!("os:{}", d.id);
        let mut os = json!({
            "type": "operating-system",
            "bom-ref": bom_ref,
            "name": d.id,
        });
        if let Some(version) = &d.version_id {
            os["version"] = json!(version);
        }
        if let Some(pretty) = &d.pretty_name {
            os["description"] = json!(pretty);
        }
        refs.push(bom_ref);
        components.push(os);
    }
    let mut purl_counts: std::collections::HashMap<(&str, &str), usize> = Default::default();
    for package in &report.packages {
        *purl_counts
            .entry((&package.purl, &package.name))
            .or_default() += 1;
    }
    for (n, package) in report.packages.iter().enumerate() {
        let shared = purl_counts[&(package.purl.as_str(), package.name.as_str())] > 1;
        let bom_ref = unique_ref(package, n, shared);
        let (group, name) = cyclonedx_name(package);
        let mut component = json!({
            "type": "library",
            "bom-ref": bom_ref,
            "name": name,
            "version": package.version,
        });
        if let Some(group) = group {
            component["group"] = json!(group);
        }
        if !package.purl.is_empty() {
            component["purl"] = json!(package.purl);
        }
        let mut properties = vec![
            json!({"name": "berth:package:kind", "value": format!("{:?}", package.kind).to_lowercase()}),
            json!({"name": "berth:package:location", "value": package.location}),
        ];
        if let Some(layer) = &package.layer {
            properties.push(json!({"name": "berth:layer:digest", "value": layer.to_string()}));
        }
        if let Some(source) = &package.source {
            properties.push(json!({"name": "berth:package:source", "value": format!("{}@{}", source.name, source.version)}));
        }
        component["properties"] = Value::Array(properties);
        refs.push(bom_ref);
        components.push(component);
    }
    let mut metadata_component = json!({
        "type": "container",
        "bom-ref": image_ref,
        "name": subject.name,
    });
    if let Some(digest) = &subject.digest {
        metadata_component["version"] = json!(digest);
    }
    let mut document = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {
            "timestamp": timestamp(now),
            "tools": {
                "components": [{
                    "type": "application",
                    "name": TOOL_NAME,
                    "version": tool_version,
                }]
            },
            "component": metadata_component,
        },
        "components": components,
        "dependencies": [{"ref": image_ref, "dependsOn": refs}],
    });
    document["serialNumber"] = json!(format!("urn:uuid:{}", content_uuid(&document)));
    document
}

/// An SPDX 2.3 JSON document.
pub fn spdx(
    report: &IndexReport,
    subject: &Subject,
    now: OffsetDateTime,
    tool_version: &str,
) -> Value {
    let mut packages = vec![{
        let mut image = json!({
            "SPDXID": "SPDXRef-Image",
            "name": subject.name,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "CONTAINER",
        });
        if let Some(digest) = &subject.digest {
            image["versionInfo"] = json!(digest);
        }
        image
    }];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    if let Some(d) = &report.distribution {
        let mut os = json!({
            "SPDXID": "SPDXRef-OperatingSystem",
            "name": d.id,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        });
        if let Some(version) = &d.version_id {
            os["versionInfo"] = json!(version);
        }
        packages.push(os);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": "SPDXRef-OperatingSystem",
        }));
    }
    for (n, package) in report.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{n}");
        let mut entry = json!({
            "SPDXID": id,
            "name": package.name,
            "versionInfo": package.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "LIBRARY",
            "sourceInfo": format!("found in {}", package.location),
        });
        if !package.purl.is_empty() {
            entry["externalRefs"] = json!([{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": package.purl,
            }]);
        }
        packages.push(entry);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": subject.name,
        "creationInfo": {
            "created": timestamp(now),
            "creators": [format!("Tool: {TOOL_NAME}-{tool_version}")],
        },
        "packages": packages,
        "relationships": relationships,
    });
    document["documentNamespace"] = json!(format!("urn:uuid:{}", content_uuid(&document)));
    document
}

/// A bom-ref unique within the document: the purl, with the package's
/// position when another package has the same purl (the same package found
/// in two files).
fn unique_ref(package: &Package, n: usize, shared: bool) -> String {
    let base = if package.purl.is_empty() {
        format!("package:{}@{}", package.name, package.version)
    } else {
        package.purl.clone()
    };
    if shared {
        format!("{base}#{n}")
    } else {
        base
    }
}

/// CycloneDX splits Maven, npm-scoped, Composer and Go names into group
/// and name, as their purls do.
fn cyclonedx_name(package: &Package) -> (Option<&str>, &str) {
    use crate::report::PackageKind::*;
    let split = match package.kind {
        Maven => package.name.split_once(':'),
        Composer => package.name.split_once('/'),
        Npm if package.name.starts_with('@') => package.name.split_once('/'),
        Go => package.name.rsplit_once('/'),
        _ => None,
    };
    match split {
        Some((group, name)) if !group.is_empty() && !name.is_empty() => (Some(group), name),
        _ => (None, &package.name),
    }
}

fn timestamp(now: OffsetDateTime) -> String {
    // Whole seconds in UTC, as both formats' examples write them.
    let now = now
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}

/// A version-4-shaped UUID derived from the document's content, so the
/// same report gives the same document.
fn content_uuid(document: &Value) -> String {
    let hash = Sha256::digest(document.to_string().as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
