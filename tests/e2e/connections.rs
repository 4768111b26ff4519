//! Reading connections (DESIGN §4.5) on both backends: listing from an index a page at a time,
//! filters, a cursor bound to its organization and filters, workspace-limited keys, and another
//! organization's connections that do not exist for the caller. No body carries a token.

use std::collections::BTreeSet;

use broker::connection::{Connection, ConnectionStatus};
use broker_tests::{Backend, Broker, on_both_backends};
use serde_json::Value;

on_both_backends!(
    a_listing_pages_newest_first_through_every_connection_once,
    filters_narrow_the_listing,
    a_cursor_opens_only_for_its_organization_and_filters,
    a_workspace_limited_key_sees_only_its_workspaces,
    another_organizations_connection_does_not_exist_on_any_route,
    no_listing_or_read_carries_a_token,
    brokerctl_reads_connections_through_the_same_core,
);

/// 120 connections of the broker's organization: even ones in `ws-a`, odd ones in `ws-b`;
/// every third from provider `other`; every fourth active. Created one second apart, the last
/// newest. Returns them newest first.
async fn seed(broker: &Broker) -> Vec<Connection> {
    let start = broker.app.clock.now() - 1_000;
    let mut made = vec![];
    for i in 0..120 {
        let c = Connection::new(
            &broker.org,
            Some(if i % 2 == 0 { "ws-a" } else { "ws-b" }.to_string()),
            7,
            if i % 3 == 0 { "other" } else { "fake" },
            if i % 4 == 0 {
                ConnectionStatus::Active
            } else {
                ConnectionStatus::Authorized
            },
            start + i,
        );
        broker.app.connections.create_connection(&c).await.unwrap();
        made.push(c);
    }
    made.reverse();
    made
}

/// Every page of `GET /v1/connections?{query}` with `key`: the ids in order, and the page sizes.
async fn all_pages(broker: &Broker, key: &str, query: &str) -> (Vec<String>, Vec<usize>) {
    let (mut ids, mut sizes, mut cursor) = (vec![], vec![], None::<String>);
    loop {
        let mut path = format!("/v1/connections?{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = broker.get(&path, Some(key)).await;
        assert_eq!(status, 200, "{path}: {body}");
        let page = body["connections"].as_array().unwrap();
        sizes.push(page.len());
        ids.extend(page.iter().map(|c| c["id"].as_str().unwrap().to_string()));
        match &body["next_cursor"] {
            Value::String(next) => cursor = Some(next.clone()),
            _ => return (ids, sizes),
        }
        assert!(sizes.len() < 20, "the listing never ends");
    }
}

/// Which seeded connections a listing should show.
type Keep = Box<dyn Fn(&Connection) -> bool>;

fn ids_of(connections: &[Connection], keep: impl Fn(&Connection) -> bool) -> Vec<String> {
    connections
        .iter()
        .filter(|c| keep(c))
        .map(|c| c.id.to_string())
        .collect()
}

async fn a_listing_pages_newest_first_through_every_connection_once(backend: Backend) {
    // Given 120 connections in two workspaces
    let broker = Broker::start(backend).await;
    let seeded = seed(&broker).await;

    // When the platform pages through them 50 at a time
    let (ids, sizes) = all_pages(&broker, &broker.key, "limit=50").await;

    // Then it sees each once, newest first, in pages of 50, 50 and 20
    assert_eq!(sizes, [50, 50, 20]);
    assert_eq!(ids, ids_of(&seeded, |_| true));
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 120);

    // and the default page is 50, and a limit outside 1..=100 is refused
    let (_, body) = broker.get("/v1/connections", Some(&broker.key)).await;
    assert_eq!(body["connections"].as_array().unwrap().len(), 50);
    for bad in ["limit=0", "limit=101", "limit=many", "status=sleeping"] {
        let (status, body) = broker
            .get(&format!("/v1/connections?{bad}"), Some(&broker.key))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    }
}

