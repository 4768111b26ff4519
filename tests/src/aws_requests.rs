//! Every AWS request the broker's SDK clients send, counted by an SDK interceptor: what a step
//! costs in round trips is then asserted, not estimated.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_secretsmanager::operation::create_secret::CreateSecretInput;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef, Input,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// `service:Operation` per request sent, retries included, in order; and the IAM actions each
/// call needs, once per call.
#[derive(Debug, Clone, Default)]
pub struct AwsRequests {
    sent: Arc<Mutex<Vec<String>>>,
    actions: Arc<Mutex<Vec<String>>>,
}

impl AwsRequests {
    /// The requests sent since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }

    /// The IAM actions the calls since the last call needed (`dynamodb:PutItem`, ...).
    pub fn take_actions(&self) -> Vec<String> {
        std::mem::take(&mut *self.actions.lock().unwrap())
    }
}

/// The IAM actions one call needs: its own, except that a transaction needs those of its items,
/// and a secret created with tags also needs `secretsmanager:TagResource`.
fn actions_of(service: &str, operation: &str, input: &Input) -> Vec<String> {
    let prefix = match service {
        "DynamoDB" => "dynamodb",
        "Secrets Manager" => "secretsmanager",
        other => return vec![format!("{other}:{operation}")],
    };
    if let Some(tx) = input.downcast_ref::<TransactWriteItemsInput>() {
        return tx
            .transact_items()
            .iter()
            .map(|item| {
                let action = if item.put().is_some() {
                    "PutItem"
                } else if item.update().is_some() {
                    "UpdateItem"
                } else if item.delete().is_some() {
                    "DeleteItem"
                } else {
                    "ConditionCheckItem"
                };
                format!("dynamodb:{action}")
            })
            .collect();
    }
    let mut actions = vec![format!("{prefix}:{operation}")];
    if input
        .downcast_ref::<CreateSecretInput>()
        .is_some_and(|c| !c.tags().is_empty())
    {
        actions.push("secretsmanager:TagResource".into());
    }
    actions
}

impl Intercept for AwsRequests {
    fn name(&self) -> &'static str {
        "AwsRequests"
    }

    // Before serialization: once per call, with the call's input and its operation's metadata.
    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(op) = cfg.load::<Metadata>() {
            let actions = actions_of(op.service(), op.name(), context.input());
            self.actions.lock().unwrap().extend(actions);
        }
        Ok(())
    }

    // Before transmit: once per attempt, so an SDK retry counts as the request it is.
    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(op) = cfg.load::<Metadata>() {
            let entry = format!("{}:{}", op.service(), op.name());
            self.sent.lock().unwrap().push(entry);
        }
        Ok(())
    }
}

/// The IAM actions each function's handlers needed, by the function's binary name.
pub type ActionsByFunction = Arc<Mutex<BTreeMap<&'static str, BTreeSet<String>>>>;

/// The function whose route table serves `path`, by its binary name.
pub fn function_of(path: &str) -> Option<&'static str> {
    use broker::api::route::serves;
    if serves(initiate::ROUTES, path) {
        Some("broker-initiate")
    } else if serves(authorize::ROUTES, path) {
        Some("broker-authorize")
    } else if serves(callback::ROUTES, path) {
        Some("broker-callback")
    } else if serves(complete::ROUTES, path) {
        Some("broker-complete")
    } else if serves(connections::ROUTES, path) {
        Some("broker-connections")
    } else {
        None
    }
}

/// A layer that files the actions a request's handler needed under its function. Requests in
/// flight at once would mix theirs: what reads the map drives one request at a time.
pub async fn attributing_layer(
    axum::extract::State((requests, by_function)): axum::extract::State<(
        AwsRequests,
        ActionsByFunction,
    )>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let function = function_of(req.uri().path());
    requests.take_actions();
    let response = next.run(req).await;
    let actions = requests.take_actions();
    if let Some(function) = function {
        by_function
            .lock()
            .unwrap()
            .entry(function)
            .or_default()
            .extend(actions);
    }
    response
}
