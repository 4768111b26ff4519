//! DynamoDB backend: one table, keys `pk`/`sk`, TTL on `expires_at`, two indexes for listing
//! connections (`gsi1` by organization and workspace, `gsi2` by organization). Expiry is part of
//! every condition expression.

use crate::connect::{ConnectSession, SessionStore};
use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ReturnValue, ScalarAttributeType,
    StreamSpecification, StreamViewType, TimeToLiveSpecification, TransactWriteItem, Update,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    ConnectionStore, FlowStore, KeyStore, OrgStore, SourceStore, StateTokenStore, WebhookStore,
    keys,
};
use crate::auth::{ApiKeyRecord, KeyAdmin};
use crate::connection::{Connection, ConnectionStatus, ListQuery, Transition, list_key};
use crate::crypto::sha256_hex;
use crate::events::Endpoint;
use crate::events::stream::{DeliveryLedger, LedgerEntry};
use crate::flow::{Claim, Flow, FlowStatus, StateToken};
use crate::org::Org;
use crate::source::Source;
use crate::vault::sdk_error;
use crate::{ConnectionId, Error, OrgId, Result};

type Item = HashMap<String, AttributeValue>;

/// All store ports over one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// Each listing partition (a workspace, an organization) is spread over this many index keys: a
/// mass status change (a provider refusing every grant at once) reaches the index at the refresh
/// rate, 2,778/s for 10 million hourly refreshes, which one key (1,000 writes/s) cannot take and
/// eight (347/s each) can. README, "Scale", has the arithmetic.
pub const LIST_SHARDS: u32 = 8;

/// The attributes the listing indexes project besides the keys: what their filters read. Nothing
/// a refresh writes is among them, so a refresh never writes an index.
pub const LIST_PROJECTION: &[&str] = &["status", "provider", "end_user_id"];

/// Index attributes of a connection: set once at creation, never changed by a transition.
fn shard_of(id: &str) -> u32 {
    u32::from_str_radix(&sha256_hex(id)[..8], 16).unwrap_or(0) % LIST_SHARDS
}

fn by_workspace(org: &str, workspace: &str, shard: u32) -> String {
    format!("WS#{org}#{workspace}#{shard}")
}

fn by_org(org: &str, shard: u32) -> String {
    format!("ORG#{org}#{shard}")
}

/// The organization's webhook endpoints in the second index, like its keys.
fn webhooks_of(org: &str) -> String {
    format!("HOOKS#{org}")
}

/// An item an organization owns a few of (keys, webhook endpoints), listed through the second
/// index under a partition of their own, oldest first.
fn owned(mut item: Item, partition: String, created_at: i64, id: &str) -> Item {
    item.insert("gsi2pk".into(), s(partition));
    item.insert("gsi2sk".into(), s(format!("{created_at:012}#{id}")));
    item
}

/// The organization's API keys in the second index (few, listed by an operator: one partition).
fn keys_of(org: &str) -> String {
    format!("KEYS#{org}")
}

/// A connection's item, with its keys in both listing indexes.
fn connection_item(c: &Connection) -> Result<Item> {
    let mut item = to_item(keys::connection(&c.organization_id, &c.id), c)?;
    let workspace = c.workspace_id.as_deref().unwrap_or("-");
    let shard = shard_of(&c.id);
    let sort = list_key(c);
    item.insert(
        "gsi1pk".into(),
        s(by_workspace(&c.organization_id, workspace, shard)),
    );
    item.insert("gsi1sk".into(), s(sort.clone()));
    item.insert("gsi2pk".into(), s(by_org(&c.organization_id, shard)));
    item.insert("gsi2sk".into(), s(sort));
    if let Some(next) = c.keepalive.as_ref().and_then(|k| k.next)
        && ConnectionStatus::USABLE.contains(&c.status)
    {
        item.insert("gsi3pk".into(), s(sweep_partition(shard)));
        item.insert("gsi3sk".into(), s(sweep_key(next)));
    }
    Ok(item)
}

