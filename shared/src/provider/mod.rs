//! The provider catalog (DESIGN §6): declarative entries, built into the binaries and extended or
//! overridden by the TOML file named in `BROKER_PROVIDERS_FILE`.

mod authorization;
mod catalog;
mod endpoints;
mod exchange;
#[cfg(test)]
mod golden;
mod quirks;
mod revocation;

use std::collections::BTreeMap;

use std::sync::OnceLock;

use regex_lite::Regex;
use serde::{Deserialize, Serialize};

pub use authorization::AuthorizationRequest;
pub use catalog::Catalog;
pub use endpoints::{Endpoints, RegionEndpoints};
pub use exchange::{TokenClient, TokenSet};
pub use revocation::{RevocationOutcome, RevocationStyle, revocation_requests};

/// One provider, exactly as written in the catalog's TOML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Also accepted as `sourceType`, `slug` or `app_key`.
    pub slug: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `oauth1` entries are listed but refused: the broker speaks OAuth 2.0.
    #[serde(default)]
    pub protocol: Protocol,
    /// Airbyte source definition ids mapped to this provider.
    #[serde(default)]
    pub source_definition_ids: Vec<String>,
    pub authorization_url: String,
    pub token_url: String,
    #[serde(default)]
    pub revocation_url: Option<String>,
    /// How the revocation endpoint is asked (RFC 7009 unless the entry says otherwise).
    #[serde(default)]
    pub revocation_style: RevocationStyle,
    /// How the client authenticates at the revocation endpoint, where it differs from the token
    /// endpoint (Calendly: credentials in the body there, HTTP Basic for tokens).
    #[serde(default)]
    pub revocation_client_auth: Option<ClientAuth>,
    #[serde(default)]
    pub userinfo_url: Option<String>,
    /// When set, the callback requires `iss` and compares it exactly (RFC 9207).
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub optional_scopes: Vec<String>,
    #[serde(default)]
    pub scope_separator: ScopeSeparator,
    #[serde(default)]
    pub pkce: Pkce,
    #[serde(default)]
    pub client_auth: ClientAuth,
    #[serde(default)]
    pub token_body: TokenBody,
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    #[serde(default)]
    pub token_params: BTreeMap<String, String>,
    /// Copied from the token response into the stored document (e.g. `instance_url`).
    #[serde(default)]
    pub keep_token_fields: Vec<String>,
    /// Copied from the callback query into the stored document (e.g. `realmId`).
    #[serde(default)]
    pub keep_redirect_fields: Vec<String>,
    /// Read once with the new access token after the code exchange (Mailchimp's
    /// `oauth2/metadata`, which names the account's data center): the fields named in
    /// `keep_metadata_fields` are kept like token fields.
    #[serde(default)]
    pub metadata_url: Option<String>,
    #[serde(default)]
    pub keep_metadata_fields: Vec<String>,
    /// A grant that trades the first access token for a longer-lived one right after the code
    /// exchange, the token travelling in a parameter of the same name (Facebook's
    /// `fb_exchange_token`): the provider's substitute for a refresh token.
    #[serde(default)]
    pub upgrade_grant: Option<String>,
    /// The `Authorization` scheme `metadata_url` expects (`Bearer` unless said; Mailchimp: `OAuth`).
    #[serde(default)]
    pub metadata_auth_scheme: Option<String>,
    /// Caller-supplied values (`oAuthInputConfiguration`, `integration_params`).
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    /// Other endpoints by name, chosen by the `region` input (Intercom's EU, Zoho's data centers).
    #[serde(default)]
    pub regions: BTreeMap<String, RegionEndpoints>,
    /// The authorize parameter carrying the scopes (Slack's user scopes: `user_scope`).
    #[serde(default)]
    pub scope_param: Option<String>,
    /// Optional scopes travel in this authorize parameter instead (HubSpot: `optional_scope`).
    #[serde(default)]
    pub optional_scope_param: Option<String>,
    /// The callback parameter carrying the code (Amazon SP-API: `spapi_oauth_code`).
    #[serde(default)]
    pub code_param: Option<String>,
    /// The token fields sit in this object of the token response (Slack: `authed_user`).
    #[serde(default)]
    pub token_response_path: Option<String>,
    /// A token response whose field is `false` is an error, whatever its HTTP status (Slack: `ok`).
    #[serde(default)]
    pub success_field: Option<String>,
    /// Access-token lifetime the provider documents but does not send (no `expires_in`, e.g.
    /// Salesforce's session timeout): the expiry is counted from issue, so refresh can plan.
    #[serde(default)]
    pub token_lifetime_secs: Option<i64>,
    /// A refresh token dies this many days after its issue, used or not (LinkedIn: 365); a
    /// refresh that returns a new one restarts the count, unless `refresh = "reusable"`, whose
    /// count runs from consent (Spotify: 182). The sweep announces the end a week before with
    /// `connection.expiring`.
    #[serde(default)]
    pub refresh_token_lifetime_days: Option<u32>,
    /// Protocol parameters the provider spells its own way, in the authorization request and
    /// the token request (TikTok's `app_id`, `secret` and `auth_code`).
    #[serde(default)]
    pub param_names: BTreeMap<String, String>,
    /// The callback parameter naming the server that issued the code (Zoho's `accounts-server`):
    /// the code is exchanged there, and the tokens later refreshed and revoked there, when it is
    /// one of `token_servers`; any other server is refused before the code is sent anywhere.
    #[serde(default)]
    pub token_server_param: Option<String>,
    /// The origins `token_server_param` may name (`https://accounts.zoho.eu`).
    #[serde(default)]
    pub token_servers: Vec<String>,
    /// The refresh grant's endpoint, where it is not the token endpoint (Figma's).
    #[serde(default)]
    pub refresh_url: Option<String>,
    /// The provider's OAuth documentation, which this entry was checked against.
    #[serde(default)]
    pub docs_url: Option<String>,
    /// The month (`2026-12`) the entry was last checked against `docs_url`.
    #[serde(default)]
    pub checked: Option<String>,
    /// What the provider's refresh grant does, as its documentation says (every built-in entry
    /// declares it; a providers file may leave it out).
    #[serde(default)]
    pub refresh: Option<Refresh>,
    /// Why the entry can no longer be used (the provider retired the API it speaks): listed, and
    /// refused with this reason.
    #[serde(default)]
    pub retired: Option<String>,
}

