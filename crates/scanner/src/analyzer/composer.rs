//! PHP packages: `composer.lock` (the `packages` an application installs;
//! `packages-dev` are left out, as for npm).

use serde::Deserialize;

use super::{packages, AnalyzeError, Analyzed, Analyzer, Candidate, Context};
use crate::report::{Package, PackageKind};

pub(crate) struct ComposerLock;

impl Analyzer for ComposerLock {
    fn wants(&self, file: &Candidate<'_>) -> bool {
        file.regular
            && file.file_name() == "composer.lock"
            && !file.path.split('/').any(|p| p == "vendor")
    }

    fn analyze(&self, _ctx: &mut Context<'_>, _path: &str, data: &[u8]) -> Analyzed {
        #[derive(Deserialize)]
        struct Lock {
            #[serde(default)]
            packages: Vec<Locked>,
        }
        #[derive(Deserialize)]
        struct Locked {
            name: String,
            version: String,
        }
        let lock: Lock = serde_json::from_slice(data)
            .map_err(|e| AnalyzeError::malformed(format!("not a composer.lock: {e}")))?;
        Ok(packages(
            lock.packages
                .into_iter()
                .map(|p| Package::new(PackageKind::Composer, p.name, p.version))
                .collect(),
        ))
    }
}
