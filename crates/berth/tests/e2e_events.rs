//! End to end: the event stream of a real server, read by `berth events
//! tail` on the same data directory while the server runs, after pushes by
//! a real client (`oci-client`, in process, so this test never skips).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use serde_json::Value;

use support::oci::{random_bytes, tar_archive};
use support::{berth_binary, TestRegistry};

/// Pushes a one-layer image to `ADDR/events/app:TAG`.
async fn push(addr: &str, tag: &str) {
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let image = format!("{addr}/events/app:{tag}").parse().unwrap();
    let layers = vec![ImageLayer::oci_v1(
        tar_archive(&[("file", &random_bytes(1024))]),
        None,
    )];
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layers[0].sha256_digest()]},
    });
    let config = Config::oci_v1(serde_json::to_vec(&config).unwrap(), None);
    client
        .push(&image, &layers, config, &RegistryAuth::Anonymous, None)
        .await
        .expect("push");
}

/// Runs `berth events tail --data-dir DIR ARGS` to completion and returns
/// its standard output's lines.
fn tail(dir: &Path, args: &[&str]) -> Vec<String> {
    let output = Command::new(berth_binary())
        .args(["events", "tail", "--data-dir"])
        .arg(dir)
        .args(args)
        .output()
        .expect("berth events tail runs");
    assert!(
        output.status.success(),
        "berth events tail {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `tail` with `-o json`, each line parsed.
fn tail_json(dir: &Path, args: &[&str]) -> Vec<Value> {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    tail(dir, &args)
        .iter()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn events_tail_sees_a_push_made_with_a_real_client() {
    let registry = TestRegistry::start();
    let Some(dir) = registry.data_dir.as_ref().map(|d| d.path().to_path_buf()) else {
        support::record_skip(
            "events_tail_sees_a_push_made_with_a_real_client",
            "BERTH_E2E_REGISTRY points at a registry whose database is elsewhere",
        );
        return;
    };
    push(&registry.addr, "v1").await;

    // Everything, from the start of the stream.
    let events = tail_json(&dir, &["--since", "0"]);
    let seen = kinds(&events);
    assert_eq!(&seen[..2], ["namespace.created", "repository.created"]);
    // The config and the layer were uploaded and linked, then the manifest
    // stored and its tag moved.
    assert_eq!(seen.iter().filter(|k| **k == "upload.finished").count(), 2);
    assert_eq!(seen.iter().filter(|k| **k == "blob.linked").count(), 2);
    assert_eq!(&seen[seen.len() - 2..], ["manifest.stored", "tag.moved"]);
    let moved = events.last().unwrap();
    assert_eq!(moved["repository"], "events/app");
    assert_eq!(moved["namespace"], "events");
    assert_eq!(moved["tag"], "v1");
    assert_eq!(moved["detail"]["previous"], Value::Null);
    assert_eq!(moved["actor"]["kind"], "anonymous");
    assert_eq!(moved["actor"]["address"], "127.0.0.1");
    let positions: Vec<i64> = events
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));

    // By time, and in the text form for people.
    assert_eq!(tail_json(&dir, &["--since", "1h"]).len(), events.len());
    let text = tail(&dir, &[]);
    assert!(text
        .last()
        .unwrap()
        .contains("tag.moved anonymous@127.0.0.1 events/app:v1@sha256:"));

    // A durable consumer starts where it stopped.
    let first = tail_json(&dir, &["--consumer", "ci"]);
    assert_eq!(first.len(), events.len());
    assert!(tail_json(&dir, &["--consumer", "ci"]).is_empty());
    push(&registry.addr, "v2").await;
    let next = tail_json(&dir, &["--consumer", "ci"]);
    assert!(next
        .iter()
        .all(|e| e["position"].as_i64().unwrap() > *positions.last().unwrap()));
    assert_eq!(next.last().unwrap()["tag"], "v2");
    assert!(!kinds(&next).contains(&"repository.created"));

    // Following: a new push shows up while tail runs, until it is stopped.
    let mut follower = Command::new(berth_binary())
        .args(["events", "tail", "--follow", "-o", "json", "--data-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("berth events tail --follow starts");
    let stdout = follower.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    push(&registry.addr, "v3").await;
    let mut followed = Vec::new();
    while let Ok(line) = received.recv_timeout(Duration::from_secs(30)) {
        let event: Value = serde_json::from_str(&line).unwrap();
        let done = event["kind"] == "tag.moved" && event["tag"] == "v3";
        followed.push(event);
        if done {
            break;
        }
    }
    assert_eq!(followed.last().map(|e| e["tag"].clone()), Some("v3".into()));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(follower.id().to_string())
        .status();
    let status = follower.wait().unwrap();
    assert!(
        status.success(),
        "tail --follow ends cleanly on SIGTERM: {status:?}"
    );
    reader.join().unwrap();
}
