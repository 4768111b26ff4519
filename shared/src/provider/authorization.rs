//! The authorization request (RFC 6749 §4.1.1 with PKCE), built from an entry's data: its URL and
//! extra parameters first, then the protocol parameters, which neither the entry nor a caller can
//! override.

use url::Url;

use super::{Endpoints, Provider};
use crate::{Error, Result};

/// Query names the protocol owns.
const PROTOCOL_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// What one flow puts into its authorization request.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizationRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scopes: &'a [String],
    pub state: &'a str,
    /// The S256 challenge of the flow's verifier, when the provider takes PKCE.
    pub code_challenge: Option<&'a str>,
}

impl Provider {
    /// The URL of the provider's consent page for one flow.
    pub fn authorization_url(
        &self,
        endpoints: &Endpoints,
        req: AuthorizationRequest<'_>,
    ) -> Result<Url> {
        let scope_param = self.scope_param.as_deref().unwrap_or("scope");
        let owned = |k: &str| {
            PROTOCOL_PARAMS.contains(&k)
                || self.param_names.values().any(|renamed| renamed == k)
                || k == scope_param
                || self.optional_scope_param.as_deref() == Some(k)
        };
        let mut url = Url::parse(&endpoints.authorization_url).map_err(Error::internal)?;
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .chain(self.authorize_params.clone())
            .filter(|(k, _)| !owned(k))
            .collect();
        // Optional scopes travel apart where the entry says so (HubSpot's `optional_scope`).
        let (optional, required): (Vec<String>, Vec<String>) =
            req.scopes.iter().cloned().partition(|s| {
                self.optional_scope_param.is_some()
                    && self.optional_scopes.contains(s)
                    && !self.scopes.contains(s)
            });
        {
            let mut q = url.query_pairs_mut();
            q.clear().extend_pairs(kept);
            q.append_pair("response_type", "code")
                .append_pair(self.param_name("client_id"), req.client_id)
                .append_pair("redirect_uri", req.redirect_uri);
            if !required.is_empty() {
                q.append_pair(scope_param, &self.scope_separator.join(&required));
            }
            if let (Some(param), false) = (&self.optional_scope_param, optional.is_empty()) {
                q.append_pair(param, &self.scope_separator.join(&optional));
            }
            q.append_pair("state", req.state);
            if let Some(challenge) = req.code_challenge {
                q.append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::Config;
    use crate::provider::golden::{self, check, sample_inputs};
    use crate::provider::{Protocol, endpoints::REGION_INPUT};

    const GOLDEN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/provider/golden/authorization_urls.txt"
    );

    fn url_for(p: &Provider, inputs: &BTreeMap<String, String>, config: &Config) -> String {
        let endpoints = p.resolve_endpoints(inputs, config).unwrap();
        // Every declared scope, optional ones included, so scope and optional-scope params show.
        let scopes = p.select_scopes(&[], &p.optional_scopes).unwrap();
        p.authorization_url(
            &endpoints,
            AuthorizationRequest {
                client_id: "CLIENT_ID",
                redirect_uri: "https://broker.example/v1/oauth/callback",
                scopes: &scopes,
                state: "STATE",
                code_challenge: p.uses_pkce().then_some("CHALLENGE"),
            },
        )
        .unwrap()
        .to_string()
    }

    /// One line per built-in entry (and per region), compared with the golden file.
    #[test]
    fn every_builtin_entry_builds_its_golden_authorization_url() {
        let (config, catalog, _) = golden::builtin();
        let mut lines = vec![];
        for p in catalog.iter() {
            if p.protocol == Protocol::Oauth1 {
                assert!(p.require_usable().is_err());
                lines.push(format!("{} refused: OAuth 1.0a", p.slug));
                continue;
            }
            if let Some(reason) = &p.retired {
                assert!(p.require_usable().is_err());
                lines.push(format!("{} refused: retired: {reason}", p.slug));
                continue;
            }
            let mut inputs = sample_inputs(p);
            lines.push(format!("{} {}", p.slug, url_for(p, &inputs, &config)));
            for region in p.regions.keys() {
                inputs.insert(REGION_INPUT.into(), region.clone());
                lines.push(format!(
                    "{}[{region}] {}",
                    p.slug,
                    url_for(p, &inputs, &config)
                ));
            }
        }
        check(GOLDEN, &lines, "authorization URL");
    }
}
