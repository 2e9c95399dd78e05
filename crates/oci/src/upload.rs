//! Upload session identifiers.

/// The identifier of an upload session: a random UUID chosen by the registry
/// when the session starts, and the last path segment of
/// `/v2/<name>/blobs/uploads/<id>`.
///
/// Only the UUID form parses, so an id is safe to use as a path component or
/// an object key wherever a backend keeps the session's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    /// A new id from the operating system's random source (UUID version 4).
    pub fn new_random() -> Self {
        UploadId(uuid::Uuid::new_v4())
    }

    /// Parses the textual form; anything but a UUID is rejected.
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::try_parse(s).ok().map(UploadId)
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "0b0f6a8e-3c39-4d4e-9f0c-2f4a3c1f8d10",
                Some("0b0f6a8e-3c39-4d4e-9f0c-2f4a3c1f8d10"),
            ),
            // Other spellings of a UUID are accepted and printed hyphenated.
            (
                "0B0F6A8E3C394D4E9F0C2F4A3C1F8D10",
                Some("0b0f6a8e-3c39-4d4e-9f0c-2f4a3c1f8d10"),
            ),
            ("not-a-uuid", None),
            ("", None),
            ("../../etc/passwd", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                UploadId::parse(text).map(|id| id.to_string()).as_deref(),
                *expected,
                "{text}"
            );
        }
        let random = UploadId::new_random();
        assert_eq!(UploadId::parse(&random.to_string()), Some(random));
    }
}
