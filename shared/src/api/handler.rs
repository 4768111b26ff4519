//! The one request path of every function: request id and span, route, caller and organization
//! checked once, the function's own dispatch, and every error rendered through the one table of
//! [`super::errors`] (as the JSON envelope for API routes, as a page for browser steps).

use std::future::Future;

use lambda_http::{Body, Request, Response};
use tracing::Instrument;

use super::route::{self, Access, OrgFrom, Params, Route};
use crate::auth::{self, Caller, Scope};
use crate::{App, Result};

/// A function as the request path sees it: its name (the log span) and its routes, whose access
/// also decides how an error is answered (a page for browser steps, the envelope otherwise).
pub struct Function<Op: 'static> {
    pub name: &'static str,
    pub routes: &'static [Route<Op>],
}

/// A request that found its route: what the function's dispatch works with.
pub struct Call<Op> {
    pub op: Op,
    pub params: Params,
    /// The key's holder, on API routes.
    pub caller: Option<Caller>,
    pub req: Request,
    /// The request id, as in the logs and error envelopes.
    pub trace_id: String,
}

impl<Op> Call<Op> {
    /// The authenticated caller; its organization is the one the route names (already checked).
    pub fn caller(&self) -> Result<&Caller> {
        self.caller.as_ref().ok_or(crate::Error::Unauthenticated)
    }
}

/// Runs one request of `function` through `dispatch`.
pub async fn handle<Op, F, Fut>(
    app: &App,
    req: Request,
    function: &Function<Op>,
    dispatch: F,
) -> Response<Body>
where
    Op: Copy,
    F: FnOnce(Call<Op>) -> Fut,
    Fut: Future<Output = Result<Response<Body>>>,
{
    let trace_id = super::request_id(&req);
    let span = tracing::info_span!("request", function = function.name, %trace_id);
    let found = route::find(function.routes, req.method(), req.uri().path())
        .map(|(route, params)| (route.op, route.access, params));
    // A path no route has is answered like an API route (404 envelope) unless the function
    // serves browsers only.
    let browser = match &found {
        Ok((_, access, _)) => *access == Access::Browser,
        Err(_) => function.routes.iter().all(|r| r.access == Access::Browser),
    };
    let result = async {
        let (op, access, params) = found?;
        let caller = match access {
            Access::Browser => None,
            Access::Key(org_from, scope) => Some(admit(app, &req, org_from, scope, &params).await?),
        };
        dispatch(Call {
            op,
            params,
            caller,
            req,
            trace_id: trace_id.clone(),
        })
        .await
    }
    .instrument(span)
    .await;
    result.unwrap_or_else(|e| {
        if browser {
            super::html::error_page(&e, &trace_id)
        } else {
            e.to_response(&trace_id)
        }
    })
}

/// Authenticates the key, checks it holds the route's scope, and checks the organization the
/// route names against it.
async fn admit(
    app: &App,
    req: &Request,
    org_from: OrgFrom,
    scope: Scope,
    params: &Params,
) -> Result<Caller> {
    let caller =
        auth::authenticate(app.keys.as_ref(), &app.known_keys, req, app.clock.now()).await?;
    caller.require_scope(scope)?;
    let named = match org_from {
        OrgFrom::Key => None,
        OrgFrom::Path => params.get("organization_id").cloned(),
        OrgFrom::Query => Some(super::query_param(&super::query(req)?, "organization_id")?),
    };
    if let Some(org) = named {
        caller.require_org(&org)?;
    }
    Ok(caller)
}
