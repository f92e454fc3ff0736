//! Sealed text on the host: the fields a render expanded for its connector,
//! held by handle; the compositions the connector returns, evaluated; and
//! the values a connector revealed, masked for the life of its instance.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use keyward_template::Template;
use keyward_template::compose::{Node, wipe};
use keyward_template::egress::{Egress, Pins};
use keyward_template::encode::Encoding;
use keyward_template::expand::{self, FieldDecl, Plan};
use zeroize::Zeroizing;

use crate::contract::{ConnectorInfo, DestinationPart, MASK, OutputKind, RenderError};
use crate::escape::floor_char_boundary;
use crate::policy::{ConnectorPolicy, SecretRequest};

/// The most distinct values one instance may reveal; past it, the instance
/// is not reused (its masks are never dropped, so it is dropped instead).
const MAX_REVEALED_VALUES: usize = 64;

/// A field error from the grammar crate as a render error.
pub fn render_error(e: expand::FieldError) -> RenderError {
    RenderError {
        field: Some(e.field),
        column: e.column,
        message: e.message,
    }
}

/// A connector's configured fields checked against its declaration and
/// parsed, with their distinct references: kept per field set, so a
/// render of the same fields parses nothing.
#[derive(Debug)]
pub struct PreparedFields {
    plan: Plan,
    requests: Vec<SecretRequest>,
    /// The connector's destination fields, in declaration order.
    destinations: Vec<(String, DestinationPart)>,
    /// Whether some destination field holds a reference: its pins then
    /// depend on the render's values and are built every render.
    destinations_use_references: bool,
    /// The pins last built, with the `egress` list they were built under.
    kept_pins: RwLock<Option<KeptPins>>,
}

/// A render's pins and the operator's `egress` list they include.
#[derive(Debug)]
struct KeptPins {
    egress: Option<Arc<Egress>>,
    pins: Arc<Pins>,
}

impl KeptPins {
    /// The pins `kept`, if they were built under this very `egress` list
    /// (the same `Arc`, or none).
    fn under(kept: &Option<KeptPins>, egress: Option<&Arc<Egress>>) -> Option<Arc<Pins>> {
        let kept = kept.as_ref()?;
        let same = match (kept.egress.as_ref(), egress) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        same.then(|| kept.pins.clone())
    }
}

impl PreparedFields {
    /// Checks and parses `fields` against what the connector declared.
    pub fn new(info: &ConnectorInfo, fields: &[(String, String)]) -> Result<Self, RenderError> {
        let decls: Vec<FieldDecl<'_>> = info
            .fields
            .iter()
            .map(|f| FieldDecl {
                name: &f.name,
                required: f.required,
                default: f.default.as_deref(),
                secret_reference: f.secret_reference,
            })
            .collect();
        let plan = expand::plan(&info.name, &decls, fields).map_err(render_error)?;
        let requests = plan.references().to_vec();
        let destinations = info
            .fields
            .iter()
            .filter_map(|f| Some((f.name.clone(), f.destination?)))
            .collect::<Vec<_>>();
        let destinations_use_references = destinations
            .iter()
            .any(|(name, _)| plan.field_uses_references(name));
        Ok(Self {
            plan,
            requests,
            destinations,
            destinations_use_references,
            kept_pins: RwLock::new(None),
        })
    }

    /// The pins kept for the operator's `egress` list, if they are kept
    /// (no destination field holds a reference) and were built under it.
    pub(crate) fn kept_pins(&self, egress: Option<&Arc<Egress>>) -> Option<Arc<Pins>> {
        KeptPins::under(
            &self.kept_pins.read().unwrap_or_else(|p| p.into_inner()),
            egress,
        )
    }

    /// The render's pins under the operator's `egress`: built by `build`
    /// every render if a destination field holds a reference (they depend
    /// on its value), else once per `egress` list (they are then these
    /// fields' own), so a plan's egress verdicts can be kept by the pins'
    /// identity.
    pub(crate) fn pins(
        &self,
        egress: Option<&Arc<Egress>>,
        build: impl FnOnce() -> Pins,
    ) -> Arc<Pins> {
        if self.destinations_use_references {
            return Arc::new(build());
        }
        if let Some(pins) = self.kept_pins(egress) {
            return pins;
        }
        let mut kept = self.kept_pins.write().unwrap_or_else(|p| p.into_inner());
        // Another render may have built them while this one waited.
        if let Some(pins) = KeptPins::under(&kept, egress) {
            return pins;
        }
        let pins = Arc::new(build());
        *kept = Some(KeptPins {
            egress: egress.cloned(),
            pins: pins.clone(),
        });
        pins
    }

    /// The connector's destination fields and the part each names.
    pub fn destinations(&self) -> &[(String, DestinationPart)] {
        &self.destinations
    }

    /// The expansion plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The distinct references, as the resolver takes them.
    pub fn requests(&self) -> &[SecretRequest] {
        &self.requests
    }
}

