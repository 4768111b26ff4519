//! Step 2, `authorize` (browser): bind the flow to this browser and send it to the provider. Also
//! the hosted connect page (DESIGN §4.8): a session's provider picker, the form that starts its
//! flow, and the frontend's script.

use std::collections::BTreeMap;

use broker::api::{self, Call, Function, Route};
use broker::{App, Error, Result, connect, flow};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, Response};

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Authorize,
    ConnectPage,
    ConnectStart,
    ConnectScript,
}

/// The AWS actions this function's code calls (binding the flow; a connect session read, and its
/// flow, connection and organization; provider app credentials). `tests/e2e/iam.rs` holds its
/// policy in `template.yaml` to exactly this list.
pub const AWS_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "secretsmanager:GetSecretValue",
    "kms:Decrypt",
];

pub const ROUTES: &[Route<Op>] = &[
    Route::browser(Method::GET, "/v1/oauth/authorize", Op::Authorize),
    Route::browser(Method::GET, "/v1/connect", Op::ConnectPage),
    Route::browser(Method::POST, "/v1/connect", Op::ConnectStart),
    Route::browser(Method::GET, "/v1/connect/connect.js", Op::ConnectScript),
];

const FUNCTION: Function<Op> = Function {
    name: "authorize",
    routes: ROUTES,
};

/// Fields a connect form may carry: the session, the provider, and its inputs.
const MAX_FORM_FIELDS: usize = 32;

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    api::handle(app, req, &FUNCTION, |call| dispatch(app, call)).await
}

async fn dispatch(app: &App, call: Call<Op>) -> Result<Response<Body>> {
    let req = &call.req;
    match call.op {
        Op::Authorize => {
            let query = api::query(req)?;
            let state = query.get("flow").ok_or(Error::FlowRejected)?;
            let authorization = flow::authorize(app, state, |name| api::cookie(req, name)).await?;
            let mut response =
                api::redirect(StatusCode::FOUND, authorization.provider_url.as_str())?;
            let cookie = authorization.set_cookie.parse().map_err(Error::internal)?;
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            Ok(response)
        }
        Op::ConnectPage => {
            let query = api::query(req)?;
            let token = query.get("session").ok_or(Error::FlowRejected)?;
            let (_, session) = connect::valid_session(app, token).await?;
            connect::picker_page(app, token, &session)
        }
        Op::ConnectStart => {
            let form = form_body(req)?;
            let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
            let inputs: BTreeMap<String, String> = form
                .iter()
                .filter_map(|(k, v)| {
                    let name = k.strip_prefix("input.")?;
                    (!v.is_empty()).then(|| (name.to_string(), v.clone()))
                })
                .collect();
            let started =
                connect::start_from_page(app, field("session"), field("provider"), inputs).await?;
            api::redirect(StatusCode::SEE_OTHER, started.consent_url.expose().as_str())
        }
        Op::ConnectScript => Response::builder()
            .header(header::CONTENT_TYPE, "text/javascript; charset=utf-8")
            .header(header::CACHE_CONTROL, "public, max-age=300")
            .header("access-control-allow-origin", "*")
            .header("x-content-type-options", "nosniff")
            .body(Body::Text(connect::SCRIPT.to_string()))
            .map_err(Error::internal),
    }
}

/// An HTML form's body (`application/x-www-form-urlencoded`), bounded.
fn form_body(req: &Request) -> Result<BTreeMap<String, String>> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    {
        return Err(Error::UnsupportedMediaType);
    }
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > api::MAX_BODY {
        return Err(Error::PayloadTooLarge);
    }
    let mut form = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        if form.len() >= MAX_FORM_FIELDS {
            return Err(Error::validation("too many form fields"));
        }
        form.insert(k.into_owned(), v.into_owned());
    }
    Ok(form)
}
