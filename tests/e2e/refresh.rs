//! Fresh tokens (DESIGN §4.5, §9.5) on both backends: a token inside the refresh margin is
//! refreshed exactly once however many callers ask, across processes; rotation is kept and a
//! rotated refresh token never sent twice; a dead holder's lease lapses; failures are classified.
//! Every assertion is on what the fake provider was asked and what the store holds.

use broker::connection::{
    Change, Connection, ConnectionStatus, Lease, TokenOwner, Transition, write_tokens,
};
use broker::provider::TokenSet;
use broker::secret::Sensitive;
use broker_tests::harness::FakeEntry;
use broker_tests::{Backend, Broker, Knobs, on_both_backends};
use std::sync::atomic::Ordering;

use futures_util::future::join_all;
use serde_json::Value;

on_both_backends!(
    fifty_concurrent_reads_inside_the_margin_refresh_once,
    reads_split_between_two_processes_refresh_once,
    forced_refreshes_chain_each_rotated_refresh_token_once,
    a_refresh_without_a_new_refresh_token_keeps_the_old_one,
    a_dead_holders_lease_lapses_and_the_next_caller_refreshes,
    invalid_grant_requires_reauthorization_and_stops_refreshing,
    refused_client_credentials_are_a_502_and_leave_the_status,
    a_failed_refresh_is_not_retried_for_thirty_seconds,
    an_early_refresh_that_fails_still_hands_out_the_valid_token,
    a_token_of_unknown_expiry_is_handed_out_as_is_until_forced,
    a_token_outside_the_margin_is_handed_out_without_a_provider_request,
    a_refresh_whose_vault_write_fails_keeps_the_new_tokens_sealed_until_written,
    a_declared_token_lifetime_dates_a_token_sent_without_expiry,
    a_refresh_that_cannot_start_releases_its_lease_at_once,
);

/// An authorized connection whose token the provider issued (the first in its ledger).
async fn connected(broker: &Broker) -> (String, String) {
    let (id, _) = broker.authorized_personal_connection().await;
    let issued = broker.provider.ledger().issued_tokens();
    (id, issued[0].clone())
}

/// The refresh token the provider issued with the connection's first tokens.
fn first_refresh_token(broker: &Broker) -> String {
    broker.provider.ledger().token_requests[0]
        .refresh_token
        .clone()
        .expect("a refresh token issued")
}

/// Moves the broker's clock to 100 s before the token's expiry: inside the 300 s margin, not
/// expired.
fn into_the_margin(broker: &Broker) {
    broker.app.clock.advance(3600 - 100);
}

async fn fifty_concurrent_reads_inside_the_margin_refresh_once(backend: Backend) {
    // Given a connection whose token expires within the margin
    let broker = Broker::start(backend).await;
    let (id, first) = connected(&broker).await;
    into_the_margin(&broker);

    // When 50 callers ask for its token at once
    let answers = join_all((0..50).map(|_| broker.token(&id, false))).await;

    // Then the provider saw one refresh, and every caller got the token it issued
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.refreshes().len(), 1, "one refresh for 50 callers");
    let refreshed = ledger.refreshes()[0].access_token.clone().expect("issued");
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["access_token"], refreshed.as_str());
    }
    assert_ne!(refreshed, first);
    assert!(broker.provider.accepts(&refreshed));
    let c = broker.connection(&id).await;
    assert_eq!((c.refresh_failures, c.refresh_lease), (0, None));
    assert!(c.last_refreshed_at.is_some());
}

async fn reads_split_between_two_processes_refresh_once(backend: Backend) {
    // Given a connection inside the margin and two broker processes over one store
    let broker = Broker::start(backend).await;
    let (id, _) = connected(&broker).await;
    let (second, _) = broker.second_process().await;
    into_the_margin(&broker);

    // When 25 callers ask each process at once
    let path = format!("/v1/connections/{id}/token");
    let answers = join_all((0..50).map(|i| {
        let base = if i % 2 == 0 {
            broker.base_url.clone()
        } else {
            second.clone()
        };
        let path = path.clone();
        let broker = &broker;
        async move { broker.get_at(&base, &path, Some(&broker.key)).await }
    }))
    .await;

    // Then one refresh happened in all, and both processes handed out its token
    let ledger = broker.provider.ledger();
    assert_eq!(
        ledger.refreshes().len(),
        1,
        "one refresh across two processes"
    );
    let refreshed = ledger.refreshes()[0].access_token.clone().unwrap();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["access_token"], refreshed.as_str());
    }
}

