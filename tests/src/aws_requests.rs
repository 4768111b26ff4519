//! Every AWS request the broker's SDK clients send, counted by an SDK interceptor: what a step
//! costs in round trips is then asserted, not estimated.

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// `service:Operation` per request sent, retries included, in order.
#[derive(Debug, Clone, Default)]
pub struct AwsRequests(Arc<Mutex<Vec<String>>>);

impl AwsRequests {
    /// The requests sent since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for AwsRequests {
    fn name(&self) -> &'static str {
        "AwsRequests"
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
            self.0.lock().unwrap().push(entry);
        }
        Ok(())
    }
}
