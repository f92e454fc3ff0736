//! The production backend: AWS Secrets Manager through `aws-sdk-secretsmanager`.
//!
//! Errors are reduced to fixed messages built from the error *code* only:
//! the service's message text never reaches a connector or a log line.

use std::collections::HashMap;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::SharedCredentialsProvider;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_smithy_types::Blob;

use super::{BoxFuture, FetchedSecret, SecretKey, SecretStore, StoreError, StoreIdentity};
use crate::name::{AWSCURRENT, VersionSelector};
use crate::value::SecretValue;

/// How to reach AWS Secrets Manager: `[secrets.backend]` with
/// `kind = "aws"`. Credentials come from the SDK's default chain
/// (environment, profile, SSO, web identity, ECS/EC2 roles).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsSettings {
    /// What the configuration names: the region (else the SDK's default
    /// chain), the account and partition ARNs must name (else STS's
    /// answer, else the region's partition).
    pub identity: StoreIdentity,
    /// Endpoint override, for VPC endpoints and local API servers.
    pub endpoint_url: Option<String>,
    /// A role to assume with the default credentials.
    pub role_arn: Option<String>,
    /// The external id the role's trust policy asks for (the customer's
    /// guard against a confused deputy).
    pub external_id: Option<String>,
    /// The assumed role's session name, as CloudTrail shows it: `keyward`,
    /// or `keyward-<tenant>` for a tenant's backend.
    pub session_name: String,
    /// Bound on one operation, retries included.
    pub operation_timeout: std::time::Duration,
    /// Bound on one attempt.
    pub attempt_timeout: std::time::Duration,
    /// Attempts per operation (standard retry mode).
    pub max_attempts: u32,
}

/// The partition a region belongs to, by the region-name prefixes AWS's
/// partitions use; STS's answer, when asked, takes precedence.
fn partition_of_region(region: &str) -> &'static str {
    [
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-iso-", "aws-iso"),
        ("eu-isoe-", "aws-iso-e"),
        ("us-isof-", "aws-iso-f"),
    ]
    .iter()
    .find(|(prefix, _)| region.starts_with(prefix))
    .map_or(super::AWS_PARTITION, |(_, partition)| partition)
}

/// BatchGetSecretValue takes at most this many ids per call.
const BATCH_LIMIT: usize = 20;

/// Secrets Manager as a [`SecretStore`].
#[derive(Clone, Debug)]
pub struct AwsStore {
    client: Client,
    sts: aws_sdk_sts::Client,
    identity: StoreIdentity,
    /// The role its credentials come from, if it assumes one (named when
    /// it cannot be assumed).
    role_arn: Option<String>,
}

impl AwsStore {
    /// Builds a client from the SDK's default chain and the settings:
    /// region, endpoint, role to assume, timeouts and standard retries.
    pub async fn connect(settings: &AwsSettings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &settings.identity.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let sdk_config = loader.load().await;
        let credentials = match &settings.role_arn {
            Some(role) => Some(SharedCredentialsProvider::new({
                let mut provider = aws_config::sts::AssumeRoleProvider::builder(role)
                    .session_name(&settings.session_name);
                if let Some(external_id) = &settings.external_id {
                    provider = provider.external_id(external_id);
                }
                // STS at the same endpoint override as Secrets Manager (a
                // VPC endpoint, a local API server).
                let sts_config = match &settings.endpoint_url {
                    Some(url) => sdk_config.to_builder().endpoint_url(url).build(),
                    None => sdk_config.clone(),
                };
                provider.configure(&sts_config).build().await
            })),
            None => None,
        };
        Self::from_sdk_config(&sdk_config, credentials, settings)
    }