async fn forced_refreshes_chain_each_rotated_refresh_token_once(backend: Backend) {
    // Given a connection with a rotating refresh token
    let broker = Broker::start(backend).await;
    let (id, _) = connected(&broker).await;

    // When it is refreshed five times in a row
    for _ in 0..5 {
        let (status, body) = broker.token(&id, true).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("refresh_token").is_none(), "never handed out");
    }

    // Then each refresh presented the refresh token the previous answer issued, none twice,
    // and the provider never had cause to revoke the grant
    let ledger = broker.provider.ledger();
    let chain: Vec<&String> = ledger
        .token_requests
        .iter()
        .filter_map(|t| t.refresh_token.as_ref())
        .collect();
    let presented: Vec<&String> = ledger
        .refreshes()
        .iter()
        .map(|t| &t.form["refresh_token"])
        .collect();
    assert_eq!(presented.len(), 5);
    assert_eq!(
        presented,
        chain[..5].to_vec(),
        "each refresh uses the latest token"
    );
    assert_eq!(ledger.revoked_grants, 0);
    let last = ledger.issued_tokens().last().cloned().unwrap();
    assert!(broker.provider.accepts(&last));
    // and the vault holds the newest refresh token for the next one
    let c = broker.connection(&id).await;
    let doc = broker
        .read_secret(c.secret_id.as_deref().unwrap(), chain[5])
        .await;
    assert_eq!(doc["refresh_token"], chain[5].as_str());
}

async fn a_refresh_without_a_new_refresh_token_keeps_the_old_one(backend: Backend) {
    // Given a provider that does not rotate (Google, Dropbox): refresh answers carry no
    // refresh token
    let broker = Broker::start(backend).await;
    let (id, _) = connected(&broker).await;
    let original = first_refresh_token(&broker);
    broker.provider.set_knobs(Knobs {
        no_rotation: true,
        ..Knobs::default()
    });

    // When it is refreshed twice
    for _ in 0..2 {
        let (status, body) = broker.token(&id, true).await;
        assert_eq!(status, 200, "{body}");
    }

    // Then both refreshes presented the original refresh token, which the vault still holds
    let ledger = broker.provider.ledger();
    let presented: Vec<&String> = ledger
        .refreshes()
        .iter()
        .map(|t| &t.form["refresh_token"])
        .collect();
    assert_eq!(presented, [&original, &original]);
    let c = broker.connection(&id).await;
    let doc = broker
        .read_secret(c.secret_id.as_deref().unwrap(), &original)
        .await;
    assert_eq!(doc["refresh_token"], original.as_str());
}

async fn a_dead_holders_lease_lapses_and_the_next_caller_refreshes(backend: Backend) {
    // Given a connection inside the margin whose lease a holder took and then died with
    let broker = Broker::start(backend).await;
    let (id, _) = connected(&broker).await;
    into_the_margin(&broker);
    let c = broker.connection(&id).await;
    let now = broker.app.clock.now();
    let mut take = Transition::new(
        &c.organization_id,
        &c.id,
        ConnectionStatus::USABLE,
        c.status,
        now,
    );
    take.version = Some(c.version);
    take.change = Change {
        refresh_lease: Some(Lease {
            owner: "a-holder-that-died".into(),
            until: now + broker::connection::LEASE_SECS,
        }),
        ..Change::default()
    };
    broker.app.connections.transition(&take).await.unwrap();

    // When the lease's bound has passed and a caller asks
    broker.app.clock.advance(broker::connection::LEASE_SECS + 1);
    let (status, body) = broker.token(&id, false).await;

    // Then that caller took over and refreshed, once, and released the lease
    assert_eq!(status, 200, "{body}");
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.refreshes().len(), 1);
    assert_eq!(
        body["access_token"],
        ledger.refreshes()[0].access_token.clone().unwrap().as_str()
    );
    let after = broker.connection(&id).await;
    assert_eq!(after.refresh_lease, None);
    assert_eq!(
        after.version,
        c.version + 3,
        "dead lease, new lease, release"
    );
}

