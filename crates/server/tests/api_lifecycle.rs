//! Image lifecycle through `app(state).oneshot(...)`: immutable-tag rules
//! added, listed and removed through the management API, and what they
//! refuse on `/v2/` (a push moving a tag, a tag or manifest deletion) and
//! on the API's own tag and image endpoints. Who may call the endpoints is
//! `api_matrix.rs`.

mod support;

use berth_meta::EventKind;
use support::{basic, Harness, PASSWORD};

fn admin() -> String {
    basic("root", PASSWORD)
}

fn rules(h: &serde_json::Value) -> Vec<(String, String)> {
    h["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("no rules in {h}"))
        .iter()
        .map(|rule| {
            (
                rule["scope"].as_str().unwrap().to_string(),
                rule["tags"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn immutable_tags_refuse_moves_and_deletions_until_their_rule_goes() {
    let h = Harness::new().await;
    let admin = admin();
    let first = h.push_image("pub/app", "v1.0", "first").await;
    h.push_image("pub/app", "latest", "first").await;

    // Rules: every `v*` tag of the namespace, and `stable` of one repository.
    for body in [
        r#"{"scope":"pub","tags":"v*"}"#,
        r#"{"scope":"pub/app","tags":"stable"}"#,
    ] {
        let answer = h
            .call("POST", "/api/v1/immutable-rules", Some(&admin), body)
            .await;
        assert_eq!(answer.status, 201, "{}", answer.text());
        assert_eq!(answer.json()["author"], "root");
    }
    let again = h
        .call(
            "POST",
            "/api/v1/immutable-rules",
            Some(&admin),
            r#"{"scope":"pub","tags":"v*"}"#,
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.text());
    again.assert_error("conflict", "the same rule again");
    for (body, field) in [
        (r#"{"scope":"pub","tags":"v[0-9]"}"#, "tags"),
        (r#"{"scope":"Pub","tags":"v*"}"#, "scope"),
    ] {
        let answer = h
            .call("POST", "/api/v1/immutable-rules", Some(&admin), body)
            .await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        assert!(answer.text().contains(field), "{}", answer.text());
    }
    let listed = h
        .call("GET", "/api/v1/immutable-rules", Some(&admin), "")
        .await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        rules(&listed.json()),
        vec![
            ("pub".to_string(), "v*".to_string()),
            ("pub/app".to_string(), "stable".to_string()),
        ]
    );
    // A user who is no member sees the public namespace's rules.
    let stranger = basic("stranger", PASSWORD);
    let seen = h
        .call("GET", "/api/v1/immutable-rules", Some(&stranger), "")
        .await;
    assert_eq!(rules(&seen.json()).len(), 2);

    // Pushing another image to `v1.0` is refused, naming the rule; the
    // same image again is fine, as is a new tag and a mutable one.
    let before = h.state.registry.last_event_position().await.unwrap();
    let second_manifest = {
        // `push_image` asserts success, so build the refused push by hand:
        // the blobs of a second image, then its manifest to `v1.0`.
        let second = h.push_image("pub/app", "second", "second").await;
        let answer = h
            .call(
                "GET",
                &format!("/v2/pub/app/manifests/{second}"),
                Some(&admin),
                "",
            )
            .await;
        assert_eq!(answer.status, 200);
        answer.body
    };
    let refused = h
        .send_raw(
            "PUT",
            "/v2/pub/app/manifests/v1.0",
            "application/vnd.oci.image.manifest.v1+json",
            second_manifest.clone(),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    let error = &refused.json()["errors"][0];
    assert_eq!(error["code"], "DENIED");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("v1.0") && message.contains("pub --tags v*"),
        "{message}"
    );
    let resolved = h
        .call("GET", "/v2/pub/app/manifests/v1.0", Some(&admin), "")
        .await;
    assert_eq!(resolved.header("docker-content-digest"), first);
    h.push_image("pub/app", "v1.0", "first").await;
    h.push_image("pub/app", "v2.0", "second").await;
    h.push_image("pub/app", "latest", "second").await;

    // Deleting: the tag through `/v2/` and the API, the image by digest.
    for (method, uri) in [
        ("DELETE", "/v2/pub/app/manifests/v1.0".to_string()),
        ("DELETE", format!("/v2/pub/app/manifests/{first}")),
    ] {
        let answer = h.call(method, &uri, Some(&admin), "").await;
        assert_eq!(answer.status, 403, "{uri}: {}", answer.text());
        assert_eq!(answer.json()["errors"][0]["code"], "DENIED");
    }
    for uri in [
        "/api/v1/repositories/pub%2Fapp/tags/v1.0".to_string(),
        format!("/api/v1/repositories/pub%2Fapp/images/{first}"),
    ] {
        let answer = h.call("DELETE", &uri, Some(&admin), "").await;
        assert_eq!(answer.status, 403, "{uri}: {}", answer.text());
        answer.assert_error("forbidden", &uri);
        assert_eq!(answer.json()["detail"]["immutable_rule"], "pub --tags v*");
        assert_eq!(answer.json()["detail"]["tag"], "v1.0");
    }
    // Tagging another image as `v1.0` through the API is a move too.
    let moved = h
        .call(
            "PUT",
            "/api/v1/repositories/pub%2Fapp/tags/v1.0",
            Some(&admin),
            r#"{"source_repository":"pub/app","source_reference":"second"}"#,
        )
        .await;
    assert_eq!(moved.status, 403, "{}", moved.text());
    // Deleting the whole namespace would take the tag with it: refused
    // before anything goes, whoever asks.
    let forced = h
        .call(
            "DELETE",
            "/api/v1/namespaces/pub?force=true",
            Some(&admin),
            "",
        )
        .await;
    assert_eq!(forced.status, 403, "{}", forced.text());
    forced.assert_error("forbidden", "a forced namespace deletion");
    assert_eq!(forced.json()["detail"]["tag"], "v1.0");
    let kinds: Vec<EventKind> = h
        .state
        .registry
        .read_events(&berth_meta::EventCursor::after(before), 1000)
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|event| event.kind)
        .collect();
    assert!(
        !kinds.contains(&EventKind::TagDeleted) && !kinds.contains(&EventKind::ManifestDeleted),
        "refusals change nothing: {kinds:?}"
    );

    // Once the rule is gone, the tag moves and goes.
    let removed = h
        .call(
            "DELETE",
            "/api/v1/immutable-rules/pub/v%2A",
            Some(&admin),
            "",
        )
        .await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    let missing = h
        .call(
            "DELETE",
            "/api/v1/immutable-rules/pub/v%2A",
            Some(&admin),
            "",
        )
        .await;
    assert_eq!(missing.status, 404);
    let moved = h
        .send_raw(
            "PUT",
            "/v2/pub/app/manifests/v1.0",
            "application/vnd.oci.image.manifest.v1+json",
            second_manifest,
        )
        .await;
    assert_eq!(moved.status, 201, "{}", moved.text());
    let deleted = h
        .call("DELETE", "/v2/pub/app/manifests/v1.0", Some(&admin), "")
        .await;
    assert_eq!(deleted.status, 202, "{}", deleted.text());
}

fn trash_entries(listing: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    listing["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries in {listing}"))
        .iter()
        .map(|entry| {
            let tags = entry["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
            (entry["digest"].as_str().unwrap().to_string(), tags)
        })
        .collect()
}

#[tokio::test]
async fn deleted_images_wait_in_the_trash_and_come_back_with_their_free_tags() {
    let h = Harness::new().await;
    let admin = admin();
    let first = h.push_image("pub/app", "v1", "first").await;
    h.push_image("pub/app", "latest", "first").await;
    let second = h.push_image("priv/app", "v1", "second").await;

    // Deleted by each path: the OCI API and the management API.
    let answer = h
        .call(
            "DELETE",
            &format!("/v2/pub/app/manifests/{first}"),
            Some(&admin),
            "",
        )
        .await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    let answer = h
        .call(
            "DELETE",
            &format!("/api/v1/repositories/priv%2Fapp/images/{second}"),
            Some(&admin),
            "",
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // Gone from `/v2/` at once.
    for uri in [
        format!("/v2/pub/app/manifests/{first}"),
        "/v2/pub/app/manifests/latest".to_string(),
    ] {
        for method in ["GET", "HEAD"] {
            let answer = h.call(method, &uri, Some(&admin), "").await;
            assert_eq!(answer.status, 404, "{method} {uri}");
        }
    }
    let tags = h
        .call("GET", "/v2/pub/app/tags/list", Some(&admin), "")
        .await;
    assert_eq!(tags.json()["tags"], serde_json::json!([]));
    let referrers = h
        .call(
            "GET",
            &format!("/v2/pub/app/referrers/{first}"),
            Some(&admin),
            "",
        )
        .await;
    assert_eq!(referrers.json()["manifests"], serde_json::json!([]));

    // Listed oldest first, a page at a time, and per namespace.
    let page = h
        .call("GET", "/api/v1/trash?limit=1", Some(&admin), "")
        .await;
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    assert_eq!(
        trash_entries(&page),
        vec![(first.clone(), vec!["latest".to_string(), "v1".to_string()])]
    );
    assert_eq!(page["entries"][0]["deleted_by"], "user:root");
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let rest = h
        .call(
            "GET",
            &format!("/api/v1/trash?limit=1&cursor={cursor}"),
            Some(&admin),
            "",
        )
        .await
        .json();
    assert_eq!(
        trash_entries(&rest),
        vec![(second.clone(), vec!["v1".to_string()])]
    );
    let only_priv = h
        .call("GET", "/api/v1/trash?namespace=priv", Some(&admin), "")
        .await
        .json();
    assert_eq!(trash_entries(&only_priv).len(), 1);
    // A user who may not see `priv` does not see its trash.
    let stranger = basic("stranger", PASSWORD);
    let theirs = h
        .call("GET", "/api/v1/trash", Some(&stranger), "")
        .await
        .json();
    assert_eq!(trash_entries(&theirs).len(), 1, "{theirs}");

    // `latest` is taken meanwhile; the restore reports it and gives back v1.
    let other = h.push_image("pub/app", "latest", "other").await;
    let restore = |digest: &str, repository: &str| {
        format!("/api/v1/repositories/{repository}/images/{digest}/restore")
    };
    let answer = h
        .call("POST", &restore(&first, "pub%2Fapp"), Some(&admin), "")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let restored = answer.json();
    assert_eq!(restored["tags"], serde_json::json!(["v1"]));
    assert_eq!(
        restored["conflicts"],
        serde_json::json!([{ "tag": "latest", "current": other }])
    );
    let back = h
        .call("GET", "/v2/pub/app/manifests/v1", Some(&admin), "")
        .await;
    assert_eq!(back.status, 200);
    assert_eq!(back.header("docker-content-digest"), first);
    // Restored once; a tag names nothing in the trash.
    let again = h
        .call("POST", &restore(&first, "pub%2Fapp"), Some(&admin), "")
        .await;
    assert_eq!(again.status, 404, "{}", again.text());
    let by_tag = h
        .call("POST", &restore("v1", "pub%2Fapp"), Some(&admin), "")
        .await;
    assert_eq!(by_tag.status, 400, "{}", by_tag.text());

    // Pushing the trashed image again brings it back with its new tag.
    h.push_image("priv/app", "again", "second").await;
    let back = h
        .call("GET", "/v2/priv/app/manifests/again", Some(&admin), "")
        .await;
    assert_eq!(back.header("docker-content-digest"), second);
    let empty = h
        .call("GET", "/api/v1/trash", Some(&admin), "")
        .await
        .json();
    assert_eq!(trash_entries(&empty), vec![]);

    let kinds: Vec<EventKind> = h
        .state
        .registry
        .read_events(&berth_meta::EventCursor::after(0), 1000)
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|event| event.kind)
        .filter(|kind| {
            matches!(
                kind,
                EventKind::ManifestTrashed | EventKind::ManifestRestored
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::ManifestTrashed,
            EventKind::ManifestTrashed,
            EventKind::ManifestRestored,
            EventKind::ManifestRestored,
        ]
    );
}

fn digests(items: &serde_json::Value) -> Vec<String> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {items}"))
        .iter()
        .map(|item| item["digest"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn retention_policies_are_set_run_and_removed() {
    let h = Harness::new().await;
    let admin = admin();
    for (tag, name) in [("a", "first"), ("b", "second"), ("c", "third")] {
        h.push_image("pub/app", tag, name).await;
    }
    let policy = "/api/v1/namespaces/pub/retention-policy";

    // Bad input is refused at the edge, naming the field.
    for (body, field) in [
        (r#"{"keep":1,"keep_tags":"("}"#, "keep_tags"),
        (r#"{"keep":1,"untagged":"sometimes"}"#, "untagged"),
        (r#"{"keep":-1}"#, "keep"),
        (r#"{"keep":1,"min_age":9223372036854775808}"#, "min_age"),
        (r#"{"keep":1,"colour":"red"}"#, "colour"),
    ] {
        let answer = h.call("PUT", policy, Some(&admin), body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        assert!(answer.text().contains(field), "{body}: {}", answer.text());
    }
    let none = h
        .call("POST", &format!("{policy}/run"), Some(&admin), "{}")
        .await;
    assert_eq!(none.status, 404, "{}", none.text());

    let set = h
        .call(
            "PUT",
            policy,
            Some(&admin),
            r#"{"keep":1,"untagged":"delete","keep_tags":"^c$"}"#,
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(set.json()["keep_tags"], "^c$");
    assert_eq!(set.json()["min_age"], 0);
    let listed = h
        .call("GET", "/api/v1/retention-policies", Some(&admin), "")
        .await
        .json();
    assert_eq!(listed["policies"][0]["namespace"], "pub");
    assert_eq!(listed["policies"][0]["untagged"], "delete");

    // The dry run lists what the run then removes: of a and b (c is kept by
    // its tag), the one ranked second.
    let dry = h
        .call(
            "POST",
            &format!("{policy}/run"),
            Some(&admin),
            r#"{"dry_run":true}"#,
        )
        .await;
    assert_eq!(dry.status, 200, "{}", dry.text());
    let dry = dry.json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["kept"], 2);
    let selected = digests(&dry["removed"]);
    assert_eq!(selected.len(), 1, "{dry}");
    assert_eq!(
        dry["removed"][0]["reason"],
        "not among the newest 1 tagged images"
    );
    assert!(dry["removed"][0]["created"].is_i64(), "{dry}");
    assert!(dry["removed"][0]["age"].is_i64(), "{dry}");
    let run = h
        .call(
            "POST",
            &format!("{policy}/run"),
            Some(&admin),
            r#"{"dry_run":false}"#,
        )
        .await
        .json();
    assert_eq!(digests(&run["removed"]), selected);
    let answer = h
        .call(
            "GET",
            &format!("/v2/pub/app/manifests/{}", selected[0]),
            Some(&admin),
            "",
        )
        .await;
    assert_eq!(answer.status, 404, "gone from /v2/");
    let trash = h
        .call("GET", "/api/v1/trash?namespace=pub", Some(&admin), "")
        .await
        .json();
    assert_eq!(trash["entries"][0]["digest"], selected[0].as_str());

    let removed = h.call("DELETE", policy, Some(&admin), "").await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    let again = h.call("DELETE", policy, Some(&admin), "").await;
    assert_eq!(again.status, 404, "{}", again.text());
    let kinds: Vec<EventKind> = h
        .state
        .registry
        .read_events(&berth_meta::EventCursor::after(0), 1000)
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|event| event.kind)
        .filter(|kind| {
            matches!(
                kind,
                EventKind::RetentionPolicySet | EventKind::RetentionPolicyRemoved
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::RetentionPolicySet,
            EventKind::RetentionPolicyRemoved
        ]
    );
}