async fn filters_narrow_the_listing(backend: Backend) {
    // Given 120 connections
    let broker = Broker::start(backend).await;
    let seeded = seed(&broker).await;

    // When the platform lists by workspace, provider, status and all three
    let cases: [(&str, Keep); 4] = [
        (
            "workspace_id=ws-a",
            Box::new(|c| c.workspace_id.as_deref() == Some("ws-a")),
        ),
        ("provider=other", Box::new(|c| c.provider == "other")),
        (
            "status=active",
            Box::new(|c| c.status == ConnectionStatus::Active),
        ),
        (
            "workspace_id=ws-b&provider=fake&status=authorized",
            Box::new(|c| {
                c.workspace_id.as_deref() == Some("ws-b")
                    && c.provider == "fake"
                    && c.status == ConnectionStatus::Authorized
            }),
        ),
    ];
    for (query, keep) in cases {
        // Then each page holds exactly the matching connections, newest first
        let (ids, _) = all_pages(&broker, &broker.key, &format!("{query}&limit=7")).await;
        assert_eq!(ids, ids_of(&seeded, keep), "{query}");
    }
}

async fn a_cursor_opens_only_for_its_organization_and_filters(backend: Backend) {
    // Given a cursor from the first page of a filtered listing
    let broker = Broker::start(backend).await;
    seed(&broker).await;
    let (_, first) = broker
        .get(
            "/v1/connections?workspace_id=ws-a&limit=10",
            Some(&broker.key),
        )
        .await;
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let (other_org, other_key) = broker.other_org().await;
    assert_ne!(other_org, broker.org);

    // When it is replayed with other filters, by another organization, or edited
    let mut edited = cursor.clone();
    let last = edited.pop().unwrap();
    edited.push(if last == 'A' { 'B' } else { 'A' });
    let attempts = [
        (
            broker.key.as_str(),
            format!("workspace_id=ws-b&cursor={cursor}"),
        ),
        (broker.key.as_str(), format!("cursor={cursor}")),
        (
            other_key.as_str(),
            format!("workspace_id=ws-a&cursor={cursor}"),
        ),
        (
            broker.key.as_str(),
            format!("workspace_id=ws-a&cursor={edited}"),
        ),
        (
            broker.key.as_str(),
            "workspace_id=ws-a&cursor=bm90LWEtY3Vyc29y".to_string(),
        ),
    ];

    // Then each is refused, and the cursor still works where it was issued
    for (key, query) in attempts {
        let (status, body) = broker
            .get(&format!("/v1/connections?{query}"), Some(key))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["details"]["field"], "cursor");
    }
    let (status, body) = broker
        .get(
            &format!("/v1/connections?workspace_id=ws-a&limit=10&cursor={cursor}"),
            Some(&broker.key),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connections"].as_array().unwrap().len(), 10);
}

async fn a_workspace_limited_key_sees_only_its_workspaces(backend: Backend) {
    // Given 120 connections and a key limited to ws-a
    let broker = Broker::start(backend).await;
    let seeded = seed(&broker).await;
    let limited = broker
        .admin
        .key_create(&broker.org, 9, vec!["ws-a".into()], vec![])
        .await
        .unwrap();

    // When it lists without a workspace, and names its own or another
    let (all, _) = all_pages(&broker, &limited, "limit=100").await;
    let (own, _) = all_pages(&broker, &limited, "workspace_id=ws-a&limit=100").await;
    let (status, body) = broker
        .get("/v1/connections?workspace_id=ws-b", Some(&limited))
        .await;

    // Then it sees ws-a's connections only, and another workspace is forbidden
    let in_a = ids_of(&seeded, |c| c.workspace_id.as_deref() == Some("ws-a"));
    assert_eq!(all, in_a);
    assert_eq!(own, in_a);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "FORBIDDEN");

    // and reading one of ws-b's connections directly is forbidden too
    let in_b = ids_of(&seeded, |c| c.workspace_id.as_deref() == Some("ws-b"));
    let (status, _) = broker
        .get(&format!("/v1/connections/{}", in_b[0]), Some(&limited))
        .await;
    assert_eq!(status, 403);
    let (status, _) = broker
        .get(&format!("/v1/connections/{}", in_a[0]), Some(&limited))
        .await;
    assert_eq!(status, 200);
}

