//! Endpoint templates: `https://{subdomain}.zendesk.com/...` filled from validated caller inputs.
//!
//! A variable inside a host must be one DNS label matching its input's pattern, and the built
//! host must still end with the template's fixed suffix, so no input can point the broker (and
//! the authorization code it will send) at a host of the caller's choosing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use url::Url;

use super::Provider;
use crate::{Config, Error, Result};

/// The concrete endpoints of one flow, resolved at initiate and recorded in the flow item: the code
/// is only ever sent to the token endpoint recorded there (DESIGN §8.6). Copied onto the
/// connection when it is authorized, so refresh and revocation never need the expired flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    pub authorization_url: String,
    pub token_url: String,
    /// Items written before these fields existed read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_url: Option<String>,
    /// Where the refresh grant goes when not to `token_url` (Figma's `oauth/refresh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_url: Option<String>,
}

impl Endpoints {
    /// Where a refresh token is traded.
    pub fn refresh_url(&self) -> &str {
        self.refresh_url.as_deref().unwrap_or(&self.token_url)
    }
}

/// A region's endpoints (templates like the entry's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionEndpoints {
    pub authorization_url: String,
    pub token_url: String,
    #[serde(default)]
    pub revocation_url: Option<String>,
}

/// The input that picks a region.
pub const REGION_INPUT: &str = "region";

impl Provider {
    /// Checks caller inputs against the declared ones (unknown keys refused, patterns enforced,
    /// required present) and resolves the endpoints.
    pub fn resolve_endpoints(
        &self,
        inputs: &BTreeMap<String, String>,
        config: &Config,
    ) -> Result<Endpoints> {
        for (key, value) in inputs {
            let spec = self.inputs.get(key).ok_or_else(|| {
                Error::field(
                    "oAuthInputConfiguration",
                    format!("`{key}` is not an input of provider `{}`", self.slug),
                )
            })?;
            if !spec.matches(value) {
                return Err(Error::field(
                    "oAuthInputConfiguration",
                    format!("`{key}` does not match the pattern {}", spec.pattern),
                ));
            }
        }
        if let Some((key, _)) = self
            .inputs
            .iter()
            .find(|(k, spec)| spec.required && !inputs.contains_key(*k))
        {
            return Err(Error::field(
                "oAuthInputConfiguration",
                format!("`{key}` is required by provider `{}`", self.slug),
            ));
        }
        // A region the entry does not list (e.g. `us`, the default) keeps the entry's own URLs.
        let (authorization_url, token_url, revocation_url) =
            match inputs.get(REGION_INPUT).and_then(|r| self.regions.get(r)) {
                Some(region) => (
                    &region.authorization_url,
                    &region.token_url,
                    region.revocation_url.as_ref(),
                ),
                None => (
                    &self.authorization_url,
                    &self.token_url,
                    self.revocation_url.as_ref(),
                ),
            };
        let optional = |template: Option<&String>| {
            template
                .map(|t| fill(t, inputs, config).map(String::from))
                .transpose()
        };
        Ok(Endpoints {
            authorization_url: fill(authorization_url, inputs, config)?.into(),
            token_url: fill(token_url, inputs, config)?.into(),
            revocation_url: optional(revocation_url)?,
            userinfo_url: optional(self.userinfo_url.as_ref())?,
            refresh_url: optional(self.refresh_url.as_ref())?,
        })
    }

