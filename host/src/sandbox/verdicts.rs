//! A render plan's last egress verdicts, kept with the inputs they were
//! given.
//!
//! The egress check is a pure function of the outputs (name, kind, value,
//! where secret material stands in it) and the pins. A plan's outputs are
//! the same compositions every render, and its pins the same `Arc` while
//! the destination fields and the operator's `egress` are unchanged, so a
//! render whose outputs are byte for byte the last one's, under the same
//! pins, has the last one's verdicts: they are reused instead of parsing
//! every destination again. A rotated value, a changed `egress` or a
//! destination field holding a reference makes the inputs differ, and the
//! check runs.

use std::ops::Range;
use std::sync::{Arc, RwLock};

use keyward_template::egress::{CheckedOutput, OutputKind, Pins, Verdict};
use zeroize::Zeroizing;

/// The verdicts of the last render that passed the check. The outputs it
/// keeps hold secret material: they are zeroed when replaced or dropped,
/// and `Debug` does not show them.
#[derive(Default)]
pub(crate) struct KeptVerdicts(RwLock<Option<Kept>>);

struct Kept {
    pins: Arc<Pins>,
    outputs: Vec<KeptOutput>,
    verdicts: Vec<Verdict>,
}

struct KeptOutput {
    name: String,
    kind: OutputKind,
    value: Zeroizing<String>,
    marks: Vec<Range<usize>>,
}

impl KeptOutput {
    fn is(&self, output: &CheckedOutput<'_>) -> bool {
        self.kind == output.kind
            && self.name == output.name
            && self.value.as_str() == output.value
            && self.marks == output.marks
    }
}

impl std::fmt::Debug for KeptVerdicts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeptVerdicts { .. }")
    }
}

impl KeptVerdicts {
    /// The verdicts of `outputs` under `pins` if the last render's inputs
    /// were the same; `None` if they were not, or if a render is replacing
    /// them now (this one then checks for itself rather than wait).
    pub(crate) fn get(
        &self,
        pins: &Arc<Pins>,
        outputs: &[CheckedOutput<'_>],
    ) -> Option<Vec<Verdict>> {
        let kept = self.0.try_read().ok()?;
        let kept = kept.as_ref()?;
        let same = Arc::ptr_eq(&kept.pins, pins)
            && kept.outputs.len() == outputs.len()
            && kept.outputs.iter().zip(outputs).all(|(k, o)| k.is(o));
        same.then(|| kept.verdicts.clone())
    }

    /// Keeps the verdicts `outputs` were given under `pins`.
    pub(crate) fn keep(
        &self,
        pins: &Arc<Pins>,
        outputs: &[CheckedOutput<'_>],
        verdicts: &[Verdict],
    ) {
        let Ok(mut kept) = self.0.try_write() else {
            return;
        };
        *kept = Some(Kept {
            pins: pins.clone(),
            outputs: outputs
                .iter()
                .map(|o| KeptOutput {
                    name: o.name.to_string(),
                    kind: o.kind,
                    value: Zeroizing::new(o.value.to_string()),
                    marks: o.marks.to_vec(),
                })
                .collect(),
            verdicts: verdicts.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_template::egress::{DestinationPart, PinField};

    fn pins() -> Arc<Pins> {
        Arc::new(Pins::from_fields(&[PinField {
            name: "host",
            part: DestinationPart::Host,
            value: Some("db.example"),
            configured: true,
        }]))
    }

    fn output<'a>(value: &'a str, marks: &'a [Range<usize>]) -> CheckedOutput<'a> {
        CheckedOutput {
            name: "dsn",
            kind: OutputKind::Destination,
            value,
            marks,
        }
    }

    #[test]
    fn verdicts_are_reused_only_for_the_same_inputs_under_the_same_pins() {
        let kept = KeptVerdicts::default();
        let pins = pins();
        let marks = [11..17];
        let dsn = output("pg://u:s3cr3t@db.example/x", &marks);
        assert!(kept.get(&pins, &[dsn]).is_none());
        kept.keep(&pins, &[dsn], &[Verdict::Unparsed]);
        assert_eq!(kept.get(&pins, &[dsn]), Some(vec![Verdict::Unparsed]));
        // Another value (a rotation), other marks, other pins: checked again.
        assert!(
            kept.get(&pins, &[output("pg://u:r0t4t3@db.example/x", &marks)])
                .is_none()
        );
        assert!(
            kept.get(&pins, &[output("pg://u:s3cr3t@db.example/x", &[10..17])])
                .is_none()
        );
        assert!(kept.get(&self::pins(), &[dsn]).is_none());
        assert!(kept.get(&pins, &[]).is_none());
        assert!(!format!("{kept:?}").contains("s3cr3t"));
    }
}
