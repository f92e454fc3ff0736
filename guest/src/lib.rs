//! # keyward-guest: the SDK for keyward connectors
//!
//! A connector is a WebAssembly component that declares its configuration
//! fields and renders a connection (a DSN, headers, a client config) from
//! them. Field values are templates that may reference secrets in any of
//! three syntaxes:
//!
//! - Retool: `{{ secrets.db.password }}`, `{{ secrets['a/b']['key'] }}`
//! - Workato: `{{workato:sm:KEY_NAME:SECRET_ARN}}`
//! - ECS `valueFrom`: `{{ arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME:JSON_KEY:STAGE:ID }}`
//!
//! with the filters `| urlencode`, `| json` and `| base64`. The host expands
//! them under policy before the connector runs; the connector never holds a
//! secret value. A field with secret parts arrives **sealed**: a [`Text`]
//! the connector can concatenate with plain text and encode (the host
//! applies the encodings) but not read. Outputs holding secret material are
//! sensitive whatever the connector says.
//!
//! ```
//! use keyward_guest::{Connector, ConnectorInfo, Field, Fields, Output, RenderError, compose};
//!
//! struct Api;
//!
//! impl Connector for Api {
//!     fn info() -> ConnectorInfo {
//!         ConnectorInfo::new("api", "0.1.0", "An HTTP API")
//!             .field(Field::new("url", "Base URL").required())
//!             .field(Field::new("token", "Bearer token").required().sensitive())
//!     }
//!
//!     fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
//!         Ok(vec![
//!             Output::new("url", fields.require("url")?),
//!             Output::secret("authorization", compose!["Bearer ", fields.require("token")?]),
//!         ])
//!     }
//! }
//!
//! // In the connector crate (built with `--target wasm32-wasip2`):
//! // keyward_guest::export_connector!(Api);
//! ```

mod connector;
mod fxhash;
mod host;
#[cfg(not(target_family = "wasm"))]
pub mod testing;
mod text;

pub use connector::{
    Connector, ConnectorInfo, DestinationPart, Field, Fields, Output, OutputKind, RenderError,
};
pub use host::{Level, invalidate, list_secrets, log, reveal};
pub use keyward_template::encode::Encoding;
pub use text::Text;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "connector",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_connector_world",
        default_bindings_module: "keyward_guest::bindings",
    });
}

#[doc(hidden)]
pub mod __private {
    pub use crate::host::{describe, render_exported};
}

/// Exports a [`Connector`] implementation as the component's `describe` and
/// `render`.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        const _: () = {
            struct KeywardExport;

            impl $crate::bindings::Guest for KeywardExport {
                fn describe() -> $crate::bindings::keyward::connector::types::ConnectorInfo {
                    $crate::__private::describe::<$connector>()
                }

                fn render(
                    fields: ::std::vec::Vec<$crate::bindings::keyward::connector::types::Field>,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<$crate::bindings::keyward::connector::types::Output>,
                    $crate::bindings::keyward::connector::types::RenderError,
                > {
                    $crate::__private::render_exported::<$connector>(fields)
                }
            }

            $crate::bindings::__export_connector_world!(KeywardExport with_types_in $crate::bindings);
        };
    };
}