async fn invalid_grant_requires_reauthorization_and_stops_refreshing(backend: Backend) {
    // Given a connection inside the margin whose refresh token the provider no longer accepts
    let broker = Broker::start(backend).await;
    let (id, _) = connected(&broker).await;
    into_the_margin(&broker);
    broker.provider.set_knobs(Knobs {
        refresh_error: Some("invalid_grant".into()),
        ..Knobs::default()
    });

    // When callers ask, again and again
    let first = broker.token(&id, false).await;
    let second = broker.token(&id, true).await;

    // Then each gets 409 REAUTHORIZATION_REQUIRED, the connection says so, and only the first
    // asked the provider
    for (status, body) in [&first, &second] {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["error"]["code"], "REAUTHORIZATION_REQUIRED");
    }
    assert_eq!(broker.provider.ledger().refreshes().len(), 1);
    let c = broker.connection(&id).await;
    assert_eq!(c.status, ConnectionStatus::ReauthorizationRequired);
    let (_, got) = broker
        .get(&format!("/v1/connections/{id}"), Some(&broker.key))
        .await;
    assert_eq!(got["status"], "reauthorization_required");
}

async fn refused_client_credentials_are_a_502_and_leave_the_status(backend: Backend) {
    // Given a connection inside the margin and a provider that refuses the app's credentials
    let broker = Broker::start(backend).await;
    let (id, _) = connected(&broker).await;
    broker.app.clock.advance(3600 + 10);
    broker.provider.set_knobs(Knobs {
        refresh_error: Some("invalid_client".into()),
        ..Knobs::default()
    });

    // When a caller asks for the (expired) token
    let (status, body) = broker.token(&id, false).await;

    // Then it is a 502 naming the app credentials, and the connection keeps its status
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "CONNECTOR_OAUTH_FAILED");
    assert_eq!(body["error"]["details"]["provider_error"], "invalid_client");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("client credentials")
    );
    let c = broker.connection(&id).await;
    assert_eq!(c.status, ConnectionStatus::Authorized);
    assert_eq!(c.refresh_failures, 1);
}