    /// The flow's endpoints moved to the server the authorization response names, where the
    /// entry says the response names one (Zoho's `accounts-server`): the token, refresh and
    /// revocation endpoints keep their paths on that server. A server the entry does not list is
    /// refused, so a forged callback cannot send the code elsewhere (DESIGN §8.6).
    pub fn endpoints_at_server(
        &self,
        endpoints: &Endpoints,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<Endpoints> {
        let Some(server) = self
            .token_server_param
            .as_ref()
            .and_then(|param| query.get(param))
        else {
            return Ok(endpoints.clone());
        };
        let origin = Url::parse(server).ok().as_ref().and_then(bare_origin);
        let listed = origin.as_ref().filter(|o| {
            self.token_servers
                .iter()
                .any(|s| s.trim_end_matches('/') == *o)
        });
        let Some(origin) = listed else {
            return Err(Error::validation(format!(
                "the authorization response names a token server provider `{}` does not list",
                self.slug
            )));
        };
        let rebase = |url: &str| -> Result<String> {
            let url = Url::parse(url).map_err(Error::internal)?;
            Ok(format!("{origin}{}", &url[url::Position::BeforePath..]))
        };
        Ok(Endpoints {
            token_url: rebase(&endpoints.token_url)?,
            revocation_url: endpoints
                .revocation_url
                .as_deref()
                .map(rebase)
                .transpose()?,
            refresh_url: endpoints.refresh_url.as_deref().map(rebase).transpose()?,
            ..endpoints.clone()
        })
    }
}

/// Called by the catalog at load: every variable is a declared input, every endpoint's scheme is
/// allowed, and a template with a variable in its host keeps a fixed suffix.
pub(super) fn check_templates(p: &Provider, config: &Config) -> Result<()> {
    let bad = |what: String| Error::validation(format!("provider `{}`: {what}", p.slug));
    if !p.regions.is_empty() {
        let spec = p
            .inputs
            .get(REGION_INPUT)
            .ok_or_else(|| bad(format!("regions need a declared `{REGION_INPUT}` input")))?;
        if let Some(name) = p.regions.keys().find(|name| !spec.matches(name)) {
            return Err(bad(format!(
                "region `{name}` does not match the `{REGION_INPUT}` input's pattern"
            )));
        }
    }
    let urls = [
        Some(&p.authorization_url),
        Some(&p.token_url),
        p.revocation_url.as_ref(),
        p.userinfo_url.as_ref(),
        p.refresh_url.as_ref(),
        p.metadata_url.as_ref(),
    ]
    .into_iter()
    .flatten()
    .chain(p.regions.values().flat_map(|r| {
        [
            Some(&r.authorization_url),
            Some(&r.token_url),
            r.revocation_url.as_ref(),
        ]
        .into_iter()
        .flatten()
    }));
    if p.token_server_param.is_some() == p.token_servers.is_empty() {
        return Err(bad(
            "`token_server_param` and `token_servers` go together".into()
        ));
    }
    for server in &p.token_servers {
        let url = Url::parse(server).map_err(|e| bad(format!("token server {server}: {e}")))?;
        if bare_origin(&url).is_none() {
            return Err(bad(format!(
                "token server {server} must be an origin, without a path"
            )));
        }
        config.check_url_policy(&url, &format!("provider `{}` token server", p.slug))?;
    }
    for template in urls {
        for var in variables(template) {
            if !p.inputs.contains_key(var) {
                return Err(bad(format!(
                    "`{{{var}}}` in {template} is not a declared input"
                )));
            }
        }
        let (host_template, _) = split_host(template)
            .ok_or_else(|| bad(format!("{template} is not an absolute URL")))?;
        if host_template.contains('{') && fixed_suffix(host_template).is_none() {
            return Err(bad(format!(
                "{template}: a templated host needs a fixed suffix such as `.example.com`"
            )));
        }
        // A sample value for each variable shows the template builds a URL the policy accepts.
        let sample: String = variables(template).iter().fold(template.clone(), |t, v| {
            t.replace(&format!("{{{v}}}"), "sample")
        });
        let url = Url::parse(&sample).map_err(|e| bad(format!("{template}: {e}")))?;
        config.check_url_policy(&url, &format!("provider `{}` endpoint", p.slug))?;
    }
    Ok(())
}

fn fill(template: &str, inputs: &BTreeMap<String, String>, config: &Config) -> Result<Url> {
    let (host_template, _) =
        split_host(template).ok_or_else(|| Error::internal("endpoint template without a host"))?;
    let mut filled = template.to_string();
    for var in variables(template) {
        let value = inputs.get(var).ok_or_else(|| {
            Error::field("oAuthInputConfiguration", format!("`{var}` is required"))
        })?;
        let in_host = host_template.contains(&format!("{{{var}}}"));
        if in_host && !is_dns_label(value) {
            return Err(Error::field(
                "oAuthInputConfiguration",
                format!("`{var}` must be a single DNS label"),
            ));
        }
        let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        filled = filled.replace(&format!("{{{var}}}"), &encoded);
    }
    let url = Url::parse(&filled).map_err(|_| {
        Error::field(
            "oAuthInputConfiguration",
            "does not build a valid endpoint URL",
        )
    })?;
    if let Some(suffix) = fixed_suffix(host_template) {
        let host = url.host_str().unwrap_or_default();
        if !host.ends_with(&suffix.to_ascii_lowercase()) || host.len() == suffix.len() {
            return Err(Error::field(
                "oAuthInputConfiguration",
                "builds a host outside the provider's domain",
            ));
        }
    }
    config.check_url_policy(&url, "provider endpoint")?;
    Ok(url)
}

/// `{name}` variables in order of appearance.
/// `url`'s origin when it is nothing more (no path, no query): what a token server is.
fn bare_origin(url: &Url) -> Option<String> {
    (matches!(url.path(), "" | "/") && url.query().is_none())
        .then(|| url.origin().ascii_serialization())
}

fn variables(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(&rest[start + 1..start + len]);
        rest = &rest[start + len + 1..];
    }
    out
}

