//! keyward's imports (`secrets`, `log`), shaped like wasmtime's WASI
//! interface crates: an owned [`KeywardCtx`] kept in the embedder's store
//! state, a borrowed [`KeywardView`] that implements the generated host
//! traits, and one [`add_to_linker`] that works in any `Linker<T>`, so a
//! platform that already embeds wasmtime links keyward beside its own
//! interfaces.
//!
//! The ctx also does the host's half of a render: it expands the
//! configured fields into plain and sealed text before the connector runs
//! ([`KeywardCtx::expand`]) and evaluates the compositions it returns
//! ([`KeywardCtx::outputs`]). What a render may cost is bounded here: the
//! CPU deadline counts guest code and the host's work in its calls (not
//! time waiting on the backend), a wall-clock deadline counts everything,
//! host calls per render are capped, and a host call traps — never panics
//! — when a bound is passed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_template::compose::{self, Allowance, ComposeError, Node, wipe};
use keyward_template::egress::{self, CheckedOutput, OutputKind, PinField, Pins, Verdict};
use keyward_template::encode::Encoding;
use keyward_template::{Part, ValueRef, expand};
use wasmtime::component::{HasData, Linker};
use wasmtime::{ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use zeroize::Zeroizing;

use super::limits::SandboxConfig;
use super::verdicts::KeptVerdicts;
use crate::contract::{
    DestinationInfo, EgressRefused, RenderError, RenderedValue, RunError, Trap, TrapKind,
};
use crate::escape::{bounded_line, escape_untrusted};
use crate::policy::{Grants, Quoted};
use crate::render::{ComposedOutput, PreparedFields, Revealed, SealedTable, single_reference};
use crate::resolve::{ConnectorSecrets, RenderBudget, ResolveError};
use crate::value::SecretValue;

/// Bindings generated from `wit/connector.wit`, for embedders that call a
/// connector's exports themselves.
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../wit",
        // Host calls return `wasmtime::Result`: a call past a render's
        // bounds traps the guest instead of answering it.
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

use bindings::keyward::connector::{log as wit_log, secrets as wit_secrets, types as wit_types};

/// The state keyward's imports need, one per store.
pub struct KeywardCtx {
    connector: Arc<str>,
    secrets: Option<Arc<ConnectorSecrets>>,
    limits: Arc<SandboxConfig>,
    started: Instant,
    budget: RenderBudget,
    host_calls: usize,
    log_lines: usize,
    sealed: SealedTable,
    /// The fields of the render under way: what its sealed entries refer to.
    prepared: Option<Arc<PreparedFields>>,
    /// Where the render's secrets may go, from its destination fields as
    /// expanded and the operator's `egress` (none before an expansion).
    pins: Option<Arc<Pins>>,
    revealed: Revealed,
    /// On the synchronous path, what the guest did that must not happen
    /// twice if the render is run again on the async path.
    held: Option<HeldEffects>,
    /// The store's memory and table limits.
    limiter: GuestLimiter,
    /// The render is being recorded as a plan: an import with an effect or
    /// an answer from outside ends it with [`NotPlannable`].
    recording: bool,
    /// Whether the last expansion sealed every value (none was public):
    /// its fields' shape is then the prepared fields' alone.
    all_sealed: bool,
}

/// How many outputs are evaluated between two reads of the deadline's
/// clock (and one after the last).
const OUTPUTS_PER_DEADLINE_CHECK: usize = 8;

/// A render's fields as [`KeywardCtx::expand_known`] leaves them.
pub(crate) enum Expansion<S> {
    /// Built, as the connector sees them.
    Fields(Vec<wit_types::Field>),
    /// Not built: every value is sealed, in the order the known shape
    /// (`S`, what knows it) places them, and the pins are the kept ones.
    Sealed(S),
}

/// What a render's references resolved to, with their grants.
type Resolved = Result<(SecretValue, Grants), ResolveError>;

/// A render's resolved values as its fields take them.
struct Values<'a> {
    resolved: &'a [Resolved],
    requests: &'a [crate::policy::SecretRequest],
    /// The first unresolved reference failed in the backend (expansion
    /// stops there): the render is unavailable, not refused.
    unavailable: std::cell::Cell<bool>,
}

impl<'a> Values<'a> {
    fn new(resolved: &'a [Resolved], requests: &'a [crate::policy::SecretRequest]) -> Self {
        Self {
            resolved,
            requests,
            unavailable: std::cell::Cell::new(false),
        }
    }

    fn value_of(&self, i: usize) -> Result<ValueRef<'a>, String> {
        match self.resolved.get(i) {
            Some(Ok((SecretValue::Text(text), _))) => Ok(ValueRef::Text(text)),
            Some(Ok((SecretValue::Bytes(bytes), _))) => Ok(ValueRef::Bytes(bytes)),
            Some(Err(e)) => {
                self.unavailable
                    .set(matches!(e, ResolveError::Unavailable { .. }));
                Err(e.to_string())
            }
            None => Err(format!(
                "secret `{}` was not found or is not allowed",
                Quoted(&self.requests[i])
            )),
        }
    }

    fn grants(&self, i: usize) -> Grants {
        match self.resolved.get(i) {
            Some(Ok((_, grants))) => *grants,
            _ => Grants::default(),
        }
    }

    /// Whether every value is sealed (none is public). Every reference
    /// stands in some field, so this is also whether every placed value is.
    fn all_sealed(&self) -> bool {
        (0..self.resolved.len()).all(|i| !self.grants(i).public)
    }

    fn error(&self, e: Placing) -> RunError {
        match e {
            Placing::Field(e) if self.unavailable.get() => {
                RunError::Unavailable(crate::render::render_error(e))
            }
            Placing::Field(e) => RunError::Render(crate::render::render_error(e)),
            Placing::Run(e) => e,
        }
    }
}

