//! The table's DynamoDB Stream as Lambda would hand it to the `events` function: records read
//! from the emulator's DynamoDB Streams API (DescribeStream, GetShardIterator, GetRecords), each
//! given the `eventSourceARN` the event source mapping adds, and a dead-letter queue on the same
//! emulator.

use serde_json::{Value, json};

use broker::app::EventsBackend;

/// One call of the emulator's JSON API (`target` such as `DynamoDBStreams_20120810.GetRecords`);
/// the credential scope names the service, as the SDK signs it.
async fn call(target: &str, body: Value) -> Value {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let response = reqwest_client()
        .post(&endpoint)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", target)
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261202/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .expect("the emulator answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{target}: {status} {text}");
    serde_json::from_str(&text).expect("JSON")
}

fn reqwest_client() -> oauth2::reqwest::Client {
    oauth2::reqwest::Client::new()
}

/// Every record of `table`'s stream so far, oldest first per shard, as the stream event's
/// `Records` (each with its `eventSourceARN`).
pub async fn records(table: &str) -> Vec<Value> {
    let described = call(
        "DynamoDB_20120810.DescribeTable",
        json!({ "TableName": table }),
    )
    .await;
    let arn = described["Table"]["LatestStreamArn"]
        .as_str()
        .expect("the table has a stream")
        .to_string();
    let stream = call(
        "DynamoDBStreams_20120810.DescribeStream",
        json!({ "StreamArn": arn }),
    )
    .await;
    let mut out = Vec::new();
    for shard in stream["StreamDescription"]["Shards"].as_array().unwrap() {
        let iterator = call(
            "DynamoDBStreams_20120810.GetShardIterator",
            json!({
                "StreamArn": arn,
                "ShardId": shard["ShardId"],
                "ShardIteratorType": "TRIM_HORIZON",
            }),
        )
        .await;
        let mut next = iterator["ShardIterator"].clone();
        while let Some(it) = next.as_str().map(str::to_string) {
            let page = call(
                "DynamoDBStreams_20120810.GetRecords",
                json!({ "ShardIterator": it }),
            )
            .await;
            let records = page["Records"].as_array().cloned().unwrap_or_default();
            if records.is_empty() {
                break;
            }
            for mut record in records {
                record["eventSourceARN"] = json!(arn);
                out.push(record);
            }
            next = page["NextShardIterator"].clone();
        }
    }
    out
}

/// The records as one stream event.
pub fn event(records: &[Value]) -> aws_lambda_events::event::dynamodb::Event {
    serde_json::from_value(json!({ "Records": records })).expect("a DynamoDB stream event")
}

/// A dead-letter queue on the emulator, and the events function's backend sending to it.
pub struct Dlq {
    pub url: String,
    client: aws_sdk_sqs::Client,
}

impl Dlq {
    pub async fn create() -> Dlq {
        let sdk = broker::aws::sdk_config().await.expect("SDK config");
        let client = aws_sdk_sqs::Client::new(&sdk);
        let name = format!("dlq-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let url = client
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("queue url");
        Dlq { url, client }
    }

    /// The events function's backend over the broker's table and vault, sending here.
    pub async fn backend(&self, config: &broker::Config) -> EventsBackend {
        let mut config = config.clone();
        config.events_dlq_url = Some(self.url.clone());
        let sdk = broker::aws::sdk_config().await.expect("SDK config");
        EventsBackend::new(config, &sdk).expect("events backend")
    }

    /// The dead letters received so far (each as its JSON body).
    pub async fn letters(&self) -> Vec<Value> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        out.messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| serde_json::from_str(m.body.as_deref().unwrap_or("{}")).unwrap())
            .collect()
    }
}

/// Milliseconds since the epoch, `secs` from now: an invocation's deadline as Lambda gives it.
pub fn deadline_in(secs: u64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (now + std::time::Duration::from_secs(secs)).as_millis() as i64
}

/// The events function's delivery run over the broker's stream so far, as Lambda would hand it
/// the batch: a dead-letter queue of its own, the function's waits and timeout, a minute.
pub struct StreamRun {
    pub dlq: Dlq,
    pub backend: EventsBackend,
    pub records: Vec<Value>,
    pub answer: aws_lambda_events::event::streams::DynamoDbEventResponse,
}

impl StreamRun {
    pub async fn deliver(broker: &crate::Broker) -> StreamRun {
        let dlq = Dlq::create().await;
        let backend = dlq.backend(&broker.app.config).await;
        let records = records(&broker.app.config.table).await;
        let mut run = StreamRun {
            dlq,
            backend,
            records,
            answer: Default::default(),
        };
        run.answer = run.again().await;
        run
    }

    /// The same records handed again (Lambda retrying the batch).
    pub async fn again(&self) -> aws_lambda_events::event::streams::DynamoDbEventResponse {
        broker::events::stream::deliver_records(
            &self.backend.delivery(),
            event(&self.records),
            deadline_in(60),
        )
        .await
    }
}