    /// Builds the Secrets Manager and STS clients from an SDK config (tests
    /// pass one with explicit credentials), with other credentials if given
    /// (an assumed role), and the settings' endpoint (a local API server
    /// serves both), timeouts and retries.
    pub fn from_sdk_config(
        sdk_config: &SdkConfig,
        credentials: Option<SharedCredentialsProvider>,
        settings: &AwsSettings,
    ) -> Self {
        let timeouts = TimeoutConfig::builder()
            .operation_timeout(settings.operation_timeout)
            .operation_attempt_timeout(settings.attempt_timeout)
            .build();
        let retries = RetryConfig::standard().with_max_attempts(settings.max_attempts);
        let mut secrets = aws_sdk_secretsmanager::config::Builder::from(sdk_config)
            .timeout_config(timeouts.clone())
            .retry_config(retries.clone());
        let mut sts = aws_sdk_sts::config::Builder::from(sdk_config)
            .timeout_config(timeouts)
            .retry_config(retries);
        if let Some(credentials) = credentials {
            secrets = secrets.credentials_provider(credentials.clone());
            sts = sts.credentials_provider(credentials);
        }
        if let Some(endpoint) = &settings.endpoint_url {
            secrets = secrets.endpoint_url(endpoint);
            sts = sts.endpoint_url(endpoint);
        }
        let region = sdk_config.region().map(|r| r.to_string());
        let identity = StoreIdentity {
            partition: region
                .as_deref()
                .map(|r| partition_of_region(r).to_string()),
            region,
            account_id: None,
        };
        Self {
            client: Client::from_conf(secrets.build()),
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            identity,
            role_arn: settings.role_arn.clone(),
        }
    }

    /// Asks STS (`GetCallerIdentity`) which account and partition the
    /// credentials belong to, so that ARN references can be checked when
    /// the configuration does not name them. A failure (no permission, no
    /// network) is returned for the caller to report; the store works
    /// without.
    pub async fn discover_account(&mut self) -> Result<(), String> {
        let answer = self.sts.get_caller_identity().send().await.map_err(|e| {
            // The code only, never the service's message text.
            let code = match &e {
                SdkError::ServiceError(_) => e.code().unwrap_or("an error").to_string(),
                SdkError::TimeoutError(_) => "no answer in time".into(),
                SdkError::DispatchFailure(_) => "cannot connect".into(),
                _ => "request failed".into(),
            };
            format!("STS GetCallerIdentity: {code}")
        })?;
        let arn = answer.arn().unwrap_or_default();
        let partition = arn.split(':').nth(1).filter(|p| !p.is_empty());
        self.identity.account_id = answer.account().map(str::to_string);
        self.identity.partition = partition.map(str::to_string);
        Ok(())
    }

    async fn get_one(&self, key: &SecretKey) -> Result<FetchedSecret, StoreError> {
        let request = self.client.get_secret_value().secret_id(secret_id(key));
        let request = match &key.version {
            VersionSelector::Stage(stage) => request.version_stage(stage),
            VersionSelector::Id(id) => request.version_id(id),
        };
        let output = request
            .send()
            .await
            .map_err(|e| classify(e, self.role_arn.as_deref()))?;
        fetched(
            output.version_id(),
            output.version_stages(),
            output.secret_string(),
            output.secret_binary(),
        )
    }

    /// AWSCURRENT versions of up to [`BATCH_LIMIT`] secrets in one call.
    async fn batch(&self, keys: &[&SecretKey]) -> Vec<Result<FetchedSecret, StoreError>> {
        let ids: Vec<String> = keys.iter().map(|k| secret_id(k).to_string()).collect();
        let output = match self
            .client
            .batch_get_secret_value()
            .set_secret_id_list(Some(ids))
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) => {
                let e = classify(e, self.role_arn.as_deref());
                return keys.iter().map(|_| Err(e.clone())).collect();
            }
        };
        // Entries come back under their name and ARN; errors under the id
        // as it was sent.
        let mut by_id: HashMap<&str, Result<FetchedSecret, StoreError>> = HashMap::new();
        for entry in output.secret_values() {
            let result = fetched(
                entry.version_id(),
                entry.version_stages(),
                entry.secret_string(),
                entry.secret_binary(),
            );
            for id in [entry.name(), entry.arn()].into_iter().flatten() {
                by_id.insert(id, result.clone());
            }
        }
        for error in output.errors() {
            if let Some(id) = error.secret_id() {
                by_id.insert(
                    id,
                    Err(classify_code(error.error_code().unwrap_or_default(), None)),
                );
            }
        }
        keys.iter()
            .map(|key| {
                by_id
                    .get(secret_id(key))
                    .cloned()
                    .unwrap_or(Err(StoreError::NotFound))
            })
            .collect()
    }
}

