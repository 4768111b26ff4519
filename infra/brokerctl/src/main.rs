//! `brokerctl`: command-line wiring only; the commands live in the library.

use std::net::SocketAddr;
use std::process::ExitCode;

use broker::Catalog;
use broker::auth::Scope;
use broker::connection::{ConnectionStatus, ListFilters};
use broker::events::EventType;
use brokerctl::admin::{self, Admin};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "brokerctl",
    version,
    about = "Run and administer the OAuth connection broker"
)]
struct Cli {
    /// Where state and secrets live.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "embedded",
        env = "BROKER_BACKEND"
    )]
    backend: BackendArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Embedded,
    Aws,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every route of every function on loopback, with the sandbox provider.
    Serve {
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
    },
    /// Create the table with TTL (aws) or the local file (embedded) where missing.
    Init,
    /// Organizations and their registered redirect URLs.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Provider app credentials.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// The provider catalog.
    Providers {
        #[command(subcommand)]
        command: ProvidersCommand,
    },
    /// Connections: list and read them, hand out a fresh token (the API's core, from here).
    Connections {
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// Webhook endpoints: where an organization's connection events are delivered, signed.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Connection events and their deliveries (embedded backend).
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// The newest deliveries, one line each (time, event, type, connection, endpoint, state,
    /// attempts); with --follow, then every change as `serve` delivers, until interrupted.
    Tail {
        #[arg(long)]
        org: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        follow: bool,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Register an endpoint; prints its `whsec_` secret once, alone on the last line.
    Add {
        #[arg(long)]
        org: String,
        #[arg(long)]
        url: String,
        /// Event types (comma-separated, e.g. connection.revoked,connection.reauthorization_required);
        /// none means every type.
        #[arg(long, value_delimiter = ',', value_parser = parse_event_type)]
        events: Vec<EventType>,
    },
    /// The organization's endpoints (never a secret).
    List {
        #[arg(long)]
        org: String,
    },
    /// Remove an endpoint and its secret.
    Remove {
        id: String,
        #[arg(long)]
        org: String,
    },
    /// A new secret, printed once; the old one keeps signing for a day.
    Rotate {
        id: String,
        #[arg(long)]
        org: String,
    },
}

fn parse_event_type(s: &str) -> Result<EventType, String> {
    EventType::parse(s).ok_or_else(|| {
        let all: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        format!("not an event type (one of: {})", all.join(", "))
    })
}

#[derive(Subcommand)]
enum ConnectionsCommand {
    /// One line per connection, newest first (or the API's JSON with --json).
    List {
        #[arg(long)]
        org: String,
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long)]
        provider: Option<String>,
        /// pending, authorized, active, failed, reauthorization_required or revoked.
        #[arg(long)]
        status: Option<String>,
        /// A connect session's end user.
        #[arg(long)]
        end_user: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        /// The cursor the previous page printed.
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One connection, as `GET /v1/connections/{id}` shows it.
    Show {
        id: String,
        #[arg(long)]
        org: String,
    },
    /// The connection's access token, refreshed first when due (prints the token).
    Token {
        id: String,
        #[arg(long)]
        org: String,
        #[arg(long)]
        force_refresh: bool,
    },
    /// End the connection: revoked at the provider where it allows it, its tokens deleted.
    Revoke {
        id: String,
        #[arg(long)]
        org: String,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Register an organization (or replace its redirect URLs).
    Create {
        org: String,
        #[arg(long = "redirect-url", required = true)]
        redirect_urls: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print a new API key once, alone on the last line of standard output.
    Create {
        #[arg(long)]
        org: String,
        /// Numeric user id carried by the key (0 for a service key).
        #[arg(long, default_value_t = 0)]
        user: u64,
        /// Limit the key to these workspaces (repeatable); none means every workspace.
        #[arg(long = "workspace")]
        workspaces: Vec<String>,
        /// What the key may do (repeatable): flows, connections:read, credentials:read,
        /// connections:write. None means all four.
        #[arg(long = "scope", value_parser = parse_scope)]
        scopes: Vec<Scope>,
    },
    /// The organization's keys: id, creation, user, workspaces, scopes, last use (never a key).
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a key by its id (as `key list` shows it); refused within the key cache's bound.
    Revoke {
        key_id: String,
        /// The key's organization: a key id alone never revokes another organization's key.
        #[arg(long)]
        org: String,
    },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        format!("not a scope (one of: {})", all.join(", "))
    })
}