/// The authority part of a URL template and what follows it.
fn split_host(template: &str) -> Option<(&str, &str)> {
    let after_scheme = template.split_once("://")?.1;
    let end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    Some((&after_scheme[..end], &after_scheme[end..]))
}

/// The part of a host template after its last variable, e.g. `.zendesk.com`; it must hold a dot
/// so that it names a registrable domain rather than a bare TLD.
fn fixed_suffix(host_template: &str) -> Option<&str> {
    let suffix = &host_template[host_template.rfind('}')? + 1..];
    let host_only = suffix.split(':').next().unwrap_or(suffix);
    (host_only.starts_with('.') && host_only[1..].contains('.')).then_some(host_only)
}

fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Catalog;

    fn config() -> Config {
        Config::from_lookup(|k| (k == "BROKER_PUBLIC_URL").then(|| "https://broker.example".into()))
            .unwrap()
    }

    fn inputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn zendesk_subdomain_fills_the_host() {
        let c = config();
        let catalog = Catalog::load(&c, vec![]).unwrap();
        let z = catalog.get("zendesk-support").unwrap();
        let e = z
            .resolve_endpoints(&inputs(&[("subdomain", "acme")]), &c)
            .unwrap();
        assert_eq!(e.token_url, "https://acme.zendesk.com/oauth/tokens");
    }

    #[test]
    fn templated_host_refuses_ssrf_shaped_inputs() {
        let c = config();
        let catalog = Catalog::load(&c, vec![]).unwrap();
        let z = catalog.get("zendesk-support").unwrap();
        for evil in [
            "evil.com#",
            "evil.com/",
            "a.b",
            "127.0.0.1",
            "x@evil",
            "-a",
            "",
            "EVIL",
        ] {
            assert!(
                z.resolve_endpoints(&inputs(&[("subdomain", evil)]), &c)
                    .is_err(),
                "{evil}"
            );
        }
        assert!(
            z.resolve_endpoints(&inputs(&[]), &c).is_err(),
            "required input"
        );
        assert!(
            z.resolve_endpoints(&inputs(&[("subdomain", "a"), ("other", "b")]), &c)
                .is_err(),
            "unknown input"
        );
    }

    #[test]
    fn suffix_needs_a_registrable_domain() {
        assert_eq!(fixed_suffix("{s}.zendesk.com"), Some(".zendesk.com"));
        assert_eq!(fixed_suffix("{s}.com"), None);
        assert_eq!(fixed_suffix("{s}"), None);
    }
}