/// What Secrets Manager is asked for: the complete ARN a reference wrote,
/// else the name.
fn secret_id(key: &SecretKey) -> &str {
    key.arn.as_deref().unwrap_or(key.name.as_str())
}

fn fetched(
    version_id: Option<&str>,
    stages: &[String],
    text: Option<&str>,
    binary: Option<&Blob>,
) -> Result<FetchedSecret, StoreError> {
    let value = match (text, binary) {
        (Some(text), _) => SecretValue::text(text),
        (None, Some(blob)) => SecretValue::bytes(blob.as_ref()),
        (None, None) => return Err(StoreError::NotFound),
    };
    Ok(FetchedSecret {
        version_id: version_id.unwrap_or_default().to_string(),
        stages: stages.to_vec(),
        value,
    })
}

/// Whether `error` (or what caused it) is a failure to get credentials:
/// the role could not be assumed, or no credentials were found.
fn credentials_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
            .is_some()
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Maps an SDK error to a store error, by kind and code only; a failure
/// to get credentials is access denied, naming the role (`role`) if the
/// store assumes one, never a credential.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: SdkError<E, HttpResponse>,
    role: Option<&str>,
) -> StoreError {
    if credentials_failed(&error) {
        return StoreError::AccessDenied(match role {
            Some(role) => format!(
                "the role {role} could not be assumed (check role_arn, external_id and the \
                 role's trust policy)"
            ),
            None => "no credentials were found for Secrets Manager".into(),
        });
    }
    match &error {
        SdkError::TimeoutError(_) => {
            StoreError::Unavailable("Secrets Manager did not answer in time".into())
        }
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            StoreError::Unavailable("Secrets Manager did not answer in time".into())
        }
        SdkError::DispatchFailure(_) => {
            StoreError::Unavailable("cannot connect to Secrets Manager".into())
        }
        SdkError::ConstructionFailure(_) => StoreError::Unavailable(
            "cannot build the request (check region and credentials)".into(),
        ),
        SdkError::ResponseError(r) => StoreError::Unavailable(format!(
            "Secrets Manager sent an unreadable response (HTTP {})",
            r.raw().status().as_u16()
        )),
        SdkError::ServiceError(s) => classify_code(
            error.code().unwrap_or_default(),
            Some(s.raw().status().as_u16()),
        ),
        _ => StoreError::Unavailable("Secrets Manager request failed".into()),
    }
}

fn classify_code(code: &str, status: Option<u16>) -> StoreError {
    match code {
        "ResourceNotFoundException" => StoreError::NotFound,
        "AccessDeniedException" | "AccessDenied" => StoreError::AccessDenied(code.into()),
        "InvalidRequestException" => {
            StoreError::Gone("the secret is scheduled for deletion or cannot be read now".into())
        }
        "DecryptionFailure" => {
            StoreError::Unavailable("Secrets Manager could not decrypt the secret (KMS)".into())
        }
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded" => StoreError::Unavailable("throttled by Secrets Manager".into()),
        "InternalServiceError" => StoreError::Unavailable("Secrets Manager internal error".into()),
        "InvalidParameterException" => StoreError::NotFound,
        other => match status {
            Some(s) if s >= 500 => {
                StoreError::Unavailable(format!("Secrets Manager failed (HTTP {s})"))
            }
            Some(s) => StoreError::Unavailable(format!(
                "Secrets Manager refused the request ({}, HTTP {s})",
                code_or(other)
            )),
            None => StoreError::Unavailable(format!(
                "Secrets Manager refused the request ({})",
                code_or(other)
            )),
        },
    }
}

