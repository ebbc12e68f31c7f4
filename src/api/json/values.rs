//! One tensor's values read straight from the JSON parser into the little-endian bytes of its
//! dtype (as [`Tensor`] holds them): a serde [`DeserializeSeed`] walks the nested lists while
//! `serde_json` parses them, so no `serde_json::Value` tree is built. A tree costs ~20× the body
//! (a 32-byte `Value` and a list allocation per number); this costs the tensor itself.
//!
//! The answers are those of a decoder that sees the whole value first (as the tree-walking one
//! did): the shape is what the first elements imply (`[[1, 2], [3]]` has shape (2,2), and `[3]`
//! is ragged), and of several problems the one reported is the one a check of the whole value
//! meets first. Streaming meets them in document order instead, so a [`Column`] keeps the first
//! problem and lets a later, higher-ranked one replace it: a list whose length is wrong outranks
//! what was wrong inside it, a row-format instance whose shape differs from instance 0's outranks
//! what was wrong inside it, and an element count that overflows outranks everything. Semantic
//! problems never stop the parser, so a JSON syntax error later in the body still wins, as before.

use crate::error::ServeError;
use crate::tensor::{element_count, DataType, ShapeDisplay, Tensor};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use bytes::Bytes;
use half::{bf16, f16};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Number;
use std::fmt;

/// Standard alphabet; padding optional, like the absl decoder TFS uses.
const B64_IN: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A JSON value that is not a list, as the parser hands it over.
pub(crate) enum Leaf<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(&'a str),
    /// An object: the text of `{"b64": "<base64>"}` (exactly that one string member), else `None`.
    Object(Option<String>),
}

impl Leaf<'_> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Leaf::Null => "null",
            Leaf::Bool(_) => "a boolean",
            Leaf::Number(_) => "a number",
            Leaf::String(_) => "a string",
            Leaf::Object(_) => "an object",
        }
    }

    /// What a mismatched leaf looks like as a dtype, for `InvalidPrecision`.
    fn dtype(&self) -> DataType {
        match self {
            Leaf::Bool(_) => DataType::Bool,
            Leaf::Number(n) if n.is_f64() => DataType::F64,
            Leaf::Number(n) if n.is_u64() && !n.is_i64() => DataType::U64,
            Leaf::Number(_) => DataType::I64,
            _ => DataType::Bytes,
        }
    }
}

/// Any JSON value, read as a `serde_json::Value` would be (so syntax errors, and their places in
/// `serde_path_to_error` paths, are the same) and dropped. `IgnoredAny` is cheaper (it does not
/// convert numbers) but words some syntax errors differently.
pub(crate) struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Skip, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

pub(crate) struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_key::<Skip>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}

/// A string value, or `None` for any other value (which is read and dropped).
pub(crate) struct MaybeString(pub Option<String>);