/// One output as the connector composed it, in the host's terms: what a
/// render evaluates, and what a render plan keeps to evaluate again.
#[derive(Debug, Clone)]
pub struct ComposedOutput {
    /// The output's name.
    pub name: String,
    /// What the connector says it is.
    pub kind: OutputKind,
    /// Whether the connector marked it sensitive.
    pub sensitive: bool,
    /// Its composition; the value is the last node.
    pub nodes: Vec<Node<u64>>,
}

/// One reference for `invalidate`, written as a template writes it
/// (`{{ secrets.db }}`, or a bare ARN); anything else is malformed.
pub fn single_reference(text: &str) -> Option<SecretRequest> {
    let template: Template = expand::parse_field(text.trim(), true).ok()?;
    let mut placeholders = template.placeholders();
    let first = placeholders.next()?;
    placeholders
        .next()
        .is_none()
        .then(|| first.reference.clone())
}

/// One sealed text of the render under way.
#[derive(Debug)]
pub struct SealedEntry {
    /// Zeroized on drop; `Zeroizing` shows it in `Debug`, so it is kept
    /// in a wrapper that does not.
    text: Hidden,
    /// The reference it is the value of (an index into the render's
    /// [`PreparedFields::requests`]).
    pub reference: usize,
    /// Whether the policy grants reveal on it.
    pub revealable: bool,
}

impl SealedEntry {
    /// The text, for the host's evaluation.
    pub fn text(&self) -> &str {
        &self.text.0
    }
}

/// A secret text that `Debug` does not show.
struct Hidden(Zeroizing<String>);

impl std::fmt::Debug for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

/// The sealed texts of one render, by handle. A handle carries the
/// render's serial, so a handle a connector kept from an earlier render
/// names nothing.
#[derive(Default)]
pub struct SealedTable {
    serial: u32,
    entries: Vec<SealedEntry>,
}

impl std::fmt::Debug for SealedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedTable")
            .field("serial", &self.serial)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl SealedTable {
    /// Starts a render: new serial, no entries.
    pub fn begin(&mut self) {
        self.clear();
        self.serial = self.serial.wrapping_add(1);
    }

    /// The serial the render after this one gets.
    pub fn next_serial(&self) -> u32 {
        self.serial.wrapping_add(1)
    }

    /// Gives the entries (sealed in another table) this serial.
    pub fn renumber(&mut self, serial: u32) {
        self.serial = serial;
    }

    /// `handle`'s entry under another serial.
    pub fn handle(serial: u32, handle: u64) -> u64 {
        (u64::from(serial) << 32) | (handle & 0xFFFF_FFFF)
    }

    /// Drops (and zeroes) every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Seals a text; returns its handle.
    pub fn seal(&mut self, text: String, reference: usize, revealable: bool) -> u64 {
        let index = self.entries.len() as u64;
        // Moved, not copied, into a zeroizing string; the spare capacity
        // is zeroed with it.
        self.entries.push(SealedEntry {
            text: Hidden(Zeroizing::new(text)),
            reference,
            revealable,
        });
        (u64::from(self.serial) << 32) | index
    }

    /// The entry a handle names in this render.
    pub fn get(&self, handle: u64) -> Result<&SealedEntry, String> {
        let (serial, index) = ((handle >> 32) as u32, (handle & 0xFFFF_FFFF) as usize);
        if serial != self.serial {
            return Err(format!("sealed value {handle} is not from this render"));
        }
        self.entries
            .get(index)
            .ok_or_else(|| format!("no sealed value {handle} in this render"))
    }
}

/// What an instance revealed: the values (and the encodings the SDK
/// offers) to mask in its logs and errors, and the references, to check
/// against a new policy. Kept for the life of the instance.
#[derive(Default)]
pub struct Revealed {
    masks: Vec<Zeroizing<String>>,
    values: usize,
    requests: Vec<SecretRequest>,
}

impl std::fmt::Debug for Revealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revealed")
            .field("values", &self.values)
            .field("requests", &self.requests.len())
            .finish_non_exhaustive()
    }
}

impl Revealed {
    /// Remembers a revealed value and the references it came from.
    pub fn add(&mut self, value: &str, references: &[SecretRequest]) {
        for request in references {
            if !self.requests.contains(request) {
                self.requests.push(request.clone());
            }
        }
        if value.is_empty() || self.masks.iter().any(|m| m.as_str() == value) {
            return;
        }
        self.values += 1;
        let mut forms = vec![value.to_string()];
        for encoding in [
            Encoding::Percent,
            Encoding::Form,
            Encoding::Base64,
            Encoding::Base64Url,
        ] {
            forms.push(encoding.apply(value.as_bytes()));
        }
        let json = Encoding::JsonString.apply(value.as_bytes());
        forms.push(json[1..json.len() - 1].to_string());
        forms.sort();
        forms.dedup();
        self.masks.extend(forms.into_iter().map(Zeroizing::new));
        // Longest first, so that a value holding another is masked whole.
        self.masks.sort_by_key(|m| std::cmp::Reverse(m.len()));
    }

