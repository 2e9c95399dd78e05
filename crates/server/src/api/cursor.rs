//! The listings' opaque cursors: a small JSON body saying where the
//! previous page stopped (and which listing it pages, so that another
//! listing's cursor is refused), base64url without padding. Each listing
//! declares its own body; encoding, decoding and the refusal live here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ManagementError;

/// The cursor that carries `body`.
pub fn encode<T: Serialize>(body: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(body).unwrap_or_default())
}

/// The body a cursor carries, or the listing's 400 if it is not a body of
/// this kind (bodies deny unknown fields, so another listing's cursor
/// fails here or in the listing's own checks).
pub fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T, ManagementError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| refused())?;
    serde_json::from_slice(&bytes).map_err(|_| refused())
}

/// The 400 for a cursor this listing did not hand out.
pub fn refused() -> ManagementError {
    ManagementError::invalid_request(
        "query parameter cursor: not a cursor of this listing; pass the next_cursor of the \
         previous page unchanged, with the same other parameters",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        l: String,
        a: String,
    }

    #[test]
    fn cursors_carry_their_body_and_refuse_anything_else() {
        let body = Body {
            l: "test".into(),
            a: "team-a/app".into(),
        };
        assert_eq!(decode::<Body>(&encode(&body)).unwrap(), body);
        #[derive(Serialize)]
        struct Other {
            r: String,
        }
        let other = encode(&Other { r: "x".into() });
        for cursor in ["", "not base64!", "bm90IGpzb24", other.as_str()] {
            let error = decode::<Body>(cursor).unwrap_err();
            assert!(
                error.message().starts_with("query parameter cursor:"),
                "{cursor}: {}",
                error.message()
            );
        }
    }
}