/// The keep-alive sweep's index (gsi3): usable connections by when the sweep looks next,
/// spread over the listing's shards; a sparse index, so other items are not in it.
fn sweep_partition(shard: u32) -> String {
    format!("SWEEP#{shard}")
}

/// Zero-padded, so the string order is the time order.
fn sweep_key(next: i64) -> String {
    format!("{:012}", next.max(0))
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn to_item<T: Serialize>(pk: String, value: &T) -> Result<Item> {
    let mut item: Item = serde_dynamo::to_item(value).map_err(Error::internal)?;
    if item.contains_key("pk") || item.contains_key("sk") {
        // A model field named like a key attribute would be silently overwritten.
        return Err(Error::internal("item field clashes with a key attribute"));
    }
    let sk = pk.split('#').next().unwrap_or_default().to_string();
    item.insert("pk".into(), s(pk));
    item.insert("sk".into(), s(sk));
    Ok(item)
}

fn from_item<T: DeserializeOwned>(item: Item) -> Result<T> {
    serde_dynamo::from_item(item).map_err(Error::internal)
}

/// `pk` and `sk` of an item; `sk` repeats the item type so the key schema stays open for children.
fn key(pk: String) -> Item {
    let sk = pk.split('#').next().unwrap_or_default().to_string();
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn is_condition_failure<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// A status as its item attribute.
fn status_value<T: Serialize>(status: T) -> Result<AttributeValue> {
    match serde_json::to_value(status).map_err(Error::internal)? {
        serde_json::Value::String(v) => Ok(s(v)),
        other => Err(Error::internal(format!("status serialized as {other}"))),
    }
}

/// A [`Transition`] as one conditional update of the connection's item.
struct TransitionExpr {
    key: Item,
    update: String,
    condition: String,
    names: HashMap<String, String>,
    values: Item,
}

impl TransitionExpr {
    /// `call` names the store call: its SDK retries send the same value.
    fn of(t: &Transition, call: &str) -> Result<Self> {
        let mut names = HashMap::from([
            ("#status".to_string(), "status".to_string()),
            ("#version".to_string(), "version".to_string()),
            ("#updated".to_string(), "updated_at".to_string()),
            ("#change".to_string(), "last_change".to_string()),
        ]);
        let mut values: Item = HashMap::from([
            (":to".to_string(), status_value(t.to)?),
            (":one".to_string(), n(1)),
            (":zero".to_string(), n(0)),
            (":at".to_string(), n(t.at)),
            (":change".to_string(), s(call)),
        ]);
        let mut sets = vec![
            "#status = :to".to_string(),
            "#version = if_not_exists(#version, :zero) + :one".to_string(),
            "#updated = :at".to_string(),
            "#change = :change".to_string(),
        ];
        let change: Item = serde_dynamo::to_item(&t.change).map_err(Error::internal)?;
        for (i, (attr, value)) in change.into_iter().enumerate() {
            names.insert(format!("#f{i}"), attr);
            values.insert(format!(":f{i}"), value);
            sets.push(format!("#f{i} = :f{i}"));
        }
        let mut from = Vec::with_capacity(t.from.len());
        for (i, status) in t.from.iter().enumerate() {
            values.insert(format!(":from{i}"), status_value(*status)?);
            from.push(format!(":from{i}"));
        }
        let mut condition = format!("attribute_exists(pk) AND #status IN ({})", from.join(", "));
        if let Some(version) = t.version {
            values.insert(":v".to_string(), AttributeValue::N(version.to_string()));
            condition.push_str(if version == 0 {
                // Items written before versions existed have none: they read as 0.
                " AND (attribute_not_exists(#version) OR #version = :v)"
            } else {
                " AND #version = :v"
            });
        }
        // The sweep's index follows the keep-alive time; a connection no longer usable leaves it.
        let mut removes = vec![];
        let next = t.change.keepalive.as_ref().map(|k| k.next);
        if t.sweeps()
            && let Some(Some(next)) = next
        {
            names.insert("#spk".into(), "gsi3pk".into());
            names.insert("#ssk".into(), "gsi3sk".into());
            values.insert(
                ":spk".into(),
                s(sweep_partition(shard_of(&t.connection_id))),
            );
            values.insert(":ssk".into(), s(sweep_key(next)));
            sets.push("#spk = :spk".into());
            sets.push("#ssk = :ssk".into());
        } else if !t.sweeps() || next.is_some() {
            names.insert("#spk".into(), "gsi3pk".into());
            names.insert("#ssk".into(), "gsi3sk".into());
            removes.extend(["#spk", "#ssk"]);
        }
        if t.change.release_lease {
            names.insert("#lease".to_string(), "refresh_lease".to_string());
            removes.push("#lease");
        }
        let mut update = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            update.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        Ok(TransitionExpr {
            key: key(keys::connection(&t.organization_id, &t.connection_id)),
            update,
            condition,
            names,
            values,
        })
    }
}

/// A cancelled transaction: a failed condition is `on_condition`; throttling and conflicts with
/// other transactions are temporary (503); anything else goes the usual way.
fn transaction_error(
    e: SdkError<TransactWriteItemsError, HttpResponse>,
    on_condition: Error,
) -> Error {
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        e.as_service_error()
    {
        let codes: Vec<&str> = cancelled
            .cancellation_reasons()
            .iter()
            .filter_map(|r| r.code())
            .collect();
        if codes.contains(&"ConditionalCheckFailed") {
            return on_condition;
        }
        let temporary = [
            "ThrottlingError",
            "TransactionConflict",
            "ProvisionedThroughputExceeded",
            "RequestLimitExceeded",
        ];
        if codes.iter().any(|c| temporary.contains(c)) {
            return Error::Unavailable(format!("TransactWriteItems cancelled: {codes:?}"));
        }
    }
    sdk_error("TransactWriteItems", e)
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// Creates the table with its GSI and turns TTL on, where missing (`brokerctl init`).
    pub async fn init(&self) -> Result<()> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(Error::internal)
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(Error::internal)
        };
        let index = |name: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(&format!("{name}pk"), KeyType::Hash)?)
                .key_schema(key(&format!("{name}sk"), KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .set_non_key_attributes(Some(
                            LIST_PROJECTION.iter().map(|a| a.to_string()).collect(),
                        ))
                        .build(),
                )
                .build()
                .map_err(Error::internal)
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .attribute_definitions(attr("gsi1pk")?)
            .attribute_definitions(attr("gsi1sk")?)
            .attribute_definitions(attr("gsi2pk")?)
            .attribute_definitions(attr("gsi2sk")?)
            .attribute_definitions(attr("gsi3pk")?)
            .attribute_definitions(attr("gsi3sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(index("gsi1")?)
            .global_secondary_indexes(index("gsi2")?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("gsi3")
                    .key_schema(key("gsi3pk", KeyType::Hash)?)
                    .key_schema(key("gsi3sk", KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::KeysOnly)
                            .build(),
                    )
                    .build()
                    .map_err(Error::internal)?,
            )
            // The events function reads connection changes from the stream (DESIGN §4.7).
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .map_err(Error::internal)?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_in_use_exception()) => {}
            Err(e) => return Err(sdk_error("CreateTable", e)),
        }
        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTimeToLive", e))?;
        let enabled = ttl
            .time_to_live_description()
            .and_then(|d| d.attribute_name())
            .is_some_and(|a| a == "expires_at");
        if !enabled {
            self.client
                .update_time_to_live()
                .table_name(&self.table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name("expires_at")
                        .enabled(true)
                        .build()
                        .map_err(Error::internal)?,
                )
                .send()
                .await
                .map_err(|e| sdk_error("UpdateTimeToLive", e))?;
        }
        Ok(())
    }

    async fn get<T: DeserializeOwned>(&self, pk: String) -> Result<Option<T>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item.map(from_item).transpose()
    }

    /// After a refused transition: the connection, if this very `call` wrote it already (the
    /// SDK retried a write whose answer was lost), else the conflict `what`.
    async fn own_change(
        &self,
        t: &Transition,
        call: &str,
        what: &'static str,
    ) -> Result<Connection> {
        match self
            .get::<Connection>(keys::connection(&t.organization_id, &t.connection_id))
            .await?
        {
            Some(c) if c.last_change.as_deref() == Some(call) => Ok(c),
            _ => Err(Error::Conflict(what)),
        }
    }

    /// Up to `want` index entries of one listing partition, newest first, filtered: each as its
    /// sort key and the base item's key.
    async fn list_partition(
        &self,
        index: &str,
        partition: String,
        q: &ListQuery,
        want: usize,
    ) -> Result<Vec<(String, Item)>> {
        let (pk_attr, sk_attr) = (format!("{index}pk"), format!("{index}sk"));
        let mut names = HashMap::from([("#ipk".to_string(), pk_attr)]);
        let mut values: Item = HashMap::from([(":ipk".to_string(), s(partition))]);
        let mut key_condition = "#ipk = :ipk".to_string();
        if let Some(before) = &q.before {
            names.insert("#isk".into(), sk_attr.clone());
            values.insert(":before".into(), s(before.clone()));
            key_condition.push_str(" AND #isk < :before");
        }
        let mut filters = vec![];
        if let Some(provider) = &q.provider {
            names.insert("#provider".into(), "provider".into());
            values.insert(":provider".into(), s(provider.clone()));
            filters.push("#provider = :provider");
        }
        if let Some(status) = q.status {
            names.insert("#status".into(), "status".into());
            values.insert(":status".into(), s(status.as_str()));
            filters.push("#status = :status");
        }
        if let Some(end_user) = &q.end_user_id {
            names.insert("#end_user".into(), "end_user_id".into());
            values.insert(":end_user".into(), s(end_user.clone()));
            filters.push("#end_user = :end_user");
        }
        let filter = (!filters.is_empty()).then(|| filters.join(" AND "));
        let mut found = vec![];
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(&key_condition)
                .set_filter_expression(filter.clone())
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .limit(i32::try_from(want).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in page.items() {
                let sort = item.get(&sk_attr).and_then(|v| v.as_s().ok()).cloned();
                let base: Option<Item> = ["pk", "sk"]
                    .iter()
                    .map(|k| item.get(*k).map(|v| (k.to_string(), v.clone())))
                    .collect();
                if let (Some(sort), Some(base)) = (sort, base) {
                    found.push((sort, base));
                }
            }
            start = page.last_evaluated_key;
            if found.len() >= want || start.is_none() {
                found.truncate(want);
                return Ok(found);
            }
        }
    }

    /// The keys of one sweep shard's connections due by `now`, soonest first, at most `limit`.
    async fn due_in_shard(&self, shard: u32, now: i64, limit: usize) -> Result<Vec<Item>> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi3")
            .key_condition_expression("gsi3pk = :p AND gsi3sk <= :now")
            .expression_attribute_values(":p", s(sweep_partition(shard)))
            .expression_attribute_values(":now", s(sweep_key(now)))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        Ok(page
            .items()
            .iter()
            .filter_map(|item| {
                ["pk", "sk"]
                    .iter()
                    .map(|k| item.get(*k).map(|v| (k.to_string(), v.clone())))
                    .collect()
            })
            .collect())
    }

    /// The base items of `keys` (at most 100), consistently read, whatever order they come in.
    /// The items of one [`owned`] partition, read consistently from the table.
    async fn list_owned<T: DeserializeOwned>(&self, partition: String) -> Result<Vec<T>> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi2")
            .key_condition_expression("gsi2pk = :p")
            .expression_attribute_values(":p", s(partition))
            .into_paginator()
            .items()
            .send();
        let mut found = Vec::new();
        while let Some(entry) = pages.next().await {
            let entry = entry.map_err(|e| sdk_error("Query", e))?;
            if let Some(pk) = entry.get("pk") {
                found.push(key(pk.as_s().map_err(|_| Error::internal("pk"))?.clone()));
            }
        }
        self.batch_get(found).await
    }

    async fn batch_get<T: DeserializeOwned>(&self, keys: Vec<Item>) -> Result<Vec<T>> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut pending = keys;
        let mut out = vec![];
        for attempt in 0..6 {
            if pending.is_empty() {
                return Ok(out);
            }
            if attempt > 0 {
                // Unprocessed keys: DynamoDB asks to back off before asking again.
                tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(Error::internal)?;
            let answer = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| sdk_error("BatchGetItem", e))?;
            for item in answer
                .responses
                .unwrap_or_default()
                .remove(&self.table)
                .unwrap_or_default()
            {
                out.push(from_item(item)?);
            }
            pending = answer
                .unprocessed_keys
                .unwrap_or_default()
                .remove(&self.table)
                .map(|k| k.keys)
                .unwrap_or_default();
        }
        Err(Error::Unavailable(
            "BatchGetItem: keys left unprocessed".into(),
        ))
    }

    async fn put(&self, item: Item, only_if_absent: bool) -> Result<bool> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        if only_if_absent {
            req = req.condition_expression("attribute_not_exists(pk)");
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }
}