    /// Where revealed values (and their encodings) stand in `text`: what a
    /// revealing connector wrote in plain text may be a secret.
    pub fn marks(&self, text: &str) -> Vec<std::ops::Range<usize>> {
        let mut marks = Vec::new();
        for mask in &self.masks {
            for (at, _) in text.match_indices(mask.as_str()) {
                marks.push(at..at + mask.len());
            }
        }
        marks
    }

    /// Whether anything was revealed.
    pub fn any(&self) -> bool {
        !self.requests.is_empty()
    }

    /// Whether the instance revealed so many values that it is not reused.
    pub fn is_full(&self) -> bool {
        self.values >= MAX_REVEALED_VALUES
    }

    /// Whether `policy` still grants reveal on everything revealed.
    pub fn still_granted(&self, policy: &ConnectorPolicy) -> bool {
        self.requests.iter().all(|r| policy.may_reveal(r))
    }

    /// The first `limit` bytes of `text` (cut at a character boundary),
    /// every revealed value in them replaced by [`MASK`]. It looks past the
    /// cut only as far as the longest value, so the work is bounded by
    /// `limit`, not by `text`, and a value the cut splits is masked whole,
    /// never shown in part.
    pub fn mask_prefix<'a>(&self, text: &'a str, limit: usize) -> Cow<'a, str> {
        let cut = floor_char_boundary(text, limit);
        if self.masks.is_empty() {
            return Cow::Borrowed(&text[..cut]);
        }
        let longest = self.masks.first().map_or(0, |m| m.len());
        let window = &text[..floor_char_boundary(text, cut.saturating_add(longest))];
        let mut found = self.marks(window);
        found.retain(|range| range.start < cut);
        found.sort_by_key(|range| range.start);
        let mut out = String::with_capacity(cut);
        let mut at = 0;
        for range in found {
            if range.start >= at {
                out.push_str(&window[at..range.start]);
                out.push_str(MASK);
            }
            at = at.max(range.end);
        }
        if at < cut {
            out.push_str(&window[at..cut]);
        }
        Cow::Owned(out)
    }

    /// `text` with every revealed value (and its encodings) replaced by
    /// [`MASK`]; borrowed as it is when nothing was revealed.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.masks.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for mask in &self.masks {
            if out.contains(mask.as_str()) {
                let mut masked = out.replace(mask.as_str(), MASK);
                std::mem::swap(&mut out, &mut masked);
                wipe(&mut masked);
            }
        }
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_name_nothing_in_another_render() {
        let mut table = SealedTable::default();
        table.begin();
        let handle = table.seal("s3cr3t".into(), 0, false);
        assert_eq!(table.get(handle).map(SealedEntry::text), Ok("s3cr3t"));
        table.begin();
        assert_eq!(
            table.get(handle).err(),
            Some(format!("sealed value {handle} is not from this render"))
        );
        assert!(table.get(handle + 1).is_err());
    }

    #[test]
    fn a_masked_prefix_never_shows_part_of_a_value() {
        let mut revealed = Revealed::default();
        revealed.add("s3cr3t-value", &[SecretRequest::name("db")]);
        let text = "abcd s3cr3t-value tail";
        // Cut inside the value: it is masked whole; nothing after it shows.
        assert_eq!(revealed.mask_prefix(text, 8), format!("abcd {MASK}"));
        // Cut before the value: none of it shows.
        assert_eq!(revealed.mask_prefix(text, 5), "abcd ");
        // A value wholly inside the cut; what follows is cut as asked.
        assert_eq!(revealed.mask_prefix(text, 20), format!("abcd {MASK} ta"));
        // Values masked to something shorter do not pull later bytes in:
        // the second value starts past the cut and shows not at all.
        let text = "s3cr3t-value s3cr3t-value";
        assert_eq!(revealed.mask_prefix(text, 13), format!("{MASK} "));
        assert_eq!(revealed.mask_prefix(text, 14), format!("{MASK} {MASK}"));
        // Nothing revealed: a plain cut, at a character boundary.
        assert_eq!(Revealed::default().mask_prefix("é", 1), "");
    }

    #[test]
    fn revealed_values_are_masked_in_every_sdk_encoding() {
        let mut revealed = Revealed::default();
        revealed.add("p@ss w\"rd", &[SecretRequest::name("db")]);
        for form in [
            "p@ss w\"rd",
            "p%40ss%20w%22rd",
            "p%40ss+w%22rd",
            "cEBzcyB3InJk",
            "p@ss w\\\"rd",
        ] {
            assert_eq!(revealed.mask(&format!("<{form}>")), "<****>", "{form}");
        }
        assert!(revealed.any() && !revealed.is_full());
    }

    #[test]
    fn one_reference_for_invalidate() {
        assert_eq!(
            single_reference(" {{ secrets.db.password }} "),
            Some(SecretRequest::key("db", &["password"]))
        );
        assert!(single_reference("{{ secrets.a }}{{ secrets.b }}").is_none());
        assert!(single_reference("db").is_none());
        assert!(single_reference("{{ secrets. }}").is_none());
    }
}