#[derive(Subcommand)]
enum AppCommand {
    /// Store a provider app's client id and secret (the secret is read from standard input).
    Set {
        slug: String,
        #[arg(long)]
        client_id: String,
        #[arg(long, required = true)]
        client_secret_stdin: bool,
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Which apps are configured, at which level (never a secret).
    List,
}

#[derive(Subcommand)]
enum ProvidersCommand {
    /// One line per provider, built-in and from BROKER_PROVIDERS_FILE.
    List,
    /// One provider's entry as providers-file TOML (by slug, alias or source definition id).
    Show { name: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(output) => {
            if !output.is_empty() {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command and returns what it prints on standard output.
async fn run(cli: Cli) -> broker::Result<String> {
    let backend = match cli.backend {
        BackendArg::Embedded => "embedded",
        BackendArg::Aws => "aws",
    };
    let addr = match &cli.command {
        Command::Serve { addr } => Some(*addr),
        _ => None,
    };
    let config = brokerctl::config(backend, addr)?;
    Ok(match cli.command {
        Command::Serve { addr } => {
            broker::api::lambda::init_logging();
            brokerctl::server::run(config, addr).await?;
            String::new()
        }
        Command::Init => Admin::connect(config).await?.init().await?,
        Command::Org {
            command: OrgCommand::Create { org, redirect_urls },
        } => {
            let org = Admin::connect(config)
                .await?
                .org_create(&org, &redirect_urls)
                .await?;
            format!(
                "organization {} registered with {} redirect URL(s)",
                org.id,
                org.redirect_urls.len()
            )
        }
        Command::Key {
            command:
                KeyCommand::Create {
                    org,
                    user,
                    workspaces,
                    scopes,
                },
        } => {
            let key = Admin::connect(config)
                .await?
                .key_create(&org, user, workspaces, scopes)
                .await?;
            // The key alone on the last line, so scripts can capture it with `tail -1`.
            format!("API key for organization {org} (shown once, store it now):\n{key}")
        }
        Command::Key {
            command: KeyCommand::List { org },
        } => Admin::connect(config)
            .await?
            .key_list(&org)
            .await?
            .trim_end()
            .to_string(),
        Command::Key {
            command: KeyCommand::Revoke { key_id, org },
        } => {
            Admin::connect(config)
                .await?
                .key_revoke(&org, &key_id)
                .await?
        }
        Command::App {
            command: AppCommand::List,
        } => Admin::connect(config)
            .await?
            .app_list()
            .await?
            .trim_end()
            .to_string(),
        Command::App {
            command:
                AppCommand::Set {
                    slug,
                    client_id,
                    client_secret_stdin: _,
                    org,
                    workspace,
                },
        } => {
            let secret = admin::read_secret_stdin()?;
            let admin = Admin::connect(config).await?;
            let name = admin
                .app_set(
                    &slug,
                    &client_id,
                    secret,
                    org.as_deref(),
                    workspace.as_deref(),
                )
                .await?;
            format!("app credentials for {slug} stored at {name}")
        }
        Command::Connections { command } => {
            let admin = Admin::connect(config).await?;
            match command {
                ConnectionsCommand::List {
                    org,
                    workspace,
                    provider,
                    status,
                    end_user,
                    limit,
                    cursor,
                    json,
                } => {
                    let status = status
                        .map(|s| {
                            ConnectionStatus::parse(&s).ok_or_else(|| {
                                broker::Error::validation(format!("--status {s}: not a status"))
                            })
                        })
                        .transpose()?;
                    let filters = ListFilters {
                        workspace_id: workspace,
                        provider,
                        status,
                        end_user_id: end_user,
                        limit,
                        cursor,
                    };
                    admin
                        .connections_list(admin::ListArgs { org, filters, json })
                        .await?
                        .trim_end()
                        .to_string()
                }
                ConnectionsCommand::Show { id, org } => admin.connections_show(&org, &id).await?,
                ConnectionsCommand::Token {
                    id,
                    org,
                    force_refresh,
                } => admin.connections_token(&org, &id, force_refresh).await?,
                ConnectionsCommand::Revoke { id, org } => {
                    admin.connections_revoke(&org, &id).await?
                }
            }
        }
        Command::Webhooks { command } => {
            let admin = Admin::connect(config).await?;
            match command {
                WebhooksCommand::Add { org, url, events } => {
                    let (id, secret) = admin.webhooks_add(&org, &url, events).await?;
                    // The secret alone on the last line, so scripts can capture it with `tail -1`.
                    format!(
                        "webhook endpoint {id} for organization {org}; its signing secret (shown once):\n{}",
                        secret.expose()
                    )
                }
                WebhooksCommand::List { org } => {
                    admin.webhooks_list(&org).await?.trim_end().to_string()
                }
                WebhooksCommand::Remove { id, org } => admin.webhooks_remove(&org, &id).await?,
                WebhooksCommand::Rotate { id, org } => {
                    let secret = admin.webhooks_rotate(&org, &id).await?;
                    format!(
                        "new signing secret for {id} (shown once; the old one signs for 24 h more):\n{}",
                        secret.expose()
                    )
                }
            }
        }
        Command::Events {
            command: EventsCommand::Tail { org, limit, follow },
        } => {
            brokerctl::admin::events_tail(&config, org.as_deref(), limit, follow).await?;
            String::new()
        }
        Command::Providers {
            command: ProvidersCommand::List,
        } => admin::providers_list(&Catalog::load(&config, vec![])?)
            .trim_end()
            .to_string(),
        Command::Providers {
            command: ProvidersCommand::Show { name },
        } => admin::providers_show(&Catalog::load(&config, vec![])?, &name)?
            .trim_end()
            .to_string(),
    })
}
