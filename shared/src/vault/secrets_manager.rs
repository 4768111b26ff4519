//! AWS Secrets Manager vault.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::Tag;

use super::{Vault, sdk_error};
use crate::secret::Sensitive;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct SecretsManagerVault {
    client: Client,
    kms_key_id: Option<String>,
}

impl SecretsManagerVault {
    pub fn new(client: Client, kms_key_id: Option<String>) -> Self {
        SecretsManagerVault { client, kms_key_id }
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
            Err(e) => Err(sdk_error("CreateSecret", e)),
        }
    }

    async fn update_secret(
        &self,
        name: &str,
        value: &Sensitive<String>,
        request_token: &str,
    ) -> Result<()> {
        self.client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value.expose())
            .client_request_token(request_token)
            .send()
            .await
            .map_err(|e| sdk_error("PutSecretValue", e))?;
        Ok(())
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
