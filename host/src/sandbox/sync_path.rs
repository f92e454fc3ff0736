//! The synchronous render path: the `render` export called on a plain
//! (fiber-free) store, with no async host call in reach.
//!
//! By the time a connector runs, the host has expanded its fields: every
//! secret of the render is resolved (policy, cache, upstream reads, all the
//! async work) and sealed. What is left for the guest's imports is `reveal`
//! and `log`, which read or write that snapshot and never wait. So the
//! synchronous linker has exactly those two, and every other import a
//! component has (`secrets.invalidate` and `secrets.list`, which may wait on
//! the backend, and all of WASI, whose streams and polls block) is a stub
//! that ends the call with [`NeedsAsync`]. The caller then runs the render
//! again, from the same snapshot, in an instance on the async path: a
//! render has no side effects but its log lines and reveal audits, and
//! those are held back during a synchronous attempt (see
//! `KeywardCtx::hold_effects`).
//!
//! The CPU deadline holds here as on the async path: the epoch callback
//! traps a synchronous guest the same way.

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceType};

use super::interface::bindings::keyward::connector::types as wit_types;
use super::interface::{HasKeyward, KeywardView, tracing_level};

/// Bindings for the synchronous path; the `types` interface is shared with
/// the async bindings, so fields and outputs are one set of types.
#[allow(missing_docs)]
pub(super) mod bindings {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../wit",
        imports: { default: trappable },
        with: {
            "keyward:connector/types": crate::sandbox::interface::bindings::keyward::connector::types,
        },
    });
}

use bindings::keyward::connector::{log as wit_log, secrets as wit_secrets};

/// Why a synchronous attempt ended: the guest called an import that may
/// wait (named here, as `interface#function`). Not a guest fault; the
/// render runs again on the async path.
#[derive(Debug)]
pub(super) struct NeedsAsync {
    import: String,
}

impl fmt::Display for NeedsAsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is served on the async path only", self.import)
    }
}

impl std::error::Error for NeedsAsync {}

impl NeedsAsync {
    fn error(import: &str) -> wasmtime::Error {
        wasmtime::Error::new(Self {
            import: import.to_string(),
        })
    }
}

/// Whether a failed call or instantiation ended for the async path.
pub(super) fn needs_async(e: &wasmtime::Error) -> bool {
    e.is::<NeedsAsync>()
}

/// The host type of every WASI resource on the synchronous path. None is
/// ever created: every function that could create one is a stub.
struct NeverCreated;

/// The linker shared by every component: keyward's imports, synchronous.
pub(super) fn base_linker<T: Send + 'static>(
    engine: &Engine,
    view: fn(&mut T) -> KeywardView<'_>,
) -> wasmtime::Result<Linker<T>> {
    let mut linker = Linker::new(engine);
    wit_types::add_to_linker::<T, HasKeyward>(&mut linker, view)?;
    wit_secrets::add_to_linker::<T, HasKeyward>(&mut linker, view)?;
    wit_log::add_to_linker::<T, HasKeyward>(&mut linker, view)?;
    Ok(linker)
}

/// `base` completed for one component: each WASI interface it imports,
/// under the exact name it imports (whatever its version), with its
/// resources declared and every function a [`NeedsAsync`] stub.
pub(super) fn instance_pre<T: Send + 'static>(
    base: &Linker<T>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<bindings::ConnectorPre<T>> {
    let mut linker = base.clone();
    for (name, import) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(interface) = import.ty else {
            continue;
        };
        if !name.starts_with("wasi:") {
            continue;
        }
        let mut instance = linker.instance(name)?;
        for (item, export) in interface.exports(engine) {
            match export.ty {
                ComponentItem::Resource(_) => {
                    instance.resource(item, ResourceType::host::<NeverCreated>(), |_, _| Ok(()))?;
                }
                ComponentItem::ComponentFunc(_) => {
                    let import = format!("{name}#{item}");
                    instance.func_new(item, move |_, _, _, _| Err(NeedsAsync::error(&import)))?;
                }
                _ => {}
            }
        }
    }
    bindings::ConnectorPre::new(linker.instantiate_pre(component)?)
}

impl wit_secrets::Host for KeywardView<'_> {
    fn reveal(&mut self, value: u64) -> wasmtime::Result<Result<String, String>> {
        self.ctx().reveal(value)
    }

    fn invalidate(&mut self, _reference: String) -> wasmtime::Result<bool> {
        Err(NeedsAsync::error("keyward:connector/secrets#invalidate"))
    }

    fn list(&mut self) -> wasmtime::Result<Vec<String>> {
        Err(NeedsAsync::error("keyward:connector/secrets#list"))
    }
}

impl wit_log::Host for KeywardView<'_> {
    fn log(&mut self, level: wit_log::Level, message: String) -> wasmtime::Result<()> {
        self.ctx().log(tracing_level(level as u8), message)
    }
}

#[cfg(test)]
mod tests {
    use super::bindings::keyward::connector::log::Level;
    use super::tracing_level;

    #[test]
    fn log_levels_map_by_their_wit_case_on_the_synchronous_path_too() {
        assert_eq!(tracing_level(Level::Warn as u8), tracing::Level::WARN);
        assert_eq!(tracing_level(Level::Trace as u8), tracing::Level::TRACE);
    }
}
