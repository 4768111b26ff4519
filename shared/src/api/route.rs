//! Route tables: each function declares the routes it serves once; its handler dispatches on them
//! and `brokerctl serve` uses the same tables to pick the function.

use std::collections::HashMap;

use lambda_http::http::Method;

use crate::{Error, Result};

/// A method and a path pattern whose `{name}` segments capture parameters.
#[derive(Debug, Clone)]
pub struct Route<Op> {
    pub method: Method,
    pub path: &'static str,
    pub op: Op,
}

pub type Params = HashMap<&'static str, String>;

impl<Op: Copy> Route<Op> {
    pub const fn new(method: Method, path: &'static str, op: Op) -> Self {
        Route { method, path, op }
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

/// The operation for `method` and `path`: 404 when no route has the path, 405 when one has it
/// under another method.
pub fn find<Op: Copy>(routes: &[Route<Op>], method: &Method, path: &str) -> Result<(Op, Params)> {
    let mut path_known = false;
    for route in routes {
        if let Some(params) = route.match_path(path) {
            if route.method == *method {
                return Ok((route.op, params));
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
        Route::new(
            Method::POST,
            "/v1/organizations/{organization_id}/things",
            1,
        ),
        Route::new(Method::GET, "/v1/oauth/callback", 2),
    ];

    #[test]
    fn captures_and_refuses() {
        let (op, params) = find(ROUTES, &Method::POST, "/v1/organizations/org-1/things/").unwrap();
        assert_eq!(op, 1);
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