fn code_or(code: &str) -> &str {
    if code.is_empty() {
        "no error code"
    } else {
        code
    }
}

impl SecretStore for AwsStore {
    fn identity(&self) -> StoreIdentity {
        self.identity.clone()
    }

    fn fetch<'a>(&'a self, key: &'a SecretKey) -> BoxFuture<'a, Result<FetchedSecret, StoreError>> {
        Box::pin(self.get_one(key))
    }

    /// AWSCURRENT reads go through BatchGetSecretValue, 20 at a time; other
    /// stages and version ids (which the batch API cannot select) one by one.
    fn fetch_many<'a>(
        &'a self,
        keys: &'a [SecretKey],
    ) -> BoxFuture<'a, Vec<Result<FetchedSecret, StoreError>>> {
        Box::pin(async move {
            let is_current =
                |k: &SecretKey| matches!(&k.version, VersionSelector::Stage(s) if s == AWSCURRENT);
            let current: Vec<usize> = (0..keys.len()).filter(|&i| is_current(&keys[i])).collect();
            if current.len() < 2 {
                return futures::future::join_all(keys.iter().map(|k| self.get_one(k))).await;
            }
            let mut results: Vec<Option<Result<FetchedSecret, StoreError>>> =
                keys.iter().map(|_| None).collect();
            let batches = current.chunks(BATCH_LIMIT).map(|chunk| async move {
                let batch: Vec<&SecretKey> = chunk.iter().map(|&i| &keys[i]).collect();
                chunk
                    .iter()
                    .copied()
                    .zip(self.batch(&batch).await)
                    .collect::<Vec<_>>()
            });
            let singles = (0..keys.len())
                .filter(|&i| !is_current(&keys[i]))
                .map(|i| async move { (i, self.get_one(&keys[i]).await) });
            let (batched, single) = futures::future::join(
                futures::future::join_all(batches),
                futures::future::join_all(singles),
            )
            .await;
            for (i, result) in batched.into_iter().flatten().chain(single) {
                results[i] = Some(result);
            }
            results
                .into_iter()
                .map(|r| r.unwrap_or(Err(StoreError::Unavailable("no result".into()))))
                .collect()
        })
    }

    /// ListSecrets with a server-side name filter (a case-insensitive
    /// prefix match), then the exact, case-sensitive prefix here.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let mut names = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut request = self
                    .client
                    .list_secrets()
                    .max_results(100)
                    .set_next_token(token.take());
                if !prefix.is_empty() {
                    request = request.filters(
                        Filter::builder()
                            .key(FilterNameStringType::Name)
                            .values(prefix)
                            .build(),
                    );
                }
                let output = request
                    .send()
                    .await
                    .map_err(|e| classify(e, self.role_arn.as_deref()))?;
                names.extend(
                    output
                        .secret_list()
                        .iter()
                        .filter_map(|s| s.name())
                        .filter(|n| n.starts_with(prefix))
                        .map(str::to_string),
                );
                match output.next_token() {
                    Some(next) if !next.is_empty() => token = Some(next.to_string()),
                    _ => break,
                }
            }
            names.sort();
            names.dedup();
            Ok(names)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::partition_of_region;

    #[test]
    fn a_region_names_its_partition() {
        for (region, partition) in [
            ("us-east-1", "aws"),
            ("eu-west-3", "aws"),
            ("cn-north-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("us-isof-south-1", "aws-iso-f"),
        ] {
            assert_eq!(partition_of_region(region), partition, "{region}");
        }
    }
}