impl<'de> Deserialize<'de> for MaybeString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, s: &str) -> Result<MaybeString, E> {
                Ok(MaybeString(Some(s.to_owned())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<MaybeString, E> {
                Ok(MaybeString(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<MaybeString, E> {
                Ok(MaybeString(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<MaybeString, E> {
                Ok(MaybeString(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<MaybeString, E> {
                Ok(MaybeString(None))
            }
            fn visit_unit<E>(self) -> Result<MaybeString, E> {
                Ok(MaybeString(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MaybeString, A::Error> {
                SkipVisitor.visit_seq(seq).map(|_| MaybeString(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MaybeString, A::Error> {
                SkipVisitor.visit_map(map).map(|_| MaybeString(None))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Reads an object: the text of `{"b64": "<base64>"}` when that is all it is (a repeated key:
/// the last one counts, as in a parsed map), else `None`.
fn b64_text<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<String>, A::Error> {
    let mut other = false;
    let mut b64 = None;
    while let Some(key) = map.next_key::<String>()? {
        if key == "b64" {
            b64 = Some(map.next_value::<MaybeString>()?.0);
        } else {
            other = true;
            map.next_value::<IgnoredAny>()?;
        }
    }
    Ok(if other { None } else { b64.flatten() })
}

/// The integer a JSON number denotes exactly (`2` and `2.0`, not `2.5`).
fn integral(n: &Number) -> Option<i128> {
    if let Some(u) = n.as_u64() {
        return Some(u.into());
    }
    if let Some(i) = n.as_i64() {
        return Some(i.into());
    }
    n.as_f64()
        .filter(|f| f.is_finite() && f.fract() == 0.0)
        .map(|f| f as i128)
}

/// Where the value being read must be a list of a given length, a leaf, or is free (its first
/// elements define the shape).
#[derive(Clone, Copy)]
enum Expect {
    List(usize),
    Leaf,
    Free,
}

/// What to restore when a value is read again (a duplicate key: the last one counts).
#[derive(Clone, Copy)]
pub(crate) struct Mark {
    raw: usize,
    strings: usize,
    ends: usize,
    had_error: bool,
}

/// One tensor being read: its bytes so far, the shape its values define, and its first problem.
pub(crate) struct Column<'s> {
    input: &'s str,
    /// The signature's (or client's) dtype.
    declared: DataType,
    /// The dtype values are read as; TFS decides it at the first leaf (`{"b64": ..}` there makes
    /// a numeric input read strings: images, decoded later by `serving::image`).
    dtype: Option<DataType>,
    /// Row format: which instance is being read (errors name it).
    instance: Option<usize>,
    raw: Vec<u8>,
    /// BYTES: all strings back to back, and where each ends.
    strings: Vec<u8>,
    ends: Vec<usize>,
    error: Option<ServeError>,
    /// KServe: the shape the client gave (the element count, for a flat list).
    expected: Option<Vec<usize>>,
    /// The shape the first elements of the value being read imply, and its rank once known.
    dims: Vec<usize>,
    rank: Option<usize>,
    /// Row format: instance 0's shape and how many instances were read.
    row_shape: Option<Vec<usize>>,
    instances: usize,
}

impl<'s> Column<'s> {
    /// A TFS input: dtype from the signature (or strings for b64 leaves), shape from the values.
    pub(crate) fn free(input: &'s str, declared: DataType) -> Column<'s> {
        Column {
            input,
            declared,
            dtype: None,
            instance: None,
            raw: Vec::new(),
            strings: Vec::new(),
            ends: Vec::new(),
            error: None,
            expected: None,
            dims: Vec::new(),
            rank: None,
            row_shape: None,
            instances: 0,
        }
    }

    /// A KServe input: the client gave dtype and shape. Nested values must have the shape;
    /// flat ones are a list of `shape`'s element count.
    pub(crate) fn typed(input: &'s str, dtype: DataType, shape: &[usize], flat: bool) -> Self {
        let mut column = Column::free(input, dtype);
        column.dtype = Some(dtype);
        column.expected = Some(if flat {
            vec![element_count(shape).unwrap_or(usize::MAX)]
        } else {
            shape.to_vec()
        });
        column
    }

    /// Reserves room for as many values as a JSON text of `json_len` bytes can hold (a number
    /// takes at least two bytes with its separator), or as `expected` says when fewer, so the
    /// buffer never grows by copying: an allocator that cannot grow a large block in place
    /// (mimalloc, unlike glibc's mremap) would hold the old and the new block at once, up to
    /// three times the tensor. Capacity never written costs address space, not memory.
    pub(crate) fn reserve_for(&mut self, json_len: usize) {
        let Some(size) = self.declared.element_size() else {
            return;
        };
        let most = json_len / 2 + 1;
        let count = match &self.expected {
            Some(shape) => element_count(shape).unwrap_or(most).min(most),
            None => most,
        };
        self.raw.reserve(count.saturating_mul(size));
    }

    /// Starts over as a fresh TFS column (a repeated input name: the last one counts), in the
    /// room already reserved.
    pub(crate) fn restart(&mut self, input: &'s str, declared: DataType) {
        let mut raw = std::mem::take(&mut self.raw);
        raw.clear();
        *self = Column::free(input, declared);
        self.raw = raw;
    }

    pub(crate) fn err(&self, message: impl fmt::Display) -> ServeError {
        match self.instance {
            Some(i) => ServeError::invalid(format!(
                "Instance {i}: {message}; input name: {}",
                self.input
            )),
            None => ServeError::invalid(format!("{message}; input name: {}", self.input)),
        }
    }

    /// Keeps the first problem.
    fn fail(&mut self, error: ServeError) {
        self.error.get_or_insert(error);
    }

    /// Starts reading a value (`instance`: its row in the row format).
    pub(crate) fn begin(&mut self, instance: Option<usize>) -> Mark {
        self.instance = instance;
        self.dims.clear();
        self.rank = None;
        Mark {
            raw: self.raw.len(),
            strings: self.strings.len(),
            ends: self.ends.len(),
            had_error: self.error.is_some(),
        }
    }

    /// Ends a value begun with `mark`: instance 0 fixes the row shape; a later instance whose
    /// first elements imply another shape is ragged, whatever else was wrong inside it.
    pub(crate) fn end(&mut self, mark: Mark) {
        self.settle_dtype();
        let Some(i) = self.instance else { return };
        self.instances = i + 1;
        let shape = &self.dims[..self.rank.unwrap_or(0)];
        match &self.row_shape {
            None => self.row_shape = Some(shape.to_vec()),
            Some(row) if row != shape && !mark.had_error => {
                let message = format!(
                    "Ragged instances - shape {} differs from instance 0's shape {}",
                    ShapeDisplay(shape),
                    ShapeDisplay(row)
                );
                self.error = Some(self.err(message));
            }
            Some(_) => {}
        }
    }

    /// Forgets a value read since `mark` (ended or not), so that it can be read again.
    pub(crate) fn rewind(&mut self, mark: Mark) {
        self.raw.truncate(mark.raw);
        self.strings.truncate(mark.strings);
        self.ends.truncate(mark.ends);
        if !mark.had_error {
            self.error = None;
        }
        if self.instance.is_none_or(|i| i == 0) {
            self.restart(self.input, self.declared);
        }
    }

    /// No leaf decided the dtype (only empty lists): the declared one.
    fn settle_dtype(&mut self) {
        self.dtype.get_or_insert(self.declared);
    }

    /// The shape the first elements of the value just read imply.
    fn shape(&self) -> Vec<usize> {
        self.dims[..self.rank.unwrap_or(0)].to_vec()
    }

    /// The shape the value being read must have: the client's (KServe), instance 0's (a later
    /// row-format instance), or none (its own first elements define it).
    fn expected(&self) -> Option<&[usize]> {
        match (&self.expected, self.instance) {
            (Some(shape), _) => Some(shape),
            (None, Some(i)) if i > 0 => self.row_shape.as_deref(),
            _ => None,
        }
    }

    fn expect(&self, depth: usize, first: bool) -> Expect {
        match (self.expected(), first) {
            (Some(shape), _) => shape.get(depth).map_or(Expect::Leaf, |&n| Expect::List(n)),
            (None, true) => Expect::Free,
            // Off the first path, the first-path lists at this depth and below are complete.
            (None, false) => match self.rank {
                Some(rank) if depth < rank => Expect::List(self.dims[depth]),
                _ => Expect::Leaf,
            },
        }
    }

    /// The first-path list at `depth` ended with `len` items.
    fn close_first(&mut self, depth: usize, len: usize) {
        if self.rank.is_none() {
            // An empty list ends the first path: shape (.., 0).
            self.rank = Some(depth + 1);
            self.dims.resize(depth + 1, 0);
            self.settle_dtype();
        }
        self.dims[depth] = len;
    }

    /// The first-path leaf: the rank, and (TFS) the dtype.
    fn first_leaf(&mut self, depth: usize, leaf: &Leaf) {
        self.rank = Some(depth);
        self.dims.resize(depth, 0);
        if self.dtype.is_none() {
            let b64 = matches!(leaf, Leaf::Object(Some(_)));
            self.dtype = Some(if b64 { DataType::Bytes } else { self.declared });
        }
    }

    fn dtype(&self) -> DataType {
        self.dtype.unwrap_or(self.declared)
    }

    fn precision(&self, leaf: &Leaf) -> ServeError {
        ServeError::InvalidPrecision {
            input: self.input.to_string(),
            expected: self.dtype(),
            actual: leaf.dtype(),
        }
    }

    /// Appends one element in the tensor's byte form.
    fn push(&mut self, leaf: Leaf) -> Result<(), ServeError> {
        use DataType::*;
        let dtype = self.dtype();
        match (dtype, &leaf) {
            (_, Leaf::Null) => Err(self.err("null is not a valid tensor element")),
            (Bytes, Leaf::String(s)) => {
                self.strings.extend_from_slice(s.as_bytes());
                self.ends.push(self.strings.len());
                Ok(())
            }
            (Bytes, Leaf::Object(Some(text))) => {
                B64_IN
                    .decode_vec(text, &mut self.strings)
                    .map_err(|e| self.err(format!("Invalid base64 in {{\"b64\": ..}}: {e}")))?;
                self.ends.push(self.strings.len());
                Ok(())
            }
            (_, Leaf::Object(Some(_))) => Err(self.precision(&leaf)),
            (_, Leaf::Object(None)) => Err(self.err(
                "An object where a value is expected (only {\"b64\": \"..\"} objects are values)",
            )),
            (F16 | BF16 | F32 | F64, Leaf::Number(n)) => {
                let x = n
                    .as_f64()
                    .ok_or_else(|| self.err(format!("Invalid value {n}")))?;
                macro_rules! put {
                    ($v:expr) => {{
                        let v = $v;
                        self.raw.extend_from_slice(&v.to_le_bytes());
                        v.is_infinite()
                    }};
                }
                let overflowed = match dtype {
                    F16 => put!(f16::from_f64(x)),
                    BF16 => put!(bf16::from_f64(x)),
                    F32 => put!(x as f32),
                    _ => put!(x),
                };
                match overflowed {
                    true => Err(self.err(format!("Invalid value {n} for {dtype} - out of range"))),
                    false => Ok(()),
                }
            }
            (Bool, Leaf::Bool(b)) => {
                self.raw.push(u8::from(*b));
                Ok(())
            }
            (Bool, Leaf::Number(n)) => match integral(n) {
                Some(i @ (0 | 1)) => {
                    self.raw.push(i as u8);
                    Ok(())
                }
                _ => Err(self.err(format!(
                    "Invalid value {n} for BOOL - expected true, false, 0 or 1"
                ))),
            },
            (U8 | U16 | U32 | U64 | I8 | I16 | I32 | I64, Leaf::Number(n)) => {
                let size = dtype.element_size().unwrap_or(8);
                let bits = 8 * size as u32;
                let (lo, hi) = match dtype {
                    I8 | I16 | I32 | I64 => (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1),
                    _ => (0, (1i128 << bits) - 1),
                };
                let i = integral(n)
                    .filter(|i| (lo..=hi).contains(i))
                    .ok_or_else(|| {
                        self.err(format!(
                            "Invalid value {n} for {dtype} - expected an integer in {lo}..={hi}"
                        ))
                    })?;
                // Two's complement little-endian: the low `size` bytes are the value in the narrow type.
                self.raw.extend_from_slice(&i.to_le_bytes()[..size]);
                Ok(())
            }
            _ => Err(self.precision(&leaf)),
        }
    }

    /// A leaf at `depth`; `first`: on the first path of the value being read.
    fn leaf(&mut self, leaf: Leaf, depth: usize, first: bool) {
        let expect = self.expect(depth, first);
        if first {
            self.first_leaf(depth, &leaf);
        }
        if let Expect::List(len) = expect {
            let message = format!(
                "Ragged nested lists - {} at depth {depth} where a list of {len} is expected",
                leaf.kind()
            );
            let error = self.err(message);
            return self.fail(error);
        }
        if self.error.is_none() {
            if let Err(e) = self.push(leaf) {
                self.error = Some(e);
            }
        }
    }

    /// A list at `depth` just ended with `len` items; `had_error`: whether a problem was known
    /// before it began (else a wrong length replaces whatever was wrong inside it).
    fn list_end(&mut self, expect: Expect, depth: usize, first: bool, len: usize, had_error: bool) {
        if first {
            self.close_first(depth, len);
        }
        match expect {
            Expect::List(want) if len != want && !had_error => {
                let message = format!(
                    "Ragged nested lists - a list of {len} at depth {depth} where the first one has {want}"
                );
                self.error = Some(self.err(message));
            }
            _ => {}
        }
    }

    /// The tensor of a value read alone (TFS columnar): its shape is its first elements'.
    pub(crate) fn finish_value(self) -> Result<Tensor, ServeError> {
        let shape = self.shape();
        self.finish(shape)
    }

    /// The tensor of the row format: instances stacked on a new first dimension.
    pub(crate) fn finish_rows(self) -> Result<Tensor, ServeError> {
        let shape: Vec<usize> = std::iter::once(self.instances)
            .chain(self.row_shape.iter().flatten().copied())
            .collect();
        self.finish(shape)
    }

    /// The tensor, or its first problem (an element count that overflows outranks all others).
    pub(crate) fn finish(mut self, shape: Vec<usize>) -> Result<Tensor, ServeError> {
        self.settle_dtype();
        check_count(self.input, self.dtype(), &shape)?;
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.dtype() != DataType::Bytes {
            return Ok(Tensor::raw(self.dtype(), shape, self.raw));
        }
        let all = Bytes::from(self.strings);
        let mut start = 0;
        let values = self
            .ends
            .into_iter()
            .map(|end| {
                let s = all.slice(start..end);
                start = end;
                s
            })
            .collect();
        Ok(Tensor::strings(shape, values))
    }

    /// Reads a KServe flat list (`expected`: its element count): a wrong count outranks a bad
    /// element, and is worded for a flat list.
    pub(crate) fn flat_length(&mut self, shape: &[usize], len: usize, had_error: bool) {
        let want = element_count(shape).unwrap_or(usize::MAX);
        if len != want && !had_error {
            let message = format!(
                "Invalid number of values in data - Expected: {want} for shape {}; Actual: {len}",
                ShapeDisplay(shape),
            );
            self.error = Some(self.err(message));
        }
    }
}

/// The element count (and byte size) of `shape` fits in memory arithmetic.
pub(crate) fn check_count(input: &str, dtype: DataType, shape: &[usize]) -> Result<(), ServeError> {
    let size = dtype.element_size().unwrap_or(0);
    match element_count(shape).and_then(|count| count.checked_mul(size)) {
        Some(_) => Ok(()),
        None => Err(ServeError::invalid(format!(
            "Invalid input shape - the element count of {} overflows; input name: {input}",
            ShapeDisplay(shape),
        ))),
    }
}

/// Reads one value (a list or a leaf at `depth`) into a [`Column`].
pub(crate) struct ValueSeed<'c, 's> {
    pub column: &'c mut Column<'s>,
    pub depth: usize,
    /// On the first path (index 0 at every level so far) of the value being read.
    pub first: bool,
}

impl<'c, 's> ValueSeed<'c, 's> {
    /// The whole value (depth 0).
    pub(crate) fn root(column: &'c mut Column<'s>) -> Self {
        ValueSeed {
            column,
            depth: 0,
            first: true,
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tensor value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ValueSeed {
            column,
            depth,
            first,
        } = self;
        let expect = column.expect(depth, first);
        let had_error = column.error.is_some();
        if let Expect::Leaf = expect {
            let message =
                format!("Ragged nested lists - a list at depth {depth} where a value is expected");
            let error = column.err(message);
            column.fail(error);
        }
        let mut len = 0;
        while seq
            .next_element_seed(ValueSeed {
                column: &mut *column,
                depth: depth + 1,
                first: first && len == 0,
            })?
            .is_some()
        {
            len += 1;
        }
        column.list_end(expect, depth, first, len, had_error);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let b64 = b64_text(map)?;
        self.column.leaf(Leaf::Object(b64), self.depth, self.first);
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.column.leaf(Leaf::Bool(v), self.depth, self.first);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.column
            .leaf(Leaf::Number(v.into()), self.depth, self.first);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.column
            .leaf(Leaf::Number(v.into()), self.depth, self.first);
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // The parser hands over finite numbers only.
        let leaf = Number::from_f64(v).map_or(Leaf::Null, Leaf::Number);
        self.column.leaf(leaf, self.depth, self.first);
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.column.leaf(Leaf::String(v), self.depth, self.first);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.column.leaf(Leaf::Null, self.depth, self.first);
        Ok(())
    }
}

/// Reads a KServe flat `data` list (one leaf per element) into a [`Column`] made with
/// `Column::typed(.., flat: true)`.
pub(crate) struct FlatSeed<'c, 's> {
    pub column: &'c mut Column<'s>,
    pub shape: &'c [usize],
}

impl<'de> DeserializeSeed<'de> for FlatSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FlatSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let had_error = self.column.error.is_some();
        let mut len = 0;
        while seq
            .next_element_seed(ValueSeed {
                column: &mut *self.column,
                depth: 1,
                first: false,
            })?
            .is_some()
        {
            len += 1;
        }
        self.column.flat_length(self.shape, len, had_error);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{tensor_from_slice, tensor_to_vec};
    use DataType::{Bool, BF16, F16, F32, F64, I16, I32, I64, I8, U16, U32, U64, U8};

    /// One TFS value read alone (columnar): its tensor, or the error text.
    fn read(text: &str, dtype: DataType) -> Result<Tensor, String> {
        let mut column = Column::free("x", dtype);
        let mark = column.begin(None);
        let mut parser = serde_json::Deserializer::from_str(text);
        ValueSeed::root(&mut column)
            .deserialize(&mut parser)
            .map_err(|e| format!("syntax: {e}"))?;
        column.end(mark);
        column.finish_value().map_err(|e| e.to_string())
    }

    /// Row-format instances of one input, as `decode_predict` stacks them.
    fn rows(instances: &[&str], dtype: DataType) -> Result<Tensor, String> {
        let mut column = Column::free("x", dtype);
        for (i, text) in instances.iter().enumerate() {
            let mark = column.begin(Some(i));
            let mut parser = serde_json::Deserializer::from_str(text);
            ValueSeed::root(&mut column)
                .deserialize(&mut parser)
                .unwrap();
            column.end(mark);
        }
        column.finish_rows().map_err(|e| e.to_string())
    }

    fn strings(shape: Vec<usize>, values: &[&[u8]]) -> Tensor {
        Tensor::strings(
            shape,
            values.iter().map(|v| Bytes::copy_from_slice(v)).collect(),
        )
    }

    #[test]
    fn every_dtype_from_numbers_and_booleans() {
        #[rustfmt::skip]
        let cases: Vec<(&str, DataType, Tensor)> = vec![
            ("[true, false, 1, 0]", Bool, tensor_from_slice(Bool, vec![4], &[1u8, 0, 1, 0])),
            ("[0, 255, 2.0]", U8, tensor_from_slice(U8, vec![3], &[0u8, 255, 2])),
            ("[65535]", U16, tensor_from_slice(U16, vec![1], &[u16::MAX])),
            ("[4294967295]", U32, tensor_from_slice(U32, vec![1], &[u32::MAX])),
            ("[18446744073709551615]", U64, tensor_from_slice(U64, vec![1], &[u64::MAX])),
            ("[-128, 127]", I8, tensor_from_slice(I8, vec![2], &[i8::MIN, i8::MAX])),
            ("[-32768]", I16, tensor_from_slice(I16, vec![1], &[i16::MIN])),
            ("[[-3e2], [7]]", I32, tensor_from_slice(I32, vec![2, 1], &[-300i32, 7])),
            ("[-9223372036854775808]", I64, tensor_from_slice(I64, vec![1], &[i64::MIN])),
            ("[0.5, -2]", F16, tensor_from_slice(F16, vec![2], &[f16::from_f32(0.5), f16::from_f32(-2.0)])),
            ("[1.5]", BF16, tensor_from_slice(BF16, vec![1], &[bf16::from_f32(1.5)])),
            ("[[0.1, 2], [3, 4]]", F32, tensor_from_slice(F32, vec![2, 2], &[0.1f32, 2.0, 3.0, 4.0])),
            ("0.1", F64, tensor_from_slice(F64, vec![], &[0.1f64])),
            ("[[], []]", F32, tensor_from_slice(F32, vec![2, 0], &[] as &[f32])),
            ("[]", I64, tensor_from_slice(I64, vec![0], &[] as &[i64])),
        ];
        for (text, dtype, want) in cases {
            assert_eq!(read(text, dtype), Ok(want), "{text} as {dtype}");
        }
    }

    #[test]
    fn strings_and_b64() {
        let bytes = DataType::Bytes;
        assert_eq!(
            read(
                r#"[["héllo", {"b64": "AAH/"}], [{"b64": "AA"}, ""]]"#,
                bytes
            ),
            Ok(strings(
                vec![2, 2],
                &["héllo".as_bytes(), &[0, 1, 255], &[0], b""]
            ))
        );
        // A b64 first leaf makes a numeric input read strings (images); a later b64 leaf does not.
        assert_eq!(
            read(r#"[{"b64": "AQ=="}, {"b64": "Ag=="}]"#, F32),
            Ok(strings(vec![2], &[&[1], &[2]]))
        );
        let e = read(r#"[1, {"b64": "AQ=="}]"#, F32).unwrap_err();
        assert_eq!(
            e,
            "Invalid input precision - Expected: FP32; Actual: BYTES; input name: x"
        );
        // Repeated keys: the last counts, as in a parsed map.
        assert_eq!(
            read(r#"[{"b64": 1, "b64": "AQ=="}]"#, bytes),
            Ok(strings(vec![1], &[&[1]]))
        );
    }

    #[test]
    fn element_errors() {
        #[rustfmt::skip]
        let cases: Vec<(&str, DataType, &str)> = vec![
            ("[1, 300]", U8, "Invalid value 300 for UINT8 - expected an integer in 0..=255; input name: x"),
            ("[-1]", U32, "Invalid value -1 for UINT32"),
            ("[1.5]", I32, "Invalid value 1.5 for INT32"),
            ("[18446744073709551615]", I64, "Invalid value 18446744073709551615 for INT64"),
            ("[2]", Bool, "Invalid value 2 for BOOL - expected true, false, 0 or 1"),
            ("[1e5]", F16, "Invalid value 100000.0 for FP16 - out of range"),
            ("[1e39]", F32, "Invalid value 1e+39 for FP32 - out of range"),
            ("[1, null]", F32, "null is not a valid tensor element; input name: x"),
            (r#"[{"y": 1}]"#, F32, "An object where a value is expected"),
            (r#"[{"b64": "AA", "x": 1}]"#, DataType::Bytes, "An object where a value is expected"),
            (r#"[{"b64": "not base64!"}]"#, DataType::Bytes, "Invalid base64 in {\"b64\": ..}"),
            (r#"["1"]"#, I32, "Expected: INT32; Actual: BYTES"),
            ("[true]", I32, "Expected: INT32; Actual: BOOL"),
            ("[1.5]", DataType::Bytes, "Expected: BYTES; Actual: FP64"),
            ("[-1]", DataType::Bytes, "Expected: BYTES; Actual: INT64"),
            ("[18446744073709551615]", DataType::Bytes, "Expected: BYTES; Actual: UINT64"),
        ];
        for (text, dtype, want) in cases {
            let e = read(text, dtype).unwrap_err();
            assert!(e.contains(want), "{text} as {dtype}: {e:?} lacks {want:?}");
        }
    }

    /// The shape is what the first elements imply; of several problems, the one a check of
    /// the whole value meets first is reported (a list's length before what is inside it).
    #[test]
    fn ragged_lists_and_which_problem_is_reported() {
        #[rustfmt::skip]
        let cases: Vec<(&str, &str)> = vec![
            ("[[1, 2], 3]", "Ragged nested lists - a number at depth 1 where a list of 2 is expected; input name: x"),
            ("[1, [2]]", "Ragged nested lists - a list at depth 1 where a value is expected"),
            ("[[1, 2], [3]]", "Ragged nested lists - a list of 1 at depth 1 where the first one has 2"),
            // The wrong length outranks the bad element inside the list, and what follows.
            (r#"[[1, 2], ["s"], [null, 1]]"#, "a list of 1 at depth 1 where the first one has 2"),
            // A bad element before the wrong list is met first.
            (r#"[[1, "s"], [3]]"#, "Expected: FP32; Actual: BYTES"),
            ("[[], [1]]", "a list of 1 at depth 1 where the first one has 0"),
            ("[[[1], [2]], [[3], 4]]", "a number at depth 2 where a list of 1 is expected"),
        ];
        for (text, want) in cases {
            let e = read(text, F32).unwrap_err();
            assert!(e.contains(want), "{text}: {e:?} lacks {want:?}");
        }
        // 65 nested pairs claim 2^65 elements: the count overflows, which outranks the rest.
        let mut text = "[0, 0]".to_string();
        for _ in 0..64 {
            text = format!("[{text}, 0]");
        }
        let e = read(&text, F32).unwrap_err();
        assert!(e.contains("the element count of (2,2,"), "{e}");
        assert!(e.ends_with("overflows; input name: x"), "{e}");
    }

    #[test]
    fn row_instances_stack_and_must_agree_with_instance_0() {
        assert_eq!(
            rows(&["[1, 2]", "[3, 4]"], I64),
            Ok(tensor_from_slice(I64, vec![2, 2], &[1i64, 2, 3, 4]))
        );
        assert_eq!(
            rows(&["7", "8", "9"], U8),
            Ok(tensor_from_slice(U8, vec![3], &[7u8, 8, 9]))
        );
        // Instance 2's first elements imply (1): that outranks its bad element.
        assert_eq!(
            rows(&["[1, 2]", "[3, 4]", r#"["s"]"#], F32).unwrap_err(),
            "Instance 2: Ragged instances - shape (1) differs from instance 0's shape (2); input name: x"
        );
        // Same implied shape, ragged inside: the list's own problem, named by instance.
        assert!(rows(&["[[1], [2]]", "[[3], [4, 5]]"], F32)
            .unwrap_err()
            .starts_with("Instance 1: Ragged nested lists - a list of 2 at depth 1"));
        // An earlier instance's problem is reported even if a later one is ragged.
        assert_eq!(
            rows(&["[1, 2]", "[3, true]", "[5]"], F32).unwrap_err(),
            "Invalid input precision - Expected: FP32; Actual: BOOL; input name: x"
        );
    }

    #[test]
    fn a_repeated_value_is_read_again() {
        let mut column = Column::free("x", F32);
        let mark = column.begin(Some(0));
        ValueSeed::root(&mut column)
            .deserialize(&mut serde_json::Deserializer::from_str(r#"["bad"]"#))
            .unwrap();
        column.end(mark);
        column.rewind(mark);
        let mark = column.begin(Some(0));
        ValueSeed::root(&mut column)
            .deserialize(&mut serde_json::Deserializer::from_str("[1, 2]"))
            .unwrap();
        column.end(mark);
        let mark = column.begin(Some(1));
        ValueSeed::root(&mut column)
            .deserialize(&mut serde_json::Deserializer::from_str("[3]"))
            .unwrap();
        column.end(mark);
        column.rewind(mark);
        let mark = column.begin(Some(1));
        ValueSeed::root(&mut column)
            .deserialize(&mut serde_json::Deserializer::from_str("[3, 4]"))
            .unwrap();
        column.end(mark);
        let t = column.finish_rows().unwrap();
        assert_eq!(t.shape, vec![2, 2]);
        assert_eq!(tensor_to_vec::<f32>(&t).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn kserve_flat_and_nested_data() {
        fn typed(
            text: &str,
            dtype: DataType,
            shape: &[usize],
            flat: bool,
        ) -> Result<Tensor, String> {
            let mut column = Column::typed("x", dtype, shape, flat);
            let mut parser = serde_json::Deserializer::from_str(text);
            if flat {
                FlatSeed {
                    column: &mut column,
                    shape,
                }
                .deserialize(&mut parser)
            } else {
                ValueSeed::root(&mut column).deserialize(&mut parser)
            }
            .unwrap();
            column.finish(shape.to_vec()).map_err(|e| e.to_string())
        }
        let want = tensor_from_slice(I64, vec![2, 3], &[1i64, 2, 3, 4, 5, 6]);
        assert_eq!(
            typed("[1, 2, 3, 4, 5, 6]", I64, &[2, 3], true),
            Ok(want.clone())
        );
        assert_eq!(
            typed("[[1, 2, 3], [4, 5, 6]]", I64, &[2, 3], false),
            Ok(want)
        );
        // The count outranks a bad element; a b64 leaf does not change the client's dtype.
        let e = typed(r#"[1, "x"]"#, F32, &[1, 3], true).unwrap_err();
        assert_eq!(
            e,
            "Invalid number of values in data - Expected: 3 for shape (1,3); Actual: 2; input name: x"
        );
        let e = typed(r#"[{"b64": "AA=="}]"#, F32, &[1], true).unwrap_err();
        assert!(e.contains("Expected: FP32; Actual: BYTES"), "{e}");
        let e = typed("[[1, 2], [3]]", F32, &[2, 2], false).unwrap_err();
        assert!(
            e.contains("a list of 1 at depth 1 where the first one has 2"),
            "{e}"
        );
        let e = typed("5", F32, &[1], false).unwrap_err();
        assert!(
            e.contains("a number at depth 0 where a list of 1 is expected"),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_stop_the_parser() {
        let e = read("[1, 2,]", F32).unwrap_err();
        assert!(e.starts_with("syntax: trailing comma"), "{e}");
    }
}
