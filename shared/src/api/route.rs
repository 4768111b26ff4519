//! Route tables: each function declares the routes it serves once; its handler dispatches on them
//! and `brokerctl serve` uses the same tables to pick the function.

use std::collections::HashMap;

use lambda_http::http::Method;

use crate::auth::Scope;
use crate::{Error, Result};

/// A method and a path pattern whose `{name}` segments capture parameters, and who may call it.
#[derive(Debug, Clone)]
pub struct Route<Op> {
    pub method: Method,
    pub path: &'static str,
    pub op: Op,
    pub access: Access,
}

/// Who calls a route: a browser (no key; the flow's handle is the credential), or a platform
/// with an API key holding the route's scope, naming the organization it acts for in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Browser,
    Key(OrgFrom, Scope),
}

/// Where an API route's organization comes from. The request path checks it against the key
/// once, before any handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgFrom {
    /// The key's own organization; the route names none.
    Key,
    /// The `{organization_id}` segment of the path.
    Path,
    /// The required `organization_id` query parameter.
    Query,
}

pub type Params = HashMap<&'static str, String>;

impl<Op: Copy> Route<Op> {
    /// A browser step.
    pub const fn browser(method: Method, path: &'static str, op: Op) -> Self {
        Route {
            method,
            path,
            op,
            access: Access::Browser,
        }
    }

    /// An API route, called with a key holding `scope` for the organization `org` names.
    pub const fn api(
        method: Method,
        path: &'static str,
        op: Op,
        org: OrgFrom,
        scope: Scope,
    ) -> Self {
        Route {
            method,
            path,
            op,
            access: Access::Key(org, scope),
        }
    }

    /// The captured parameters if `path` fits the pattern (a trailing slash is tolerated).
    pub fn match_path(&self, path: &str) -> Option<Params> {
        let trim = |p: &'static str| p.trim_end_matches('/');
        let mut pattern = trim(self.path).split('/');
        let mut actual = path.trim_end_matches('/').split('/');
        let mut params = Params::new();
        loop {
            match (pattern.next(), actual.next()) {
                (None, None) => return Some(params),
                (Some(p), Some(a)) if p.starts_with('{') && p.ends_with('}') && !a.is_empty() => {
                    let decoded = url::form_urlencoded::parse(a.as_bytes())
                        .map(|(k, _)| k)
                        .next()?
                        .into_owned();
                    params.insert(&p[1..p.len() - 1], decoded);
                }
                (Some(p), Some(a)) if p == a => {}
                _ => return None,
            }
        }
    }
}

/// The route for `method` and `path`, with its parameters: 404 when no route has the path, 405
/// when one has it under another method.
pub fn find<'r, Op: Copy>(
    routes: &'r [Route<Op>],
    method: &Method,
    path: &str,
) -> Result<(&'r Route<Op>, Params)> {
    let mut path_known = false;
    for route in routes {
        if let Some(params) = route.match_path(path) {
            if route.method == *method {
                return Ok((route, params));
            }
            path_known = true;
        }
    }
    Err(if path_known {
        Error::MethodNotAllowed
    } else {
        Error::NotFound("route".into())
    })
}

/// Whether any route of the table has this path, whatever its method.
pub fn serves<Op: Copy>(routes: &[Route<Op>], path: &str) -> bool {
    routes.iter().any(|r| r.match_path(path).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[Route<u8>] = &[
        Route::api(
            Method::POST,
            "/v1/organizations/{organization_id}/things",
            1,
            OrgFrom::Path,
            Scope::Flows,
        ),
        Route::browser(Method::GET, "/v1/oauth/callback", 2),
    ];

    #[test]
    fn captures_and_refuses() {
        let (route, params) =
            find(ROUTES, &Method::POST, "/v1/organizations/org-1/things/").unwrap();
        assert_eq!(route.op, 1);
        assert_eq!(params["organization_id"], "org-1");
        assert!(matches!(
            find(ROUTES, &Method::POST, "/v1/oauth/callback"),
            Err(Error::MethodNotAllowed)
        ));
        assert!(matches!(
            find(ROUTES, &Method::GET, "/v1/organizations//things"),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            find(ROUTES, &Method::GET, "/v1/oauth/callback/x"),
            Err(Error::NotFound(_))
        ));
    }
}
