//! DynamoDB backend: one table, keys `pk`/`sk`, TTL on `expires_at`, GSI `gsi1` for listing
//! connections by organization and workspace. Expiry is part of every condition expression.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ReturnValue, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ConnectionStore, FlowStore, KeyStore, OrgStore, SourceStore, StateTokenStore, keys};
use crate::auth::ApiKeyRecord;
use crate::connection::Connection;
use crate::flow::{Claim, Flow, FlowStatus, StateToken};
use crate::org::Org;
use crate::source::Source;
use crate::vault::sdk_error;
use crate::{Error, Result};

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

/// A connection's item, with the listing index: by organization and workspace, newest last.
fn connection_item(c: &Connection) -> Result<Item> {
    let mut item = to_item(keys::connection(&c.organization_id, &c.id), c)?;
    let workspace = c.workspace_id.as_deref().unwrap_or("-");
    item.insert(
        "gsi1pk".into(),
        s(format!("WS#{}#{workspace}", c.organization_id)),
    );
    item.insert("gsi1sk".into(), s(format!("{:020}#{}", c.created_at, c.id)));
    Ok(item)
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
        let gsi = GlobalSecondaryIndex::builder()
            .index_name("gsi1")
            .key_schema(key("gsi1pk", KeyType::Hash)?)
            .key_schema(key("gsi1sk", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(Error::internal)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .attribute_definitions(attr("gsi1pk")?)
            .attribute_definitions(attr("gsi1sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(gsi)
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
    async fn create_flow(&self, flow: &Flow, connection: &Connection) -> Result<()> {
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
        self.client
            .transact_write_items()
            // A key collision (32 random bytes) cancels the transaction: an internal error.
            .transact_items(put(flow_item, Some("attribute_not_exists(pk)"))?)
            .transact_items(put(connection_item(connection)?, None)?)
            .send()
            .await
            .map_err(|e| sdk_error("TransactWriteItems", e))?;
        Ok(())
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
        let mut condition =
            String::from("attribute_exists(pk) AND #status = :pending AND expires_at > :now");
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::flow(flow_key))))
            .update_expression("SET #status = :consumed, lease_owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":consumed", s("consumed"))
            .expression_attribute_values(":pending", s("pending"))
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

    async fn finish_flow(&self, flow_key: &str, status: FlowStatus) -> Result<()> {
        let status = serde_json::to_value(status).map_err(Error::internal)?;
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::flow(flow_key))))
            .update_expression("SET #status = :s")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":s", s(status.as_str().unwrap_or_default()))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", e))?;
        Ok(())
    }
}

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn put_connection(&self, c: &Connection) -> Result<()> {
        self.put(connection_item(c)?, false).await?;
        Ok(())
    }

    async fn get_connection(&self, organization_id: &str, id: &str) -> Result<Option<Connection>> {
        self.get(keys::connection(organization_id, id)).await
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
        now: i64,
    ) -> Result<Option<StateToken>> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::state_token(token_hash))))
            .condition_expression("organization_id = :org AND expires_at > :now")
            .expression_attribute_values(":org", s(organization_id))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match out {
            Ok(out) => out.attributes.map(from_item).transpose(),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(sdk_error("DeleteItem", e)),
        }
    }
}

#[async_trait]
impl KeyStore for DynamoStore {
    async fn put_key(&self, k: &ApiKeyRecord) -> Result<()> {
        self.put(to_item(keys::api_key(&k.key_hash), k)?, false)
            .await?;
        Ok(())
    }

    async fn get_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        self.get(keys::api_key(key_hash)).await
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
