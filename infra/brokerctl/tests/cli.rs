//! The command-line contract of `brokerctl` on the embedded backend: what scripts rely on.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn brokerctl(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_brokerctl"))
        .args(args)
        .env("BROKER_DATA_DIR", dir)
        .env_remove("BROKER_BACKEND")
        .env_remove("BROKER_PROVIDERS_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run brokerctl");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn admin_commands_register_an_org_print_a_key_alone_and_store_app_credentials() {
    let dir = std::env::temp_dir().join(format!("brokerctl-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let init = brokerctl(&dir, &["init"], None);
    assert!(init.status.success(), "{init:?}");
    assert!(dir.join("broker.sqlite3").exists());

    // A key for an organization that does not exist is refused with a clear message.
    let missing = brokerctl(&dir, &["key", "create", "--org", "acme"], None);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));

    let bad = brokerctl(
        &dir,
        &[
            "org",
            "create",
            "acme",
            "--redirect-url",
            "http://evil.example/cb",
        ],
        None,
    );
    assert!(!bad.status.success(), "plain http off loopback is refused");
    let org = brokerctl(
        &dir,
        &[
            "org",
            "create",
            "acme",
            "--redirect-url",
            "https://app.acme.example/done",
        ],
        None,
    );
    assert!(org.status.success(), "{org:?}");

    let key = brokerctl(
        &dir,
        &[
            "key",
            "create",
            "--org",
            "acme",
            "--user",
            "42",
            "--workspace",
            "ws-1",
        ],
        None,
    );
    assert!(key.status.success(), "{key:?}");
    let out = stdout(&key);
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("obk_") && last.len() == 47 && !last.contains(' '),
        "{out}"
    );
    let app = brokerctl(
        &dir,
        &[
            "app",
            "set",
            "github",
            "--client-id",
            "id-1",
            "--client-secret-stdin",
        ],
        Some("s3cret-value\n"),
    );
    assert!(app.status.success(), "{app:?}");
    assert!(stdout(&app).contains("oauth-broker/apps/github"));
    let db = std::fs::read(dir.join("broker.sqlite3-wal")).unwrap_or_default();
    let db = [db, std::fs::read(dir.join("broker.sqlite3")).unwrap()].concat();
    assert!(
        !db.windows(last.len()).any(|w| w == last.as_bytes()),
        "the key is stored hashed only"
    );
    assert!(
        !db.windows(12).any(|w| w == b"s3cret-value"),
        "app secrets are sealed"
    );

    let providers = brokerctl(&dir, &["providers", "list"], None);
    let list = stdout(&providers);
    assert!(list.lines().count() >= 60, "{list}");
    // The README shows the same list, so it cannot drift from the catalog
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    for line in list.lines() {
        assert!(
            readme.contains(line),
            "README's provider list lacks: {line}"
        );
    }
    // Every OAuth 2.0 actor name of Airbyte's API resolves
    for actor in AIRBYTE_OAUTH_ACTORS {
        let show = brokerctl(&dir, &["providers", "show", actor], None);
        assert!(show.status.success(), "{actor}: {show:?}");
        assert!(stdout(&show).contains("[[provider]]"));
    }
    // An entry shows where it was checked
    let zoho = brokerctl(&dir, &["providers", "show", "zoho"], None);
    assert!(stdout(&zoho).contains(
        "# documentation: https://www.zoho.com/accounts/protocol/oauth/multi-dc/client-authorization.html (checked 2026-12)"
    ));
    let trello = brokerctl(&dir, &["providers", "show", "trello"], None);
    assert!(stdout(&trello).contains("oauth1(refused)"));
    let missing = brokerctl(&dir, &["providers", "show", "no-such-provider"], None);
    assert!(!missing.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Airbyte's `OAuthActorNames` values for OAuth 2.0 sources.
const AIRBYTE_OAUTH_ACTORS: &[&str] = &[
    "airtable",
    "amazon-ads",
    "amazon-seller-partner",
    "asana",
    "azure-blob-storage",
    "bing-ads",
    "drift",
    "facebook-marketing",
    "facebook-pages",
    "gcs",
    "github",
    "gitlab",
    "google-ads",
    "google-analytics-data-api",
    "google-drive",
    "google-search-console",
    "google-sheets",
    "hubspot",
    "instagram",
    "intercom",
    "lever-hiring",
    "linkedin-ads",
    "mailchimp",
    "microsoft-onedrive",
    "microsoft-sharepoint",
    "microsoft-teams",
    "monday",
    "notion",
    "pinterest",
    "rd-station-marketing",
    "salesforce",
    "sharepoint-enterprise",
    "slack",
    "smartsheets",
    "snapchat-marketing",
    "surveymonkey",
    "ticktick",
    "tiktok-marketing",
    "typeform",
    "youtube-analytics",
    "zendesk-support",
    "zendesk-talk",
];
