//! Least privilege, checked: each function's policy in `template.yaml` grants exactly the AWS
//! actions its code calls (the `AWS_ACTIONS` list kept in each function's lib.rs), on the table or
//! the secret prefix it uses; and every route, run on the AWS backend with SDK clients that record
//! the IAM actions of each call, needs only actions its function lists, and needs every one of
//! them (KMS aside: Secrets Manager calls it under a customer key). A new call without a
//! permission fails here, and so does a grant the list does not name or no route needs.

use std::collections::BTreeSet;

use broker_tests::harness::{FAKE_DEFINITION, location};
use broker_tests::{Backend, Broker, Browser, query_of};
use serde_json::json;
use serde_norway::Value;

fn template() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"))
        .expect("template.yaml");
    serde_norway::from_str(&text).expect("template.yaml is YAML")
}

/// Every `Action` (with its `Resource`) under `value`, looking through CloudFormation tags such as
/// `!If`, whose branches are both possible policies.
fn statements(value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Mapping(map) => {
            if let Some(action) = map.get("Action") {
                let resource = map.get("Resource").cloned().unwrap_or(Value::Null);
                let actions: Vec<String> = match action {
                    Value::Sequence(seq) => seq
                        .iter()
                        .filter_map(|a| a.as_str().map(str::to_string))
                        .collect(),
                    Value::String(a) => vec![a.clone()],
                    other => panic!("unexpected Action {other:?}"),
                };
                for a in actions {
                    out.push((a, resource.clone()));
                }
            }
            for v in map.values() {
                statements(v, out);
            }
        }
        Value::Sequence(seq) => seq.iter().for_each(|v| statements(v, out)),
        Value::Tagged(tagged) => statements(&tagged.value, out),
        _ => {}
    }
}

fn text_of(resource: &Value) -> String {
    match resource {
        Value::Tagged(t) => format!("{} {}", t.tag, text_of(&t.value)),
        Value::String(s) => s.clone(),
        Value::Sequence(seq) => seq.iter().map(text_of).collect::<Vec<_>>().join(" "),
        other => format!("{other:?}"),
    }
}

