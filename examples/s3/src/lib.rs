//! Amazon S3 and S3-compatible services (Retool's S3 resource): renders a
//! client configuration — bucket, region, endpoint, access keys, a role to
//! assume and the default ACL for uploads. The keys arrive sealed and leave
//! sealed: the host marks every output holding them sensitive.

use keyward_guest::{Connector, ConnectorInfo, Field, Fields, Output, RenderError};

/// The canned ACLs S3 accepts on upload.
const ACLS: [&str; 7] = [
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
];

/// The connector type exported by this component.
#[derive(Debug)]
pub struct S3;

impl Connector for S3 {
    fn info() -> ConnectorInfo {
        ConnectorInfo::new(
            "s3",
            env!("CARGO_PKG_VERSION"),
            "Amazon S3 or an S3-compatible service",
        )
        .field(Field::new("bucket", "Bucket name").required().resource())
        .field(Field::new("region", "Bucket region").default("us-east-1"))
        .field(Field::new("endpoint", "Endpoint URL, for S3-compatible services").url())
        .field(
            Field::new("access_key_id", "Access key ID")
                .required()
                .sensitive()
                .secret_reference(),
        )
        .field(
            Field::new("secret_access_key", "Secret access key")
                .required()
                .sensitive()
                .secret_reference(),
        )
        .field(Field::new("role_arn", "A role to assume (ARN)"))
        .field(Field::new("default_acl", "Default ACL for uploaded files").default("private"))
    }

    fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
        let bucket = fields.require("bucket")?;
        if let Some(name) = bucket.as_plain()
            && !(3..=63).contains(&name.len())
        {
            return Err(RenderError::field(
                "bucket",
                "a bucket name is 3 to 63 characters",
            ));
        }
        let acl = fields.plain("default_acl")?.unwrap_or("private");
        if !ACLS.contains(&acl) {
            return Err(RenderError::field(
                "default_acl",
                format!("must be one of {}", ACLS.join(", ")),
            ));
        }
        let mut out = vec![
            Output::destination("bucket", bucket),
            Output::setting(
                "region",
                fields
                    .get("region")
                    .cloned()
                    .unwrap_or_else(|| "us-east-1".into()),
            ),
            Output::setting("default_acl", acl),
            Output::secret("access_key_id", fields.require("access_key_id")?),
            Output::secret("secret_access_key", fields.require("secret_access_key")?),
        ];
        if let Some(endpoint) = fields.get("endpoint").filter(|e| e.as_plain() != Some("")) {
            if let Some(url) = endpoint.as_plain()
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(RenderError::field(
                    "endpoint",
                    "must start with https:// or http://",
                ));
            }
            out.push(Output::destination("endpoint", endpoint));
            // S3-compatible services rarely support virtual-hosted buckets.
            out.push(Output::setting("force_path_style", "true"));
        }
        if let Some(role) = fields.get("role_arn").filter(|r| r.as_plain() != Some("")) {
            if let Some(arn) = role.as_plain()
                && (!arn.starts_with("arn:") || !arn.contains(":role/"))
            {
                return Err(RenderError::field(
                    "role_arn",
                    "must be an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
                ));
            }
            out.push(Output::setting("role_arn", role));
        }
        Ok(out)
    }
}

keyward_guest::export_connector!(S3);
