//! AWS Secrets Manager vault.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};

use std::sync::Arc;

use super::{SecretNames, Vault, names, sdk_error};
use crate::crypto::{Sealer, random_token};
use crate::secret::Sensitive;
use crate::{Error, Result};

pub struct SecretsManagerVault {
    client: Client,
    kms_key_id: Option<String>,
    /// Where the sealer's key material lives (`<prefix>/sealing-key`).
    sealing_key: String,
    sealer: tokio::sync::OnceCell<Arc<Sealer>>,
}

impl SecretsManagerVault {
    pub fn new(client: Client, kms_key_id: Option<String>, secret_prefix: &str) -> Self {
        SecretsManagerVault {
            client,
            kms_key_id,
            sealing_key: names::sealing_key(secret_prefix),
            sealer: tokio::sync::OnceCell::new(),
        }
    }

    /// A new version of the existing secret `name`; its ARN.
    async fn put_value(
        &self,
        name: &str,
        value: &Sensitive<String>,
        request_token: &str,
    ) -> Result<String> {
        let out = self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value.expose())
            .client_request_token(request_token)
            .send()
            .await
            .map_err(|e| sdk_error("PutSecretValue", e))?;
        out.arn
            .ok_or_else(|| Error::internal("PutSecretValue returned no ARN"))
    }

    /// Creates the sealer's key material where missing (`brokerctl init`; the template creates
    /// it on deploy). Never replaces it: documents sealed under it would no longer open.
    pub async fn init(&self) -> Result<()> {
        let created = self
            .client
            .create_secret()
            .name(&self.sealing_key)
            .secret_string(random_token()?)
            .set_kms_key_id(self.kms_key_id.clone())
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error("CreateSecret", e)),
        }
    }
}

#[async_trait]
impl Vault for SecretsManagerVault {
    async fn put_secret(
        &self,
        name: &str,
        value: &Sensitive<String>,
        tags: &[(&str, &str)],
        request_token: &str,
    ) -> Result<String> {
        let tags = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
            .collect::<Vec<_>>();
        let created = self
            .client
            .create_secret()
            .name(name)
            .secret_string(value.expose())
            .client_request_token(request_token)
            .set_kms_key_id(self.kms_key_id.clone())
            .set_tags(Some(tags))
            .send()
            .await;
        match created {
            Ok(out) => out
                .arn
                .ok_or_else(|| Error::internal("CreateSecret returned no ARN")),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_exists_exception()) =>
            {
                self.put_value(name, value, request_token).await
            }
            Err(e) => Err(sdk_error("CreateSecret", e)),
        }
    }

    async fn update_secret(
        &self,
        name: &str,
        value: &Sensitive<String>,
        request_token: &str,
    ) -> Result<()> {
        self.put_value(name, value, request_token).await.map(|_| ())
    }

    async fn delete_secret(&self, name: &str) -> Result<()> {
        let out = self
            .client
            .delete_secret()
            .secret_id(name)
            // No recovery window: a deleted connection's tokens must not linger for 7 to 30 days.
            .force_delete_without_recovery(true)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error("DeleteSecret", e)),
        }
    }

    async fn sealer(&self) -> Result<Arc<Sealer>> {
        self.sealer
            .get_or_try_init(|| async {
                let material = self.get_secret(&self.sealing_key).await?.ok_or_else(|| {
                    Error::internal(format!(
                        "{} is missing (the template creates it; so does brokerctl init)",
                        self.sealing_key
                    ))
                })?;
                Ok(Arc::new(Sealer::derive(material.expose().as_bytes())))
            })
            .await
            .cloned()
    }

    async fn get_secret(&self, name: &str) -> Result<Option<Sensitive<String>>> {
        match self.client.get_secret_value().secret_id(name).send().await {
            Ok(out) => Ok(out.secret_string.map(Sensitive::new)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_error("GetSecretValue", e)),
        }
    }
}

#[async_trait]
impl SecretNames for SecretsManagerVault {
    async fn secret_names(&self, prefix: &str) -> Result<Vec<String>> {
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .values(prefix)
            .build();
        let mut pages = self
            .client
            .list_secrets()
            .filters(filter)
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error("ListSecrets", e))?;
            names.extend(
                page.secret_list()
                    .iter()
                    .filter_map(|s| s.name.clone())
                    // The name filter matches words, not only prefixes.
                    .filter(|n| n.starts_with(prefix)),
            );
        }
        names.sort();
        Ok(names)
    }
}