/// A provider's refresh grant, from its documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refresh {
    /// Single-use refresh tokens: each answer carries a new one, persisted before anything else;
    /// presenting a used one may end the whole grant (RFC 9700 §4.14).
    Rotating,
    /// The refresh token stays valid; an answer without a new one keeps it.
    Reusable,
    /// No refresh grant: the tokens do not expire, or a new consent is needed when they do.
    None,
}

impl Refresh {
    pub fn as_str(self) -> &'static str {
        match self {
            Refresh::Rotating => "rotating",
            Refresh::Reusable => "reusable",
            Refresh::None => "none",
        }
    }
}

/// How the provider's token endpoint wants to be spoken to, copied from its catalog entry when
/// the connection is authorized: a later refresh or revocation speaks the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSettings {
    pub client_auth: ClientAuth,
    pub token_body: TokenBody,
}

impl TokenSettings {
    pub fn of(provider: &Provider) -> Self {
        TokenSettings {
            client_auth: provider.client_auth,
            token_body: provider.token_body,
        }
    }

    /// The entry speaking as the connection was authorized.
    pub fn applied_to(self, provider: &Provider) -> Provider {
        Provider {
            client_auth: self.client_auth,
            token_body: self.token_body,
            ..provider.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Oauth2,
    /// OAuth 1.0a (Trello): listed so the refusal can say why.
    Oauth1,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// A regular expression the whole value must match.
    pub pattern: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub description: String,
    /// Compiled on first use: a cold start should not pay for every provider's inputs. The
    /// catalog compiles the entries it did not ship at load, so a bad pattern fails fast.
    #[serde(skip)]
    compiled: OnceLock<std::result::Result<Regex, String>>,
}

impl InputSpec {
    /// The pattern, anchored whatever the author wrote: it must describe the whole value.
    pub(crate) fn regex(&self) -> std::result::Result<&Regex, &str> {
        self.compiled
            .get_or_init(|| {
                Regex::new(&format!("^(?:{})$", self.pattern)).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(String::as_str)
    }

    fn matches(&self, value: &str) -> bool {
        self.regex().is_ok_and(|re| re.is_match(value))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScopeSeparator {
    #[default]
    #[serde(rename = " ")]
    Space,
    #[serde(rename = ",")]
    Comma,
    #[serde(rename = "+")]
    Plus,
}

impl ScopeSeparator {
    /// The `scope` value of an authorization request, before form encoding (which turns a space
    /// into `+`, so "+" and " " providers receive the same bytes).
    pub fn join(self, scopes: &[String]) -> String {
        scopes.join(match self {
            ScopeSeparator::Space | ScopeSeparator::Plus => " ",
            ScopeSeparator::Comma => ",",
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pkce {
    Required,
    #[default]
    Supported,
    Unsupported,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// HTTP Basic, the method RFC 6749 §2.3.1 requires servers to support.
    #[default]
    Basic,
    Post,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenBody {
    #[default]
    Form,
    Json,
}

impl Provider {
    /// Refuses entries the broker lists but cannot run: OAuth 1.0a, or an API the provider
    /// retired.
    pub fn require_usable(&self) -> crate::Result<()> {
        if let Some(reason) = &self.retired {
            return Err(crate::Error::validation(format!(
                "provider `{}` is retired: {reason}",
                self.slug
            )));
        }
        match self.protocol {
            Protocol::Oauth2 => Ok(()),
            Protocol::Oauth1 => Err(crate::Error::validation(format!(
                "provider `{}` uses OAuth 1.0a, which the broker does not support (it runs OAuth 2.0 flows only)",
                self.slug
            ))),
        }
    }

    /// What sets this entry apart from a plain RFC 6749 provider, as short labels
    /// (`brokerctl providers list`).
    pub fn quirks(&self) -> Vec<String> {
        let mut q = vec![];
        let list = |v: &mut Vec<String>, label: &str, items: Vec<&String>| {
            if !items.is_empty() {
                let items: Vec<&str> = items.iter().map(|s| s.as_str()).collect();
                v.push(format!("{label}={}", items.join(",")));
            }
        };
        if self.protocol == Protocol::Oauth1 {
            q.push("oauth1(refused)".into());
            return q;
        }
        if self.retired.is_some() {
            q.push("retired(refused)".into());
            return q;
        }
        match self.pkce {
            Pkce::Required => q.push("pkce=required".into()),
            Pkce::Unsupported => q.push("pkce=refused".into()),
            Pkce::Supported => {}
        }
        q.push(format!("auth={:?}", self.client_auth).to_lowercase());
        if let Some(refresh) = self.refresh {
            q.push(format!("refresh={}", refresh.as_str()));
        }
        if self.token_body == TokenBody::Json {
            q.push("body=json".into());
        }
        match self.scope_separator {
            ScopeSeparator::Comma => q.push("scopes=comma".into()),
            ScopeSeparator::Plus => q.push("scopes=plus".into()),
            ScopeSeparator::Space => {}
        }
        for (label, value) in [
            ("scope_param", &self.scope_param),
            ("optional_scope_param", &self.optional_scope_param),
            ("code_param", &self.code_param),
            ("token_path", &self.token_response_path),
            ("success_field", &self.success_field),
            ("issuer", &self.issuer),
            ("token_server_param", &self.token_server_param),
            ("upgrade_grant", &self.upgrade_grant),
        ] {
            if let Some(v) = value {
                q.push(format!("{label}={v}"));
            }
        }
        list(&mut q, "params", self.authorize_params.keys().collect());
        list(&mut q, "renames", self.param_names.values().collect());
        list(&mut q, "keeps", self.keep_token_fields.iter().collect());
        list(
            &mut q,
            "redirect_keeps",
            self.keep_redirect_fields.iter().collect(),
        );
        list(&mut q, "inputs", self.inputs.keys().collect());
        list(&mut q, "regions", self.regions.keys().collect());
        q
    }

    /// How the provider spells the protocol parameter `name` (`client_id` is TikTok's `app_id`).
    pub fn param_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.param_names.get(name).map_or(name, String::as_str)
    }

    /// The callback query parameter that carries the authorization code.
    pub fn code_param(&self) -> &str {
        self.code_param.as_deref().unwrap_or("code")
    }

    /// Whether a PKCE verifier is sent to this provider.
    pub fn uses_pkce(&self) -> bool {
        self.pkce != Pkce::Unsupported
    }

    /// The scopes of a flow: the entry's own plus requested ones it declares; others are refused.
    pub fn select_scopes(
        &self,
        requested: &[String],
        requested_optional: &[String],
    ) -> crate::Result<Vec<String>> {
        let mut scopes = self.scopes.clone();
        for (field, list) in [
            ("requestedScopes", requested),
            ("requestedOptionalScopes", requested_optional),
        ] {
            for scope in list {
                let declared = self.scopes.contains(scope) || self.optional_scopes.contains(scope);
                if !declared {
                    return Err(crate::Error::field(
                        field,
                        format!(
                            "scope `{scope}` is not declared by provider `{}`",
                            self.slug
                        ),
                    ));
                }
                if !scopes.contains(scope) {
                    scopes.push(scope.clone());
                }
            }
        }
        Ok(scopes)
    }
}
