//! The dead-letter queue on AWS: an SQS queue (`BROKER_EVENTS_DLQ_URL`), one message per event
//! given up at one endpoint.

use async_trait::async_trait;

use super::stream::{DeadLetter, DeadLetters};
use crate::{Error, Result};

pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeadLetters {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: &str) -> Self {
        SqsDeadLetters {
            client,
            queue_url: queue_url.to_string(),
        }
    }
}

#[async_trait]
impl DeadLetters for SqsDeadLetters {
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<()> {
        let body = serde_json::to_string(letter).map_err(Error::internal)?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| crate::vault::sdk_error("SendMessage", e))?;
        Ok(())
    }
}
