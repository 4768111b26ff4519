use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::{Provider, endpoints};
use crate::{Config, Error, Result};

/// The entries shipped inside every binary: `builtin.toml`, converted to JSON by `build.rs`.
const BUILTIN: &str = include_str!(concat!(env!("OUT_DIR"), "/builtin.json"));

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    provider: Vec<Provider>,
}

/// All providers, indexed by slug, alias and source definition id. Built once per process.
#[derive(Debug, Clone)]
pub struct Catalog {
    providers: BTreeMap<String, Provider>,
    /// alias or definition id -> slug
    names: HashMap<String, String>,
}

impl Catalog {
    /// Built-in entries, then `extra` (e.g. the sandbox of `brokerctl serve`), then the file in
    /// `BROKER_PROVIDERS_FILE`; a later entry with the same slug replaces an earlier one.
    pub fn load(config: &Config, extra: Vec<Provider>) -> Result<Self> {
        let mut added = extra;
        if let Some(path) = &config.providers_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::validation(format!("BROKER_PROVIDERS_FILE {}: {e}", path.display()))
            })?;
            added.extend(parse(&text, &path.display().to_string())?);
        }
        // The built-in entries are checked by unit tests, not at every cold start.
        check_all(&added, config)?;
        let mut entries = builtin()?;
        entries.extend(added);
        Self::index(entries)
    }

    /// Indexes entries by slug, alias and definition id. Names must be unique; an issuer may be
    /// shared only by entries of one authorization server (Google's several APIs: the same
    /// authorize and token endpoints), since `iss` tells servers apart, not APIs (RFC 9207).
    fn index(entries: Vec<Provider>) -> Result<Self> {
        let mut providers = BTreeMap::new();
        for p in entries {
            providers.insert(p.slug.clone(), p);
        }
        let mut names = HashMap::new();
        let mut issuers: HashMap<&str, &Provider> = HashMap::new();
        for p in providers.values() {
            for name in p.aliases.iter().chain(&p.source_definition_ids) {
                let clash = providers.contains_key(name)
                    || names.insert(name.clone(), p.slug.clone()).is_some();
                if clash {
                    return Err(Error::validation(format!(
                        "provider catalog: `{name}` names more than one provider"
                    )));
                }
            }
            if let Some(iss) = &p.issuer
                && let Some(first) = issuers.insert(iss, p)
                && (&first.authorization_url, &first.token_url)
                    != (&p.authorization_url, &p.token_url)
            {
                return Err(Error::validation(format!(
                    "provider catalog: issuer `{iss}` is declared by `{}` and `{}`, whose endpoints differ",
                    first.slug, p.slug
                )));
            }
        }
        Ok(Catalog { providers, names })
    }

    /// A provider by slug or alias.
    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.get(name).or_else(|| {
            self.names
                .get(name)
                .and_then(|slug| self.providers.get(slug))
        })
    }

    /// A provider by slug, alias or Airbyte source definition id.
    pub fn resolve(&self, name_or_definition: &str) -> Result<&Provider> {
        self.get(name_or_definition)
            .ok_or_else(|| Error::NotFound(format!("provider `{name_or_definition}`")))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }
}

fn builtin() -> Result<Vec<Provider>> {
    serde_json::from_str::<CatalogFile>(BUILTIN)
        .map(|f| f.provider)
        .map_err(|e| Error::internal(format!("built-in provider catalog: {e}")))
}

fn parse(text: &str, origin: &str) -> Result<Vec<Provider>> {
    toml::from_str::<CatalogFile>(text)
        .map(|f| f.provider)
        .map_err(|e| Error::validation(format!("provider catalog ({origin}): {e}")))
}

fn check_all(entries: &[Provider], config: &Config) -> Result<()> {
    entries.iter().try_for_each(|p| check(p, config))
}

