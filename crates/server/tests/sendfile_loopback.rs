//! The default `sendfile` setting (`auto`) for a client on loopback: the
//! blob arrives intact and copied, not by `sendfile`, while the same blob
//! to the same kind of client with `sendfile` on for everyone goes by
//! `sendfile`. A test binary of its own, so that the count of bytes sent
//! by `sendfile`, which is process-wide, is this test's alone.

mod support;

use berth_server::{Sendfile, ServerSettings};
use support::blob_http::{get, Server};

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn a_loopback_client_is_sent_blobs_by_copying_unless_sendfile_is_forced() {
    let data = support::pattern(21, 3 * MIB + 17);

    let automatic = Server::start_with(ServerSettings::default()).await;
    assert_eq!(ServerSettings::default().sendfile, Sendfile::Auto);
    let digest = automatic.push(&data).await;
    let before = berth_server::sendfile::bytes_sent();
    let mut connection = automatic.connect().await;
    let (status, body) = get(&mut connection, &format!("/v2/team/app/blobs/{digest}"), "").await;
    assert_eq!(status, 200);
    assert!(body == data, "the blob came back changed");
    assert_eq!(
        berth_server::sendfile::bytes_sent(),
        before,
        "a loopback client was sent bytes by sendfile"
    );

    let forced = Server::start().await;
    let digest = forced.push(&data).await;
    let mut connection = forced.connect().await;
    let (status, body) = get(&mut connection, &format!("/v2/team/app/blobs/{digest}"), "").await;
    assert_eq!(status, 200);
    assert!(body == data, "the blob came back changed");
    assert_eq!(
        berth_server::sendfile::bytes_sent() - before,
        data.len() as u64,
        "with sendfile on for every client, the blob goes by sendfile"
    );
}