#[async_trait]
impl FlowStore for DynamoStore {
    async fn create_flow(&self, flow: &Flow, connection: Option<&Connection>) -> Result<()> {
        let put = |item: Item, condition: Option<&str>| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_string))
                .build()
                .map(|put| TransactWriteItem::builder().put(put).build())
                .map_err(|e| Error::internal(format!("TransactWriteItems: {e}")))
        };
        let flow_item = to_item(keys::flow(&flow.key), flow)?;
        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(put(flow_item, Some("attribute_not_exists(pk)"))?);
        if let Some(connection) = connection {
            transaction = transaction.transact_items(put(connection_item(connection)?, None)?);
        }
        let sent = transaction
            // DynamoDB applies a retried transaction with the same token once (for 10 minutes).
            .client_request_token(&flow.key[..36])
            .send()
            .await;
        match sent.map_err(|e| transaction_error(e, Error::Conflict("the flow key exists"))) {
            Ok(_) => Ok(()),
            // The key is the hash of 32 random bytes: a flow already under it is this very write,
            // applied by an attempt whose answer was lost before the SDK retried it.
            Err(Error::Conflict(_)) => match self.get::<Flow>(keys::flow(&flow.key)).await? {
                Some(stored) if stored.connection_id == flow.connection_id => Ok(()),
                _ => Err(Error::internal("flow key collision")),
            },
            Err(e) => Err(e),
        }
    }

    async fn bind_flow(&self, flow_key: &str, binding_hash: &str, now: i64) -> Result<Flow> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::flow(flow_key))))
            .update_expression("SET binding_hash = :b")
            .condition_expression(
                "attribute_exists(pk) AND #status = :pending AND expires_at > :now \
                 AND #kind <> :client \
                 AND (attribute_not_exists(binding_hash) OR binding_hash = :b)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_values(":client", s("client_callback"))
            .expression_attribute_values(":b", s(binding_hash))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => from_item(out.attributes.unwrap_or_default()),
            Err(e) if is_condition_failure(&e) => Err(Error::FlowRejected),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    async fn consume_flow(
        &self,
        flow_key: &str,
        claim: &Claim,
        lease_owner: &str,
        now: i64,
    ) -> Result<Flow> {
        let mut condition = String::from(
            "attribute_exists(pk) AND #status IN (:pending, :exchanged) AND expires_at > :now",
        );
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::flow(flow_key))))
            .update_expression("SET #status = :consumed, lease_owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":consumed", s("consumed"))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":exchanged", s("exchanged"))
            .expression_attribute_values(":owner", s(lease_owner))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew);
        for (i, (attr, value)) in claim.conditions().into_iter().enumerate() {
            condition.push_str(&format!(" AND #c{i} = :c{i}"));
            req = req
                .expression_attribute_names(format!("#c{i}"), attr)
                .expression_attribute_values(format!(":c{i}"), s(value));
        }
        let out = req.condition_expression(condition).send().await;
        match out {
            Ok(out) => from_item(out.attributes.unwrap_or_default()),
            Err(e) if is_condition_failure(&e) => {
                // The SDK may have retried a write that had already succeeded: that is our own lease.
                match self.get::<Flow>(keys::flow(flow_key)).await? {
                    Some(f)
                        if f.status == FlowStatus::Consumed
                            && f.lease_owner.as_deref() == Some(lease_owner) =>
                    {
                        Ok(f)
                    }
                    _ => Err(Error::FlowRejected),
                }
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    async fn park_flow(
        &self,
        flow_key: &str,
        lease_owner: &str,
        sealed_tokens: Option<&str>,
    ) -> Result<()> {
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::flow(flow_key))))
            .condition_expression("#status = :consumed AND lease_owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":consumed", s("consumed"))
            .expression_attribute_values(":owner", s(lease_owner));
        let req = match sealed_tokens {
            Some(sealed) => req
                .update_expression("SET #status = :exchanged, sealed_tokens = :sealed")
                .expression_attribute_values(":exchanged", s("exchanged"))
                .expression_attribute_values(":sealed", s(sealed)),
            None => req
                .update_expression("SET #status = :pending REMOVE lease_owner")
                .expression_attribute_values(":pending", s("pending")),
        };
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(Error::Conflict("the flow changed")),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    async fn finish_flow(
        &self,
        flow_key: &str,
        status: FlowStatus,
        connection: &Transition,
    ) -> Result<()> {
        let flow = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(keys::flow(flow_key))))
            .update_expression("SET #status = :s REMOVE sealed_tokens")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":s", status_value(status)?)
            .build()
            .map_err(Error::internal)?;
        let call = uuid::Uuid::new_v4().simple().to_string();
        let expr = TransitionExpr::of(connection, &call)?;
        let connection_update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(expr.key))
            .update_expression(expr.update)
            .condition_expression(expr.condition)
            .set_expression_attribute_names(Some(expr.names))
            .set_expression_attribute_values(Some(expr.values))
            .build()
            .map_err(Error::internal)?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(flow).build())
            .transact_items(
                TransactWriteItem::builder()
                    .update(connection_update)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                transaction_error(e, Error::Conflict("the flow or its connection changed"))
            });
        match sent {
            Ok(_) => Ok(()),
            Err(Error::Conflict(what)) => {
                self.own_change(connection, &call, what).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn create_connection(&self, c: &Connection) -> Result<()> {
        if self.put(connection_item(c)?, true).await? {
            Ok(())
        } else {
            Err(Error::internal("connection id collision"))
        }
    }

    async fn get_connection(
        &self,
        organization_id: &OrgId,
        id: &ConnectionId,
    ) -> Result<Option<Connection>> {
        self.get(keys::connection(organization_id, id)).await
    }

    async fn transition(&self, t: &Transition) -> Result<Connection> {
        let call = uuid::Uuid::new_v4().simple().to_string();
        let expr = TransitionExpr::of(t, &call)?;
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(expr.key))
            .update_expression(expr.update)
            .condition_expression(expr.condition)
            .set_expression_attribute_names(Some(expr.names))
            .set_expression_attribute_values(Some(expr.values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => from_item(out.attributes.unwrap_or_default()),
            Err(e) if is_condition_failure(&e) => {
                self.own_change(t, &call, "the connection changed").await
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    async fn due_for_sweep(&self, now: i64, limit: usize) -> Result<Vec<Connection>> {
        let per_shard = limit.div_ceil(LIST_SHARDS as usize);
        let shards = futures_util::future::try_join_all(
            (0..LIST_SHARDS).map(|shard| self.due_in_shard(shard, now, per_shard)),
        )
        .await?;
        let keys: Vec<Item> = shards.into_iter().flatten().collect();
        let mut found: Vec<Connection> = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            found.extend(self.batch_get::<Connection>(chunk.to_vec()).await?);
        }
        // The index is eventually consistent; the base item, read consistently, decides.
        let next = |c: &Connection| c.keepalive.as_ref().and_then(|k| k.next);
        found.retain(|c| {
            ConnectionStatus::USABLE.contains(&c.status) && next(c).is_some_and(|t| t <= now)
        });
        found.sort_by_key(next);
        found.truncate(limit);
        Ok(found)
    }

    async fn list_connections(&self, q: &ListQuery) -> Result<(Vec<Connection>, bool)> {
        let org = &q.organization_id;
        let (index, partitions): (&str, Vec<String>) = match &q.workspaces {
            None => ("gsi2", (0..LIST_SHARDS).map(|s| by_org(org, s)).collect()),
            Some(workspaces) => (
                "gsi1",
                workspaces
                    .iter()
                    .flat_map(|w| (0..LIST_SHARDS).map(move |s| by_workspace(org, w, s)))
                    .collect(),
            ),
        };
        // Each partition gives its newest `limit + 1`; merged, the newest `limit` are the page
        // and one more says another page follows.
        let want = q.limit + 1;
        let shards = futures_util::future::try_join_all(
            partitions
                .into_iter()
                .map(|p| self.list_partition(index, p, q, want)),
        )
        .await?;
        let mut entries: Vec<(String, Item)> = shards.into_iter().flatten().collect();
        entries.sort_by(|a, b| b.0.cmp(&a.0));
        let more = entries.len() > q.limit;
        entries.truncate(q.limit);
        let order: Vec<String> = entries.iter().map(|(sort, _)| sort.clone()).collect();
        let mut found = self
            .batch_get(entries.into_iter().map(|(_, key)| key).collect())
            .await?;
        // The index is eventually consistent; the base item, read consistently, decides.
        found.retain(|c| q.admits(c));
        found.sort_by_key(|c| order.iter().position(|k| *k == list_key(c)));
        Ok((found, more))
    }
}

#[async_trait]
impl SourceStore for DynamoStore {
    async fn create_source(&self, source: &Source) -> Result<bool> {
        let pk = keys::source(&source.organization_id, &source.id);
        self.put(to_item(pk, source)?, true).await
    }

    async fn get_source(&self, organization_id: &str, id: &str) -> Result<Option<Source>> {
        self.get(keys::source(organization_id, id)).await
    }
}

#[async_trait]
impl StateTokenStore for DynamoStore {
    async fn create_state_token(&self, t: &StateToken) -> Result<()> {
        self.put(to_item(keys::state_token(&t.token_hash), t)?, true)
            .await?;
        Ok(())
    }

    async fn consume_state_token(
        &self,
        token_hash: &str,
        organization_id: &str,
        redeemer: &str,
        now: i64,
    ) -> Result<Option<StateToken>> {
        // Marked, not deleted: a retry of a write whose answer was lost finds its own mark
        // (a deleted item would read as never there). The item goes with its TTL.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::state_token(token_hash))))
            .update_expression("SET redeemed_by = :by")
            .condition_expression(
                "organization_id = :org AND expires_at > :now \
                 AND (attribute_not_exists(redeemed_by) OR redeemed_by = :by)",
            )
            .expression_attribute_values(":org", s(organization_id))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":by", s(redeemer))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => out.attributes.map(from_item).transpose(),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }
}

#[async_trait]
impl KeyStore for DynamoStore {
    async fn put_key(&self, k: &ApiKeyRecord) -> Result<()> {
        let item = to_item(keys::api_key(&k.key_hash), k)?;
        let item = owned(item, keys_of(&k.organization_id), k.created_at, &k.key_hash);
        self.put(item, false).await?;
        Ok(())
    }

    async fn get_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        self.get(keys::api_key(key_hash)).await
    }

    async fn touch_key(&self, key_hash: &str, at: i64) -> Result<()> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::api_key(key_hash))))
            .update_expression("SET last_used_at = :at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":at", n(at))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }
}

