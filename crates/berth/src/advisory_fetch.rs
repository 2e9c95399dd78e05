//! Downloads of advisory sources over HTTP, for the scheduled sync and
//! `berth advisories import URL`: bounded in size, in time (to connect,
//! between two reads, in all) and in redirects, and conditional on the
//! validators of the last download (`If-None-Match`, `If-Modified-Since`).
//!
//! The URLs are the operator's configuration, not users' input, so unlike
//! webhooks they may name private addresses (a mirror inside the network is
//! the usual offline setup).

use std::time::Duration;

use berth_registry::advisory_sync::{AdvisoryFetcher, Fetched, Validators};
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;

/// How far a download may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchLimits {
    /// The largest body read into memory (osv.dev's largest `all.zip`,
    /// Debian's, is well under this).
    pub max_bytes: u64,
    pub connect_timeout: Duration,
    /// The longest wait for the next bytes of the answer.
    pub read_timeout: Duration,
    /// The longest a whole download may take.
    pub total_timeout: Duration,
    pub max_redirects: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_bytes: 512 << 20,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(30 * 60),
            max_redirects: 5,
        }
    }
}

/// The HTTP client of advisory downloads.
pub struct HttpFetcher {
    client: reqwest::Client,
    limits: FetchLimits,
}

impl HttpFetcher {
    pub fn new(limits: FetchLimits) -> Result<HttpFetcher, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .read_timeout(limits.read_timeout)
            .timeout(limits.total_timeout)
            .redirect(reqwest::redirect::Policy::limited(limits.max_redirects))
            .user_agent(concat!(
                "berth/",
                env!("CARGO_PKG_VERSION"),
                " advisory-sync"
            ))
            .build()
            .map_err(|e| format!("cannot build the advisory download client: {e}"))?;
        Ok(HttpFetcher { client, limits })
    }

    async fn get(&self, url: &str, validators: &Validators) -> Result<Fetched, String> {
        let mut request = self.client.get(url);
        if let Some(etag) = &validators.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(since) = &validators.last_modified {
            request = request.header(IF_MODIFIED_SINCE, since);
        }
        let mut response = request.send().await.map_err(describe)?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if !status.is_success() {
            return Err(format!("the source answered {status}"));
        }
        let too_large = || {
            format!(
                "the download is larger than the {} bytes allowed",
                self.limits.max_bytes
            )
        };
        if response
            .content_length()
            .is_some_and(|length| length > self.limits.max_bytes)
        {
            return Err(too_large());
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value: &reqwest::header::HeaderValue| value.to_str().ok())
                .filter(|value| value.len() <= 256)
                .map(str::to_string)
        };
        let new_validators = Validators {
            etag: header(ETAG),
            last_modified: header(LAST_MODIFIED),
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if bytes.len() as u64 + chunk.len() as u64 > self.limits.max_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched::Body {
            bytes,
            validators: new_validators,
        })
    }
}

