//! Compositions: text a connector builds from plain pieces and sealed
//! pieces it cannot read, evaluated where the sealed pieces are (the host).
//!
//! A composition is a list of nodes; a node refers to earlier nodes by
//! index, so a tree (or a DAG) travels as one flat list and the last node
//! is the value. Sizes are bounded before anything is built: a composition
//! that would double itself forty times is refused, not attempted.

use std::borrow::Cow;
use std::fmt;

use crate::encode::Encoding;

/// One node of a composition. `S` names a sealed piece (a handle).
#[derive(Clone, PartialEq, Eq)]
pub enum Node<S> {
    /// Text the connector wrote.
    Plain(String),
    /// A sealed piece.
    Sealed(S),
    /// The nodes at these (earlier) indices, one after another.
    Concat(Vec<u32>),
    /// The node at this (earlier) index, encoded.
    Encode(Encoding, u32),
}

impl<S: fmt::Debug> fmt::Debug for Node<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Plain(text) => write!(f, "Plain({} bytes)", text.len()),
            Node::Sealed(handle) => f.debug_tuple("Sealed").field(handle).finish(),
            Node::Concat(parts) => f.debug_tuple("Concat").field(parts).finish(),
            Node::Encode(encoding, part) => {
                f.debug_tuple("Encode").field(encoding).field(part).finish()
            }
        }
    }
}

/// Why a composition could not be evaluated; names nodes, never text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeError {
    /// The composition is malformed (a forward reference, an unknown
    /// handle).
    Invalid(String),
    /// It could be larger than its [`Allowance`]: decided from its shape
    /// before anything is built.
    TooLarge,
}

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(why) => f.write_str(why),
            Self::TooLarge => f.write_str("the value could be larger than it may be"),
        }
    }
}

impl std::error::Error for ComposeError {}

/// What compositions may still cost, shared by all the outputs of one
/// render and spent as each is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Bytes the values may still take.
    pub value_bytes: usize,
    /// Bytes every node built on the way (values included) may still take.
    pub built_bytes: usize,
    /// What a sealed piece counts as, whatever its length (it may be no
    /// longer): the largest secret value there may be, so that whether a
    /// composition fits never depends on a secret's length. `None`: its
    /// length (where no one could learn from it).
    pub sealed_bytes: Option<usize>,
}

impl Allowance {
    /// One value of at most `max_bytes`, with at most eight times that
    /// built on the way, sealed pieces counted at their length.
    pub fn single(max_bytes: usize) -> Self {
        Self {
            value_bytes: max_bytes,
            built_bytes: max_bytes.saturating_mul(8),
            sealed_bytes: None,
        }
    }
}

/// Builds a composition's text. `sealed` gives a sealed piece's text (or
/// why it has none); it is asked once per sealed node. The value may be at
/// most `max_bytes`, and everything built on the way at most eight times
/// that.
pub fn evaluate<'s, S: Copy>(
    nodes: &[Node<S>],
    max_bytes: usize,
    sealed: impl FnMut(S) -> Result<&'s str, String>,
) -> Result<String, ComposeError> {
    evaluate_marked(nodes, &mut Allowance::single(max_bytes), sealed).map(|(value, _)| value)
}

/// The byte ranges of a value that came from sealed pieces, in order.
pub type Marks = Vec<std::ops::Range<usize>>;