#[async_trait]
impl OrgStore for DynamoStore {
    async fn put_org(&self, org: &Org) -> Result<()> {
        self.put(to_item(keys::org(&org.id), org)?, false).await?;
        Ok(())
    }

    async fn get_org(&self, id: &str) -> Result<Option<Org>> {
        self.get(keys::org(id)).await
    }
}

#[async_trait]
impl WebhookStore for DynamoStore {
    async fn put_webhook(&self, e: &Endpoint) -> Result<()> {
        let item = to_item(keys::webhook(&e.organization_id, &e.id), e)?;
        let item = owned(item, webhooks_of(&e.organization_id), e.created_at, &e.id);
        self.put(item, false).await?;
        Ok(())
    }

    async fn list_webhooks(&self, organization_id: &str) -> Result<Vec<Endpoint>> {
        let mut endpoints: Vec<Endpoint> = self.list_owned(webhooks_of(organization_id)).await?;
        endpoints.retain(|e| e.organization_id == organization_id);
        endpoints.sort_by_key(|e| e.created_at);
        Ok(endpoints)
    }

    async fn delete_webhook(&self, organization_id: &str, id: &str) -> Result<bool> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::webhook(organization_id, id))))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("DeleteItem", e)),
        }
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn create_session(&self, session: &ConnectSession) -> Result<()> {
        let item = to_item(keys::connect_session(&session.token_hash), session)?;
        if self.put(item, true).await? {
            Ok(())
        } else {
            Err(Error::internal("connect session collision"))
        }
    }

    async fn get_session(&self, token_hash: &str, now: i64) -> Result<Option<ConnectSession>> {
        let session: Option<ConnectSession> = self.get(keys::connect_session(token_hash)).await?;
        Ok(session.filter(|s| s.expires_at > now))
    }

    async fn spend_session(&self, token_hash: &str, connection_id: &ConnectionId) -> Result<bool> {
        // The same connection's retry (its answer lost) finds its own mark.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::connect_session(token_hash))))
            .update_expression("SET connection_id = :c")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(connection_id) OR connection_id = :c)",
            )
            .expression_attribute_values(":c", s(connection_id.as_str()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }
}

#[async_trait]
impl DeliveryLedger for DynamoStore {
    async fn ledger_entry(&self, event_id: &str, endpoint_id: &str) -> Result<Option<LedgerEntry>> {
        self.get(keys::delivery(event_id, endpoint_id)).await
    }

    async fn put_ledger_entry(&self, entry: &LedgerEntry) -> Result<()> {
        let item = to_item(keys::delivery(&entry.event_id, &entry.endpoint_id), entry)?;
        self.put(item, false).await?;
        Ok(())
    }
}

#[async_trait]
impl KeyAdmin for DynamoStore {
    async fn list_keys(&self, organization_id: &str) -> Result<Vec<ApiKeyRecord>> {
        let mut records: Vec<ApiKeyRecord> = self.list_owned(keys_of(organization_id)).await?;
        // The index is eventually consistent; the base item decides.
        records.retain(|k| k.organization_id == organization_id);
        records.sort_by_key(|k| k.created_at);
        Ok(records)
    }

    async fn revoke_key(&self, key_hash: &str, organization_id: &str) -> Result<bool> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::api_key(key_hash))))
            .update_expression("SET revoked = :yes")
            .condition_expression("organization_id = :org")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":org", s(organization_id))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }
}