/// A reqwest error in words, with its causes (reqwest's own message alone
/// says "error sending request" and hides why).
fn describe(error: reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_redirect() {
        "too many redirects".to_string()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait::async_trait]
impl AdvisoryFetcher for HttpFetcher {
    async fn fetch(&self, url: &str, validators: &Validators) -> Result<Fetched, String> {
        self.get(url, validators)
            .await
            .map_err(|error| format!("downloading {}: {error}", redact(url)))
    }
}

/// `url` without a password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// How the test server answers a request.
    #[derive(Clone, Copy)]
    enum Answer {
        /// 200 with this many bytes, announcing their length or not.
        Body {
            bytes: usize,
            announced: bool,
        },
        /// A redirect to itself, forever.
        RedirectLoop,
        /// 304 when the request carries `If-None-Match: "v1"`, else 200.
        Conditional,
        /// Headers, then silence.
        Stall,
        Status(u16),
    }

    /// Serves `answer` to every connection on a port of 127.0.0.1 until the
    /// test ends; returns its URL.
    async fn serve(answer: Answer) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut request = vec![0u8; 4096];
                    let n = socket.read(&mut request).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&request[..n]).to_lowercase();
                    let head = match answer {
                        Answer::Body { bytes, announced } => {
                            let length = if announced {
                                format!("content-length: {bytes}\r\n")
                            } else {
                                String::new()
                            };
                            let head = format!(
                                "HTTP/1.1 200 OK\r\n{length}connection: close\r\netag: \"v1\"\r\n\r\n"
                            );
                            let _ = socket.write_all(head.as_bytes()).await;
                            let _ = socket.write_all(&vec![b'x'; bytes]).await;
                            return;
                        }
                        Answer::RedirectLoop => {
                            "HTTP/1.1 302 Found\r\nlocation: /again\r\ncontent-length: 0\r\n\r\n"
                                .to_string()
                        }
                        Answer::Conditional if request.contains("if-none-match: \"v1\"") => {
                            "HTTP/1.1 304 Not Modified\r\n\r\n".to_string()
                        }
                        Answer::Conditional => {
                            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\netag: \"v1\"\r\n\r\n{}"
                                .to_string()
                        }
                        Answer::Stall => {
                            let _ = socket
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nx")
                                .await;
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        Answer::Status(code) => {
                            format!("HTTP/1.1 {code} Nope\r\ncontent-length: 0\r\n\r\n")
                        }
                    };
                    let _ = socket.write_all(head.as_bytes()).await;
                });
            }
        });
        format!("http://{address}/all.zip")
    }

    #[tokio::test]
    async fn downloads_are_bounded_and_conditional() {
        let limits = FetchLimits {
            max_bytes: 1000,
            read_timeout: Duration::from_millis(300),
            max_redirects: 3,
            ..FetchLimits::default()
        };
        let fetcher = HttpFetcher::new(limits).unwrap();
        let v1 = Validators {
            etag: Some("\"v1\"".into()),
            last_modified: None,
        };
        let none = Validators::default();
        // (answer, validators sent, expected: Ok(body length or None for
        // not modified) or Err(words the error contains))
        type Case<'a> = (Answer, &'a Validators, Result<Option<usize>, &'a str>);
        let cases: &[Case] = &[
            (
                Answer::Body {
                    bytes: 1000,
                    announced: true,
                },
                &none,
                Ok(Some(1000)),
            ),
            (
                Answer::Body {
                    bytes: 1001,
                    announced: true,
                },
                &none,
                Err("larger than the 1000 bytes"),
            ),
            (
                Answer::Body {
                    bytes: 5000,
                    announced: false,
                },
                &none,
                Err("larger than the 1000 bytes"),
            ),
            (Answer::RedirectLoop, &none, Err("too many redirects")),
            (Answer::Conditional, &v1, Ok(None)),
            (Answer::Conditional, &none, Ok(Some(2))),
            (Answer::Stall, &none, Err("timed out")),
            (Answer::Status(503), &none, Err("503")),
        ];
        for (i, (answer, validators, expected)) in cases.iter().enumerate() {
            let url = serve(*answer).await;
            let got = fetcher.fetch(&url, validators).await;
            match (expected, got) {
                (Ok(Some(length)), Ok(Fetched::Body { bytes, validators })) => {
                    assert_eq!(bytes.len(), *length, "case {i}");
                    assert_eq!(validators.etag.as_deref(), Some("\"v1\""), "case {i}");
                }
                (Ok(None), Ok(Fetched::NotModified)) => {}
                (Err(words), Err(error)) => {
                    assert!(error.contains(words), "case {i}: {error:?} lacks {words:?}")
                }
                (expected, got) => panic!("case {i}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("https://user:secret@mirror.example/all.zip"),
            "https://user:***@mirror.example/all.zip"
        );
        assert_eq!(
            redact("https://mirror.example/a"),
            "https://mirror.example/a"
        );
    }
}
