//! `infra/openapi.yaml`, the functions' route tables and `template.yaml`'s HTTP API describe the
//! same routes. (Every response the end-to-end suites receive is checked against the document by
//! the harness itself.)

use std::collections::BTreeSet;

use broker::api::route;
use broker_tests::contract::{Operation, contract, path_matches};
use broker_tests::{Backend, Broker};
use lambda_http::http::Method;

/// Every function's route table, as (method, pattern).
fn table_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    macro_rules! add {
        ($($f:ident),*) => {$(
            for r in $f::ROUTES {
                routes.insert((r.method.to_string(), r.path.to_string()));
            }
        )*};
    }
    add!(initiate, authorize, callback, complete, connections);
    routes
}

/// Which functions serve `method path` (exactly one should).
fn functions_serving(method: &Method, path: &str) -> Vec<&'static str> {
    let mut found = vec![];
    macro_rules! probe {
        ($($f:ident),*) => {$(
            if route::find($f::ROUTES, method, path).is_ok() {
                found.push(stringify!($f));
            }
        )*};
    }
    probe!(initiate, authorize, callback, complete, connections);
    found
}

fn concrete(op: &Operation) -> String {
    op.path
        .split('/')
        .map(|s| match s {
            "{connection_id}" => "conn_00000000000000000000000000000000",
            _ if s.starts_with('{') => "org-x",
            _ => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_operation_is_served_by_one_function_and_by_serve() {
    let broker = Broker::start(Backend::Embedded).await;
    let ops = contract().operations();
    assert!(ops.len() >= 11, "the document lists every route: {ops:?}");
    for op in &ops {
        let method: Method = op.method.parse().unwrap();
        let path = concrete(op);
        assert_eq!(
            functions_serving(&method, &path).len(),
            1,
            "{} {}: served by exactly one function",
            op.method,
            op.path
        );
        // Through `serve`'s router, unauthenticated: refused by the route, never "no such route".
        let resp = broker
            .http
            .request(method.as_str().parse().unwrap(), broker.url(&path))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        // API routes want a key; browser steps answer their own refusal (no flow, no session, a
        // JSON body where a form belongs), or the connect page's script, which needs nothing.
        let expected = match (op.method.as_str(), op.path.as_str()) {
            ("GET", "/v1/connect/connect.js") => 200,
            ("POST", "/v1/connect") => 415,
            (_, "/v1/connect") => 400,
            (_, p) if p.starts_with("/v1/oauth/") => 400,
            _ => 401,
        };
        assert_eq!(status, expected, "{} {}", op.method, op.path);
    }
}

#[test]
fn every_route_of_every_function_is_documented() {
    let ops = contract().operations();
    for (method, pattern) in table_routes() {
        let documented = ops.iter().any(|op| {
            op.method == method && op.path.trim_end_matches('/') == pattern.trim_end_matches('/')
        });
        assert!(
            documented,
            "{method} {pattern} is served but not in infra/openapi.yaml"
        );
    }
    assert_eq!(
        table_routes().len(),
        ops.len(),
        "one route per documented operation"
    );
}

#[test]
fn template_http_api_routes_are_the_documented_ones() {
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"))
            .expect("template.yaml");
    let route_key = regex_lite::Regex::new(r"(?m)^\s+RouteKey:\s+(\S+)\s+(\S+)\s*$").unwrap();
    let deployed: BTreeSet<(String, String)> = route_key
        .captures_iter(&template)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect();
    let documented: BTreeSet<(String, String)> = contract()
        .operations()
        .into_iter()
        .map(|op| (op.method, op.path))
        .collect();
    assert_eq!(
        deployed, documented,
        "template.yaml's routes and infra/openapi.yaml"
    );
    for (method, path) in &deployed {
        assert!(
            table_routes()
                .iter()
                .any(|(m, p)| m == method && path_matches(p, path)),
            "{method} {path}"
        );
    }
}