/// The function resource built from `binary`.
fn policies_of(template: &Value, binary: &str) -> Vec<(String, Value)> {
    let resources = template["Resources"].as_mapping().expect("Resources");
    let function = resources
        .values()
        .find(|r| r["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
        .unwrap_or_else(|| panic!("no function builds {binary}"));
    let mut out = vec![];
    statements(&function["Properties"]["Policies"], &mut out);
    out
}

#[test]
fn each_function_is_granted_exactly_the_actions_its_code_calls() {
    let template = template();
    for (binary, code) in [
        ("broker-initiate", initiate::AWS_ACTIONS),
        ("broker-authorize", authorize::AWS_ACTIONS),
        ("broker-callback", callback::AWS_ACTIONS),
        ("broker-complete", complete::AWS_ACTIONS),
        ("broker-connections", connections::AWS_ACTIONS),
        ("broker-events", events::AWS_ACTIONS),
    ] {
        let granted = policies_of(&template, binary);
        let granted_actions: BTreeSet<&str> = granted.iter().map(|(a, _)| a.as_str()).collect();
        let mut called: BTreeSet<&str> = code.iter().copied().collect();
        // The event source mapping reads the stream with the events function's role.
        if binary == "broker-events" {
            called.extend(events::MAPPING_ACTIONS);
        }
        assert_eq!(
            granted_actions, called,
            "{binary}: template policy vs AWS_ACTIONS"
        );

        // and on the resources the code uses, never a wildcard
        for (action, resource) in &granted {
            let resource = text_of(resource);
            let expected = match action.split(':').next().unwrap() {
                _ if events::MAPPING_ACTIONS.contains(&action.as_str()) => "GetAtt Table.StreamArn",
                "dynamodb" => "GetAtt Table.Arn",
                "kms" => "Ref KmsKeyArn",
                "sqs" => "GetAtt EventsDeadLetters.Arn",
                _ if binary == "broker-events" => "${SecretPrefix}/webhooks/*",
                _ if action == "secretsmanager:GetSecretValue" => "${SecretPrefix}/apps/*",
                _ => "${SecretPrefix}/connections/*",
            };
            assert!(
                resource.contains(expected),
                "{binary}: {action} on {resource}, expected {expected}"
            );
        }
    }
}

/// Each function's hand-kept list, by binary.
fn listed(binary: &str) -> &'static [&'static str] {
    match binary {
        "broker-initiate" => initiate::AWS_ACTIONS,
        "broker-authorize" => authorize::AWS_ACTIONS,
        "broker-callback" => callback::AWS_ACTIONS,
        "broker-complete" => complete::AWS_ACTIONS,
        "broker-connections" => connections::AWS_ACTIONS,
        other => panic!("no function {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aws_action_a_route_needs_is_in_its_functions_list() {
    // Given a broker on the AWS backend whose SDK clients record the IAM actions of each call,
    // filed under the function that served the request
    // (app credentials read at every step, as a cold function reads them)
    let broker = Broker::start_with(Backend::Aws, &[("BROKER_APP_CACHE_SECS", "0")]).await;
    let ok = |status: u16, body: &serde_json::Value| assert!(status < 300, "{status} {body}");

    // When every route runs its success path once, one request at a time
    let consent = broker.initiate(&broker.initiate_body()).await;
    let mut browser = Browser::default();
    let callback = broker.through_provider(&mut browser, &consent).await;
    assert_eq!(browser.get(&callback).await.status().as_u16(), 303);

    let (_, state_token) = broker.authorized_personal_connection().await;
    let (status, body) = broker.complete_personal(&state_token).await;
    ok(status, &body);

    let org = &broker.org;
    let (status, started) = broker
        .post(
            &format!("/v1/organizations/{org}/knowledge/connectors/sources/authorize"),
            Some(&broker.key),
            &json!({ "slug": "fake", "redirect_url": broker.redirect_url, "workspace_id": "ws-1" }),
        )
        .await;
    ok(status, &started);
    let mut browser = Browser::default();
    let callback = broker
        .through_provider(&mut browser, started["authorization_url"].as_str().unwrap())
        .await;
    assert_eq!(browser.get(&callback).await.status().as_u16(), 303);
    let (status, body) = broker
        .post(
            &format!("/v1/organizations/{org}/knowledge/connectors/sources/oauth/callback"),
            Some(&broker.key),
            &json!({ "connection_id": started["connection_id"], "workspace_id": "ws-1",
                     "source_definition_id": FAKE_DEFINITION, "source_name": "CRM" }),
        )
        .await;
    ok(status, &body);

    let (status, body) = broker
        .post(
            &format!("/v1/organizations/{org}/knowledge/connectors/sources/oauth"),
            Some(&broker.key),
            &json!({ "source_definition_id": FAKE_DEFINITION, "workspace_id": "ws-1",
                     "redirect_url": broker.redirect_url }),
        )
        .await;
    ok(status, &body);

    let (status, body) = broker
        .post(
            "/v1/source_oauths/get_consent_url",
            Some(&broker.key),
            &json!({ "sourceDefinitionId": FAKE_DEFINITION, "workspaceId": "ws-1",
                     "redirectUrl": broker.redirect_url }),
        )
        .await;
    ok(status, &body);
    let resp = Browser::default()
        .get(body["consentUrl"].as_str().unwrap())
        .await;
    let query = query_of(&location(&resp));
    let (status, body) = broker
        .post(
            "/v1/source_oauths/complete_oauth",
            Some(&broker.key),
            &json!({ "sourceDefinitionId": FAKE_DEFINITION, "workspaceId": "ws-1",
                     "queryParams": { "code": query["code"], "state": query["state"] } }),
        )
        .await;
    ok(status, &body);
    assert_eq!(body["request_succeeded"], true, "{body}");

    // an import, and the same user's import again (a new version of its secret)
    for token in ["imported", "imported-again"] {
        let (status, body) = broker
            .post(
                "/v1/sources/user_connections/oauth/",
                Some(&broker.key),
                &json!({ "source": "fake", "identifier": "user-1", "access_token": token }),
            )
            .await;
        ok(status, &body);
    }

    // the connections routes: a listing, a read, a token read that refreshes
    let (connection_id, _) = broker.authorized_personal_connection().await;
    for path in [
        "/v1/connections?limit=5".to_string(),
        format!("/v1/connections/{connection_id}"),
        format!("/v1/connections/{connection_id}/token?force_refresh=true"),
    ] {
        let (status, body) = broker.get(&path, Some(&broker.key)).await;
        ok(status, &body);
    }
    assert_eq!(broker.provider.ledger().refreshes().len(), 1);
    // and its reconnect (a flow for the same connection), then its delete
    let (status, body) = broker
        .post(
            &format!("/v1/connections/{connection_id}/reconnect"),
            Some(&broker.key),
            &json!({ "redirect_url": broker.redirect_url }),
        )
        .await;
    ok(status, &body);
    // whose callback writes a new version of the connection's secret
    let mut browser = Browser::default();
    let callback = broker
        .through_provider(&mut browser, body["authorization_url"].as_str().unwrap())
        .await;
    assert_eq!(browser.get(&callback).await.status().as_u16(), 303);
    let (status, body) = broker.delete_connection(&connection_id).await;
    ok(status, &body);
    assert_eq!(body["provider_revocation"], "revoked");

    // and a connect session, its page, its form and its popup-mode result
    let (status, session) = broker
        .post(
            "/v1/connect/sessions",
            Some(&broker.key),
            &json!({"workspace_id": "ws", "end_user": {"id": "u"}, "origin": "http://127.0.0.1:1"}),
        )
        .await;
    ok(status, &session);
    let mut browser = Browser::default();
    let page = browser.get(session["connect_url"].as_str().unwrap()).await;
    assert_eq!(page.status().as_u16(), 200);
    let token = session["token"].as_str().unwrap();
    let started = browser
        .post_form(
            &broker.url("/v1/connect"),
            &[("session", token), ("provider", "fake")],
        )
        .await;
    assert_eq!(started.status().as_u16(), 303);
    let callback = broker
        .through_provider(&mut browser, &location(&started))
        .await;
    assert_eq!(browser.get(&callback).await.status().as_u16(), 200);

    // Then every action a function's handlers needed is in its list (which the test above holds
    // the template to): no call the deployed policy would refuse
    let observed = broker.aws_actions.lock().unwrap().clone();
    for binary in [
        "broker-initiate",
        "broker-authorize",
        "broker-callback",
        "broker-complete",
        "broker-connections",
    ] {
        let seen = observed.get(binary).cloned().unwrap_or_default();
        assert!(!seen.is_empty(), "{binary}: no AWS call observed");
        let list: BTreeSet<String> = listed(binary).iter().map(|a| a.to_string()).collect();
        let missing: Vec<&String> = seen.difference(&list).collect();
        assert!(
            missing.is_empty(),
            "{binary} calls {missing:?} but does not list them"
        );
        // and every action listed was needed: only KMS (called by Secrets Manager on the
        // function's behalf, under a customer key) is granted without being seen
        let unseen: Vec<&String> = list
            .difference(&seen)
            .filter(|a| !a.starts_with("kms:"))
            .collect();
        assert!(
            unseen.is_empty(),
            "{binary} lists {unseen:?}, which no route needed"
        );
    }
}

#[test]
fn a_wildcard_action_or_resource_would_be_caught() {
    let broad: Value = serde_norway::from_str(
        "Policies:\n  - Statement:\n      - Effect: Allow\n        Action: ['dynamodb:*']\n        Resource: '*'\n",
    )
    .unwrap();
    let mut out = vec![];
    statements(&broad["Policies"], &mut out);
    assert_eq!(out.len(), 1);
    assert!(!initiate::AWS_ACTIONS.contains(&out[0].0.as_str()));
    assert!(!text_of(&out[0].1).contains("Table.Arn"));
}

#[test]
fn template_keeps_the_promises_the_readme_makes() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["LoggingConfig"]["LogFormat"].as_str(), Some("JSON"));
    assert_eq!(
        t["Parameters"]["Architecture"]["Default"].as_str(),
        Some("arm64")
    );

    // Timeouts below API Gateway's 30 s; the steps that redeem codes above the 10 s exchange timeout
    let global_timeout = globals["Timeout"].as_u64().unwrap();
    for r in t["Resources"].as_mapping().unwrap().values() {
        let Some(binary) = r["Metadata"]["BuildProperties"]["Binary"].as_str() else {
            continue;
        };
        assert_eq!(
            r["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda")
        );
        let timeout = r["Properties"]["Timeout"]
            .as_u64()
            .unwrap_or(global_timeout);
        // The stream's function answers no HTTP request; the others answer API Gateway.
        if binary == "broker-events" {
            continue;
        }
        assert!(timeout < 30, "{binary}: {timeout} s");
        if matches!(binary, "broker-callback" | "broker-complete") {
            assert!(timeout > 10, "{binary} exchanges codes: {timeout} s");
        }
    }

    let table = &t["Resources"]["Table"]["Properties"];
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some("expires_at")
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        table["SSESpecification"]["SSEEnabled"].as_bool(),
        Some(true)
    );
    assert!(t["Outputs"]["ApiUrl"].is_mapping() && t["Outputs"]["CallbackUrl"].is_mapping());

    // Events: the table's stream with both images, read in order with partial batch failures,
    // what fails in a dead-letter queue that raises an alarm
    assert_eq!(
        table["StreamSpecification"]["StreamViewType"].as_str(),
        Some("NEW_AND_OLD_IMAGES")
    );
    let mapping = &t["Resources"]["EventsStreamMapping"]["Properties"];
    assert_eq!(
        mapping["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    assert_eq!(mapping["ParallelizationFactor"].as_u64(), Some(1));
    assert!(
        text_of(&mapping["DestinationConfig"]["OnFailure"]["Destination"])
            .contains("EventsDeadLetters")
    );
    let filter = mapping["FilterCriteria"]["Filters"][0]["Pattern"]
        .as_str()
        .unwrap();
    let filter: serde_json::Value = serde_json::from_str(filter).expect("a JSON filter");
    assert_eq!(filter["dynamodb"]["Keys"]["sk"]["S"][0], "CONN");
    assert!(
        text_of(&t["Resources"]["EventsDeadLettersAlarm"]["Properties"]["Dimensions"])
            .contains("EventsDeadLetters")
    );

    // Every parameter is documented in the README
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    for name in t["Parameters"].as_mapping().unwrap().keys() {
        let name = name.as_str().unwrap();
        assert!(
            readme.contains(&format!("`{name}`")),
            "README documents parameter {name}"
        );
    }
}

#[test]
fn listing_indexes_project_only_what_listing_filters_on() {
    // A refresh writes the expiry, the lease, the failure count and the refresh time: none may
    // be an index key or projected, or every refresh would write the index too (README, "Scale").
    let t = template();
    let all = t["Resources"]["Table"]["Properties"]["GlobalSecondaryIndexes"]
        .as_sequence()
        .expect("indexes");
    assert_eq!(all.len(), 3);
    // The keep-alive sweep's index is moved by a refresh on purpose: keys only, nothing projected
    let (sweep, indexes): (Vec<&Value>, Vec<&Value>) = all
        .iter()
        .partition(|i| i["IndexName"].as_str() == Some("gsi3"));
    assert_eq!(
        sweep[0]["Projection"]["ProjectionType"].as_str(),
        Some("KEYS_ONLY")
    );
    let refresh_written = [
        "token_expires_at",
        "refresh_lease",
        "refresh_failures",
        "refresh_retry_at",
        "last_refreshed_at",
        "version",
        "updated_at",
        "scopes",
        "metadata",
    ];
    for index in indexes {
        let projection = &index["Projection"];
        assert_eq!(projection["ProjectionType"].as_str(), Some("INCLUDE"));
        let projected: Vec<&str> = projection["NonKeyAttributes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(projected, broker::store::dynamodb::LIST_PROJECTION);
        for key in index["KeySchema"].as_sequence().unwrap() {
            let attr = key["AttributeName"].as_str().unwrap();
            assert!(attr.starts_with("gsi"), "{attr}");
        }
        assert!(projected.iter().all(|a| !refresh_written.contains(a)));
    }
}
