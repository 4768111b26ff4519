//! The local HTTP server: each request becomes the `lambda_http::Request` API Gateway would have
//! delivered and goes to the function whose route table has its path.

use broker::connection::keepalive::SWEEP_INTERVAL_SECS;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use broker::api::{self, route};
use broker::{App, Error};
use http_body_util::{BodyExt, Limited};
use lambda_http::RequestExt;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::request::RequestContext;
use tokio::net::TcpListener;

use crate::local::{Console, Local, to_axum};
use broker::events::{Pump, pump_once};
use broker::store::embedded::{Db, EmbeddedStore};

use crate::console;
use crate::{pages, sandbox};

/// Every function's routes, plus (with a console) the console, the landing page and the sandbox
/// provider.
pub fn router(app: Arc<App>, console: Option<Console>) -> Router {
    let sandbox = Arc::new(sandbox::Sandbox::new(app.clone()));
    let with_pages = console.is_some();
    let local = Arc::new(Local { app, console });
    let mut router = Router::new();
    if with_pages {
        router = router
            .route("/", get(console::home))
            .route("/console/connect", post(console::connect))
            .route("/console/token", post(console::token))
            .route("/console/revoke", post(console::revoke))
            .route("/done", get(pages::done))
            .route(
                sandbox::AUTHORIZE_PATH,
                get(sandbox::authorize).with_state(sandbox.clone()),
            )
            .route(
                sandbox::TOKEN_PATH,
                axum::routing::post(sandbox::token).with_state(sandbox.clone()),
            )
            .route(
                sandbox::REVOKE_PATH,
                axum::routing::post(sandbox::revoke).with_state(sandbox.clone()),
            )
            .route(
                sandbox::USERINFO_PATH,
                get(sandbox::userinfo).with_state(sandbox),
            );
    }
    router.fallback(dispatch).with_state(local)
}

/// Serves `router` on an already bound listener until the process ends.
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// Binds `addr` (port 0 for any free port) and returns the listener with its address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

async fn dispatch(
    State(local): State<Arc<Local>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let trace_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    // Stop reading at the limit: an oversized body is refused without being buffered.
    let bytes = match Limited::new(body, api::MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return to_axum(Error::PayloadTooLarge.to_response(&trace_id)),
    };
    let body = if bytes.is_empty() {
        lambda_http::Body::Empty
    } else {
        lambda_http::Body::Binary(bytes.to_vec())
    };
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.request_id = Some(trace_id.clone());
    let req = lambda_http::Request::from_parts(parts, body)
        .with_request_context(RequestContext::ApiGatewayV2(context));
    let app = local.app.as_ref();
    let path = req.uri().path();
    let response = if route::serves(initiate::ROUTES, path) {
        initiate::handle(app, req).await
    } else if route::serves(authorize::ROUTES, path) {
        authorize::handle(app, req).await
    } else if route::serves(callback::ROUTES, path) {
        callback::handle(app, req).await
    } else if route::serves(complete::ROUTES, path) {
        complete::handle(app, req).await
    } else if route::serves(connections::ROUTES, path) {
        connections::handle(app, req).await
    } else {
        Error::NotFound("route".into()).to_response(&trace_id)
    };
    to_axum(response)
}

/// The embedded backend's webhook deliveries: the outbox's due events, about once a second, off the
/// request path (on AWS the table's stream feeds the `events` function instead).
pub fn spawn_event_pump(app: Arc<App>) -> broker::Result<()> {
    let store = EmbeddedStore::new(Db::open(&app.config.data_dir)?);
    tokio::spawn(async move {
        loop {
            let pump = Pump {
                config: &app.config,
                outbox: &store,
                webhooks: &store,
                vault: app.vault.as_ref(),
            };
            match pump_once(&pump, app.clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(delivered = n, "webhooks delivered"),
                Err(e) => tracing::warn!(error = %e, "webhook delivery round failed"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    Ok(())
}

/// The keep-alive sweep every 15 minutes, as the deployed schedule runs it in the connections
/// function (the first one a minute after start).
pub fn spawn_keepalive(app: Arc<App>) {
    tokio::spawn(async move {
        let every = std::time::Duration::from_secs(SWEEP_INTERVAL_SECS as u64);
        let mut ticks = tokio::time::interval_at(
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
            every,
        );
        loop {
            ticks.tick().await;
            let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
            if let Err(e) = broker::connection::sweep(&app, until).await {
                tracing::warn!(error = %e, "keep-alive sweep failed");
            }
        }
    });
}

/// What `serve` runs: the App with the sandbox provider, the development organization (its key
/// on first start), the console's key, the webhook pump and the keep-alive sweep.
pub struct Served {
    pub app: Arc<App>,
    pub first_key: Option<String>,
    pub console: Console,
}

pub async fn prepare(config: broker::Config) -> broker::Result<Served> {
    let sandbox = sandbox::provider(&config.public_url);
    let app = Arc::new(App::build(config, vec![sandbox]).await?);
    sandbox::ensure_app(&app).await?;
    let first_key = pages::ensure_dev_org(&app).await?;
    let console = Console {
        api_base: app
            .config
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_string(),
        key: pages::ensure_console_key(&app).await?,
        organization_id: pages::DEV_ORG.into(),
        workspace: pages::DEV_WORKSPACE.into(),
        http: oauth2::reqwest::Client::new(),
    };
    if app.config.backend == broker::config::Backend::Embedded {
        spawn_event_pump(app.clone())?;
    }
    spawn_keepalive(app.clone());
    Ok(Served {
        app,
        first_key,
        console,
    })
}

/// `brokerctl serve`: [`prepare`], then every route and the console on `addr` until interrupted.
pub async fn run(config: broker::Config, addr: SocketAddr) -> broker::Result<()> {
    let io = |e: std::io::Error| broker::Error::validation(format!("cannot listen on {addr}: {e}"));
    let (listener, bound) = bind(addr).await.map_err(io)?;
    let Served {
        app,
        first_key,
        console,
    } = prepare(config).await?;
    let base = app
        .config
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_string();
    println!(
        "oauth-broker serving every route on http://{bound} ({:?} backend)",
        app.config.backend
    );
    println!("  try it in a browser:  {base}/");
    match first_key {
        Some(key) => {
            println!(
                "  development API key (organization `{}`, shown once):",
                pages::DEV_ORG
            );
            println!("  {key}");
            println!("  start a sandbox flow:");
            println!(
                "  curl -s -X POST {base}/v1/sources/initiateOAuth -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\\n    -d '{{\"sourceType\":\"sandbox\",\"workspaceId\":\"{}\",\"redirectUrl\":\"{base}{}\"}}'",
                pages::DEV_WORKSPACE,
                pages::DONE_PATH
            );
        }
        None => println!(
            "  new development key: brokerctl key create --org {}",
            pages::DEV_ORG
        ),
    }
    serve(listener, router(app, Some(console)))
        .await
        .map_err(|e| broker::Error::internal(format!("server: {e}")))
}