async fn a_failed_refresh_is_not_retried_for_thirty_seconds(backend: Backend) {
    // Given an expired token and a provider answering 503 with an HTML page
    let broker = Broker::start(backend).await;
    let (id, _) = connected(&broker).await;
    broker.app.clock.advance(3600 + 10);
    broker.provider.set_knobs(Knobs {
        refresh_status: Some(503),
        ..Knobs::default()
    });

    // When callers ask now and again within 30 s
    let first = broker.token(&id, false).await;
    broker.app.clock.advance(20);
    let second = broker.token(&id, false).await;

    // Then both are 502, the failure is counted, and the provider was asked once
    for (status, body) in [&first, &second] {
        assert_eq!(*status, 502, "{body}");
        assert_eq!(body["error"]["code"], "CONNECTOR_OAUTH_FAILED");
        assert!(
            !body.to_string().contains("upstream trouble"),
            "no provider body"
        );
    }
    assert_eq!(broker.provider.ledger().refreshes().len(), 1);
    assert_eq!(broker.connection(&id).await.refresh_failures, 1);

    // And past the 30 s the next caller tries again, and succeeds once the provider is back
    broker.provider.set_knobs(Knobs::default());
    broker.app.clock.advance(11);
    let (status, body) = broker.token(&id, false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(broker.provider.ledger().refreshes().len(), 2);
    assert_eq!(broker.connection(&id).await.refresh_failures, 0);
}

async fn an_early_refresh_that_fails_still_hands_out_the_valid_token(backend: Backend) {
    // Given a token inside the margin (not expired) and a provider that is down
    let broker = Broker::start(backend).await;
    let (id, first) = connected(&broker).await;
    into_the_margin(&broker);
    broker.provider.set_knobs(Knobs {
        refresh_status: Some(500),
        ..Knobs::default()
    });

    // When a caller asks
    let (status, body) = broker.token(&id, false).await;

    // Then it gets the token that still works, and the failure is counted
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access_token"], first.as_str());
    assert_eq!(broker.provider.ledger().refreshes().len(), 1);
    assert_eq!(broker.connection(&id).await.refresh_failures, 1);
}

async fn a_token_of_unknown_expiry_is_handed_out_as_is_until_forced(backend: Backend) {
    // Given a provider whose token responses carry no expires_in
    let broker = Broker::start(backend).await;
    broker.provider.set_knobs(Knobs {
        omit_expires_in: true,
        ..Knobs::default()
    });
    let (id, first) = connected(&broker).await;

    // When callers ask, even much later
    broker.app.clock.advance(86_400);
    let (status, body) = broker.token(&id, false).await;

    // Then the token is handed out as is, with no expiry and no refresh
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access_token"], first.as_str());
    assert_eq!(body["expires_at"], Value::Null);
    assert!(broker.provider.ledger().refreshes().is_empty());

    // And a forced read refreshes it
    let (status, body) = broker.token(&id, true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(broker.provider.ledger().refreshes().len(), 1);
    assert_ne!(body["access_token"], first.as_str());
}

async fn a_token_outside_the_margin_is_handed_out_without_a_provider_request(backend: Backend) {
    // Given a fresh connection
    let broker = Broker::start(backend).await;
    let (id, first) = connected(&broker).await;

    // When it is read twice
    let a = broker.token(&id, false).await;
    let b = broker.token(&id, false).await;

    // Then both carry the issued token and its expiry, and the provider was not asked again
    for (status, body) in [&a, &b] {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["access_token"], first.as_str());
        assert_eq!(body["token_type"], "bearer", "RFC 6749's type, normalised");
        assert!(body["expires_at"].is_string());
        assert_eq!(body["connection_id"], id.as_str());
    }
    assert!(broker.provider.ledger().refreshes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_token_read_costs_one_request_with_the_document_cached_and_two_without() {
    // Given a connection, and a broker whose key cache knows the caller
    let broker = Broker::start(Backend::Aws).await;
    let (id, _) = connected(&broker).await;
    let (status, _) = broker
        .get(&format!("/v1/connections/{id}"), Some(&broker.key))
        .await;
    assert_eq!(status, 200);
    broker.aws_requests.take();

    // When the token is read the first time in this process, then again
    let (status, _) = broker.token(&id, false).await;
    assert_eq!(status, 200);
    let cold = broker.aws_requests.take();
    let (status, _) = broker.token(&id, false).await;
    assert_eq!(status, 200);
    let warm = broker.aws_requests.take();

    // Then the first read is the connection and its document; the second, the connection only
    assert_eq!(cold, ["DynamoDB:GetItem", "Secrets Manager:GetSecretValue"]);
    assert_eq!(warm, ["DynamoDB:GetItem"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_writes_nothing_the_listing_indexes_hold() {
    // Given a connection's item as DynamoDB holds it
    let broker = Broker::start(Backend::Aws).await;
    let (id, _) = connected(&broker).await;
    let indexed = || async {
        let sdk = broker::aws::sdk_config().await.unwrap();
        let item = aws_sdk_dynamodb::Client::new(&sdk)
            .get_item()
            .table_name(&broker.app.config.table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("CONN#{}#{id}", broker.org)),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S("CONN".into()),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        let mut kept: Vec<(String, String)> = ["gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]
            .iter()
            .chain(broker::store::dynamodb::LIST_PROJECTION)
            .map(|a| (a.to_string(), format!("{:?}", item.get(*a))))
            .collect();
        kept.sort();
        (kept, item.len())
    };
    let (before, _) = indexed().await;
    // (the index keys are there; a projected attribute may be absent, end_user_id outside sessions)
    assert!(
        before
            .iter()
            .filter(|(k, _)| k.starts_with("gsi"))
            .all(|(_, v)| v != "None"),
        "{before:?}"
    );

    // When it is refreshed (a lease taken, the result written, the lease released)
    let (status, _) = broker.token(&id, true).await;
    assert_eq!(status, 200);
    assert_eq!(broker.provider.ledger().refreshes().len(), 1);

    // Then every attribute the indexes key on or project is as it was: the refresh wrote no
    // index entry
    let (after, _) = indexed().await;
    assert_eq!(before, after);
}

async fn a_refresh_whose_vault_write_fails_keeps_the_new_tokens_sealed_until_written(
    backend: Backend,
) {
    // Given a connection inside the margin, and a vault that refuses writes from now on
    let broker = Broker::start(backend).await;
    let (id, _) = connected(&broker).await;
    let original = first_refresh_token(&broker);
    into_the_margin(&broker);
    broker.vault_write_fails.store(true, Ordering::SeqCst);

    // When a caller asks for the token: the provider rotates, the vault refuses the new document
    let (status, body) = broker.token(&id, false).await;

    // Then the caller still gets the new token, the connection carries the new document sealed
    // (not in clear), and the vault still holds the old one
    assert_eq!(status, 200, "{body}");
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.refreshes().len(), 1);
    let rotated = ledger.refreshes()[0].refresh_token.clone().unwrap();
    assert_eq!(
        body["access_token"],
        ledger.refreshes()[0].access_token.clone().unwrap().as_str()
    );
    let c = broker.connection(&id).await;
    let sealed = c.sealed_document.clone().expect("kept sealed");
    assert!(!sealed.contains(&rotated) && !sealed.contains("refresh_token"));
    let secret_id = c.secret_id.clone().unwrap();
    let stored = broker.read_secret(&secret_id, &rotated).await;
    assert_eq!(
        stored["refresh_token"],
        original.as_str(),
        "not written yet"
    );

    // And while the vault still refuses, reads hand out the same token without a new refresh
    let (status, again) = broker.token(&id, false).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["access_token"], body["access_token"]);
    assert_eq!(broker.provider.ledger().refreshes().len(), 1);

    // When the vault is back, the next read writes the sealed document and drops it
    broker.vault_write_fails.store(false, Ordering::SeqCst);
    let (status, after) = broker.token(&id, false).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["access_token"], body["access_token"]);
    let c = broker.connection(&id).await;
    assert_eq!(c.sealed_document, None);
    let stored = broker.read_secret(&secret_id, &rotated).await;
    assert_eq!(stored["refresh_token"], rotated.as_str());

    // and the next refresh presents the rotated refresh token: the grant is intact
    let (status, _) = broker.token(&id, true).await;
    assert_eq!(status, 200);
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.refreshes().len(), 2);
    assert_eq!(ledger.refreshes()[1].form["refresh_token"], rotated);
    assert_eq!(ledger.revoked_grants, 0);
}

async fn a_declared_token_lifetime_dates_a_token_sent_without_expiry(backend: Backend) {
    // Given an entry that declares a one-hour token lifetime (as Salesforce's session), and a
    // provider that sends no expires_in
    let entry = FakeEntry {
        keys: &[("token_lifetime_secs", "3600")],
        tables: "",
    };
    let broker = Broker::start_custom(backend, &[], &entry).await;
    broker.provider.set_knobs(Knobs {
        omit_expires_in: true,
        ..Knobs::default()
    });
    let (id, first) = connected(&broker).await;

    // When the token is read now, and again inside the margin of the declared hour
    let (status, now) = broker.token(&id, false).await;
    into_the_margin(&broker);
    let (_, later) = broker.token(&id, false).await;

    // Then it carried an expiry counted from issue, and was refreshed when that came near
    assert_eq!(status, 200, "{now}");
    assert_eq!(now["access_token"], first.as_str());
    assert!(now["expires_at"].is_string(), "{now}");
    assert_eq!(broker.provider.ledger().refreshes().len(), 1);
    assert_ne!(later["access_token"], first.as_str());
}

async fn a_refresh_that_cannot_start_releases_its_lease_at_once(backend: Backend) {
    // Given a connection inside the margin whose provider has since left the catalog (made
    // through the ports, with its token document in the vault)
    let broker = Broker::start(backend).await;
    let now = broker.app.clock.now();
    let mut c = Connection::new(
        &broker.org,
        None,
        7,
        "retired-provider",
        ConnectionStatus::Active,
        now,
    );
    c.token_expires_at = Some(now + 60);
    broker.app.connections.create_connection(&c).await.unwrap();
    let tokens = TokenSet {
        access_token: Sensitive::new("at-of-a-retired-provider".into()),
        refresh_token: Some(Sensitive::new("rt-of-a-retired-provider".into())),
        token_type: "bearer".into(),
        expires_at: c.token_expires_at,
        scope: None,
        refresh_token_expires_at: None,
        provider: c.provider.clone(),
        metadata: Default::default(),
    };
    write_tokens(
        broker.app.vault.as_ref(),
        &broker.app.config.secret_prefix,
        TokenOwner::of(&c),
        &tokens,
        "test",
    )
    .await
    .unwrap();

    // When two callers ask in turn
    let first = broker.token(&c.id, false).await;
    let second = broker.token(&c.id, false).await;

    // Then both are refused at once, and no lease is left behind to hold others
    for (status, body) in [&first, &second] {
        assert_eq!(*status, 404, "{body}");
        assert_eq!(body["error"]["code"], "NOT_FOUND");
    }
    assert!(broker.provider.ledger().token_requests.is_empty());
    let after = broker.connection(&c.id).await;
    assert_eq!(after.refresh_lease, None);
    assert_eq!(after.version, 4, "two leases taken and released");
}
