//! `redirect_url`: where the broker sends the user's browser at the end of a flow. Only
//! constructible through validation (DESIGN §8.4), at initiate and again before redirecting.

use url::Url;

use crate::org::Org;
use crate::{Config, Error, Result};

const MAX_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUrl(Url);

impl RedirectUrl {
    /// Parses a caller's URL and requires it to match one the organization registered, on scheme,
    /// host, port and path (its query may differ; the broker appends to it).
    pub fn registered(raw: &str, org: &Org, config: &Config) -> Result<Self> {
        let url = Self::well_formed(raw, config)?;
        let same = |r: &String| {
            Url::parse(r).is_ok_and(|r| {
                r.scheme() == url.scheme()
                    && r.host_str() == url.host_str()
                    && r.port_or_known_default() == url.port_or_known_default()
                    && r.path() == url.path()
            })
        };
        if org.redirect_urls.iter().any(same) {
            Ok(RedirectUrl(url))
        } else {
            Err(Error::field(
                "redirect_url",
                "is not registered for this organization",
            ))
        }
    }

    /// The shape rules alone, also applied when an organization registers its URLs.
    pub fn well_formed(raw: &str, config: &Config) -> Result<Url> {
        if raw.len() > MAX_LEN {
            return Err(Error::field("redirect_url", "is too long"));
        }
        let url =
            Url::parse(raw).map_err(|_| Error::field("redirect_url", "is not an absolute URL"))?;
        config.check_url_policy(&url, "redirect_url")?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::field("redirect_url", "must not carry userinfo"));
        }
        if url.fragment().is_some() {
            return Err(Error::field("redirect_url", "must not carry a fragment"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::field("redirect_url", "needs a host"));
        }
        Ok(url)
    }

    /// The URL with `params` appended to its query.
    pub fn with_params<'a>(&self, params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Url {
        let mut url = self.0.clone();
        url.query_pairs_mut().extend_pairs(params);
        url
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_lookup(|k| match k {
            "BROKER_PUBLIC_URL" => Some("https://broker.example".into()),
            "BROKER_ALLOW_LOOPBACK_HTTP" => Some("1".into()),
            _ => None,
        })
        .unwrap()
    }

    fn org() -> Org {
        Org {
            id: "o".into(),
            redirect_urls: vec![
                "https://app.example.com/oauth/done".into(),
                "http://127.0.0.1:8080/cb".into(),
            ],
            created_at: 0,
        }
    }

    #[test]
    fn registered_url_with_extra_query_is_accepted() {
        let r =
            RedirectUrl::registered("https://app.example.com/oauth/done?x=1", &org(), &config())
                .unwrap();
        assert_eq!(
            r.with_params([("a", "b")]).as_str(),
            "https://app.example.com/oauth/done?x=1&a=b"
        );
        assert!(RedirectUrl::registered("http://127.0.0.1:8080/cb", &org(), &config()).is_ok());
    }

    #[test]
    fn redirect_tricks_are_refused() {
        for bad in [
            "https://app.example.com/oauth/done/../evil",
            "https://app.example.com.evil.com/oauth/done",
            "https://evil.com@app.example.com/oauth/done",
            "https://app.example.com/oauth/done#frag",
            "http://app.example.com/oauth/done",
            "https://app.example.com:444/oauth/done",
            "https://app.example.com/oauth/done2",
            "javascript:alert(1)",
            "//app.example.com/oauth/done",
            "http://127.0.0.1:8081/cb",
        ] {
            assert!(
                RedirectUrl::registered(bad, &org(), &config()).is_err(),
                "{bad}"
            );
        }
    }
}
