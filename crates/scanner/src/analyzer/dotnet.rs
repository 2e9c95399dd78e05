//! .NET packages: `*.deps.json`, the dependency manifest written next to
//! every published application. Its `libraries` map has one entry per
//! library, `NAME/VERSION`, of type `package` (from NuGet) or `project` (the
//! application's own code, left out).

use serde::Deserialize;
use std::collections::BTreeMap;

use super::{packages, AnalyzeError, Analyzed, Analyzer, Candidate, Context};
use crate::report::{Package, PackageKind};

pub(crate) struct DepsJson;

impl Analyzer for DepsJson {
    fn wants(&self, file: &Candidate<'_>) -> bool {
        file.regular && file.path.ends_with(".deps.json")
    }

    fn analyze(&self, _ctx: &mut Context<'_>, _path: &str, data: &[u8]) -> Analyzed {
        #[derive(Deserialize)]
        struct Deps {
            #[serde(default)]
            libraries: BTreeMap<String, Library>,
        }
        #[derive(Deserialize)]
        struct Library {
            #[serde(rename = "type", default)]
            kind: String,
        }
        // .NET writes a byte-order mark.
        let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
        let deps: Deps = serde_json::from_slice(data)
            .map_err(|e| AnalyzeError::malformed(format!("not a deps.json: {e}")))?;
        Ok(packages(
            deps.libraries
                .into_iter()
                .filter(|(_, library)| library.kind.eq_ignore_ascii_case("package"))
                .filter_map(|(key, _)| {
                    let (name, version) = key.rsplit_once('/')?;
                    Some(Package::new(PackageKind::NuGet, name, version))
                })
                .collect(),
        ))
    }
}
