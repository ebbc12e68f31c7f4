//! Decoding a TFS REST `:predict` body, in two passes over the bytes and without a value tree.
//!
//! Pass 1 reads the envelope and drops the values as it reads them (nothing is kept): it finds JSON
//! syntax errors, the layout (`instances` or `inputs`), `signature_name`, and whether every
//! row-format instance has the form of instance 0 and names every input, answering each problem
//! as the tree-walking decoder did. Pass 2 reads the values of the layout straight into tensor
//! bytes ([`crate::api::json::values`]). Pass 1 allocates nothing per element, and lets pass 2 read
//! each row once, knowing its form; pass 2 cannot meet a syntax error.

use crate::api::json::values::{Column, Mark, MaybeString, Skip, SkipVisitor, ValueSeed};
use crate::api::tfs::json::{DecodedPredict, JsonFormat};
use crate::error::ServeError;
use crate::serving::validate::names;
use crate::tensor::Signature;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeSet;
use std::fmt;

/// Parses a `:predict` body against the model's signature. `model` only names the model in errors.
pub fn decode_predict(
    body: &[u8],
    model: &str,
    signature: &Signature,
) -> Result<DecodedPredict, ServeError> {
    let plan = plan(body, model, signature)?;
    let mut columns: Vec<Column> = signature
        .inputs
        .iter()
        .map(|spec| {
            let mut column = Column::free(&spec.name, spec.dtype);
            column.reserve_for(body.len());
            column
        })
        .collect();
    let mut parser = serde_json::Deserializer::from_slice(body);
    parser
        .deserialize_map(Values {
            plan: &plan,
            signature,
            columns: &mut columns,
        })
        .map_err(syntax)?;
    let tensors = signature
        .inputs
        .iter()
        .zip(columns)
        .map(|(spec, column)| {
            let tensor = match plan.format {
                JsonFormat::Row => column.finish_rows(),
                JsonFormat::Columnar => column.finish_value(),
            }?;
            Ok((spec.name.clone(), tensor))
        })
        .collect::<Result<_, ServeError>>()?;
    Ok((tensors, plan.format, plan.signature_name))
}

fn syntax(e: serde_json::Error) -> ServeError {
    ServeError::invalid(format!("Invalid JSON in the request body: {e}"))
}

/// What pass 1 learnt: the layout, whether its values are objects naming the inputs, and which
/// occurrence of its key counts (the last one, as in a parsed map).
struct Plan {
    format: JsonFormat,
    named: bool,
    occurrence: usize,
    signature_name: Option<String>,
}

impl Plan {
    fn key(&self) -> &'static str {
        match self.format {
            JsonFormat::Row => "instances",
            JsonFormat::Columnar => "inputs",
        }
    }
}

/// Pass 1: syntax, envelope and row forms, with the old decoder's answers in its order.
fn plan(body: &[u8], model: &str, signature: &Signature) -> Result<Plan, ServeError> {
    let context = Context { model, signature };
    let mut parser = serde_json::Deserializer::from_slice(body);
    let envelope = parser.deserialize_any(context).map_err(syntax)?;
    parser.end().map_err(syntax)?;
    let mut envelope = match envelope {
        Envelope::Object(object) => object,
        Envelope::Other(kind) => {
            return Err(ServeError::invalid(format!(
            "The request body must be a JSON object with \"instances\" or \"inputs\"; got {kind}"
        )))
        }
    };
    let signature_name = match envelope.signature_name.take() {
        None => None,
        Some(Ok(name)) => Some(name),
        Some(Err(kind)) => {
            return Err(ServeError::invalid(format!(
                "\"signature_name\" must be a string; got {kind}"
            )))
        }
    };
    let (format, found) = match (envelope.instances, envelope.inputs) {
        (Some(rows), None) => (JsonFormat::Row, rows),
        (None, Some(columns)) => (JsonFormat::Columnar, columns),
        (Some(_), Some(_)) => {
            return Err(ServeError::invalid(
                "The request has both \"instances\" (row format) and \"inputs\" (columnar format); send exactly one",
            ))
        }
        (None, None) => {
            let keys: Vec<&str> = envelope.keys.iter().map(String::as_str).collect();
            return Err(ServeError::invalid(format!(
                "The request has neither \"instances\" (row format) nor \"inputs\" (columnar format); got keys: [{}]",
                keys.join(", ")
            )));
        }
    };
    let (named, occurrence) = found?;
    Ok(Plan {
        format,
        named,
        occurrence,
        signature_name,
    })
}