/// What can be checked of one entry alone: its input patterns compile, its endpoints are https
/// templates over declared inputs, its regions are named by its `region` input.
fn check(p: &Provider, config: &Config) -> Result<()> {
    for (name, spec) in &p.inputs {
        spec.regex().map_err(|e| {
            Error::validation(format!(
                "provider `{}` input `{name}`: bad pattern: {e}",
                p.slug
            ))
        })?;
    }
    endpoints::check_templates(p, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `load` does with entries it did not ship: each checked, then all indexed together.
    fn build(entries: Vec<Provider>, config: &Config) -> Result<Catalog> {
        check_all(&entries, config)?;
        Catalog::index(entries)
    }

    fn config() -> Config {
        Config::from_lookup(|k| (k == "BROKER_PUBLIC_URL").then(|| "https://broker.example".into()))
            .unwrap()
    }

    #[test]
    fn builtin_catalog_loads_and_resolves_names() {
        let c = Catalog::load(&config(), vec![]).unwrap();
        assert!(c.get("github").is_some());
        assert_eq!(c.resolve("google-sheets").unwrap().slug, "google-sheets");
        assert_eq!(
            c.resolve("71607ba1-c0ac-4799-8049-7f4b90dd50f7")
                .unwrap()
                .slug,
            "google-sheets"
        );
        assert!(matches!(c.resolve("nope"), Err(Error::NotFound(_))));
    }

    #[test]
    fn airbyte_source_definition_ids_resolve_to_their_providers() {
        let c = Catalog::load(&config(), vec![]).unwrap();
        for (definition, slug) in [
            ("71607ba1-c0ac-4799-8049-7f4b90dd50f7", "google-sheets"),
            ("ef69ef6e-aa7f-4af1-a01d-ef775033524e", "github"),
            ("b117307c-14b6-41aa-9422-947e34922962", "salesforce"),
            ("36c891d9-4bd9-43ac-bad2-10e12756272c", "hubspot"),
            ("c2281cee-86f9-4a86-bb48-d23286b4c7bd", "slack"),
            ("9f8dda77-1048-4368-815b-269bf54ee9b8", "google-drive"),
            ("9da77001-af33-4bcd-be46-6252bf9342b9", "shopify"),
        ] {
            assert_eq!(c.resolve(definition).unwrap().slug, slug, "{definition}");
        }
    }

    #[test]
    fn providers_file_adds_entries_and_overrides_builtins_by_slug() {
        let path = std::env::temp_dir().join(format!("providers-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(
            &path,
            r#"
            [[provider]]
            slug = "github"
            name = "GitHub Enterprise"
            authorization_url = "https://ghe.example.com/login/oauth/authorize"
            token_url = "https://ghe.example.com/login/oauth/access_token"

            [[provider]]
            slug = "acme"
            name = "Acme"
            aliases = ["acme-crm"]
            authorization_url = "https://{tenant}.acme.example/auth"
            token_url = "https://{tenant}.acme.example/token"
            [provider.inputs.tenant]
            pattern = "[a-z]+"
            required = true
            "#,
        )
        .unwrap();
        let mut config = config();
        config.providers_file = Some(path.clone());
        let c = Catalog::load(&config, vec![]).unwrap();
        std::fs::remove_file(path).unwrap();
        assert_eq!(c.get("github").unwrap().name, "GitHub Enterprise");
        assert_eq!(c.get("acme-crm").unwrap().slug, "acme");
        assert!(c.get("google-sheets").is_some(), "built-ins stay");
    }

    #[test]
    fn unreadable_or_invalid_providers_file_fails_at_start() {
        let mut config = config();
        config.providers_file = Some("/nonexistent/providers.toml".into());
        assert!(Catalog::load(&config, vec![]).is_err());
        let path = std::env::temp_dir().join(format!("providers-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, "[[provider]]\nslug = \"x\"\nnme = \"typo\"\n").unwrap();
        config.providers_file = Some(path.clone());
        let err = Catalog::load(&config, vec![]).unwrap_err().to_string();
        std::fs::remove_file(path).unwrap();
        assert!(err.contains("providers"), "{err}");
    }

    #[test]
    fn duplicate_alias_is_refused() {
        let mut entries = builtin().unwrap();
        let mut dup = entries[0].clone();
        dup.slug = "other".into();
        entries.push(dup);
        assert!(build(entries, &config()).is_err());
    }

    #[test]
    fn builtin_slugs_are_unique_and_every_entry_is_valid() {
        let entries = builtin().unwrap();
        let slugs: std::collections::HashSet<&str> =
            entries.iter().map(|p| p.slug.as_str()).collect();
        assert_eq!(slugs.len(), entries.len(), "a built-in slug appears twice");
        assert!(entries.len() >= 60);
        // Checked here rather than at every start; patterns are compiled on first use.
        build(entries, &config()).unwrap();
    }

    #[test]
    fn every_builtin_entry_names_its_documentation_and_refresh_grant() {
        let entries = builtin().unwrap();
        for p in &entries {
            let docs = p
                .docs_url
                .as_deref()
                .unwrap_or_else(|| panic!("{}: no docs_url", p.slug));
            assert!(docs.starts_with("https://"), "{}: {docs}", p.slug);
            assert!(p.refresh.is_some(), "{}: refresh undeclared", p.slug);
            if let Some(month) = &p.checked {
                let ok = month.len() == 7
                    && month.as_bytes()[4] == b'-'
                    && month.chars().filter(char::is_ascii_digit).count() == 6;
                assert!(ok, "{}: checked {month} is not YYYY-MM", p.slug);
            }
        }
        // Issue 18 is open until every entry is checked against its documentation: the ones
        // not yet checked are named here, and the list only shrinks.
        let unchecked: Vec<&str> = entries
            .iter()
            .filter(|p| p.checked.is_none())
            .map(|p| p.slug.as_str())
            .collect();
        assert_eq!(unchecked, NOT_YET_CHECKED);
    }

    /// Entries whose facts were not yet read against the provider's own documentation.
    const NOT_YET_CHECKED: &[&str] = &["figma"];

    #[test]
    fn a_retired_entry_is_listed_but_refused_with_its_reason() {
        let mut entries = builtin().unwrap();
        let mut old = entries.iter().find(|p| p.slug == "github").unwrap().clone();
        old.slug = "old-api".into();
        old.aliases.clear();
        old.source_definition_ids.clear();
        old.retired = Some("the provider shut this API down on 2026-01-01".into());
        entries.push(old);
        let catalog = build(entries, &config()).unwrap();
        let p = catalog.resolve("old-api").unwrap();
        let err = p.require_usable().unwrap_err().to_string();
        assert!(
            err.contains("retired: the provider shut this API down"),
            "{err}"
        );
        assert_eq!(p.quirks(), ["retired(refused)"]);
    }

    #[test]
    fn a_bad_pattern_in_the_providers_file_fails_at_start() {
        let mut config = config();
        let path = std::env::temp_dir().join(format!("providers-{}.toml", uuid::Uuid::new_v4()));
        let entry = "[[provider]]\nslug = \"x\"\nname = \"X\"\n\
            authorization_url = \"https://x.example/a\"\ntoken_url = \"https://x.example/t\"\n\
            [provider.inputs.team]\npattern = \"[a-z\"\n";
        std::fs::write(&path, entry).unwrap();
        config.providers_file = Some(path.clone());
        let err = Catalog::load(&config, vec![]).unwrap_err().to_string();
        std::fs::remove_file(path).unwrap();
        assert!(err.contains("bad pattern"), "{err}");
    }

    #[test]
    fn duplicate_definition_id_or_issuer_is_refused() {
        let entries = builtin().unwrap();
        let github = entries.iter().find(|p| p.slug == "github").unwrap();
        let sheets = entries.iter().find(|p| p.slug == "google-sheets").unwrap();
        let mut same_definition = github.clone();
        same_definition.slug = "github-2".into();
        same_definition.aliases.clear();
        let mut same_issuer = sheets.clone();
        same_issuer.slug = "google-sheets-2".into();
        same_issuer.aliases.clear();
        same_issuer.source_definition_ids.clear();
        let mut same_issuer_elsewhere = same_issuer.clone();
        same_issuer_elsewhere.token_url = "https://tokens.example/token".into();
        for extra in [same_definition, same_issuer_elsewhere] {
            let mut all = entries.clone();
            all.push(extra);
            assert!(build(all, &config()).is_err());
        }
        // One authorization server's issuer, declared by two entries with its endpoints: fine
        let mut all = entries.clone();
        all.push(same_issuer);
        assert!(build(all, &config()).is_ok());
    }

    #[test]
    fn regions_need_a_region_input_that_accepts_their_names() {
        let entry = |input: &str| {
            format!(
                r#"
                [[provider]]
                slug = "x"
                name = "X"
                authorization_url = "https://x.example/a"
                token_url = "https://x.example/t"
                [provider.regions.eu]
                authorization_url = "https://eu.x.example/a"
                token_url = "https://eu.x.example/t"
                {input}
            "#
            )
        };
        let build = |text: &str| build(parse(text, "t").unwrap(), &config());
        assert!(build(&entry("")).is_err(), "no region input");
        assert!(build(&entry("[provider.inputs.region]\npattern = \"us|au\"")).is_err());
        assert!(build(&entry("[provider.inputs.region]\npattern = \"us|eu\"")).is_ok());
        let http_region = entry("[provider.inputs.region]\npattern = \"us|eu\"")
            .replace("https://eu.x.example/t", "http://eu.x.example/t");
        assert!(
            build(&http_region).is_err(),
            "region endpoints are https too"
        );
    }

    #[test]
    fn template_variable_without_declared_input_is_refused() {
        let text = r#"
            [[provider]]
            slug = "x"
            name = "X"
            authorization_url = "https://{tenant}.x.example/auth"
            token_url = "https://x.example/token"
        "#;
        assert!(build(parse(text, "t").unwrap(), &config()).is_err());
    }

    #[test]
    fn http_endpoint_is_refused_without_loopback_allowance() {
        let text = r#"
            [[provider]]
            slug = "x"
            name = "X"
            authorization_url = "http://127.0.0.1:9/auth"
            token_url = "http://127.0.0.1:9/token"
        "#;
        assert!(build(parse(text, "t").unwrap(), &config()).is_err());
    }
}
