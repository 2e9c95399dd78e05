//! The client commands' one error type. Every variant's message names the
//! cause and the fix, in one line, so that a user who sees only the error
//! knows what to do next; [`ClientError::exit_code`] is the one mapping to
//! the process's exit status (2 for misuse, 1 for every other failure).

use thiserror::Error;

/// Why a client command failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The command line or its values are wrong; nothing was sent.
    #[error("{0}")]
    Usage(String),
    #[error("not logged in to {host}: run berth login {host}")]
    NotLoggedIn { host: String },
    #[error(
        "no registry given and no default registry: run berth login HOST, or pass --registry HOST"
    )]
    NoRegistry,
    #[error(
        "cannot reach {url}: {cause}: check the host name and port, and that the registry is running"
    )]
    Unreachable { url: String, cause: String },
    #[error(
        "{host} refused the user name or password of {user}: check them and run berth login {host} again"
    )]
    WrongPassword { host: String, user: String },
    #[error("your login to {host} has expired or was revoked: run berth login {host}")]
    LoginExpired { host: String },
    #[error(
        "{host} has no access control (it was not started with --auth), so there is nothing to \
         log in to: start it with berth serve --auth"
    )]
    NoAccessControl { host: String },
    #[error("{host} does not support {what} (it answered {status}): upgrade the registry")]
    Unsupported {
        host: String,
        what: String,
        status: u16,
    },
    /// The registry refused or failed the request; `message` is its own
    /// sentence (which says what was wrong), `fix` what to do about it.
    #[error("{host}: {message} (HTTP {status}): {fix}")]
    Api {
        host: String,
        status: u16,
        message: String,
        fix: String,
    },
    /// The registry answered something that is not the API's JSON.
    #[error(
        "{host} answered {what} with something unexpected ({cause}): is {host} a Berth registry?"
    )]
    Protocol {
        host: String,
        what: String,
        cause: String,
    },
    /// A local file (configuration, credentials) could not be read or
    /// written; the message names the file and the fix.
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    /// The exit status: 2 for misuse, 1 for any other failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) | ClientError::NoRegistry => 2,
            _ => 1,
        }
    }
}

/// What to do about an API refusal, by HTTP status, for the error line.
pub fn fix_for_status(status: u16) -> &'static str {
    match status {
        400 => "correct the value named and try again",
        401 => "run berth login again; if it persists, the login lacks a right this needs",
        403 => "ask an administrator, or the namespace's owner, for the right this needs",
        404 => "check the name (the list commands show what exists)",
        409 => "it conflicts with what exists: choose another name, or change what the message names first",
        429 => "wait and try again",
        500..=599 => "try again later; the registry's log says more",
        _ => "try again; if it persists, report it with the registry's log",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error names a cause and, after the last colon, a fix.
    #[test]
    fn errors_name_cause_and_fix() {
        let host = "reg.example".to_string();
        let cases: &[(ClientError, &str, u8)] = &[
            (
                ClientError::NotLoggedIn { host: host.clone() },
                "not logged in to reg.example: run berth login reg.example",
                1,
            ),
            (
                ClientError::NoRegistry,
                "no registry given and no default registry: run berth login HOST, or pass --registry HOST",
                2,
            ),
            (
                ClientError::WrongPassword {
                    host: host.clone(),
                    user: "alice".into(),
                },
                "reg.example refused the user name or password of alice: check them and run berth login reg.example again",
                1,
            ),
            (
                ClientError::LoginExpired { host: host.clone() },
                "your login to reg.example has expired or was revoked: run berth login reg.example",
                1,
            ),
            (
                ClientError::Api {
                    host: host.clone(),
                    status: 403,
                    message: "requested access to the namespace is denied".into(),
                    fix: fix_for_status(403).into(),
                },
                "reg.example: requested access to the namespace is denied (HTTP 403): ask an administrator, or the namespace's owner, for the right this needs",
                1,
            ),
            (
                ClientError::Unsupported {
                    host,
                    what: "removing namespaces".into(),
                    status: 405,
                },
                "reg.example does not support removing namespaces (it answered 405): upgrade the registry",
                1,
            ),
            (ClientError::Usage("bad scope".into()), "bad scope", 2),
        ];
        for (error, text, code) in cases {
            assert_eq!(error.to_string(), *text);
            assert_eq!(error.exit_code(), *code, "{text}");
        }
    }
}