/// [`evaluate`], also answering which bytes of the value came from sealed
/// pieces: a sealed piece's bytes, shifted by concatenation; all of an
/// encoding's output if its input held any (base64 mixes bytes, and
/// per-byte encodings are kept whole for simplicity, which only widens the
/// marks). What it may cost is taken from `allowance`, which is spent
/// only if it fits.
pub fn evaluate_marked<'s, S: Copy>(
    nodes: &[Node<S>],
    allowance: &mut Allowance,
    mut sealed: impl FnMut(S) -> Result<&'s str, String>,
) -> Result<(String, Marks), ComposeError> {
    if nodes.is_empty() {
        return Ok((String::new(), Vec::new()));
    }
    let earlier = |at: usize, index: u32| -> Result<usize, ComposeError> {
        let index = index as usize;
        if index < at {
            Ok(index)
        } else {
            Err(ComposeError::Invalid(format!(
                "node {at} refers to node {index}, which does not come before it"
            )))
        }
    };
    // First the bound of every node's length, so that nothing too large is
    // ever built; then the text, node by node.
    let mut bounds: Vec<usize> = Vec::with_capacity(nodes.len());
    let mut pieces: Vec<Option<&'s str>> = Vec::with_capacity(nodes.len());
    let mut built_total = 0usize;
    for (at, node) in nodes.iter().enumerate() {
        let (bound, piece) = match node {
            Node::Plain(text) => (text.len(), None),
            Node::Sealed(handle) => {
                let text = sealed(*handle)
                    .map_err(|why| ComposeError::Invalid(format!("node {at}: {why}")))?;
                match allowance.sealed_bytes {
                    Some(counted) if text.len() > counted => return Err(ComposeError::TooLarge),
                    Some(counted) => (counted, Some(text)),
                    None => (text.len(), Some(text)),
                }
            }
            Node::Concat(parts) => {
                let mut sum = 0usize;
                for &part in parts {
                    sum = sum.saturating_add(bounds[earlier(at, part)?]);
                }
                (sum, None)
            }
            Node::Encode(encoding, part) => (encoding.max_len(bounds[earlier(at, *part)?]), None),
        };
        built_total = built_total.saturating_add(bound);
        if bound > allowance.value_bytes || built_total > allowance.built_bytes {
            return Err(ComposeError::TooLarge);
        }
        bounds.push(bound);
        pieces.push(piece);
    }
    allowance.value_bytes -= bounds.last().copied().unwrap_or_default();
    allowance.built_bytes -= built_total;
    // Leaves are borrowed, not copied; only concatenations and encodings
    // build text.
    let mut built: Vec<Cow<'_, str>> = Vec::with_capacity(nodes.len());
    let mut marks: Vec<Marks> = Vec::with_capacity(nodes.len());
    for (at, node) in nodes.iter().enumerate() {
        let (text, marked) = match node {
            Node::Plain(text) => (Cow::Borrowed(text.as_str()), Vec::new()),
            Node::Sealed(_) => {
                let text = pieces[at].unwrap_or_default();
                let marked = if text.is_empty() {
                    Vec::new()
                } else {
                    whole(text.len())
                };
                (Cow::Borrowed(text), marked)
            }
            Node::Concat(parts) => {
                // Sized by what was built, not by the bound (which counts
                // each sealed piece at the largest a secret may be).
                let len = parts.iter().map(|&part| built[part as usize].len()).sum();
                let mut text = String::with_capacity(len);
                let mut marked: Marks = Vec::new();
                for &part in parts {
                    let offset = text.len();
                    for range in &marks[part as usize] {
                        let range = range.start + offset..range.end + offset;
                        match marked.last_mut() {
                            Some(last) if last.end == range.start => last.end = range.end,
                            _ => marked.push(range),
                        }
                    }
                    text.push_str(&built[part as usize]);
                }
                (Cow::Owned(text), marked)
            }
            Node::Encode(encoding, part) => {
                let text = encoding.apply(built[*part as usize].as_bytes());
                let marked = if marks[*part as usize].is_empty() || text.is_empty() {
                    Vec::new()
                } else {
                    whole(text.len())
                };
                (Cow::Owned(text), marked)
            }
        };
        built.push(text);
        marks.push(marked);
    }
    let value = built.pop().map(Cow::into_owned).unwrap_or_default();
    let value_marks = marks.pop().unwrap_or_default();
    for text in &mut built {
        if let Cow::Owned(text) = text {
            wipe(text);
        }
    }
    Ok((value, value_marks))
}

/// The marks of a value that is secret material throughout.
fn whole(len: usize) -> Marks {
    std::iter::once(0..len).collect()
}