#[derive(Clone, Copy)]
struct Context<'a> {
    model: &'a str,
    signature: &'a Signature,
}

/// A layout's form (`named`) and occurrence, or why it cannot be read.
type Found = Result<(bool, usize), ServeError>;

enum Envelope {
    Object(Members),
    /// Not an object: what it is.
    Other(&'static str),
}

#[derive(Default)]
struct Members {
    /// A string, or what it was instead.
    signature_name: Option<Result<String, &'static str>>,
    instances: Option<Found>,
    inputs: Option<Found>,
    /// Every other key, sorted (as a parsed map lists them).
    keys: BTreeSet<String>,
}

impl<'de> DeserializeSeed<'de> for Context<'_> {
    type Value = Envelope;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Envelope, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Context<'_> {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut members = Members::default();
        let mut seen = (0, 0);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "signature_name" => {
                    let form = map.next_value::<Form>()?;
                    members.signature_name = Some(match form {
                        Form::String(name) => Ok(name),
                        other => Err(other.kind()),
                    });
                }
                "instances" => {
                    seen.0 += 1;
                    let rows = map.next_value_seed(RowForms(self))?;
                    members.instances = Some(rows.map(|named| (named, seen.0)));
                }
                "inputs" => {
                    seen.1 += 1;
                    let form = map.next_value::<Form>()?;
                    members.inputs = Some(self.columns(form).map(|named| (named, seen.1)));
                }
                _ => {
                    map.next_value::<Skip>()?;
                    members.keys.insert(key);
                }
            }
        }
        Ok(Envelope::Object(members))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Envelope, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(Envelope::Other("a list"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Envelope, E> {
        Ok(Envelope::Other("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Envelope, E> {
        Ok(Envelope::Other("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Envelope, E> {
        Ok(Envelope::Other("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Envelope, E> {
        Ok(Envelope::Other("a number"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Envelope, E> {
        Ok(Envelope::Other("a string"))
    }

    fn visit_unit<E>(self) -> Result<Envelope, E> {
        Ok(Envelope::Other("null"))
    }
}

impl Context<'_> {
    fn names(&self) -> String {
        names(&self.signature.inputs)
    }

    /// Columnar `inputs`: an object naming every input, or (one input) its value.
    fn columns(&self, form: Form) -> Result<bool, ServeError> {
        match form {
            Form::Named(keys) => self.check_names(&keys).map(|_| true),
            _ if self.signature.inputs.len() == 1 => Ok(false),
            other => Err(ServeError::invalid(format!(
                "\"inputs\" is {}, but model {} takes {} inputs ({}): send an object {{input name: value}}",
                other.kind(),
                self.model,
                self.signature.inputs.len(),
                self.names()
            ))),
        }
    }

    /// Every key names an input and every input is present.
    fn check_names(&self, keys: &BTreeSet<String>) -> Result<(), ServeError> {
        if let Some(key) = keys
            .iter()
            .find(|k| self.signature.input_index(k).is_none())
        {
            return Err(ServeError::UnexpectedInput {
                model: self.model.into(),
                input: key.clone(),
                expected: self.names(),
            });
        }
        if let Some(spec) = self
            .signature
            .inputs
            .iter()
            .find(|s| !keys.contains(&s.name))
        {
            return Err(ServeError::MissingInput {
                model: self.model.into(),
                input: spec.name.clone(),
                expected: self.names(),
            });
        }
        Ok(())
    }

    /// Row-format instance `i` against instance 0's form (`named`).
    fn check_row(&self, i: usize, named: bool, form: &Form) -> Result<(), ServeError> {
        match (named, form) {
            (true, Form::Named(keys)) => self.check_names(keys),
            (false, form) if !matches!(form, Form::Named(_)) => Ok(()),
            _ => Err(ServeError::invalid(format!(
                "Instance {i} is {}, but instance 0 is {}; every instance must have the same form",
                form.kind(),
                if named {
                    "an object naming the inputs"
                } else {
                    "a bare value"
                }
            ))),
        }
    }
}

/// A value's form, read without keeping its contents (but an object's keys, and a string).
enum Form {
    /// An object naming inputs (any object but `{"b64": "<text>"}`), with its keys.
    Named(BTreeSet<String>),
    String(String),
    /// Any other value: what it is.
    Other(&'static str),
}

impl Form {
    fn kind(&self) -> &'static str {
        match self {
            Form::Named(_) => "an object",
            Form::String(_) => "a string",
            Form::Other(kind) => kind,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Form {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Form, D::Error> {
        deserializer.deserialize_any(FormVisitor)
    }
}

struct FormVisitor;

impl<'de> Visitor<'de> for FormVisitor {
    type Value = Form;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Form, A::Error> {
        let mut keys = BTreeSet::new();
        let mut b64_is_text = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "b64" {
                b64_is_text = map.next_value::<MaybeString>()?.0.is_some();
            } else {
                map.next_value::<Skip>()?;
            }
            keys.insert(key);
        }
        let b64 = b64_is_text && keys.len() == 1;
        Ok(match b64 {
            true => Form::Other("an object"),
            false => Form::Named(keys),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Form, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(Form::Other("a list"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Form, E> {
        Ok(Form::Other("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Form, E> {
        Ok(Form::Other("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Form, E> {
        Ok(Form::Other("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Form, E> {
        Ok(Form::Other("a number"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Form, E> {
        Ok(Form::String(s.to_owned()))
    }

    fn visit_unit<E>(self) -> Result<Form, E> {
        Ok(Form::Other("null"))
    }
}

/// Pass 1 over `instances`: whether instance 0 names the inputs, or the first form problem.
struct RowForms<'a>(Context<'a>);

impl<'de> DeserializeSeed<'de> for RowForms<'_> {
    type Value = Result<bool, ServeError>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        match deserializer.deserialize_any(FormOrRows(self.0))? {
            Rows::List(result) => Ok(result),
            Rows::Other(kind) => Ok(Err(ServeError::invalid(format!(
                "\"instances\" must be a list (one item per batch row); got {kind}"
            )))),
        }
    }
}

enum Rows {
    List(Result<bool, ServeError>),
    Other(&'static str),
}

struct FormOrRows<'a>(Context<'a>);

impl<'de> Visitor<'de> for FormOrRows<'_> {
    type Value = Rows;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rows, A::Error> {
        let context = self.0;
        let Some(first) = seq.next_element::<Form>()? else {
            return Ok(Rows::List(Err(ServeError::invalid(
                "\"instances\" is an empty list; send at least one instance",
            ))));
        };
        let named = matches!(first, Form::Named(_));
        let inputs = context.signature.inputs.len();
        let mut result = match (named, inputs) {
            (false, n) if n != 1 => Err(ServeError::invalid(format!(
                "Instance 0 is {}, but model {} takes {n} inputs ({}): each instance must be an object naming every input",
                first.kind(),
                context.model,
                context.names()
            ))),
            _ => context.check_row(0, named, &first).map(|_| named),
        };
        let mut i = 1;
        while result.is_ok() {
            let Some(form) = seq.next_element::<Form>()? else {
                break;
            };
            result = context.check_row(i, named, &form).map(|_| named);
            i += 1;
        }
        // After a problem the rest is only checked for syntax.
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Rows::List(result))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Rows, A::Error> {
        SkipVisitor.visit_map(map)?;
        Ok(Rows::Other("an object"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Rows, E> {
        Ok(Rows::Other("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Rows, E> {
        Ok(Rows::Other("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Rows, E> {
        Ok(Rows::Other("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Rows, E> {
        Ok(Rows::Other("a number"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Rows, E> {
        Ok(Rows::Other("a string"))
    }

    fn visit_unit<E>(self) -> Result<Rows, E> {
        Ok(Rows::Other("null"))
    }
}

/// Pass 2: the planned layout's values into the columns (one per input, signature order).
struct Values<'p, 'c, 's> {
    plan: &'p Plan,
    signature: &'s Signature,
    columns: &'c mut Vec<Column<'s>>,
}

impl<'de> Visitor<'de> for Values<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = 0;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.plan.key() {
                seen += 1;
            }
            if key != self.plan.key() || seen != self.plan.occurrence {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let input = InputIndex(self.signature);
            match (self.plan.format, self.plan.named) {
                (JsonFormat::Row, named) => map.next_value_seed(Instances {
                    columns: self.columns,
                    input,
                    named,
                })?,
                (JsonFormat::Columnar, true) => map.next_value_seed(NamedColumns {
                    columns: self.columns,
                    input,
                })?,
                (JsonFormat::Columnar, false) => {
                    let column = &mut self.columns[0];
                    let mark = column.begin(None);
                    map.next_value_seed(ValueSeed::root(column))?;
                    column.end(mark);
                }
            }
        }
        Ok(())
    }
}

/// A key as the index of the input it names (pass 1 checked that it names one).
#[derive(Clone, Copy)]
struct InputIndex<'s>(&'s Signature);

impl<'de> DeserializeSeed<'de> for InputIndex<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for InputIndex<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an input name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self.0.input_index(name))
    }
}

/// `{"inputs": {name: value, ..}}`: each value is a whole tensor (a repeated name: the last).
struct NamedColumns<'c, 's> {
    columns: &'c mut Vec<Column<'s>>,
    input: InputIndex<'s>,
}

impl<'de> DeserializeSeed<'de> for NamedColumns<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for NamedColumns<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object naming the inputs")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(index) = map.next_key_seed(self.input)? {
            let Some(i) = index else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let spec = &self.input.0.inputs[i];
            let column = &mut self.columns[i];
            column.restart(&spec.name, spec.dtype);
            let mark = column.begin(None);
            map.next_value_seed(ValueSeed::root(column))?;
            column.end(mark);
        }
        Ok(())
    }
}

/// `{"instances": [..]}`: instance `i` appends row `i` to each input's column.
struct Instances<'c, 's> {
    columns: &'c mut Vec<Column<'s>>,
    input: InputIndex<'s>,
    named: bool,
}

impl<'de> DeserializeSeed<'de> for Instances<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Instances<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of instances")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // Where each input's value in the current instance began (a repeated name: the last).
        let mut marks: Vec<Option<Mark>> = vec![None; self.columns.len()];
        let mut i = 0;
        loop {
            let more = if self.named {
                marks.fill(None);
                seq.next_element_seed(NamedRow {
                    columns: &mut *self.columns,
                    input: self.input,
                    marks: &mut marks,
                    i,
                })?
            } else {
                seq.next_element_seed(BareRow {
                    column: &mut self.columns[0],
                    i,
                })?
            };
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
}

/// An instance that is the value of the only input.
struct BareRow<'c, 's> {
    column: &'c mut Column<'s>,
    i: usize,
}

impl<'de> DeserializeSeed<'de> for BareRow<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let mark = self.column.begin(Some(self.i));
        ValueSeed::root(&mut *self.column).deserialize(deserializer)?;
        self.column.end(mark);
        Ok(())
    }
}

/// An instance that names every input.
struct NamedRow<'c, 'm, 's> {
    columns: &'c mut Vec<Column<'s>>,
    input: InputIndex<'s>,
    marks: &'m mut [Option<Mark>],
    i: usize,
}

impl<'de> DeserializeSeed<'de> for NamedRow<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for NamedRow<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object naming the inputs")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(index) = map.next_key_seed(self.input)? {
            let Some(index) = index else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let column = &mut self.columns[index];
            if let Some(mark) = self.marks[index] {
                column.rewind(mark);
            }
            let mark = column.begin(Some(self.i));
            self.marks[index] = Some(mark);
            map.next_value_seed(ValueSeed::root(column))?;
            column.end(mark);
        }
        Ok(())
    }
}