/// Why placing a render's values stopped.
enum Placing {
    /// A reference did not resolve (the field and column named).
    Field(expand::FieldError),
    /// A bound was passed.
    Run(RunError),
}

/// Why a recording render ended: the connector called an import whose
/// effect or answer is not a function of its fields (named here). Not a
/// guest fault; the render runs again as an unplanned one.
#[derive(Debug)]
pub(crate) struct NotPlannable {
    import: &'static str,
}

impl std::fmt::Display for NotPlannable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` is not called in a recorded render", self.import)
    }
}

impl std::error::Error for NotPlannable {}

/// Whether a failed call ended because the render cannot be planned.
pub(crate) fn not_plannable(e: &wasmtime::Error) -> bool {
    e.is::<NotPlannable>()
}

/// Log lines and reveal audits held back during a synchronous attempt:
/// released when it finishes (or traps), discarded when it ends for the
/// async path, which does them again.
#[derive(Debug, Default)]
struct HeldEffects {
    logs: Vec<(tracing::Level, String)>,
    /// Indexes into the render's requests.
    reveals: Vec<usize>,
}

impl std::fmt::Debug for KeywardCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeywardCtx")
            .field("connector", &self.connector)
            .field("sealed", &self.sealed)
            .field("revealed", &self.revealed)
            .finish_non_exhaustive()
    }
}

/// A borrowed view of a [`KeywardCtx`]: what the host traits are
/// implemented on.
#[derive(Debug)]
pub struct KeywardView<'a> {
    ctx: &'a mut KeywardCtx,
}

impl<'a> KeywardView<'a> {
    /// Views a ctx.
    pub fn new(ctx: &'a mut KeywardCtx) -> Self {
        Self { ctx }
    }

    pub(super) fn ctx(&mut self) -> &mut KeywardCtx {
        self.ctx
    }
}

pub(super) struct HasKeyward;

impl HasData for HasKeyward {
    type Data<'a> = KeywardView<'a>;
}

/// Adds keyward's `secrets` and `log` imports to a linker whose store state
/// `T` holds a [`KeywardCtx`]; `view` borrows it.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KeywardView<'_>,
) -> wasmtime::Result<()> {
    wit_types::add_to_linker::<T, HasKeyward>(linker, view)?;
    wit_secrets::add_to_linker::<T, HasKeyward>(linker, view)?;
    wit_log::add_to_linker::<T, HasKeyward>(linker, view)?;
    Ok(())
}

impl KeywardCtx {
    /// A ctx with no render under way (`describe`, an idle instance).
    pub(crate) fn new(connector: Arc<str>, limits: Arc<SandboxConfig>) -> Self {
        Self {
            connector,
            secrets: None,
            started: Instant::now(),
            budget: RenderBudget::for_render(),
            host_calls: 0,
            log_lines: 0,
            sealed: SealedTable::default(),
            prepared: None,
            pins: None,
            revealed: Revealed::default(),
            held: None,
            limiter: GuestLimiter::new(&limits),
            limits,
            recording: false,
            all_sealed: false,
        }
    }

    /// Records the render as a plan (or stops doing so).
    pub(crate) fn set_recording(&mut self, recording: bool) {
        self.recording = recording;
    }

    /// Ends a recording render at an import it may not call.
    fn refuse_while_recording(&self, import: &'static str) -> wasmtime::Result<()> {
        if self.recording {
            return Err(wasmtime::Error::new(NotPlannable { import }));
        }
        Ok(())
    }

    /// Holds back log lines and reveal audits until
    /// [`KeywardCtx::release_effects`] or [`KeywardCtx::discard_effects`].
    pub(super) fn hold_effects(&mut self) {
        self.held = Some(HeldEffects::default());
    }

    /// Writes the held log lines and reveal audits: the attempt counted.
    /// Returns the log lines (a recorded render's plan keeps them).
    pub(super) fn release_effects(&mut self) -> Vec<(tracing::Level, String)> {
        let Some(held) = self.held.take() else {
            return Vec::new();
        };
        for (level, message) in &held.logs {
            emit_guest_line(&self.connector, *level, message);
        }
        if let (Some(secrets), Some(prepared)) = (&self.secrets, &self.prepared) {
            for &reference in &held.reveals {
                secrets.audit_reveal(&prepared.requests()[reference], &mut self.budget);
            }
        }
        held.logs
    }

    /// Drops the held effects: the render runs again elsewhere.
    pub(super) fn discard_effects(&mut self) {
        self.held = None;
    }

    /// Moves the render under way (its policy, sealed text, clock and
    /// budget) to `to`, the ctx of the instance that runs it again. The
    /// clock is not restarted: both attempts count against one deadline.
    pub(super) fn hand_over_render(&mut self, to: &mut KeywardCtx) {
        to.connector = self.connector.clone();
        to.secrets = self.secrets.take();
        to.prepared = self.prepared.take();
        to.pins = self.pins.take();
        std::mem::swap(&mut to.sealed, &mut self.sealed);
        self.sealed.clear();
        to.started = self.started;
        to.budget = std::mem::take(&mut self.budget);
        to.host_calls = 0;
        to.log_lines = 0;
        to.held = None;
        to.recording = self.recording;
    }

    /// Moves a render expanded in this ctx (one of no instance) to `to`,
    /// an instance's, as [`KeywardCtx::hand_over_render`] does, and numbers
    /// its sealed handles after the last render `to` saw, rewriting them in
    /// `fields`: a handle a warm instance kept from an earlier render names
    /// nothing in this one, and a fresh instance sees the same numbers as
    /// every other fresh instance.
    pub(crate) fn hand_over_expanded(
        &mut self,
        to: &mut KeywardCtx,
        fields: &mut [wit_types::Field],
    ) {
        let serial = to.sealed.next_serial();
        self.hand_over_render(to);
        to.sealed.renumber(serial);
        for field in fields {
            for piece in &mut field.value {
                if let wit_types::Text::Sealed(handle) = piece {
                    *handle = SealedTable::handle(serial, *handle);
                }
            }
        }
    }

    /// Starts the deadline's clock for a call that is not a render
    /// (`describe`, an instantiation's start function).
    pub(crate) fn restart_clock(&mut self) {
        self.started = Instant::now();
        self.budget = RenderBudget::for_render();
        self.host_calls = 0;
    }

    /// A ctx of no instance with a render under `secrets` begun: the host's
    /// half of a planned render (one clock read, not two).
    pub(crate) fn rendering(secrets: Arc<ConnectorSecrets>, limits: Arc<SandboxConfig>) -> Self {
        let mut ctx = Self::new(secrets.connector_id(), limits);
        let started = ctx.started;
        ctx.begin_render_at(secrets, started);
        ctx
    }

    /// Readies the ctx for a render under `secrets` (its policy and view).
    pub fn begin_render(&mut self, secrets: Arc<ConnectorSecrets>) {
        self.begin_render_at(secrets, Instant::now());
    }

    fn begin_render_at(&mut self, secrets: Arc<ConnectorSecrets>, started: Instant) {
        self.connector = secrets.connector_id();
        self.secrets = Some(secrets);
        self.sealed.begin();
        self.started = started;
        self.budget = RenderBudget::for_render();
        self.host_calls = 0;
        self.log_lines = 0;
    }

    /// Ends a render, trapped or not: writes the audit summary of what was
    /// counted rather than written.
    pub fn finish_render(&mut self) {
        if let Some(secrets) = &self.secrets {
            secrets.finish_render(&self.budget);
        }
        self.budget = RenderBudget::for_render();
    }

    /// Forgets the render's secrets view and its sealed texts (zeroed).
    pub fn end_render(&mut self) {
        self.secrets = None;
        self.prepared = None;
        self.pins = None;
        self.sealed.clear();
    }

    /// Whether the last expansion sealed every value it placed.
    pub(crate) fn all_sealed(&self) -> bool {
        self.all_sealed
    }

    /// The bounds of a render.
    pub fn limits(&self) -> &SandboxConfig {
        &self.limits
    }

    /// What the instance revealed in its life.
    pub fn revealed(&self) -> &Revealed {
        &self.revealed
    }

    /// Why the render must stop now, if it must: past the CPU deadline
    /// (everything since it started except waiting on the backend), or
    /// past the wall-clock one. One clock read.
    pub fn over_deadline(&self) -> Option<Trap> {
        let limits = &self.limits;
        let elapsed = self.started.elapsed();
        if elapsed.saturating_sub(self.budget.upstream_wait) > limits.render_timeout {
            Some(Trap::new(
                TrapKind::CpuDeadline,
                format!(
                    "the connector ran longer than its {} ms CPU deadline",
                    limits.render_timeout.as_millis()
                ),
            ))
        } else if elapsed > limits.render_wall_timeout {
            Some(wall_deadline_passed(limits.render_wall_timeout))
        } else {
            None
        }
    }

    /// Counts a host call and traps past the render's bounds.
    fn enter_host_call(&mut self) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.limits.max_host_calls {
            return Err(wasmtime::Error::new(Trap::new(
                TrapKind::HostCalls,
                format!(
                    "the connector made more than {} host calls in one render",
                    self.limits.max_host_calls
                ),
            )));
        }
        if let Some(trap) = self.over_deadline() {
            return Err(wasmtime::Error::new(trap));
        }
        Ok(())
    }

    /// Awaits host work that may wait on the backend, within the render's
    /// wall-clock deadline.
    async fn within_wall_deadline<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> wasmtime::Result<T> {
        // Most host calls are cache hits, ready at the first poll: they
        // need no timer.
        let mut work = std::pin::pin!(work);
        if let std::task::Poll::Ready(done) = futures::poll!(work.as_mut()) {
            return Ok(done);
        }
        let limit = self.limits.render_wall_timeout;
        tokio::time::timeout_at((self.started + limit).into(), work)
            .await
            .map_err(|_| wasmtime::Error::new(wall_deadline_passed(limit)))
    }

    /// A guest's text for a log or error line of at most `limit` bytes:
    /// revealed values masked, control characters escaped. The text is cut
    /// before it is masked and escaped, so a line's cost is bounded by the
    /// limit, not by what the guest sent.
    pub fn sanitize_line(&self, text: &str, limit: usize) -> String {
        bounded_line(&self.revealed.mask_prefix(text, limit), text.len(), limit)
    }

    /// Expands the prepared fields under the render's policy: all
    /// references resolved in one pass, each field given as its pieces,
    /// literal text and public values plain, every other value sealed. The
    /// outer error is a trap (the wall-clock deadline passed while waiting
    /// on the backend).
    pub async fn expand(
        &mut self,
        prepared: Arc<PreparedFields>,
    ) -> wasmtime::Result<Result<Vec<wit_types::Field>, RunError>> {
        let resolved = match self.resolve_prepared(&prepared).await? {
            Ok(resolved) => resolved,
            Err(e) => return Ok(Err(e)),
        };
        let values = Values::new(&resolved, prepared.requests());
        let fields = self.place_fields(&prepared, &values);
        Ok(fields.map_err(|e| values.error(e)))
    }

    /// [`KeywardCtx::expand`] of fields whose shape is known (a render
    /// plan of them with every value sealed is): if every value is sealed
    /// this time too and the pins are kept, the values alone are sealed,
    /// in the order the fields would place them, and the fields are not
    /// built; else they are built, as `expand` builds them.
    pub(crate) async fn expand_known<S>(
        &mut self,
        prepared: Arc<PreparedFields>,
        shape: S,
    ) -> wasmtime::Result<Result<Expansion<S>, RunError>> {
        let resolved = match self.resolve_prepared(&prepared).await? {
            Ok(resolved) => resolved,
            Err(e) => return Ok(Err(e)),
        };
        let values = Values::new(&resolved, prepared.requests());
        let kept_pins = prepared.kept_pins(self.egress());
        let outcome = match kept_pins.filter(|_| values.all_sealed()) {
            Some(pins) => {
                self.pins = Some(pins);
                self.seal_values(&prepared, &values)
                    .map(|()| Expansion::Sealed(shape))
            }
            None => self.place_fields(&prepared, &values).map(Expansion::Fields),
        };
        Ok(outcome.map_err(|e| values.error(e)))
    }

    /// The prepared fields' references resolved under the render's policy,
    /// in one pass; refused past `sandbox.max_references`.
    async fn resolve_prepared(
        &mut self,
        prepared: &Arc<PreparedFields>,
    ) -> wasmtime::Result<Result<Vec<Resolved>, RunError>> {
        self.prepared = Some(prepared.clone());
        let requests = prepared.requests();
        if requests.len() > self.limits.max_references {
            return Ok(Err(RunError::Render(RenderError {
                field: None,
                column: None,
                message: format!(
                    "the fields hold {} distinct secret references; at most {} are allowed \
                     (sandbox.max_references)",
                    requests.len(),
                    self.limits.max_references
                ),
            })));
        }
        Ok(Ok(match (&self.secrets, requests.is_empty()) {
            (_, true) | (None, _) => Vec::new(),
            (Some(secrets), false) => {
                let secrets = secrets.clone();
                let mut budget = std::mem::take(&mut self.budget);
                let resolved = self
                    .within_wall_deadline(secrets.resolve_with_grants(requests, &mut budget))
                    .await;
                self.budget = budget;
                resolved?
            }
        }))
    }

    /// The operator's `egress` list for the render's connector.
    fn egress(&self) -> Option<&Arc<keyward_template::egress::Egress>> {
        self.secrets
            .as_ref()
            .and_then(|s| s.policy().egress.as_ref())
    }

    /// Builds the fields as the connector sees them: literal text and
    /// public values plain (adjacent plain text joined), every other value
    /// sealed; and the render's pins from them.
    fn place_fields(
        &mut self,
        prepared: &PreparedFields,
        values: &Values<'_>,
    ) -> Result<Vec<wit_types::Field>, Placing> {
        let expanded = prepared
            .plan()
            .expand(|i| values.value_of(i))
            .map_err(Placing::Field)?;
        self.pins = Some(self.pins_of(prepared, &expanded));
        let mut fields = Vec::with_capacity(expanded.len());
        self.all_sealed = values.all_sealed();
        for field in expanded {
            let mut pieces: Vec<wit_types::Text> = Vec::with_capacity(field.parts.len());
            for part in field.parts {
                let (text, sealed_as) = match part {
                    Part::Literal(text) => (text, None),
                    Part::Value { text, tag } if values.grants(tag).public => (text, None),
                    Part::Value { text, tag } => (text, Some(tag)),
                };
                match (sealed_as, pieces.last_mut()) {
                    (None, Some(wit_types::Text::Plain(last))) => last.push_str(&text),
                    (None, _) => pieces.push(wit_types::Text::Plain(text)),
                    (Some(tag), _) => {
                        let handle = self.seal(&field.name, text, tag, values.grants(tag))?;
                        pieces.push(wit_types::Text::Sealed(handle));
                    }
                }
            }
            fields.push(wit_types::Field {
                name: field.name,
                value: pieces,
            });
        }
        Ok(fields)
    }

    /// Seals every value (none is public) in the order
    /// [`KeywardCtx::place_fields`] would: the handles are the same, and
    /// nothing else is built.
    fn seal_values(
        &mut self,
        prepared: &PreparedFields,
        values: &Values<'_>,
    ) -> Result<(), Placing> {
        let mut refused = None;
        prepared
            .plan()
            .values(
                |i| values.value_of(i),
                |field, tag, text| {
                    if refused.is_none()
                        && let Err(e) = self.seal(field, text, tag, values.grants(tag))
                    {
                        refused = Some(e);
                    }
                },
            )
            .map_err(Placing::Field)?;
        refused.map_or(Ok(()), Err)
    }

    /// Seals one value of `field`, within `sandbox.max_secret_kb`.
    fn seal(
        &mut self,
        field: &str,
        text: String,
        tag: usize,
        grants: Grants,
    ) -> Result<u64, Placing> {
        if text.len() > self.limits.max_secret_bytes {
            let mut text = text;
            wipe(&mut text);
            return Err(Placing::Run(RunError::Render(RenderError {
                field: Some(field.to_string()),
                column: None,
                message: format!(
                    "a secret value of this field is longer than {} bytes \
                     (sandbox.max_secret_kb)",
                    self.limits.max_secret_bytes
                ),
            })));
        }
        Ok(self.sealed.seal(text, tag, grants.reveal))
    }

    /// The render's pins: its destination fields' expanded values (secret
    /// parts included, wiped after), then the operator's `egress`; kept
    /// with the prepared fields when they are the same every render.
    fn pins_of(&self, prepared: &PreparedFields, expanded: &[expand::Expanded]) -> Arc<Pins> {
        let egress = self.egress();
        prepared.pins(egress, || {
            let pins = Self::field_pins(prepared, expanded);
            match egress {
                Some(egress) => pins.with_explicit(egress),
                None => pins,
            }
        })
    }

    /// The pins the destination fields' expanded values give.
    fn field_pins(prepared: &PreparedFields, expanded: &[expand::Expanded]) -> Pins {
        let mut values: Vec<(usize, String, bool)> = Vec::new();
        for field in expanded {
            if let Some(at) = prepared
                .destinations()
                .iter()
                .position(|(name, _)| *name == field.name)
            {
                values.push((at, field.text(), field.configured));
            }
        }
        let fields: Vec<PinField<'_>> = prepared
            .destinations()
            .iter()
            .enumerate()
            .map(|(at, (name, part))| {
                let value = values.iter().find(|(i, _, _)| *i == at);
                PinField {
                    name,
                    part: *part,
                    value: value.map(|(_, text, _)| text.as_str()),
                    configured: value.is_some_and(|(_, _, configured)| *configured),
                }
            })
            .collect();
        let pins = Pins::from_fields(&fields);
        drop(fields);
        for (_, text, _) in &mut values {
            wipe(text);
        }
        pins
    }

    /// The connector's outputs with their compositions evaluated and
    /// checked: an output holding a sealed piece, and every output of an
    /// instance that revealed, is sensitive; an output name may not hold a
    /// revealed value; and the render is refused if any output would take
    /// secret material where the operator did not send it (audited as
    /// `egress_refused`).
    pub fn outputs(&self, outputs: &[ComposedOutput]) -> Result<Vec<RenderedValue>, RunError> {
        self.checked_outputs(outputs, None)
    }

    /// [`KeywardCtx::outputs`] of a render plan, whose last egress verdicts
    /// are in `kept` (see [`KeptVerdicts`]).
    pub(crate) fn planned_outputs(
        &self,
        outputs: &[ComposedOutput],
        kept: &KeptVerdicts,
    ) -> Result<Vec<RenderedValue>, RunError> {
        self.checked_outputs(outputs, Some(kept))
    }

    fn checked_outputs(
        &self,
        outputs: &[ComposedOutput],
        kept: Option<&KeptVerdicts>,
    ) -> Result<Vec<RenderedValue>, RunError> {
        let limits = &self.limits;
        if outputs.len() > limits.max_outputs {
            return Err(RunError::Render(RenderError {
                field: None,
                column: None,
                message: format!(
                    "the connector returned {} outputs; at most {} are allowed (sandbox.max_outputs)",
                    outputs.len(),
                    limits.max_outputs
                ),
            }));
        }
        // Spent by every output in turn. A sealed piece counts as the
        // longest secret there may be, so the verdict depends on the
        // compositions' shape, never on a secret's length: bisecting the
        // size error with padding tells a caller nothing.
        let mut allowance = Allowance {
            value_bytes: limits.max_output_bytes,
            built_bytes: limits.max_output_bytes.saturating_mul(8),
            sealed_bytes: Some(limits.max_secret_bytes),
        };
        let too_large = |name: &str| {
            RunError::Render(RenderError {
                field: None,
                column: None,
                message: format!(
                    "output `{}`: the outputs could be larger than {} bytes in all \
                     (sandbox.max_output_kb), each sealed piece counted as {} bytes \
                     (sandbox.max_secret_kb)",
                    self.sanitize_line(name, limits.max_error_bytes),
                    limits.max_output_bytes,
                    limits.max_secret_bytes
                ),
            })
        };
        let mut assembled = Vec::with_capacity(outputs.len());
        for (index, output) in outputs.iter().enumerate() {
            // Evaluating, checking and escaping are the host's work for the
            // render: they count against its deadline, read every few
            // outputs (each is bounded by the allowance) and after the last.
            if index % OUTPUTS_PER_DEADLINE_CHECK == OUTPUTS_PER_DEADLINE_CHECK - 1
                && let Some(why) = self.over_deadline()
            {
                return Err(RunError::Trap(why));
            }
            let Some(left) = allowance.value_bytes.checked_sub(output.name.len()) else {
                return Err(too_large(&output.name));
            };
            allowance.value_bytes = left;
            let name_error = |why: String| {
                RunError::Render(RenderError {
                    field: None,
                    column: None,
                    message: format!(
                        "output `{}`: {why}",
                        self.sanitize_line(&output.name, limits.max_error_bytes)
                    ),
                })
            };
            if escape_untrusted(&output.name) != output.name.as_str() {
                return Err(name_error("the name contains a control character".into()));
            }
            if self.revealed.mask(&output.name) != output.name.as_str() {
                return Err(name_error("the name holds a revealed value".into()));
            }
            let evaluated = compose::evaluate_marked(&output.nodes, &mut allowance, |handle| {
                self.sealed.get(handle).map(|entry| entry.text())
            });
            let (value, mut marks) = match evaluated {
                Ok(evaluated) => evaluated,
                Err(ComposeError::TooLarge) => return Err(too_large(&output.name)),
                Err(e) => return Err(name_error(e.to_string())),
            };
            // What a revealing connector writes in plain text may be a
            // value it revealed: those bytes count as secret material.
            marks.extend(self.revealed.marks(&value));
            assembled.push((
                output.name.as_str(),
                output.kind,
                output.sensitive,
                Zeroizing::new(value),
                marks,
            ));
        }
        let checked: Vec<CheckedOutput<'_>> = assembled
            .iter()
            .map(|(name, kind, _, value, marks)| CheckedOutput {
                name,
                kind: *kind,
                value,
                marks,
            })
            .collect();
        let no_pins = Arc::default();
        let pins = self.pins.as_ref().unwrap_or(&no_pins);
        let verdicts = match kept.and_then(|kept| kept.get(pins, &checked)) {
            Some(verdicts) => Ok(verdicts),
            None => egress::check(&checked, pins).inspect(|verdicts| {
                if let Some(kept) = kept {
                    kept.keep(pins, &checked, verdicts);
                }
            }),
        };
        let verdicts = match verdicts {
            Ok(verdicts) => verdicts,
            Err(refusal) => {
                let output = escape_untrusted(checked[refusal.output].name).into_owned();
                if let Some(secrets) = &self.secrets {
                    secrets.audit_egress_refused(&output, &refusal.message);
                }
                return Err(RunError::Egress(EgressRefused {
                    connector: self.connector.to_string(),
                    output,
                    message: refusal.message,
                    pinless: refusal.pinless,
                }));
            }
        };
        drop(checked);
        if let Some(why) = self.over_deadline() {
            return Err(RunError::Trap(why));
        }
        Ok(assembled
            .into_iter()
            .zip(verdicts)
            .map(|((name, kind, sensitive, value, marks), verdict)| {
                let destination = match verdict {
                    Verdict::Destination(d) => {
                        let spans = &d.spans;
                        let public = [
                            spans.scheme.clone(),
                            Some(spans.host.clone()),
                            spans.port.clone(),
                        ];
                        let secret = marks.iter().any(|m| {
                            public
                                .iter()
                                .flatten()
                                .any(|p| m.start < p.end && p.start < m.end)
                        });
                        Some(DestinationInfo {
                            port: d.effective_port(),
                            scheme: d.scheme,
                            host: d.host,
                            secret,
                        })
                    }
                    Verdict::NotDestination | Verdict::Unparsed => None,
                };
                // An instance that ever revealed may output what it
                // kept: everything it outputs is sensitive.
                RenderedValue {
                    sensitive: sensitive || !marks.is_empty() || self.revealed.any(),
                    name: name.to_string(),
                    value,
                    kind,
                    destination,
                }
            })
            .collect())
    }

    /// The connector's render error, masked and escaped: a connector that
    /// revealed could echo a value, or write a fake host line.
    pub fn render_error(&self, e: wit_types::RenderError) -> RenderError {
        let limit = self.limits.max_error_bytes;
        RenderError {
            field: e.field.map(|field| self.sanitize_line(&field, limit)),
            column: e.column,
            message: self.sanitize_line(&e.message, limit),
        }
    }
}

impl KeywardCtx {
    /// `secrets.reveal`: the plaintext of a sealed handle of this render,
    /// where the operator granted it; audited as a reveal and masked in
    /// this instance's logs and errors from now on.
    pub(super) fn reveal(&mut self, value: u64) -> wasmtime::Result<Result<String, String>> {
        self.refuse_while_recording("keyward:connector/secrets#reveal")?;
        self.enter_host_call()?;
        let entry = match self.sealed.get(value) {
            Ok(entry) => entry,
            Err(why) => return Ok(Err(why)),
        };
        let (Some(secrets), Some(prepared)) = (&self.secrets, &self.prepared) else {
            return Ok(Err("no render is under way".into()));
        };
        if !entry.revealable {
            return Ok(Err(
                "reveal is not granted to this connector for this secret".into(),
            ));
        }
        let reference = entry.reference;
        let text = entry.text().to_string();
        let request = &prepared.requests()[reference];
        match &mut self.held {
            Some(held) => held.reveals.push(reference),
            None => secrets.audit_reveal(request, &mut self.budget),
        }
        self.revealed.add(&text, std::slice::from_ref(request));
        Ok(Ok(text))
    }

    /// `log.log`: one line of the connector's, escaped, masked and cut to
    /// the configured size; past the line limit, one warning and silence.
    pub(super) fn log(&mut self, level: tracing::Level, message: String) -> wasmtime::Result<()> {
        self.enter_host_call()?;
        self.log_lines += 1;
        let limits = &self.limits;
        if self.log_lines > limits.max_log_lines {
            if self.log_lines == limits.max_log_lines + 1 {
                let warning = format!(
                    "log limit of {} lines per render reached; further lines are dropped",
                    limits.max_log_lines
                );
                self.write_guest_line(tracing::Level::WARN, warning);
            }
            return Ok(());
        }
        let message = self.sanitize_line(&message, limits.max_log_bytes);
        self.write_guest_line(level, message);
        Ok(())
    }

    /// Writes a replayed render's log lines (escaped when recorded).
    pub(crate) fn write_replayed_lines(&self, lines: &[(tracing::Level, String)]) {
        for (level, message) in lines {
            emit_guest_line(&self.connector, *level, message);
        }
    }

    fn write_guest_line(&mut self, level: tracing::Level, message: String) {
        match &mut self.held {
            Some(held) => held.logs.push((level, message)),
            None => emit_guest_line(&self.connector, level, &message),
        }
    }
}

/// One line for the connector's log target (already escaped and masked).
fn emit_guest_line(connector: &str, level: tracing::Level, message: &str) {
    match level {
        tracing::Level::TRACE => tracing::trace!(target: "keyward::guest", connector, "{message}"),
        tracing::Level::DEBUG => tracing::debug!(target: "keyward::guest", connector, "{message}"),
        tracing::Level::INFO => tracing::info!(target: "keyward::guest", connector, "{message}"),
        tracing::Level::WARN => tracing::warn!(target: "keyward::guest", connector, "{message}"),
        tracing::Level::ERROR => tracing::error!(target: "keyward::guest", connector, "{message}"),
    }
}

/// The connector's outputs in the host's terms.
pub(crate) fn composed(outputs: Vec<wit_types::Output>) -> Vec<ComposedOutput> {
    outputs
        .into_iter()
        .map(|output| ComposedOutput {
            name: output.name,
            kind: from_wit_kind(output.kind),
            sensitive: output.sensitive,
            nodes: output
                .value
                .nodes
                .into_iter()
                .map(|node| match node {
                    wit_types::Node::Plain(text) => Node::Plain(text),
                    wit_types::Node::Sealed(handle) => Node::Sealed(handle),
                    wit_types::Node::Concat(parts) => Node::Concat(parts),
                    wit_types::Node::Encode((encoding, part)) => {
                        Node::Encode(from_wit_encoding(encoding), part)
                    }
                })
                .collect(),
        })
        .collect()
}

pub(super) fn from_wit_kind(kind: wit_types::OutputKind) -> OutputKind {
    match kind {
        wit_types::OutputKind::Destination => OutputKind::Destination,
        wit_types::OutputKind::Credential => OutputKind::Credential,
        wit_types::OutputKind::Setting => OutputKind::Setting,
    }
}

pub(super) fn from_wit_part(
    part: wit_types::DestinationPart,
) -> keyward_template::egress::DestinationPart {
    use keyward_template::egress::DestinationPart;
    match part {
        wit_types::DestinationPart::Url => DestinationPart::Url,
        wit_types::DestinationPart::Host => DestinationPart::Host,
        wit_types::DestinationPart::Port => DestinationPart::Port,
        wit_types::DestinationPart::Resource => DestinationPart::Resource,
    }
}

fn from_wit_encoding(encoding: wit_types::Encoding) -> Encoding {
    match encoding {
        wit_types::Encoding::Percent => Encoding::Percent,
        wit_types::Encoding::Form => Encoding::Form,
        wit_types::Encoding::JsonString => Encoding::JsonString,
        wit_types::Encoding::Base64 => Encoding::Base64,
        wit_types::Encoding::Base64url => Encoding::Base64Url,
        wit_types::Encoding::UriHost => Encoding::UriHost,
    }
}

/// Why a render past its wall-clock deadline was stopped.
fn wall_deadline_passed(limit: Duration) -> Trap {
    Trap::new(
        TrapKind::WallDeadline,
        format!(
            "the render took longer than its {} ms wall-clock deadline",
            limit.as_millis()
        ),
    )
}

/// Arms a store whose state `T` holds a [`KeywardCtx`] (`get` borrows it)
/// with what every keyward store must have: the ctx's memory and table
/// limits, the hostcall fuel that bounds what one call may lift onto the
/// host, and the deadlines, checked on every epoch tick. A store's engine
/// must have epoch interruption on (every keyward engine has).
pub(crate) fn arm_store<T: Send + 'static>(
    store: &mut Store<T>,
    get: fn(&mut T) -> &mut KeywardCtx,
) {
    store.limiter(move |state| &mut get(state).limiter);
    let fuel = get(store.data_mut()).limits.hostcall_fuel();
    store.set_hostcall_fuel(fuel);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut context| {
        match get(context.data_mut()).over_deadline() {
            Some(trap) => Err(wasmtime::Error::new(trap)),
            None => Ok(UpdateDeadline::Continue(1)),
        }
    });
}

/// A store's memory and table limits, remembering whether a memory was
/// refused growth, so that the trap that follows is reported as what it is.
pub(crate) struct GuestLimiter {
    limits: StoreLimits,
    memory_refused: bool,
}

impl GuestLimiter {
    fn new(limits: &SandboxConfig) -> Self {
        Self {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.max_memory_bytes)
                .table_elements(100_000)
                .instances(64)
                .tables(64)
                .memories(16)
                // A refused growth traps at once rather than leaving the
                // guest to abort on a failed allocation somewhere later.
                .trap_on_grow_failure(true)
                .build(),
            memory_refused: false,
        }
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grown = self.limits.memory_growing(current, desired, maximum);
        if !matches!(grown, Ok(true)) {
            self.memory_refused = true;
        }
        grown
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// What stopped a guest, as a typed [`Trap`]: a bound keyward enforces
/// (raised as a `Trap` by the epoch callback or a host call), the memory
/// limit (the ctx's limiter saw the refusal), wasmtime's hostcall fuel,
/// or one of wasmtime's traps; else the host's own failure. One line,
/// escaped, without the guest backtrace wasmtime puts first.
pub(crate) fn classify(e: &wasmtime::Error, ctx: &KeywardCtx) -> Trap {
    if ctx.limiter.memory_refused {
        return Trap::new(
            TrapKind::Memory,
            format!(
                "the connector exceeded its memory limit of {} MiB ({})",
                ctx.limits.max_memory_bytes >> 20,
                ctx.limits.memory_limit_setting
            ),
        );
    }
    if let Some(trap) = e.chain().find_map(|cause| cause.downcast_ref::<Trap>()) {
        return trap.clone();
    }
    // wasmtime's error for exhausted hostcall fuel is a private type: its
    // message is all there is to know it by.
    if e.chain().any(|cause| {
        cause
            .to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    }) {
        return Trap::new(
            TrapKind::HostcallBytes,
            format!(
                "the connector passed more than {} bytes to the host in one call \
                 (twice sandbox.max_output_kb)",
                ctx.limits.hostcall_fuel()
            ),
        );
    }
    let kind = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => TrapKind::StackOverflow,
        Some(_) => TrapKind::Guest,
        None => TrapKind::Host,
    };
    Trap::new(kind, one_line(e))
}

/// The root cause's first line, escaped.
pub(crate) fn one_line(e: &wasmtime::Error) -> String {
    let cause = e.root_cause().to_string();
    let line = cause.lines().next().unwrap_or("unknown trap");
    escape_untrusted(line).into_owned()
}

impl wit_secrets::Host for KeywardView<'_> {
    async fn reveal(&mut self, value: u64) -> wasmtime::Result<Result<String, String>> {
        self.ctx.reveal(value)
    }

    async fn invalidate(&mut self, reference: String) -> wasmtime::Result<bool> {
        let ctx = &mut *self.ctx;
        ctx.refuse_while_recording("keyward:connector/secrets#invalidate")?;
        ctx.enter_host_call()?;
        let Some(secrets) = ctx.secrets.clone() else {
            return Ok(false);
        };
        // A revealed value sent back as a name must not reach the audit log.
        let Some(request) = single_reference(&ctx.revealed.mask(&reference)) else {
            return Ok(false);
        };
        let mut budget = std::mem::take(&mut ctx.budget);
        let done = ctx
            .within_wall_deadline(secrets.invalidate_within(&request, &mut budget))
            .await;
        ctx.budget = budget;
        Ok(done?.answer_for_guest())
    }

    async fn list(&mut self) -> wasmtime::Result<Vec<String>> {
        let ctx = &mut *self.ctx;
        ctx.refuse_while_recording("keyward:connector/secrets#list")?;
        ctx.enter_host_call()?;
        let Some(secrets) = ctx.secrets.clone() else {
            return Ok(Vec::new());
        };
        let mut budget = std::mem::take(&mut ctx.budget);
        let listed = ctx
            .within_wall_deadline(secrets.list_within(&mut budget))
            .await;
        ctx.budget = budget;
        Ok(listed?.unwrap_or_else(|e| {
            tracing::warn!(connector = %ctx.connector, "listing secrets failed: {e}");
            Vec::new()
        }))
    }
}

impl wit_log::Host for KeywardView<'_> {
    async fn log(&mut self, level: wit_log::Level, message: String) -> wasmtime::Result<()> {
        self.ctx.log(tracing_level(level as u8), message)
    }
}

/// A connector's log level, by its case index in the WIT `level` enum (the
/// async and the synchronous bindings each generate their own enum from
/// it, with those indexes as discriminants), as `tracing`'s.
pub(super) fn tracing_level(case: u8) -> tracing::Level {
    match case {
        0 => tracing::Level::TRACE,
        1 => tracing::Level::DEBUG,
        2 => tracing::Level::INFO,
        3 => tracing::Level::WARN,
        _ => tracing::Level::ERROR,
    }
}

impl wit_types::Host for KeywardView<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(name: &str, text: &str) -> wit_types::Output {
        wit_types::Output {
            name: name.into(),
            value: wit_types::Composition {
                nodes: vec![wit_types::Node::Plain(text.into())],
            },
            kind: wit_types::OutputKind::Setting,
            sensitive: false,
        }
    }

    #[test]
    fn evaluating_outputs_counts_against_the_deadline() {
        let mut ctx = KeywardCtx::new("c".into(), Arc::new(SandboxConfig::default()));
        assert!(ctx.outputs(&composed(vec![output("a", "x")])).is_ok());
        // The guest took the whole deadline: the host's work after it
        // returns is refused, not done for free.
        ctx.started = Instant::now() - Duration::from_secs(1);
        let refused = ctx.outputs(&composed(vec![output("a", "x")])).unwrap_err();
        assert!(
            refused.to_string().contains("100 ms CPU deadline"),
            "{refused}"
        );
    }

    #[test]
    fn a_render_error_is_cut_before_it_is_escaped() {
        let ctx = KeywardCtx::new("c".into(), Arc::new(SandboxConfig::default()));
        let e = ctx.render_error(wit_types::RenderError {
            field: Some("\u{1b}".repeat(10_000)),
            column: None,
            message: "\n".repeat(1 << 20),
        });
        assert!(e.message.len() <= 4096 + 40, "{}", e.message.len());
        assert!(e.message.ends_with("… (cut; 1048576 bytes)"));
        assert!(!e.message.contains('\n'));
        let field = e.field.unwrap_or_default();
        assert!(field.starts_with("\\u{1b}") && field.len() <= 4096 + 40);
    }

    #[test]
    fn log_levels_map_by_their_wit_case() {
        let levels = [
            (wit_log::Level::Trace, tracing::Level::TRACE),
            (wit_log::Level::Debug, tracing::Level::DEBUG),
            (wit_log::Level::Info, tracing::Level::INFO),
            (wit_log::Level::Warn, tracing::Level::WARN),
            (wit_log::Level::Error, tracing::Level::ERROR),
        ];
        for (wit, expected) in levels {
            assert_eq!(tracing_level(wit as u8), expected);
        }
    }
}
