//! KServe v2 REST `inputs[].data` read straight into tensor bytes ([`crate::api::json::values`]).
//!
//! The first pass (serde derive in `kserve::json`) reads `data` only as a [`DataForm`]: whether it
//! is a flat list (one value per element) or nested to the shape. The second pass, here, reads
//! each `data` into a [`Column`] of the client's `datatype` and `shape`, which may come after
//! `data` in the object.

use crate::api::json::values::{check_count, Column, FlatSeed, SkipVisitor, ValueSeed};
use crate::api::kserve::codec::{datatype, shape};
use crate::error::ServeError;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// The form of a `data` member, read without keeping its values.
pub(crate) struct DataForm {
    /// A list with no list in it: one value per element, whatever the shape.
    flat: bool,
}

impl<'de> Deserialize<'de> for DataForm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DataForm, D::Error> {
        deserializer.deserialize_any(FormVisitor)
    }
}

struct FormVisitor;

impl<'de> Visitor<'de> for FormVisitor {
    type Value = DataForm;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DataForm, A::Error> {
        let mut flat = true;
        while let Some(IsList(list)) = seq.next_element()? {
            flat &= !list;
        }
        Ok(DataForm { flat })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DataForm, A::Error> {
        SkipVisitor.visit_map(map)?;
        Ok(DataForm { flat: false })
    }

    fn visit_bool<E>(self, _: bool) -> Result<DataForm, E> {
        Ok(DataForm { flat: false })
    }

    fn visit_i64<E>(self, _: i64) -> Result<DataForm, E> {
        Ok(DataForm { flat: false })
    }

    fn visit_u64<E>(self, _: u64) -> Result<DataForm, E> {
        Ok(DataForm { flat: false })
    }

    fn visit_f64<E>(self, _: f64) -> Result<DataForm, E> {
        Ok(DataForm { flat: false })
    }

    fn visit_str<E>(self, _: &str) -> Result<DataForm, E> {
        Ok(DataForm { flat: false })
    }

    fn visit_unit<E>(self) -> Result<DataForm, E> {
        Ok(DataForm { flat: false })
    }
}

/// Whether a value is a list (read and dropped).
struct IsList(bool);

impl<'de> Deserialize<'de> for IsList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IsList, D::Error> {
        deserializer.deserialize_any(IsListVisitor)
    }
}

struct IsListVisitor;

impl<'de> Visitor<'de> for IsListVisitor {
    type Value = IsList;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<IsList, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(IsList(true))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<IsList, A::Error> {
        SkipVisitor.visit_map(map)?;
        Ok(IsList(false))
    }

    fn visit_bool<E>(self, _: bool) -> Result<IsList, E> {
        Ok(IsList(false))
    }

    fn visit_i64<E>(self, _: i64) -> Result<IsList, E> {
        Ok(IsList(false))
    }

    fn visit_u64<E>(self, _: u64) -> Result<IsList, E> {
        Ok(IsList(false))
    }

    fn visit_f64<E>(self, _: f64) -> Result<IsList, E> {
        Ok(IsList(false))
    }

    fn visit_str<E>(self, _: &str) -> Result<IsList, E> {
        Ok(IsList(false))
    }

    fn visit_unit<E>(self) -> Result<IsList, E> {
        Ok(IsList(false))
    }
}

/// An input as the first pass read it: what `read_data` needs.
pub(crate) struct DataInput<'a> {
    pub name: &'a str,
    pub datatype: &'a str,
    pub shape: &'a [i64],
    /// `None` when the values are not in `data` (absent, or sent as binary data).
    pub form: Option<&'a DataForm>,
}

/// Reads every `data` whose datatype and shape are valid (the caller reports the others' errors
/// in input order, as before). One entry per input: its column (`finish(shape)` gives the
/// tensor, or its first problem), or why it cannot be read.
pub(crate) fn read_data<'a>(
    header: &[u8],
    inputs: &[DataInput<'a>],
) -> Result<Vec<Option<Result<Column<'a>, ServeError>>>, ServeError> {
    let mut plans: Vec<Option<Plan<'a>>> = inputs.iter().map(plan).collect();
    for plan in plans.iter_mut().flatten() {
        if let Plan::Read { column, .. } = plan {
            column.reserve_for(header.len());
        }
    }
    let mut read: Vec<Option<Result<Column<'a>, ServeError>>> = Vec::new();
    if plans.iter().any(|p| matches!(p, Some(Plan::Read { .. }))) {
        let mut parser = serde_json::Deserializer::from_slice(header);
        parser
            .deserialize_map(Inputs(&mut plans))
            .map_err(|e| ServeError::invalid(format!("Invalid inference request JSON: {e}")))?;
    }
    for plan in plans {
        read.push(plan.map(|plan| match plan {
            Plan::Read { column, .. } => Ok(*column),
            Plan::Failed(e) => Err(e),
        }));
    }
    Ok(read)
}

enum Plan<'a> {
    Read {
        column: Box<Column<'a>>,
        shape: Vec<usize>,
        flat: bool,
    },
    /// The shape's element count overflows (reported before any value, as before).
    Failed(ServeError),
}

fn plan<'a>(input: &DataInput<'a>) -> Option<Plan<'a>> {
    let form = input.form?;
    let dtype = datatype(input.name, input.datatype).ok()?;
    let shape = shape(input.name, input.shape).ok()?;
    Some(match check_count(input.name, dtype, &shape) {
        Ok(()) => Plan::Read {
            column: Box::new(Column::typed(input.name, dtype, &shape, form.flat)),
            shape,
            flat: form.flat,
        },
        Err(e) => Plan::Failed(e),
    })
}

/// The top-level object: its `inputs`.
struct Inputs<'p, 'a>(&'p mut [Option<Plan<'a>>]);

impl<'de> Visitor<'de> for Inputs<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an inference request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "inputs" {
                map.next_value_seed(InputList(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct InputList<'p, 'a>(&'p mut [Option<Plan<'a>>]);

impl<'de> DeserializeSeed<'de> for InputList<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for InputList<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of inputs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Input(self.0.get_mut(i).and_then(Option::as_mut)))?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
}

/// One input object: its `data` into the planned column.
struct Input<'p, 'a>(Option<&'p mut Plan<'a>>);

impl<'de> DeserializeSeed<'de> for Input<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Input<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an input")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match (key.as_str(), self.0.as_deref_mut()) {
                (
                    "data",
                    Some(Plan::Read {
                        column,
                        shape,
                        flat: true,
                    }),
                ) => map.next_value_seed(FlatSeed { column, shape })?,
                ("data", Some(Plan::Read { column, .. })) => {
                    map.next_value_seed(ValueSeed::root(column))?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}
