-- Whether the Vulnerability Advisor attaches each indexed image's SBOM
-- (CycloneDX) to it as an OCI referrer, per namespace: on unless the
-- namespace's policy turns it off, which is what namespaces without a
-- policy row get too.
ALTER TABLE vulnerability_policies ADD COLUMN attach_sbom INTEGER NOT NULL DEFAULT 1;