async fn another_organizations_connection_does_not_exist_on_any_route(backend: Backend) {
    // Given an authorized connection and another organization's key
    let broker = Broker::start(backend).await;
    let (id, _) = broker.authorized_personal_connection().await;
    let (_, other_key) = broker.other_org().await;

    // When the other organization reads it, its token, or lists
    let got = broker
        .get(&format!("/v1/connections/{id}"), Some(&other_key))
        .await;
    let token = broker
        .get(&format!("/v1/connections/{id}/token"), Some(&other_key))
        .await;
    let (_, listed) = broker.get("/v1/connections", Some(&other_key)).await;

    // Then the connection does not exist for it, and no refresh or read reached the provider
    for (status, body) in [&got, &token] {
        assert_eq!(*status, 404, "{body}");
        assert_eq!(body["error"]["code"], "NOT_FOUND");
    }
    assert_eq!(listed["connections"], serde_json::json!([]));
    assert!(broker.provider.ledger().refreshes().is_empty());

    // and without a key, nothing at all
    let (status, _) = broker.get(&format!("/v1/connections/{id}"), None).await;
    assert_eq!(status, 401);
}

async fn no_listing_or_read_carries_a_token(backend: Backend) {
    // Given an authorized connection whose tokens the provider issued
    let broker = Broker::start(backend).await;
    let (id, _) = broker.authorized_personal_connection().await;
    let issued = broker.provider.ledger().token_requests[0].clone();
    let (access, refresh) = (issued.access_token.unwrap(), issued.refresh_token.unwrap());

    // When the platform lists and reads it
    let (_, listed) = broker.get("/v1/connections", Some(&broker.key)).await;
    let (_, got) = broker
        .get(&format!("/v1/connections/{id}"), Some(&broker.key))
        .await;
    let (_, token) = broker.token(&id, false).await;

    // Then neither carries a token, the read shows what was granted, and even the token route
    // never carries the refresh token
    for body in [&listed, &got] {
        let text = body.to_string();
        assert!(
            !text.contains(&access) && !text.contains(&refresh),
            "{text}"
        );
    }
    assert_eq!(listed["connections"][0]["id"], id.as_str());
    assert_eq!(got["status"], "authorized");
    assert_eq!(got["scopes"], serde_json::json!(["read"]));
    assert_eq!(got["requested_scopes"], serde_json::json!(["read"]));
    assert_eq!(got["refresh_failures"], 0);
    assert!(got["token_expires_at"].is_string());
    assert!(!token.to_string().contains(&refresh));
    assert_eq!(token["access_token"], access.as_str());
}

async fn brokerctl_reads_connections_through_the_same_core(backend: Backend) {
    // Given an authorized connection
    let broker = Broker::start(backend).await;
    let (id, _) = broker.authorized_personal_connection().await;
    let access = broker.provider.ledger().issued_tokens()[0].clone();

    // When the operator lists, shows and reads its token from the command line's core
    let listed = broker
        .admin
        .connections_list(brokerctl::admin::ListArgs {
            org: broker.org.clone(),
            filters: Default::default(),
            json: false,
        })
        .await
        .unwrap();
    let shown = broker
        .admin
        .connections_show(&broker.org, &id)
        .await
        .unwrap();
    let token = broker
        .admin
        .connections_token(&broker.org, &id, false)
        .await
        .unwrap();
    let missing = broker
        .admin
        .connections_show(&broker.org, "conn_00000000000000000000000000000000")
        .await;

    // Then it sees what the API shows
    let row = listed.lines().nth(1).expect("a row under the header");
    assert!(
        row.starts_with(&id) && row.contains("authorized"),
        "{listed}"
    );
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["id"], id.as_str());
    let token: Value = serde_json::from_str(&token).unwrap();
    assert_eq!(token["access_token"], access.as_str());
    assert!(matches!(missing, Err(broker::Error::NotFound(_))));
}
