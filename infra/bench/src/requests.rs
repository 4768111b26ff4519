//! AWS requests per step: each route driven once over HTTP on the AWS backend (moto, named by
//! `AWS_ENDPOINT_URL`) in a warm process, with every request the SDK clients sent counted by the
//! tests' interceptor. A round trip to DynamoDB or Secrets Manager costs milliseconds in a Lambda
//! where the CPU figures above are microseconds, so the count is the figure that matters there.

use broker_tests::harness::location;
use broker_tests::{Backend, Broker, Browser, query_of};

use crate::report::Table;

/// What the callback may cost (issue 11): consume, organization, vault write, one transaction.
const CALLBACK_BUDGET: usize = 4;

pub async fn run(table: &mut Table) {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        panic!("the AWS request counts need moto in AWS_ENDPOINT_URL: ./infra/benchmark starts it");
    }
    let broker = Broker::start(Backend::Aws).await;
    // Warm: app credentials cached and the sealing key loaded, as in a Lambda past its first call.
    let (warm_id, _) = broker.authorized_personal_connection().await;
    let (browser, callback) = broker.flow_at_provider().await;
    let mut browser = browser;
    assert_eq!(browser.get(&callback).await.status().as_u16(), 303);
    assert_eq!(broker.token(&warm_id, false).await.0, 200);

    let mut step = |name: &str, budget: Option<usize>| {
        let sent = broker.aws_requests.take();
        table.row(
            &format!("AWS requests, {name} (moto)"),
            format!("{}: {}", sent.len(), summary(&sent)),
            &budget.map(|b| format!("<= {b}")).unwrap_or_default(),
            budget.map(|b| sent.len() <= b),
        );
    };

    broker.aws_requests.take();
    let consent = broker.initiate(&broker.initiate_body()).await;
    step("initiate (initiateOAuth)", None);

    let mut browser = Browser::default();
    let resp = browser.get(&consent).await;
    assert_eq!(resp.status().as_u16(), 302, "authorize");
    step("authorize", None);

    let at_provider = browser.get(&location(&resp)).await;
    broker.aws_requests.take();
    let landed = browser.get(&location(&at_provider)).await;
    assert_eq!(landed.status().as_u16(), 303, "callback");
    step("callback", Some(CALLBACK_BUDGET));

    let (status, started) = broker.start_personal().await;
    assert_eq!(status, 200, "{started}");
    let url = started["authorization_url"].as_str().unwrap();
    let landed = broker.land_from(url).await;
    let params = query_of(&location(&landed));
    broker.aws_requests.take();
    let (status, _) = broker.complete_personal(&params["state_token"]).await;
    assert_eq!(status, 200, "complete");
    step("complete (personal)", None);

    let id = &params["connection_id"];
    assert_eq!(broker.token(id, false).await.0, 200);
    broker.aws_requests.take();
    assert_eq!(broker.token(id, false).await.0, 200);
    step("token read, no refresh", None);

    assert_eq!(broker.token(id, true).await.0, 200);
    step("token read, forced refresh", None);

    assert_eq!(
        broker.get("/v1/connections", Some(&broker.key)).await.0,
        200
    );
    step("list connections", None);

    let path = format!("/v1/connections/{id}");
    assert_eq!(broker.get(&path, Some(&broker.key)).await.0, 200);
    step("read a connection", None);

    assert_eq!(broker.delete_connection(id).await.0, 200);
    step("delete a connection (revoked at the provider)", None);
}

/// `DynamoDB:GetItem, Secrets Manager:GetSecretValue x2, ...` in order, repeats folded.
fn summary(sent: &[String]) -> String {
    let mut parts: Vec<(String, usize)> = vec![];
    for op in sent {
        match parts.last_mut() {
            Some((last, n)) if last == op => *n += 1,
            _ => parts.push((op.clone(), 1)),
        }
    }
    let parts: Vec<String> = parts
        .into_iter()
        .map(|(op, n)| if n == 1 { op } else { format!("{op} x{n}") })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}