/// Overwrites a string's buffer before it is freed, so that intermediate
/// text with secret parts does not linger in freed memory.
pub fn wipe(text: &mut String) {
    let capacity = text.capacity();
    text.clear();
    text.extend(std::iter::repeat_n('\0', capacity));
    std::hint::black_box(&*text);
    text.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(nodes: &[Node<usize>]) -> Result<String, ComposeError> {
        let sealed = ["s3cr3t", "us er"];
        evaluate(nodes, 1 << 10, |h| {
            sealed
                .get(h)
                .copied()
                .ok_or_else(|| format!("no sealed value {h}"))
        })
    }

    #[test]
    fn a_basic_header_from_sealed_pieces() {
        let nodes = [
            Node::Plain("Basic ".into()),
            Node::Sealed(1),
            Node::Plain(":".into()),
            Node::Sealed(0),
            Node::Concat(vec![1, 2, 3]),
            Node::Encode(Encoding::Base64, 4),
            Node::Concat(vec![0, 5]),
        ];
        assert_eq!(eval(&nodes).unwrap(), "Basic dXMgZXI6czNjcjN0");
        let sealed = ["s3cr3t", "us er"];
        let mut allowance = Allowance::single(1 << 10);
        let (_, marks) = evaluate_marked(&nodes, &mut allowance, |h: usize| Ok(sealed[h])).unwrap();
        assert_eq!(marks, [6..22]);
        assert!(!format!("{nodes:?}").contains("Basic"));
    }

    #[test]
    fn marks_follow_sealed_bytes_through_concatenation() {
        let nodes = [
            Node::Plain("u:".into()),
            Node::Sealed(0),
            Node::Plain("@".into()),
            Node::Sealed(1),
            Node::Concat(vec![0, 1, 2, 3, 3]),
        ];
        let sealed = ["s3cr3t", "ab"];
        let mut allowance = Allowance::single(1 << 10);
        let (value, marks) =
            evaluate_marked(&nodes, &mut allowance, |h: usize| Ok(sealed[h])).unwrap();
        assert_eq!(value, "u:s3cr3t@abab");
        assert_eq!(marks, [2..8, 9..13]);
    }

    #[test]
    fn forward_references_and_unknown_handles_are_errors() {
        let e = eval(&[Node::Concat(vec![0])]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node 0 refers to node 0, which does not come before it"
        );
        let e = eval(&[Node::Plain("a".into()), Node::Encode(Encoding::Percent, 7)]).unwrap_err();
        assert!(e.to_string().starts_with("node 1 refers to node 7"), "{e}");
        let e = eval(&[Node::Sealed(9)]).unwrap_err();
        assert_eq!(e.to_string(), "node 0: no sealed value 9");
        assert_eq!(eval(&[]).unwrap(), "");
    }

    #[test]
    fn doubling_is_refused_before_it_is_built() {
        let mut nodes = vec![Node::Plain("x".repeat(100))];
        for i in 0..40 {
            nodes.push(Node::Concat(vec![i, i]));
        }
        assert_eq!(eval(&nodes), Err(ComposeError::TooLarge));
        // Many small nodes whose sum is large are refused too.
        let mut nodes = vec![Node::Plain("x".repeat(1000))];
        for i in 0..20 {
            nodes.push(Node::Encode(Encoding::Percent, i).clone());
            nodes.push(Node::Plain("x".repeat(1000)));
        }
        assert!(eval(&nodes).is_err());
    }

    #[test]
    fn an_allowance_is_shared_and_spent_only_when_it_fits() {
        let nodes = [Node::Plain("x".repeat(600))];
        let mut allowance = Allowance::single(1000);
        evaluate_marked(&nodes, &mut allowance, |_: usize| Ok("")).unwrap();
        assert_eq!(allowance.value_bytes, 400);
        let before = allowance;
        let refused = evaluate_marked(&nodes, &mut allowance, |_: usize| Ok(""));
        assert_eq!(refused, Err(ComposeError::TooLarge));
        assert_eq!(allowance, before);
    }

    #[test]
    fn with_a_sealed_bound_the_verdict_does_not_depend_on_a_secret_length() {
        // Plain padding beside a sealed piece: the same padding fits or not
        // whatever the secret's length, so no bisection can learn it.
        let allowance = Allowance {
            value_bytes: 100,
            built_bytes: 1000,
            sealed_bytes: Some(10),
        };
        for padding in [0, 50, 89, 90, 91, 200] {
            let nodes = [
                Node::Plain("p".repeat(padding)),
                Node::Sealed(0),
                Node::Concat(vec![0, 1]),
            ];
            let verdicts: Vec<bool> = ["", "a", "abcde", "abcdefghij"]
                .iter()
                .map(|secret| {
                    evaluate_marked(&nodes, &mut allowance.clone(), |_: usize| Ok(*secret)).is_ok()
                })
                .collect();
            assert!(
                verdicts.iter().all(|v| *v == (padding <= 90)),
                "{padding}: {verdicts:?}"
            );
        }
        // A sealed piece longer than its bound is refused, not built.
        let nodes = [Node::Sealed(0)];
        let long = "x".repeat(11);
        let refused = evaluate_marked(&nodes, &mut allowance.clone(), |_: usize| Ok(long.as_str()));
        assert_eq!(refused, Err(ComposeError::TooLarge));
    }
}
