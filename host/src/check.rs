//! `check`: what a platform's "Test connection" shows. The backend first
//! (credentials, region, endpoint, namespace), then per connector the
//! references its policy refuses, whether each secret it may use resolves,
//! and whether it renders. Shared by `keyward check` and the server.

use std::fmt;

use crate::contract::RunError;
use crate::keyward::{Error, Keyward};
use crate::policy::RefusedReference;
use crate::tenant::Tenant;

/// The whole report; [`CheckReport::failures`] counts what failed.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// How many secrets the namespace holds, or why listing it failed.
    pub backend: Result<usize, String>,
    /// One entry per configured connector, in id order.
    pub connectors: Vec<ConnectorCheck>,
}

/// One connector's part of a [`CheckReport`].
#[derive(Debug, Clone)]
pub struct ConnectorCheck {
    /// The connector id.
    pub id: String,
    /// References in its configured templates that its policy refuses.
    pub refused: Vec<RefusedReference>,
    /// Why its allowed secrets could not be listed, if they could not.
    pub listing: Option<String>,
    /// Each secret (or key) it may use, ready to paste, and whether it
    /// resolves.
    pub references: Vec<ReferenceCheck>,
    /// Whether its configured fields render.
    pub render: Result<(), String>,
    /// Whether it has destination pins for the secret material it outputs:
    /// an error when it renders secrets with no destination field the
    /// operator configured and no `egress`.
    pub destinations: Result<(), String>,
}

/// One allowed reference and whether it resolves.
#[derive(Debug, Clone)]
pub struct ReferenceCheck {
    /// The reference in template form, ready to paste.
    pub reference: String,
    /// Why it does not resolve, if it does not (never a value).
    pub result: Result<(), String>,
}

impl CheckReport {
    /// How many checks failed.
    pub fn failures(&self) -> usize {
        usize::from(self.backend.is_err())
            + self
                .connectors
                .iter()
                .map(|c| {
                    c.refused.len()
                        + usize::from(c.listing.is_some())
                        + c.references.iter().filter(|r| r.result.is_err()).count()
                        + usize::from(c.render.is_err())
                        + usize::from(c.destinations.is_err())
                })
                .sum::<usize>()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Ok(count) => write!(f, "backend: ok ({count} secrets in the namespace)")?,
            Err(e) => write!(f, "backend: FAILED: {e}")?,
        }
        for connector in &self.connectors {
            write!(f, "\nconnector {}:", connector.id)?;
            for refused in &connector.refused {
                write!(
                    f,
                    "\n  field `{}`, column {}: FAILED: {}",
                    refused.field, refused.column, refused.why
                )?;
            }
            if let Some(e) = &connector.listing {
                write!(f, "\n  listing its secrets: FAILED: {e}")?;
            } else if connector.references.is_empty() {
                write!(f, "\n  no allowed secret exists in the backend")?;
            }
            for reference in &connector.references {
                match &reference.result {
                    Ok(()) => write!(f, "\n  {}  ok", reference.reference)?,
                    Err(e) => write!(f, "\n  {}  FAILED: {e}", reference.reference)?,
                }
            }
            if let Err(e) = &connector.destinations {
                write!(f, "\n  destinations: FAILED: {e}")?;
            }
            match &connector.render {
                Ok(()) => write!(f, "\n  render: ok")?,
                Err(e) => write!(f, "\n  render: FAILED: {e}")?,
            }
        }
        Ok(())
    }
}

impl Keyward {
    /// Runs every check of the default tenant; a failing backend stops
    /// before the connectors.
    pub async fn check(&self) -> CheckReport {
        self.default_tenant().check_with(|_| Ok(())).await
    }

    /// [`Tenant::check_with`] of the default tenant.
    pub async fn check_with<P>(&self, admit: impl Fn(&str) -> Result<P, String>) -> CheckReport {
        self.default_tenant().check_with(admit).await
    }
}

impl Tenant {
    /// Runs every check; a failing backend stops before the connectors.
    pub async fn check(&self) -> CheckReport {
        self.check_with(|_| Ok(())).await
    }

    /// [`Tenant::check`], each connector's render admitted by `admit`
    /// (held while it runs), so that a service's checks count against the
    /// same concurrency limits as its renders; refused, the render is
    /// reported as failed with `admit`'s reason.
    pub async fn check_with<P>(&self, admit: impl Fn(&str) -> Result<P, String>) -> CheckReport {
        let backend = self.check_backend().await.map_err(|e| e.to_string());
        let mut connectors = Vec::new();
        if backend.is_ok() {
            for id in self.connector_ids() {
                connectors.push(self.check_connector(&id, &admit).await);
            }
        }
        CheckReport {
            backend,
            connectors,
        }
    }

    async fn check_connector<P>(
        &self,
        id: &str,
        admit: &impl Fn(&str) -> Result<P, String>,
    ) -> ConnectorCheck {
        let refused = self.refused_references(id);
        let (listing, references) = match self.allowed_references(id).await {
            Err(e) => (Some(e.to_string()), Vec::new()),
            Ok(requests) => {
                let results = self.resolve(id, &requests).await.unwrap_or_default();
                let references = requests
                    .iter()
                    .zip(results)
                    .map(|(request, result)| ReferenceCheck {
                        reference: request.paste_form(),
                        result: result.map(drop).map_err(|e| e.to_string()),
                    })
                    .collect();
                (None, references)
            }
        };
        let rendered = match admit(id) {
            Ok(_permit) => self.render(id).await,
            Err(why) => Err(Error::Busy(why)),
        };
        let destinations = match &rendered {
            Err(Error::Run {
                error: RunError::Egress(refused),
                ..
            }) if refused.pinless => Err(format!(
                "it outputs secret material but has no destination pins: configure the \
                 destination fields it declares, or set connectors.{id}.egress"
            )),
            _ => Ok(()),
        };
        let render = rendered.map(drop).map_err(|e| e.to_string());
        ConnectorCheck {
            id: id.to_string(),
            refused,
            listing,
            references,
            render,
            destinations,
        }
    }
}
