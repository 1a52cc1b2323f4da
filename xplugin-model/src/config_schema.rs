//! Plugin configuration: the typed items a manifest's `config` object
//! declares ([`ConfigSchema`]), the values a plugin runs with
//! ([`ConfigValues`]), checking a value against its item, preparing a change
//! of several items at once ([`ConfigSchema::prepare_change`]) and carrying
//! values from one version's items to the next ([`migrate`]).
//!
//! The model is Fledge's (items with a type and a default, described for a
//! user interface) with the strictness of ROS 2 parameters (every value is
//! checked by the host against its item before anything is applied). Nothing
//! here is ever evaluated as code: Fledge's `rule` and `validity`
//! expressions are reported as ignored.
//!
//! # Items
//!
//! ```text
//! "config": {
//!   "speed_override": {"type": "float", "default": 1.0, "minimum": 0.0, "maximum": 1.0,
//!                      "step": 0.05, "description": "Factor applied to requested speeds"},
//!   "mode":           {"type": "enumeration", "options": ["auto", "manual"], "default": "auto",
//!                      "description": "..."},
//!   "joints":         {"type": "list", "items": "integer", "default": [1, 2], "minimum": 1,
//!                      "maximum": 7, "listSize": 7, "description": "..."}
//! }
//! ```
//!
//! * `type` (required): `integer` (64-bit), `float` (finite), `string`,
//!   `password` (a string never printed: shown as [`MASK`]), `boolean`,
//!   `enumeration` (one of `options`), `JSON` (any JSON value; `json` is
//!   accepted too) or `list` (a list of `items`: `integer`, `float`,
//!   `string`, `boolean` or `enumeration`).
//! * `default` (required) must satisfy the item's own rules.
//! * `description` (a warning when missing), `displayName`, `group`
//!   (strings), `order` (integer), `mandatory`, `readonly`, `deprecated`
//!   (booleans).
//! * `minimum`, `maximum` (inclusive) and `step` (positive; allowed values
//!   are `minimum + k * step`, or `k * step` without a minimum) for
//!   integers, floats and their lists; `length` (maximum characters) for
//!   strings, passwords and lists of strings; `listSize` (maximum elements)
//!   for lists; `options` (distinct strings) for enumerations and their
//!   lists.
//! * `mandatory`: the value may not be empty (string, password,
//!   enumeration, list; JSON may not be `null`). `readonly`: `config set`
//!   refuses it; its value is always the default of the installed version.
//!
//! Values are typed JSON. Fledge writes numbers and flags as strings
//! (`"default": "5"`, `"readonly": "true"`); that spelling is accepted where
//! the item's type makes it unambiguous (integer, float and boolean
//! defaults; number and flag properties) and converted. A `JSON` item's
//! default is taken as written (a string stays a string).
//!
//! Floats are checked against a step with a relative tolerance of 1e-9, so
//! that `0.15` is on a step of `0.05`.

use crate::code::ProblemCode;
use crate::problem::{Problem, Problems};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What a password (and any value of a password item) is shown as.
pub const MASK: &str = "********";
/// Most items a plugin may declare.
pub const MAX_ITEMS: usize = 256;
/// Longest item name, in characters.
pub const MAX_ITEM_NAME_LEN: usize = 64;
/// Most options an enumeration may have.
pub const MAX_OPTIONS: usize = 256;
/// Largest value (a string's bytes, a list's or JSON value's JSON text), in
/// bytes, whatever the item says.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Largest set of values of one plugin (its JSON text), in bytes: what a
/// host stores per plugin stays small and bounded.
pub const MAX_TOTAL_BYTES: usize = 960 * 1024;

/// The scalar types, as items and as elements of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scalar {
    /// A 64-bit signed integer.
    Integer,
    /// A finite floating-point number.
    Float,
    /// Text.
    String,
    /// `true` or `false`.
    Boolean,
    /// One of the item's `options`.
    Enumeration,
}

impl Scalar {
    fn as_str(self) -> &'static str {
        match self {
            Scalar::Integer => "integer",
            Scalar::Float => "float",
            Scalar::String => "string",
            Scalar::Boolean => "boolean",
            Scalar::Enumeration => "enumeration",
        }
    }

    fn parse(name: &str) -> Option<Scalar> {
        Some(match name {
            "integer" => Scalar::Integer,
            "float" => Scalar::Float,
            "string" => Scalar::String,
            "boolean" => Scalar::Boolean,
            "enumeration" => Scalar::Enumeration,
            _ => return None,
        })
    }

    fn is_number(self) -> bool {
        matches!(self, Scalar::Integer | Scalar::Float)
    }
}

/// The type of a configuration item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemType {
    /// A 64-bit signed integer.
    Integer,
    /// A finite floating-point number.
    Float,
    /// Text.
    String,
    /// Text that is never printed.
    Password,
    /// `true` or `false`.
    Boolean,
    /// One of `options`.
    Enumeration,
    /// Any JSON value.
    Json,
    /// A list of one scalar type.
    List(Scalar),
}

impl ItemType {
    /// The name written in manifests: `integer`, `JSON`, `list`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ItemType::Integer => "integer",
            ItemType::Float => "float",
            ItemType::String => "string",
            ItemType::Password => "password",
            ItemType::Boolean => "boolean",
            ItemType::Enumeration => "enumeration",
            ItemType::Json => "JSON",
            ItemType::List(_) => "list",
        }
    }

    /// The scalar type the item's value (or each element of a list) has;
    /// `None` for `JSON`.
    fn scalar(self) -> Option<Scalar> {
        match self {
            ItemType::Integer => Some(Scalar::Integer),
            ItemType::Float => Some(Scalar::Float),
            ItemType::String | ItemType::Password => Some(Scalar::String),
            ItemType::Boolean => Some(Scalar::Boolean),
            ItemType::Enumeration => Some(Scalar::Enumeration),
            ItemType::Json => None,
            ItemType::List(s) => Some(s),
        }
    }
}

impl fmt::Display for ItemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemType::List(s) => write!(f, "list of {}", s.as_str()),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A bound or step of a number item: integers for integer items, floats
/// for float items.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Num {
    /// Of an integer item.
    Int(i64),
    /// Of a float item.
    Float(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::Int(i) => write!(f, "{i}"),
            // As JSON writes it: 1.0, not 1.
            Num::Float(x) => match serde_json::Number::from_f64(*x) {
                Some(n) => write!(f, "{n}"),
                None => write!(f, "{x}"),
            },
        }
    }
}

/// One configuration item.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConfigItem {
    /// Its name (the key in `config` and in `KEY=VALUE`).
    pub name: String,
    /// Its type.
    pub item_type: ItemType,
    /// Its default (valid for the item).
    pub default: Value,
    /// What it does, for people.
    pub description: Option<String>,
    /// A friendlier name for user interfaces.
    pub display_name: Option<String>,
    /// Inclusive lower bound (numbers and lists of numbers).
    pub minimum: Option<Num>,
    /// Inclusive upper bound (numbers and lists of numbers).
    pub maximum: Option<Num>,
    /// Allowed values are `minimum + k * step` (or `k * step`).
    pub step: Option<Num>,
    /// Most characters of a string (or of each string of a list).
    pub length: Option<usize>,
    /// Most elements of a list.
    pub list_size: Option<usize>,
    /// The options of an enumeration (or of each element of a list).
    pub options: Vec<String>,
    /// The value may not be empty.
    pub mandatory: bool,
    /// `config set` refuses the item; its value is the default.
    pub readonly: bool,
    /// Where user interfaces place it (lower first).
    pub order: Option<i64>,
    /// A heading user interfaces group it under.
    pub group: Option<String>,
    /// No longer used; kept for old setups.
    pub deprecated: bool,
}

/// The JSON form for reports: every property, the default of a password
/// masked.
impl Serialize for ConfigItem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", &self.name)?;
        m.serialize_entry("type", self.item_type.as_str())?;
        if let ItemType::List(e) = self.item_type {
            m.serialize_entry("items", e.as_str())?;
        }
        m.serialize_entry("default", &self.shown(&self.default))?;
        m.serialize_entry("description", &self.description)?;
        m.serialize_entry("displayName", &self.display_name)?;
        m.serialize_entry("minimum", &self.minimum)?;
        m.serialize_entry("maximum", &self.maximum)?;
        m.serialize_entry("step", &self.step)?;
        m.serialize_entry("length", &self.length)?;
        m.serialize_entry("listSize", &self.list_size)?;
        if !self.options.is_empty() {
            m.serialize_entry("options", &self.options)?;
        }
        m.serialize_entry("mandatory", &self.mandatory)?;
        m.serialize_entry("readonly", &self.readonly)?;
        m.serialize_entry("order", &self.order)?;
        m.serialize_entry("group", &self.group)?;
        m.serialize_entry("deprecated", &self.deprecated)?;
        m.end()
    }
}

/// The items of one plugin, by name. Empty when the manifest has no
/// `config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ConfigSchema {
    /// The items, by name.
    pub items: BTreeMap<String, ConfigItem>,
}

/// Values of configuration items, by item name: what a plugin gets in
/// `init` and `reconfigure` (as a JSON object) and what the host stores.
///
/// `Debug` shows item names only, so that a value (a password) never
/// reaches a log by accident; use [`ConfigValues::shown`] for people.
#[derive(Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ConfigValues(pub BTreeMap<String, Value>);

impl fmt::Debug for ConfigValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigValues")
            .field("items", &self.0.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ConfigValues {
    /// The value of `item`, if set.
    pub fn get(&self, item: &str) -> Option<&Value> {
        self.0.get(item)
    }

    /// The JSON object a plugin receives (passwords included: the plugin
    /// needs them).
    pub fn to_json(&self) -> Value {
        Value::Object(self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// The values from a JSON object (`None` for anything else).
    pub fn from_json(value: &Value) -> Option<ConfigValues> {
        let obj = value.as_object()?;
        Some(ConfigValues(
            obj.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ))
    }

    /// The values as people may see them: passwords of `schema` masked.
    pub fn shown(&self, schema: &ConfigSchema) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| {
                    let shown = match schema.items.get(k) {
                        Some(item) => item.shown(v),
                        None => v.clone(),
                    };
                    (k.clone(), shown)
                })
                .collect(),
        )
    }
}

// ---------------------------------------------------------------------------
// Checking values
// ---------------------------------------------------------------------------

/// Why a value does not fit its item. The texts never contain a password.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// Not of the item's type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the item takes.
        expected: String,
        /// What was given (masked for passwords).
        found: String,
    },
    /// Below the minimum.
    #[error("{found} is below the minimum {minimum}")]
    BelowMinimum {
        /// The item's minimum.
        minimum: Num,
        /// What was given.
        found: String,
    },
    /// Above the maximum.
    #[error("{found} is above the maximum {maximum}")]
    AboveMaximum {
        /// The item's maximum.
        maximum: Num,
        /// What was given.
        found: String,
    },
    /// Not on the step.
    #[error("{found} is not on the step {step} (counted from {base})")]
    OffStep {
        /// The item's step.
        step: Num,
        /// Where steps are counted from (the minimum, or 0).
        base: Num,
        /// What was given.
        found: String,
    },
    /// Not one of the options.
    #[error("{found} is not one of the options {}", quote_list(.options))]
    NotAnOption {
        /// The item's options.
        options: Vec<String>,
        /// What was given.
        found: String,
    },
    /// Longer than allowed.
    #[error("the value has {len} {unit}, at most {limit} are allowed")]
    TooLong {
        /// The limit.
        limit: usize,
        /// The value's length.
        len: usize,
        /// `characters`, `elements` or `bytes`.
        unit: &'static str,
    },
    /// Empty, and the item is mandatory.
    #[error("the item is mandatory and the value is empty")]
    Blank,
    /// One element of a list does not fit.
    #[error("element {index}: {error}")]
    Element {
        /// Its index (from 0).
        index: usize,
        /// Why.
        error: Box<ValueError>,
    },
}

impl ValueError {
    /// The problem code of this refusal.
    pub fn code(&self) -> ProblemCode {
        match self {
            ValueError::WrongType { .. } => ProblemCode::ConfigWrongType,
            ValueError::BelowMinimum { .. } | ValueError::AboveMaximum { .. } => {
                ProblemCode::ConfigOutOfRange
            }
            ValueError::OffStep { .. } => ProblemCode::ConfigOffStep,
            ValueError::NotAnOption { .. } => ProblemCode::ConfigNotAnOption,
            ValueError::TooLong { .. } => ProblemCode::ConfigTooLong,
            ValueError::Blank => ProblemCode::ConfigMandatoryBlank,
            ValueError::Element { error, .. } => error.code(),
        }
    }
}

fn quote_list(items: &[String]) -> String {
    items
        .iter()
        .map(|o| format!("\"{o}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value for messages: strings quoted, long values cut.
fn describe(v: &Value) -> String {
    let text = match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) if a.is_empty() => "an empty list".to_string(),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

impl ConfigItem {
    /// `value` as people may see it: [`MASK`] for a password item.
    pub fn shown(&self, value: &Value) -> Value {
        match self.item_type {
            ItemType::Password => Value::String(MASK.to_string()),
            _ => value.clone(),
        }
    }

    /// `value` for a message (masked, quoted, cut).
    pub fn describe(&self, value: &Value) -> String {
        match self.item_type {
            ItemType::Password => MASK.to_string(),
            _ => describe(value),
        }
    }

    /// What the item accepts, for hints: `a float from 0.0 to 1.0 in steps
    /// of 0.05`, `one of "auto", "manual"`.
    pub fn expected(&self) -> String {
        let mut out = match self.item_type {
            ItemType::Integer => "an integer".to_string(),
            ItemType::Float => "a number".to_string(),
            ItemType::String => "a string".to_string(),
            ItemType::Password => "a password".to_string(),
            ItemType::Boolean => "true or false".to_string(),
            ItemType::Enumeration => format!("one of {}", quote_list(&self.options)),
            ItemType::Json => "a JSON value".to_string(),
            ItemType::List(e) => {
                let each = match e {
                    Scalar::Enumeration => format!("each one of {}", quote_list(&self.options)),
                    other => format!("of {}s", other.as_str()),
                };
                format!("a JSON list {each}")
            }
        };
        match (self.minimum, self.maximum) {
            (Some(lo), Some(hi)) => out.push_str(&format!(" from {lo} to {hi}")),
            (Some(lo), None) => out.push_str(&format!(" of at least {lo}")),
            (None, Some(hi)) => out.push_str(&format!(" of at most {hi}")),
            (None, None) => {}
        }
        if let Some(step) = self.step {
            out.push_str(&format!(" in steps of {step}"));
        }
        if let Some(len) = self.length {
            out.push_str(&format!(", at most {len} characters"));
        }
        if let Some(n) = self.list_size {
            out.push_str(&format!(", at most {n} elements"));
        }
        if self.mandatory && self.item_type != ItemType::Boolean && !self.item_type_is_number() {
            out.push_str(", not empty");
        }
        out
    }

    fn item_type_is_number(&self) -> bool {
        matches!(self.item_type, ItemType::Integer | ItemType::Float)
    }

    /// Checks `value` against the item's type and rules (not `readonly`,
    /// which is about changes).
    ///
    /// # Errors
    /// [`ValueError`] saying what is wrong; it names no password.
    pub fn check(&self, value: &Value) -> Result<(), ValueError> {
        match self.item_type {
            ItemType::Json => {
                let len = json_len(value);
                if len > MAX_VALUE_BYTES {
                    return Err(ValueError::TooLong {
                        limit: MAX_VALUE_BYTES,
                        len,
                        unit: "bytes",
                    });
                }
                if self.mandatory && value.is_null() {
                    return Err(ValueError::Blank);
                }
                Ok(())
            }
            ItemType::List(element) => {
                let Value::Array(list) = value else {
                    return Err(ValueError::WrongType {
                        expected: self.expected(),
                        found: describe(value),
                    });
                };
                let len = json_len(value);
                if len > MAX_VALUE_BYTES {
                    return Err(ValueError::TooLong {
                        limit: MAX_VALUE_BYTES,
                        len,
                        unit: "bytes",
                    });
                }
                if let Some(limit) = self.list_size {
                    if list.len() > limit {
                        return Err(ValueError::TooLong {
                            limit,
                            len: list.len(),
                            unit: "elements",
                        });
                    }
                }
                if self.mandatory && list.is_empty() {
                    return Err(ValueError::Blank);
                }
                for (index, v) in list.iter().enumerate() {
                    self.check_scalar(element, v, false)
                        .map_err(|error| ValueError::Element {
                            index,
                            error: Box::new(error),
                        })?;
                }
                Ok(())
            }
            _ => {
                let scalar = self.item_type.scalar().unwrap_or(Scalar::String);
                self.check_scalar(scalar, value, self.mandatory)
            }
        }
    }

    fn wrong_type(&self, scalar: Scalar, value: &Value) -> ValueError {
        let expected = match scalar {
            Scalar::Integer => "an integer",
            Scalar::Float => "a number",
            Scalar::String if self.item_type == ItemType::Password => "a password (text)",
            Scalar::String => "a string",
            Scalar::Boolean => "true or false",
            Scalar::Enumeration => "one of the options (text)",
        };
        ValueError::WrongType {
            expected: expected.to_string(),
            found: self.describe(value),
        }
    }

    /// One scalar: the item's value, or one element of a list item.
    fn check_scalar(
        &self,
        scalar: Scalar,
        value: &Value,
        mandatory: bool,
    ) -> Result<(), ValueError> {
        match scalar {
            Scalar::Integer => {
                let n = value
                    .as_i64()
                    .ok_or_else(|| self.wrong_type(scalar, value))?;
                self.check_number(Num::Int(n), value)
            }
            Scalar::Float => {
                let x = value
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| self.wrong_type(scalar, value))?;
                self.check_number(Num::Float(x), value)
            }
            Scalar::Boolean => match value {
                Value::Bool(_) => Ok(()),
                _ => Err(self.wrong_type(scalar, value)),
            },
            Scalar::String => {
                let Value::String(s) = value else {
                    return Err(self.wrong_type(scalar, value));
                };
                if s.len() > MAX_VALUE_BYTES {
                    return Err(ValueError::TooLong {
                        limit: MAX_VALUE_BYTES,
                        len: s.len(),
                        unit: "bytes",
                    });
                }
                let chars = s.chars().count();
                if let Some(limit) = self.length {
                    if chars > limit {
                        return Err(ValueError::TooLong {
                            limit,
                            len: chars,
                            unit: "characters",
                        });
                    }
                }
                if mandatory && s.is_empty() {
                    return Err(ValueError::Blank);
                }
                Ok(())
            }
            Scalar::Enumeration => {
                let Value::String(s) = value else {
                    return Err(self.wrong_type(scalar, value));
                };
                if mandatory && s.is_empty() {
                    return Err(ValueError::Blank);
                }
                if !self.options.iter().any(|o| o == s) {
                    return Err(ValueError::NotAnOption {
                        options: self.options.clone(),
                        found: describe(value),
                    });
                }
                Ok(())
            }
        }
    }

    fn check_number(&self, n: Num, value: &Value) -> Result<(), ValueError> {
        let found = describe(value);
        if let Some(minimum) = self.minimum {
            if less(n, minimum) {
                return Err(ValueError::BelowMinimum { minimum, found });
            }
        }
        if let Some(maximum) = self.maximum {
            if less(maximum, n) {
                return Err(ValueError::AboveMaximum { maximum, found });
            }
        }
        if let Some(step) = self.step {
            let base = self.minimum.unwrap_or(match step {
                Num::Int(_) => Num::Int(0),
                Num::Float(_) => Num::Float(0.0),
            });
            if !on_step(n, base, step) {
                return Err(ValueError::OffStep { step, base, found });
            }
        }
        Ok(())
    }

    /// Parses `text` (from `KEY=VALUE`) as a value of this item: numbers
    /// and booleans as written, strings, passwords and options as the text
    /// itself, lists and JSON values as JSON text. Checks nothing beyond the
    /// syntax; [`ConfigItem::check`] does.
    ///
    /// # Errors
    /// [`ValueError::WrongType`] when the text is not of the type.
    pub fn parse_text(&self, text: &str) -> Result<Value, ValueError> {
        let wrong = |expected: &str| ValueError::WrongType {
            expected: expected.to_string(),
            found: match self.item_type {
                ItemType::Password => MASK.to_string(),
                _ => describe(&Value::String(text.to_string())),
            },
        };
        match self.item_type {
            ItemType::Integer => text
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| wrong("an integer such as 42")),
            ItemType::Float => text
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| wrong("a number such as 0.5")),
            ItemType::Boolean => match text {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(wrong("true or false")),
            },
            ItemType::String | ItemType::Password | ItemType::Enumeration => {
                Ok(Value::String(text.to_string()))
            }
            ItemType::Json | ItemType::List(_) => {
                if text.len() > MAX_VALUE_BYTES {
                    return Err(ValueError::TooLong {
                        limit: MAX_VALUE_BYTES,
                        len: text.len(),
                        unit: "bytes",
                    });
                }
                let what = match self.item_type {
                    ItemType::List(_) => "a JSON list such as [1, 2]",
                    _ => "JSON text such as {\"a\": 1} (a string in quotes: \"\\\"text\\\"\")",
                };
                serde_json::from_str(text).map_err(|_| wrong(what))
            }
        }
    }
}

fn less(a: Num, b: Num) -> bool {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x < y,
        _ => a.as_f64() < b.as_f64(),
    }
}

fn on_step(n: Num, base: Num, step: Num) -> bool {
    match (n, base, step) {
        (Num::Int(v), Num::Int(b), Num::Int(s)) if s > 0 => {
            (i128::from(v) - i128::from(b)).rem_euclid(i128::from(s)) == 0
        }
        _ => {
            let k = (n.as_f64() - base.as_f64()) / step.as_f64();
            k.is_finite() && (k - k.round()).abs() <= 1e-9 * k.abs().max(1.0)
        }
    }
}

// ---------------------------------------------------------------------------
// Parsing a manifest's `config`
// ---------------------------------------------------------------------------

/// The properties an item may have.
const PROPERTIES: &[&str] = &[
    "type",
    "default",
    "description",
    "displayName",
    "minimum",
    "maximum",
    "step",
    "length",
    "listSize",
    "options",
    "items",
    "mandatory",
    "readonly",
    "order",
    "group",
    "deprecated",
];

const TYPES: &str = "integer, float, string, password, boolean, enumeration, JSON, list";

/// Parses a manifest's `config` object (`value`) into a schema, appending
/// every problem to `problems` (subject `subject`, fields `config.ITEM` and
/// `config.ITEM.PROPERTY`). An item with an error is left out of the
/// schema; the manifest as a whole is refused anyway.
pub fn parse_schema(subject: &str, value: &Value, problems: &mut Problems) -> ConfigSchema {
    let mut schema = ConfigSchema::default();
    let Value::Object(items) = value else {
        problems.push(
            Problem::new(
                ProblemCode::ManifestWrongType,
                subject,
                format!(
                    "\"config\" must be an object of configuration items, found {}",
                    describe(value)
                ),
                "write \"config\": {\"item\": {\"type\": \"integer\", \"default\": 5, \"description\": \"...\"}} or remove it",
            )
            .with_field("config"),
        );
        return schema;
    };
    if items.len() > MAX_ITEMS {
        problems.push(
            Problem::new(
                ProblemCode::ConfigTooManyItems,
                subject,
                format!(
                    "\"config\" declares {} items; a plugin may have at most {MAX_ITEMS}",
                    items.len()
                ),
                "group related settings into one item of type JSON or list",
            )
            .with_field("config"),
        );
        return schema;
    }
    for (name, item) in items {
        let mut parser = ItemParser {
            subject,
            name,
            problems: &mut *problems,
            errors: false,
        };
        if let Some(item) = parser.item(item) {
            schema.items.insert(name.clone(), item);
        }
    }
    let total = json_len(&schema.defaults().to_json());
    if total > MAX_TOTAL_BYTES {
        problems.push(
            Problem::new(
                ProblemCode::ConfigTooManyItems,
                subject,
                format!("the defaults of \"config\" take {total} bytes; a plugin's values may take at most {MAX_TOTAL_BYTES}"),
                "keep large data in a file of the plugin folder, not in configuration items",
            )
            .with_field("config"),
        );
    }
    schema
}

/// Why an item name is refused, or `None`.
pub fn item_name_problem(name: &str) -> Option<String> {
    let rule = "item names are 1 to 64 characters: letters, digits, '_', '-' and '.', starting with a letter or '_'";
    let mut chars = name.chars();
    match chars.next() {
        None => Some(format!("the item name is empty; {rule}")),
        Some(_) if name.chars().count() > MAX_ITEM_NAME_LEN => Some(format!(
            "the item name \"{}...\" is longer than {MAX_ITEM_NAME_LEN} characters; {rule}",
            name.chars().take(20).collect::<String>()
        )),
        Some(first) if !(first.is_ascii_alphabetic() || first == '_') => Some(format!(
            "the item name {name:?} starts with {first:?}; {rule}"
        )),
        Some(_) => name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .map(|c| format!("the item name {name:?} contains {c:?}; {rule}")),
    }
}

struct ItemParser<'a> {
    subject: &'a str,
    name: &'a str,
    problems: &'a mut Problems,
    errors: bool,
}

impl ItemParser<'_> {
    fn report(&mut self, code: ProblemCode, property: Option<&str>, message: String, hint: String) {
        let field = match property {
            Some(p) => format!("config.{}.{p}", self.name),
            None => format!("config.{}", self.name),
        };
        if code.severity() == crate::problem::Severity::Error {
            self.errors = true;
        }
        let message = format!("config item \"{}\": {message}", self.name);
        self.problems
            .push(Problem::new(code, self.subject, message, hint).with_field(field));
    }

    fn bad(&mut self, property: &str, message: String, hint: String) {
        self.report(
            ProblemCode::ConfigBadProperty,
            Some(property),
            message,
            hint,
        );
    }

    fn item(&mut self, value: &Value) -> Option<ConfigItem> {
        if let Some(reason) = item_name_problem(self.name) {
            self.report(
                ProblemCode::ConfigBadItemName,
                None,
                reason,
                "rename the item (plugins and `config set` refer to it by this name)".into(),
            );
        }
        let Value::Object(obj) = value else {
            let found = describe(value);
            self.report(
                ProblemCode::ConfigItemNotObject,
                None,
                format!("an item must be an object of properties, found {found}"),
                format!(
                    "write \"{}\": {{\"type\": \"string\", \"default\": \"...\", \"description\": \"...\"}}",
                    self.name
                ),
            );
            return None;
        };
        self.unknown_properties(obj);
        let item_type = self.item_type(obj)?;
        let scalar = item_type.scalar();
        let numbers = scalar.is_some_and(Scalar::is_number);
        let strings = matches!(
            item_type,
            ItemType::String | ItemType::Password | ItemType::List(Scalar::String)
        );
        let enumeration = scalar == Some(Scalar::Enumeration);
        let list = matches!(item_type, ItemType::List(_));
        for (property, applies) in [
            ("minimum", numbers),
            ("maximum", numbers),
            ("step", numbers),
            ("length", strings),
            ("listSize", list),
            ("options", enumeration),
            ("items", list),
        ] {
            if !applies && obj.get(property).is_some_and(|v| !v.is_null()) {
                self.report(
                    ProblemCode::ConfigPropertyNotApplicable,
                    Some(property),
                    format!("\"{property}\" does not apply to an item of type {item_type}, so it would not be enforced"),
                    format!("remove \"{property}\", or change the item's \"type\""),
                );
            }
        }
        let integer = scalar == Some(Scalar::Integer);
        let (minimum, maximum, step) = if numbers {
            (
                self.number(obj, "minimum", integer),
                self.number(obj, "maximum", integer),
                self.number(obj, "step", integer),
            )
        } else {
            (None, None, None)
        };
        self.range(minimum, maximum, step);
        let options = if enumeration {
            self.options(obj)
        } else {
            Vec::new()
        };
        let mut item = ConfigItem {
            name: self.name.to_string(),
            item_type,
            default: Value::Null,
            description: self.text(obj, "description"),
            display_name: self.text(obj, "displayName"),
            minimum,
            maximum,
            step,
            length: if strings {
                self.count(obj, "length")
            } else {
                None
            },
            list_size: if list {
                self.count(obj, "listSize")
            } else {
                None
            },
            options,
            mandatory: self.flag(obj, "mandatory"),
            readonly: self.flag(obj, "readonly"),
            order: self.order(obj),
            group: self.text(obj, "group"),
            deprecated: self.flag(obj, "deprecated"),
        };
        if item.description.is_none() {
            self.report(
                ProblemCode::ConfigNoDescription,
                Some("description"),
                "has no \"description\"; operators see only its name".into(),
                "add \"description\": \"what it does, with its unit\"".into(),
            );
        }
        if self.errors {
            // The item's rules are wrong already: checking the default
            // against them would only add a misleading second problem.
            if !obj.contains_key("default") {
                self.default(obj, &item);
            }
            return None;
        }
        item.default = self.default(obj, &item)?;
        (!self.errors).then_some(item)
    }

    fn unknown_properties(&mut self, obj: &Map<String, Value>) {
        for key in obj.keys() {
            if PROPERTIES.contains(&key.as_str()) {
                continue;
            }
            let (message, hint) = match key.as_str() {
                "rule" | "validity" => (
                    format!("\"{key}\" is an expression; xplugin never evaluates expressions and ignores it"),
                    "express the constraint with \"minimum\", \"maximum\", \"step\", \"options\" or \"length\", or check it in the plugin".to_string(),
                ),
                "value" => (
                    "\"value\" is ignored: the value is the user's, stored by the host; a manifest gives the \"default\"".to_string(),
                    "put the value into \"default\"".to_string(),
                ),
                _ => {
                    let near = PROPERTIES
                        .iter()
                        .find(|p| p.eq_ignore_ascii_case(key))
                        .map(|p| format!("did you mean \"{p}\"? Property names are case-sensitive"));
                    (
                        format!("unknown property \"{key}\" is ignored"),
                        near.unwrap_or_else(|| {
                            format!("remove it; the supported properties are {}", PROPERTIES.join(", "))
                        }),
                    )
                }
            };
            self.report(ProblemCode::ConfigUnknownProperty, Some(key), message, hint);
        }
    }

    fn item_type(&mut self, obj: &Map<String, Value>) -> Option<ItemType> {
        let name = match obj.get("type") {
            None | Some(Value::Null) => {
                self.report(
                    ProblemCode::ConfigMissingProperty,
                    Some("type"),
                    "has no \"type\"".into(),
                    format!("add \"type\": one of {TYPES}"),
                );
                return None;
            }
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                let found = describe(other);
                self.bad(
                    "type",
                    format!("\"type\" must be a string, found {found}"),
                    format!("write \"type\": one of {TYPES}"),
                );
                return None;
            }
        };
        let item_type = match name {
            "integer" => ItemType::Integer,
            "float" => ItemType::Float,
            "string" => ItemType::String,
            "password" => ItemType::Password,
            "boolean" => ItemType::Boolean,
            "enumeration" => ItemType::Enumeration,
            "JSON" | "json" => ItemType::Json,
            "list" => ItemType::List(self.element(obj)?),
            other => {
                self.unknown_type("type", other);
                return None;
            }
        };
        Some(item_type)
    }

    fn unknown_type(&mut self, property: &str, name: &str) {
        let lower = name.to_ascii_lowercase();
        let hint = if let Some(known) = TYPES.split(", ").find(|t| t.eq_ignore_ascii_case(name)) {
            format!("write \"{property}\": \"{known}\" (type names are case-sensitive)")
        } else if [
            "url",
            "ipv4",
            "ipv6",
            "x509 certificate",
            "script",
            "code",
            "northtask",
        ]
        .contains(&lower.as_str())
        {
            format!("xplugin has no type \"{name}\": use \"string\" (with \"length\") and check its form in the plugin")
        } else if ["double", "number", "real"].contains(&lower.as_str()) {
            format!("write \"{property}\": \"float\"")
        } else if ["int", "long"].contains(&lower.as_str()) {
            format!("write \"{property}\": \"integer\"")
        } else {
            format!("use one of {TYPES}")
        };
        self.report(
            ProblemCode::ConfigUnknownType,
            Some(property),
            format!(
                "\"{property}\" is \"{name}\", which is not a configuration type xplugin knows"
            ),
            hint,
        );
    }

    fn element(&mut self, obj: &Map<String, Value>) -> Option<Scalar> {
        match obj.get("items") {
            None | Some(Value::Null) => {
                self.report(
                    ProblemCode::ConfigMissingProperty,
                    Some("items"),
                    "is a list without \"items\" (the type of its elements)".into(),
                    "add \"items\": \"integer\", \"float\", \"string\", \"boolean\" or \"enumeration\"".into(),
                );
                None
            }
            Some(Value::String(s)) => match Scalar::parse(s) {
                Some(e) => Some(e),
                None => {
                    self.unknown_type("items", s);
                    None
                }
            },
            Some(other) => {
                let found = describe(other);
                self.bad(
                    "items",
                    format!("\"items\" must name the element type, found {found}"),
                    "write \"items\": \"integer\", \"float\", \"string\", \"boolean\" or \"enumeration\"".into(),
                );
                None
            }
        }
    }

    /// A number property; Fledge's quoted spelling (`"5"`) is accepted.
    fn number(&mut self, obj: &Map<String, Value>, property: &str, integer: bool) -> Option<Num> {
        let value = obj.get(property)?;
        let parsed = match (value, integer) {
            (Value::Null, _) => return None,
            (Value::Number(n), true) => n.as_i64().map(Num::Int),
            (Value::Number(n), false) => n.as_f64().filter(|x| x.is_finite()).map(Num::Float),
            (Value::String(s), true) => s.trim().parse::<i64>().ok().map(Num::Int),
            (Value::String(s), false) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(Num::Float),
            _ => None,
        };
        if parsed.is_none() {
            let found = describe(value);
            let what = if integer {
                "an integer"
            } else {
                "a finite number"
            };
            self.bad(
                property,
                format!("\"{property}\" must be {what}, found {found}"),
                format!(
                    "write \"{property}\": {}",
                    if integer { "10" } else { "0.5" }
                ),
            );
        }
        parsed
    }

    fn range(&mut self, minimum: Option<Num>, maximum: Option<Num>, step: Option<Num>) {
        if let (Some(lo), Some(hi)) = (minimum, maximum) {
            if less(hi, lo) {
                self.report(
                    ProblemCode::ConfigBadRange,
                    Some("minimum"),
                    format!("\"minimum\" {lo} is above \"maximum\" {hi}: no value fits"),
                    "swap them, or fix one".into(),
                );
            }
        }
        if let Some(s) = step {
            if s.as_f64() <= 0.0 {
                self.report(
                    ProblemCode::ConfigBadRange,
                    Some("step"),
                    format!("\"step\" must be positive, found {s}"),
                    "give a positive step, or remove \"step\"".into(),
                );
            }
        }
    }

    fn options(&mut self, obj: &Map<String, Value>) -> Vec<String> {
        let example = "write \"options\": [\"auto\", \"manual\"]";
        let list = match obj.get("options") {
            None | Some(Value::Null) => {
                self.report(
                    ProblemCode::ConfigMissingProperty,
                    Some("options"),
                    "is an enumeration without \"options\"".into(),
                    example.into(),
                );
                return Vec::new();
            }
            Some(Value::Array(list)) => list,
            Some(other) => {
                let found = describe(other);
                self.bad(
                    "options",
                    format!("\"options\" must be a list of strings, found {found}"),
                    example.into(),
                );
                return Vec::new();
            }
        };
        if list.is_empty() || list.len() > MAX_OPTIONS {
            self.bad(
                "options",
                format!(
                    "\"options\" must hold 1 to {MAX_OPTIONS} strings, found {}",
                    list.len()
                ),
                example.into(),
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, option) in list.iter().enumerate() {
            match option {
                Value::String(s) if s.len() <= MAX_VALUE_BYTES => {
                    if !seen.insert(s.as_str()) {
                        self.bad(
                            "options",
                            format!("option {s:?} is listed twice"),
                            "list each option once".into(),
                        );
                    }
                    out.push(s.clone());
                }
                other => {
                    let found = describe(other);
                    self.bad(
                        "options",
                        format!("option {i} must be a string (of at most {MAX_VALUE_BYTES} bytes), found {found}"),
                        example.into(),
                    );
                }
            }
        }
        out
    }

    fn text(&mut self, obj: &Map<String, Value>, property: &str) -> Option<String> {
        match obj.get(property)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => {
                let found = describe(other);
                self.bad(
                    property,
                    format!("\"{property}\" must be a string, found {found}"),
                    format!("write \"{property}\": \"...\" or remove it"),
                );
                None
            }
        }
    }

    /// A boolean property; Fledge's `"true"`/`"false"` are accepted.
    fn flag(&mut self, obj: &Map<String, Value>, property: &str) -> bool {
        match obj.get(property) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" => true,
            Some(Value::String(s)) if s == "false" => false,
            Some(other) => {
                let found = describe(other);
                self.bad(
                    property,
                    format!("\"{property}\" must be true or false, found {found}"),
                    format!("write \"{property}\": true or remove it"),
                );
                false
            }
        }
    }

    /// A non-negative count (`length`, `listSize`).
    fn count(&mut self, obj: &Map<String, Value>, property: &str) -> Option<usize> {
        let value = obj.get(property)?;
        let parsed = match value {
            Value::Null => return None,
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .and_then(|n| usize::try_from(n).ok());
        if parsed.is_none() {
            let found = describe(value);
            self.bad(
                property,
                format!("\"{property}\" must be a whole number of 0 or more, found {found}"),
                format!("write \"{property}\": 32"),
            );
        }
        parsed
    }

    fn order(&mut self, obj: &Map<String, Value>) -> Option<i64> {
        let value = obj.get("order")?;
        let parsed = match value {
            Value::Null => return None,
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            let found = describe(value);
            self.bad(
                "order",
                format!("\"order\" must be an integer, found {found}"),
                "write \"order\": 1".into(),
            );
        }
        parsed
    }

    /// The default, converted from Fledge's quoted spelling where the type
    /// is a number or a boolean, and checked against the item.
    fn default(&mut self, obj: &Map<String, Value>, item: &ConfigItem) -> Option<Value> {
        let Some(raw) = obj.get("default") else {
            self.report(
                ProblemCode::ConfigMissingProperty,
                Some("default"),
                "has no \"default\"; every item needs the value it has on first install".into(),
                format!("add \"default\": {}", item.expected()),
            );
            return None;
        };
        let value = match (item.item_type, raw) {
            (ItemType::Integer | ItemType::Float | ItemType::Boolean, Value::String(s)) => {
                item.parse_text(s.trim()).unwrap_or_else(|_| raw.clone())
            }
            _ => raw.clone(),
        };
        match item.check(&value) {
            Ok(()) => Some(value),
            Err(e) => {
                self.report(
                    ProblemCode::ConfigBadDefault,
                    Some("default"),
                    format!("the default does not fit the item: {e}"),
                    format!("give a default that is {}", item.expected()),
                );
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Changing values
// ---------------------------------------------------------------------------

/// One `KEY=VALUE` of a change.
#[derive(Clone, PartialEq)]
pub struct Assignment {
    /// The item.
    pub item: String,
    /// The value given.
    pub value: AssignedValue,
}

/// Never shows the value (it may be a password).
impl fmt::Debug for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assignment")
            .field("item", &self.item)
            .finish_non_exhaustive()
    }
}

/// A value as given.
#[derive(Clone, PartialEq)]
pub enum AssignedValue {
    /// Text from a command line, parsed per the item's type
    /// ([`ConfigItem::parse_text`]).
    Text(String),
    /// A typed value (from a program).
    Json(Value),
}

/// Parses command-line `KEY=VALUE` arguments (split at the first `=`).
///
/// # Errors
/// `config.bad_assignment` problems (subject `subject`) for an argument
/// without `=`, an empty key, a key given twice, or no argument at all;
/// every one is reported.
pub fn parse_assignments(subject: &str, args: &[String]) -> Result<Vec<Assignment>, Problems> {
    let mut problems = Problems::default();
    let mut out: Vec<Assignment> = Vec::new();
    if args.is_empty() {
        problems.push(Problem::new(
            ProblemCode::ConfigBadAssignment,
            subject,
            "no KEY=VALUE given: nothing to set",
            "give one or more KEY=VALUE, e.g. `config set NAME speed=0.5`",
        ));
    }
    for (position, arg) in args.iter().enumerate() {
        let Some((key, value)) = arg.split_once('=') else {
            // The argument itself is not shown: it may be a password typed
            // without its key.
            problems.push(Problem::new(
                ProblemCode::ConfigBadAssignment,
                subject,
                format!(
                    "change {} has no '=' (its text is not shown, it may be a secret)",
                    position + 1
                ),
                "write each change as KEY=VALUE, e.g. speed=0.5",
            ));
            continue;
        };
        if key.is_empty() {
            problems.push(Problem::new(
                ProblemCode::ConfigBadAssignment,
                subject,
                "an argument has an empty KEY before '='",
                "write each change as KEY=VALUE, e.g. speed=0.5",
            ));
            continue;
        }
        if out.iter().any(|a| a.item == key) {
            problems.push(
                Problem::new(
                    ProblemCode::ConfigBadAssignment,
                    subject,
                    format!("item \"{key}\" is given twice"),
                    "give each item once per change",
                )
                .with_field(format!("config.{key}")),
            );
            continue;
        }
        out.push(Assignment {
            item: key.to_string(),
            value: AssignedValue::Text(value.to_string()),
        });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A change to one item, for reports (values masked for passwords).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueChange {
    /// The item.
    pub item: String,
    /// Its value before (as shown).
    pub from: Value,
    /// Its value after (as shown).
    pub to: Value,
}

/// A validated change: the full set of new values and what changed.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedChange {
    /// Every item's value after the change.
    pub values: ConfigValues,
    /// The items whose value changed (items set to their current value are
    /// not listed).
    pub changes: Vec<ValueChange>,
}

impl ConfigSchema {
    /// True when the plugin declares no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every item at its default: the values of a first install.
    pub fn defaults(&self) -> ConfigValues {
        ConfigValues(
            self.items
                .iter()
                .map(|(k, i)| (k.clone(), i.default.clone()))
                .collect(),
        )
    }

    /// The items in the order user interfaces show them: by `order` (items
    /// without one last), then by name.
    pub fn ordered(&self) -> Vec<&ConfigItem> {
        let mut items: Vec<&ConfigItem> = self.items.values().collect();
        items.sort_by(|a, b| {
            (a.order.is_none(), a.order, &a.name).cmp(&(b.order.is_none(), b.order, &b.name))
        });
        items
    }

    /// The values a plugin runs with from `stored` values: items missing
    /// from `stored` get their default, items the schema does not have are
    /// dropped, read-only items take their default.
    ///
    /// # Errors
    /// Every stored value that does not fit its item, as
    /// `config.values_unreadable` problems about `subject` (the values are
    /// not used: a damaged file must not run a robot with a guessed value).
    pub fn resolve(&self, subject: &str, stored: &ConfigValues) -> Result<ConfigValues, Problems> {
        let mut values = ConfigValues::default();
        let mut problems = Problems::default();
        for (name, item) in &self.items {
            let value = match stored.get(name) {
                Some(v) if !item.readonly => v.clone(),
                _ => item.default.clone(),
            };
            if let Err(e) = item.check(&value) {
                problems.push(stored_value_problem(subject, item, &e));
            }
            values.0.insert(name.clone(), value);
        }
        if problems.is_empty() {
            Ok(values)
        } else {
            Err(problems)
        }
    }

    /// Validates a change of several items at once against this schema:
    /// every item exists, is not read-only, and its new value parses and
    /// fits (type, range, step, options, length, mandatory); and every
    /// stored value the change keeps still fits. All problems are reported
    /// together, about `subject`; nothing applies unless all is well.
    ///
    /// `current` is what is stored (missing items count as their default,
    /// unknown ones are dropped). The result is the full set of new values,
    /// ready to be offered to the plugin and stored.
    ///
    /// # Errors
    /// The problems, each with its code (`config.unknown_item`,
    /// `config.readonly`, `config.wrong_type`, `config.out_of_range`,
    /// `config.off_step`, `config.not_an_option`, `config.too_long`,
    /// `config.mandatory_blank`, `config.values_unreadable`), field
    /// `config.ITEM`.
    pub fn prepare_change(
        &self,
        subject: &str,
        current: &ConfigValues,
        assignments: &[Assignment],
    ) -> Result<PreparedChange, Problems> {
        let mut problems = Problems::default();
        let mut values = ConfigValues::default();
        for (name, item) in &self.items {
            let v = match current.get(name) {
                Some(v) if !item.readonly => v.clone(),
                _ => item.default.clone(),
            };
            values.0.insert(name.clone(), v);
        }
        let before = values.clone();
        let mut assigned = BTreeSet::new();
        for a in assignments {
            let field = format!("config.{}", a.item);
            let Some(item) = self.items.get(&a.item) else {
                let known: Vec<&str> = self.items.keys().map(String::as_str).collect();
                let hint = if known.is_empty() {
                    "this plugin has no configuration items".to_string()
                } else {
                    format!("the plugin's items are {}", known.join(", "))
                };
                problems.push(
                    Problem::new(
                        ProblemCode::ConfigUnknownItem,
                        subject,
                        format!("the plugin has no configuration item \"{}\"", a.item),
                        hint,
                    )
                    .with_field(field),
                );
                continue;
            };
            if !assigned.insert(a.item.as_str()) {
                problems.push(
                    Problem::new(
                        ProblemCode::ConfigBadAssignment,
                        subject,
                        format!("item \"{}\" is given twice", a.item),
                        "give each item once per change",
                    )
                    .with_field(field),
                );
                continue;
            }
            if item.readonly {
                problems.push(
                    Problem::new(
                        ProblemCode::ConfigReadonly,
                        subject,
                        format!("config item \"{}\" is read-only", a.item),
                        "leave it out; only a new version of the plugin changes it",
                    )
                    .with_field(field),
                );
                continue;
            }
            let parsed = match &a.value {
                AssignedValue::Text(t) => item.parse_text(t),
                AssignedValue::Json(v) => Ok(v.clone()),
            };
            match parsed.and_then(|v| item.check(&v).map(|()| v)) {
                Ok(v) => {
                    values.0.insert(a.item.clone(), v);
                }
                Err(e) => problems.push(
                    Problem::new(
                        e.code(),
                        subject,
                        format!("config item \"{}\": {e}", a.item),
                        format!("give {}", item.expected()),
                    )
                    .with_field(field),
                ),
            }
        }
        for (name, item) in &self.items {
            if assigned.contains(name.as_str()) {
                continue;
            }
            if let Some(v) = values.get(name) {
                if let Err(e) = item.check(v) {
                    problems.push(stored_value_problem(subject, item, &e));
                }
            }
        }
        let total = json_len(&values.to_json());
        if total > MAX_TOTAL_BYTES {
            problems.push(Problem::new(
                ProblemCode::ConfigTooLong,
                subject,
                format!("the values would take {total} bytes; a plugin's values may take at most {MAX_TOTAL_BYTES}"),
                "give shorter values",
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let changes = self
            .items
            .iter()
            .filter_map(|(name, item)| {
                let (from, to) = (before.get(name)?, values.get(name)?);
                (from != to).then(|| ValueChange {
                    item: name.clone(),
                    from: item.shown(from),
                    to: item.shown(to),
                })
            })
            .collect();
        Ok(PreparedChange { values, changes })
    }
}

fn stored_value_problem(subject: &str, item: &ConfigItem, e: &ValueError) -> Problem {
    Problem::new(
        ProblemCode::ConfigValuesUnreadable,
        subject,
        format!(
            "the stored value of config item \"{}\" does not fit the item: {e}",
            item.name
        ),
        format!(
            "set it with `config set` to {} (in the same change as any other item)",
            item.expected()
        ),
    )
    .with_field(format!("config.{}", item.name))
}

// ---------------------------------------------------------------------------
// Carrying values across versions
// ---------------------------------------------------------------------------

/// What happened to one item's value when a plugin's version changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationAction {
    /// The value was kept (same item, same type, still valid).
    Kept,
    /// The value no longer fits and was reset to the new default.
    Reset,
    /// The item no longer exists; its value was dropped.
    Dropped,
    /// A new item (or a first install): it got its default.
    Added,
}

impl MigrationAction {
    /// `kept`, `reset`, `dropped`, `added`.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationAction::Kept => "kept",
            MigrationAction::Reset => "reset",
            MigrationAction::Dropped => "dropped",
            MigrationAction::Added => "added",
        }
    }
}

/// One item's line in an import or install report (values masked for
/// passwords).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationChange {
    /// The item.
    pub item: String,
    /// What happened.
    pub action: MigrationAction,
    /// The value it has now (`None` when dropped).
    pub value: Option<Value>,
    /// The value it had before (`None` when added).
    pub previous: Option<Value>,
    /// Why it was reset, or a note (a kept value whose default changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl fmt::Display for MigrationChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| v.as_ref().map(describe).unwrap_or_default();
        match self.action {
            MigrationAction::Kept => write!(f, "{}: kept {}", self.item, show(&self.value))?,
            MigrationAction::Added => write!(
                f,
                "{}: added with its default {}",
                self.item,
                show(&self.value)
            )?,
            MigrationAction::Dropped => write!(
                f,
                "{}: dropped (the item no longer exists; it was {})",
                self.item,
                show(&self.previous)
            )?,
            MigrationAction::Reset => write!(
                f,
                "{}: reset to the default {} (it was {})",
                self.item,
                show(&self.value),
                show(&self.previous)
            )?,
        }
        if let Some(r) = &self.reason {
            write!(f, ": {r}")?;
        }
        Ok(())
    }
}

/// The values for a new version of a plugin and every item's fate.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// The values the new version runs with.
    pub values: ConfigValues,
    /// One line per item of either version, new items first by name, then
    /// dropped ones.
    pub changes: Vec<MigrationChange>,
}

/// Carries a plugin's values from its installed version (`old_schema`, the
/// values it ran with, `old_values`) to a new version's items
/// (`new_schema`):
///
/// * first install (`old_schema` is `None`): every item gets its default
///   (`added`);
/// * an item of both versions with the same type keeps its value if the
///   value fits the new item (`kept`), else gets the new default (`reset`,
///   with the reason); a changed type resets it;
/// * a read-only item always takes the new default;
/// * a new item gets its default (`added`); an item the new version does
///   not have is `dropped`;
/// * `old_values` of `None` with an old schema means the stored values could
///   not be read: every item is reset to its default, saying so.
///
/// An item missing from `old_values` counts as having had its old default.
pub fn migrate(
    old_schema: Option<&ConfigSchema>,
    old_values: Option<&ConfigValues>,
    new_schema: &ConfigSchema,
) -> Migration {
    let mut values = ConfigValues::default();
    let mut changes = Vec::new();
    for (name, item) in &new_schema.items {
        let default = item.default.clone();
        let mut change = MigrationChange {
            item: name.clone(),
            action: MigrationAction::Added,
            value: Some(item.shown(&default)),
            previous: None,
            reason: None,
        };
        let mut value = default.clone();
        let old_item = old_schema.and_then(|s| s.items.get(name));
        match (old_schema, old_item, old_values) {
            (None, _, _) | (Some(_), None, _) => {}
            (Some(_), Some(_), None) => {
                change.action = MigrationAction::Reset;
                change.reason = Some("the stored values could not be read".into());
            }
            (Some(_), Some(old), Some(stored)) => {
                let previous = stored
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| old.default.clone());
                change.previous = Some(old.shown(&previous));
                let (action, reason) = if old.item_type != item.item_type {
                    (
                        MigrationAction::Reset,
                        Some(format!(
                            "its type changed from {} to {}",
                            old.item_type, item.item_type
                        )),
                    )
                } else if item.readonly {
                    if previous == default {
                        (MigrationAction::Kept, None)
                    } else {
                        (
                            MigrationAction::Reset,
                            Some(
                                "the item is read-only: it takes the new version's default".into(),
                            ),
                        )
                    }
                } else {
                    match item.check(&previous) {
                        Ok(()) => {
                            let note = (previous != default && old.default != default).then(|| {
                                format!(
                                    "the new version's default is {}; `config set` takes it",
                                    item.describe(&default)
                                )
                            });
                            value = previous.clone();
                            (MigrationAction::Kept, note)
                        }
                        Err(e) => (
                            MigrationAction::Reset,
                            Some(format!("it no longer fits the item: {e}")),
                        ),
                    }
                };
                change.action = action;
                change.reason = reason;
                change.value = Some(item.shown(&value));
            }
        }
        values.0.insert(name.clone(), value);
        changes.push(change);
    }
    if let Some(old) = old_schema {
        for (name, item) in &old.items {
            if new_schema.items.contains_key(name) {
                continue;
            }
            let previous = old_values
                .and_then(|v| v.get(name).cloned())
                .unwrap_or_else(|| item.default.clone());
            changes.push(MigrationChange {
                item: name.clone(),
                action: MigrationAction::Dropped,
                value: None,
                previous: Some(item.shown(&previous)),
                reason: None,
            });
        }
    }
    Migration { values, changes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUBJECT: &str = "controller plugin \"demo\"";

    fn parse(config: Value) -> (ConfigSchema, Problems) {
        let mut problems = Problems::default();
        let schema = parse_schema(SUBJECT, &config, &mut problems);
        (schema, problems)
    }

    fn ok(config: Value) -> ConfigSchema {
        let (schema, problems) = parse(config);
        assert!(!problems.has_errors(), "{problems}");
        schema
    }

    /// The (code, field) pairs of the errors and warnings.
    fn codes(problems: &Problems) -> Vec<(ProblemCode, String)> {
        problems
            .0
            .iter()
            .map(|p| (p.code, p.field.clone().unwrap_or_default()))
            .collect()
    }

    fn refused(config: Value, code: ProblemCode, field: &str) -> Problems {
        let (schema, problems) = parse(config);
        assert!(
            codes(&problems).contains(&(code, field.to_string())),
            "expected {code} on {field}:\n{problems}"
        );
        if code.severity() == crate::problem::Severity::Error {
            let item = field.split('.').nth(1).unwrap_or_default();
            assert!(
                !schema.items.contains_key(item),
                "{item} kept despite {code}"
            );
        }
        for p in &problems.0 {
            assert_eq!(p.subject, SUBJECT);
            assert!(!p.hint.is_empty(), "{p}");
        }
        problems
    }

    fn demo() -> ConfigSchema {
        ok(json!({
            "speed": {"type": "float", "default": 0.5, "minimum": 0.0, "maximum": 1.0,
                      "step": 0.05, "description": "speed factor"},
            "count": {"type": "integer", "default": 3, "minimum": 1, "maximum": 9,
                      "step": 2, "description": "retries"},
            "mode": {"type": "enumeration", "options": ["auto", "manual"], "default": "auto",
                     "description": "mode"},
            "label": {"type": "string", "default": "arm", "length": 8, "mandatory": true,
                      "description": "name shown"},
            "secret": {"type": "password", "default": "hunter2", "length": 16,
                       "description": "controller password"},
            "on": {"type": "boolean", "default": true, "description": "enabled"},
            "extra": {"type": "JSON", "default": {"a": 1}, "description": "anything"},
            "joints": {"type": "list", "items": "integer", "default": [1, 2], "minimum": 1,
                       "maximum": 7, "listSize": 3, "description": "joints used"},
            "serial": {"type": "string", "default": "SN-1", "readonly": true,
                       "description": "factory serial"}
        }))
    }

    fn set(schema: &ConfigSchema, args: &[&str]) -> Result<PreparedChange, Problems> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let assignments = parse_assignments(SUBJECT, &args)?;
        schema.prepare_change(SUBJECT, &schema.defaults(), &assignments)
    }

    fn set_refused(schema: &ConfigSchema, args: &[&str], code: ProblemCode, field: &str) -> String {
        let problems = set(schema, args).expect_err("accepted");
        assert!(
            codes(&problems).contains(&(code, field.to_string())),
            "expected {code} on {field}:\n{problems}"
        );
        problems.to_string()
    }

    #[test]
    fn every_type_parses_with_its_properties() {
        let s = demo();
        assert_eq!(s.items.len(), 9);
        assert_eq!(s.items["speed"].item_type, ItemType::Float);
        assert_eq!(s.items["speed"].step, Some(Num::Float(0.05)));
        assert_eq!(s.items["count"].minimum, Some(Num::Int(1)));
        assert_eq!(s.items["joints"].item_type, ItemType::List(Scalar::Integer));
        assert_eq!(s.items["joints"].list_size, Some(3));
        assert_eq!(s.items["mode"].options, ["auto", "manual"]);
        assert!(s.items["label"].mandatory);
        assert!(s.items["serial"].readonly);
        assert_eq!(
            s.defaults().to_json(),
            json!({"speed": 0.5, "count": 3, "mode": "auto", "label": "arm", "secret": "hunter2",
                   "on": true, "extra": {"a": 1}, "joints": [1, 2], "serial": "SN-1"})
        );
        let (_, p) = parse(
            json!({"x": {"type": "json", "default": null, "description": "d",
            "displayName": "X", "group": "g", "order": 2, "deprecated": true}}),
        );
        assert!(p.is_empty(), "{p}");
    }

    #[test]
    fn fledge_quoted_numbers_and_flags_are_converted() {
        let s = ok(json!({
            "retries": {"type": "integer", "default": "5", "minimum": "1", "maximum": "10",
                        "order": "2", "mandatory": "true", "readonly": "false", "description": "r"},
            "gain": {"type": "float", "default": "1.0", "minimum": "0.0", "description": "g"},
            "on": {"type": "boolean", "default": "false", "description": "o"},
            "text": {"type": "JSON", "default": "{\"a\": 1}", "description": "t"}
        }));
        assert_eq!(s.items["retries"].default, json!(5));
        assert_eq!(s.items["retries"].maximum, Some(Num::Int(10)));
        assert_eq!(s.items["retries"].order, Some(2));
        assert!(s.items["retries"].mandatory);
        assert_eq!(s.items["gain"].default, json!(1.0));
        assert_eq!(s.items["on"].default, json!(false));
        // A JSON item's default is taken as written.
        assert_eq!(s.items["text"].default, json!("{\"a\": 1}"));
    }

    #[test]
    fn config_must_be_an_object_of_items() {
        refused(json!([]), ProblemCode::ManifestWrongType, "config");
        refused(
            json!({"a": 5}),
            ProblemCode::ConfigItemNotObject,
            "config.a",
        );
        let many: Map<String, Value> = (0..=MAX_ITEMS)
            .map(|i| (format!("i{i}"), json!({"type": "boolean", "default": true})))
            .collect();
        refused(
            Value::Object(many),
            ProblemCode::ConfigTooManyItems,
            "config",
        );
    }

    #[test]
    fn item_names_are_checked() {
        for bad in ["", "1st", "a=b", "a b", "ä", &"x".repeat(65)] {
            let mut items = Map::new();
            items.insert(
                bad.to_string(),
                json!({"type": "boolean", "default": true, "description": "d"}),
            );
            let p = refused(
                Value::Object(items),
                ProblemCode::ConfigBadItemName,
                &format!("config.{bad}"),
            );
            assert!(p.to_string().contains("item names are 1 to 64"), "{p}");
        }
        ok(json!({"_a.b-c9": {"type": "boolean", "default": true, "description": "d"}}));
    }

    #[test]
    fn type_is_required_and_known() {
        refused(
            json!({"a": {"default": 1}}),
            ProblemCode::ConfigMissingProperty,
            "config.a.type",
        );
        refused(
            json!({"a": {"type": 1, "default": 1}}),
            ProblemCode::ConfigBadProperty,
            "config.a.type",
        );
        let p = refused(
            json!({"a": {"type": "IPV4", "default": ""}}),
            ProblemCode::ConfigUnknownType,
            "config.a.type",
        );
        assert!(p.to_string().contains("use \"string\""), "{p}");
        let p = refused(
            json!({"a": {"type": "Integer", "default": 1}}),
            ProblemCode::ConfigUnknownType,
            "config.a.type",
        );
        assert!(p.to_string().contains("write \"type\": \"integer\""), "{p}");
        let p = refused(
            json!({"a": {"type": "double", "default": 1}}),
            ProblemCode::ConfigUnknownType,
            "config.a.type",
        );
        assert!(p.to_string().contains("\"float\""), "{p}");
        refused(
            json!({"a": {"type": "list", "default": []}}),
            ProblemCode::ConfigMissingProperty,
            "config.a.items",
        );
        refused(
            json!({"a": {"type": "list", "items": "password", "default": []}}),
            ProblemCode::ConfigUnknownType,
            "config.a.items",
        );
        refused(
            json!({"a": {"type": "list", "items": 3, "default": []}}),
            ProblemCode::ConfigBadProperty,
            "config.a.items",
        );
    }

    #[test]
    fn default_is_required_and_must_fit_its_item() {
        refused(
            json!({"a": {"type": "integer"}}),
            ProblemCode::ConfigMissingProperty,
            "config.a.default",
        );
        for (item, why) in [
            (
                json!({"type": "integer", "default": 1.5}),
                "expected an integer, found 1.5",
            ),
            (
                json!({"type": "integer", "default": "x"}),
                "expected an integer",
            ),
            (
                json!({"type": "float", "default": 2.0, "maximum": 1.0}),
                "2.0 is above the maximum 1.0",
            ),
            (
                json!({"type": "integer", "default": 0, "minimum": 1}),
                "0 is below the minimum 1",
            ),
            (
                json!({"type": "integer", "default": 4, "minimum": 1, "step": 2}),
                "4 is not on the step 2 (counted from 1)",
            ),
            (
                json!({"type": "enumeration", "options": ["a"], "default": "b"}),
                "\"b\" is not one of the options \"a\"",
            ),
            (
                json!({"type": "string", "default": "toolong", "length": 3}),
                "the value has 7 characters, at most 3",
            ),
            (
                json!({"type": "string", "default": "", "mandatory": true}),
                "mandatory",
            ),
            (
                json!({"type": "boolean", "default": "yes"}),
                "expected true or false",
            ),
            (
                json!({"type": "list", "items": "float", "default": [0.5, "x"]}),
                "element 1: expected a number",
            ),
            (
                json!({"type": "list", "items": "integer", "default": [1, 2], "listSize": 1}),
                "2 elements, at most 1",
            ),
            (
                json!({"type": "JSON", "default": null, "mandatory": true}),
                "mandatory",
            ),
        ] {
            let p = refused(
                json!({"a": item}),
                ProblemCode::ConfigBadDefault,
                "config.a.default",
            );
            assert!(p.to_string().contains(why), "{why}:\n{p}");
        }
        let p = refused(
            json!({"a": {"type": "password", "default": 12345}}),
            ProblemCode::ConfigBadDefault,
            "config.a.default",
        );
        assert!(
            !p.to_string().contains("12345"),
            "a password default printed:\n{p}"
        );
    }

    #[test]
    fn properties_have_their_kinds() {
        for (prop, value) in [
            ("minimum", json!("low")),
            ("minimum", json!(1.5)),
            ("step", json!([1])),
            ("description", json!(3)),
            ("displayName", json!(true)),
            ("group", json!({})),
            ("mandatory", json!("yes")),
            ("readonly", json!(1)),
            ("deprecated", json!("no")),
            ("order", json!(1.5)),
        ] {
            let mut item = json!({"type": "integer", "default": 2, "description": "d"});
            item[prop] = value;
            refused(
                json!({"a": item}),
                ProblemCode::ConfigBadProperty,
                &format!("config.a.{prop}"),
            );
        }
        for value in [json!(-1), json!("many"), json!(1.5)] {
            refused(
                json!({"a": {"type": "string", "default": "", "length": value}}),
                ProblemCode::ConfigBadProperty,
                "config.a.length",
            );
        }
        refused(
            json!({"a": {"type": "list", "items": "string", "default": [], "listSize": -2}}),
            ProblemCode::ConfigBadProperty,
            "config.a.listSize",
        );
        for options in [json!("a,b"), json!([]), json!(["a", 1]), json!(["a", "a"])] {
            refused(
                json!({"a": {"type": "enumeration", "default": "a", "options": options}}),
                ProblemCode::ConfigBadProperty,
                "config.a.options",
            );
        }
        refused(
            json!({"a": {"type": "enumeration", "default": "a"}}),
            ProblemCode::ConfigMissingProperty,
            "config.a.options",
        );
        refused(
            json!({"a": {"type": "list", "items": "enumeration", "default": []}}),
            ProblemCode::ConfigMissingProperty,
            "config.a.options",
        );
    }

    #[test]
    fn constraints_must_apply_to_the_type() {
        for (ty, prop, value) in [
            ("string", "minimum", json!(1)),
            ("boolean", "maximum", json!(1)),
            ("JSON", "step", json!(1)),
            ("integer", "length", json!(4)),
            ("integer", "options", json!(["a"])),
            ("string", "listSize", json!(2)),
            ("float", "items", json!("float")),
        ] {
            let mut item = json!({"type": ty, "description": "d"});
            item["default"] = match ty {
                "string" => json!(""),
                "boolean" => json!(true),
                "JSON" => json!({}),
                _ => json!(1),
            };
            item[prop] = value;
            refused(
                json!({"a": item}),
                ProblemCode::ConfigPropertyNotApplicable,
                &format!("config.a.{prop}"),
            );
        }
        ok(
            json!({"a": {"type": "list", "items": "string", "length": 3, "default": ["abc"], "description": "d"}}),
        );
        ok(
            json!({"a": {"type": "list", "items": "enumeration", "options": ["x"], "default": ["x"], "description": "d"}}),
        );
    }

    #[test]
    fn ranges_and_steps_must_be_possible() {
        let p = refused(
            json!({"a": {"type": "integer", "default": 1, "minimum": 5, "maximum": 2}}),
            ProblemCode::ConfigBadRange,
            "config.a.minimum",
        );
        assert!(
            p.to_string()
                .contains("\"minimum\" 5 is above \"maximum\" 2"),
            "{p}"
        );
        refused(
            json!({"a": {"type": "integer", "default": 0, "step": 0}}),
            ProblemCode::ConfigBadRange,
            "config.a.step",
        );
        refused(
            json!({"a": {"type": "float", "default": 0.0, "step": -0.5}}),
            ProblemCode::ConfigBadRange,
            "config.a.step",
        );
    }

    #[test]
    fn warnings_refuse_nothing() {
        let (s, p) = parse(
            json!({"a": {"type": "integer", "default": 1, "rule": "value > 0",
            "validity": "b == 1", "Minimum": 0, "value": 3, "colour": "red"}}),
        );
        assert!(!p.has_errors(), "{p}");
        assert!(s.items.contains_key("a"));
        let fields: Vec<String> = codes(&p)
            .into_iter()
            .map(|(c, f)| format!("{c} {f}"))
            .collect();
        for expected in [
            "config.no_description config.a.description",
            "config.unknown_property config.a.rule",
            "config.unknown_property config.a.validity",
            "config.unknown_property config.a.Minimum",
            "config.unknown_property config.a.value",
            "config.unknown_property config.a.colour",
        ] {
            assert!(fields.contains(&expected.to_string()), "{expected}:\n{p}");
        }
        let text = p.to_string();
        assert!(text.contains("never evaluates expressions"), "{text}");
        assert!(text.contains("did you mean \"minimum\""), "{text}");
    }

    #[test]
    fn all_problems_of_all_items_are_reported() {
        let (s, p) = parse(json!({
            "a": {"type": "integer", "default": "x"},
            "b": {"type": "bogus", "default": 1},
            "c": {"type": "boolean", "default": true, "description": "fine"}
        }));
        assert_eq!(p.errors().count(), 2, "{p}");
        assert_eq!(s.items.keys().collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn a_valid_multi_item_change_applies_every_item() {
        let s = demo();
        let c = set(
            &s,
            &[
                "speed=0.25",
                "count=7",
                "mode=manual",
                "label=",
                "on=false",
                "extra={\"b\": [1]}",
                "joints=[3,5,7]",
                "secret=s3cret",
            ],
        );
        // label is mandatory: nothing applies.
        assert!(c.is_err());
        let c = set(
            &s,
            &[
                "speed=0.25",
                "count=7",
                "mode=manual",
                "label=left",
                "on=false",
                "extra={\"b\": [1]}",
                "joints=[3,5,7]",
                "secret=s3cret",
            ],
        )
        .expect("valid");
        assert_eq!(c.values.get("speed"), Some(&json!(0.25)));
        assert_eq!(c.values.get("count"), Some(&json!(7)));
        assert_eq!(c.values.get("joints"), Some(&json!([3, 5, 7])));
        assert_eq!(c.values.get("extra"), Some(&json!({"b": [1]})));
        assert_eq!(c.values.get("secret"), Some(&json!("s3cret")));
        assert_eq!(c.values.get("serial"), Some(&json!("SN-1")));
        assert_eq!(c.changes.len(), 8);
        let secret = c
            .changes
            .iter()
            .find(|ch| ch.item == "secret")
            .expect("secret change");
        assert_eq!(
            (secret.from.clone(), secret.to.clone()),
            (json!(MASK), json!(MASK))
        );
        // Setting an item to its current value changes nothing.
        assert!(set(&s, &["speed=0.5"]).expect("valid").changes.is_empty());
        // Floats on a step, with rounding noise.
        assert!(set(&s, &["speed=0.15"]).is_ok());
        assert!(set(&s, &["speed=1e0"]).is_ok());
    }

    #[test]
    fn every_validation_refusal_has_its_code_and_names_the_item() {
        use ProblemCode as C;
        let s = demo();
        let big = format!("extra=\"{}\"", "x".repeat(MAX_VALUE_BYTES));
        let cases: &[(&[&str], ProblemCode, &str, &str)] = &[
            (
                &["nope=1"],
                C::ConfigUnknownItem,
                "config.nope",
                "the plugin's items are",
            ),
            (
                &["serial=X"],
                C::ConfigReadonly,
                "config.serial",
                "read-only",
            ),
            (
                &["count=three"],
                C::ConfigWrongType,
                "config.count",
                "expected an integer such as 42, found \"three\"",
            ),
            (&["count=2.0"], C::ConfigWrongType, "config.count", ""),
            (&["speed=fast"], C::ConfigWrongType, "config.speed", ""),
            (&["speed=NaN"], C::ConfigWrongType, "config.speed", ""),
            (&["speed=inf"], C::ConfigWrongType, "config.speed", ""),
            (
                &["on=yes"],
                C::ConfigWrongType,
                "config.on",
                "true or false",
            ),
            (
                &["joints=1,2"],
                C::ConfigWrongType,
                "config.joints",
                "a JSON list",
            ),
            (&["joints={}"], C::ConfigWrongType, "config.joints", ""),
            (&["extra={"], C::ConfigWrongType, "config.extra", ""),
            (
                &["speed=1.5"],
                C::ConfigOutOfRange,
                "config.speed",
                "1.5 is above the maximum 1.0",
            ),
            (
                &["speed=1.5"],
                C::ConfigOutOfRange,
                "config.speed",
                "give a number from 0.0 to 1.0 in steps of 0.05",
            ),
            (
                &["count=0"],
                C::ConfigOutOfRange,
                "config.count",
                "0 is below the minimum 1",
            ),
            (
                &["joints=[0]"],
                C::ConfigOutOfRange,
                "config.joints",
                "element 0",
            ),
            (
                &["count=4"],
                C::ConfigOffStep,
                "config.count",
                "4 is not on the step 2 (counted from 1)",
            ),
            (&["speed=0.33"], C::ConfigOffStep, "config.speed", ""),
            (
                &["mode=Auto"],
                C::ConfigNotAnOption,
                "config.mode",
                "\"Auto\" is not one of the options \"auto\", \"manual\"",
            ),
            (
                &["label=waytoolong"],
                C::ConfigTooLong,
                "config.label",
                "10 characters, at most 8",
            ),
            (
                &["joints=[1,2,3,4]"],
                C::ConfigTooLong,
                "config.joints",
                "4 elements, at most 3",
            ),
            (&[&big], C::ConfigTooLong, "config.extra", "bytes"),
            (
                &["label="],
                C::ConfigMandatoryBlank,
                "config.label",
                "mandatory",
            ),
            (&["speed"], C::ConfigBadAssignment, "", "has no '='"),
            (&["=1"], C::ConfigBadAssignment, "", "empty KEY"),
            (
                &["speed=0.1", "speed=0.2"],
                C::ConfigBadAssignment,
                "config.speed",
                "given twice",
            ),
            (&[], C::ConfigBadAssignment, "", "nothing to set"),
        ];
        for (args, code, field, text) in cases {
            let t = set_refused(&s, args, *code, field);
            assert!(t.contains(text), "{args:?}: {text}:\n{t}");
        }
        // Several problems at once, every one reported.
        let p = set(&s, &["speed=2", "count=x", "nope=1", "serial=1"]).expect_err("accepted");
        assert_eq!(p.len(), 4, "{p}");
        // The values of all items together are bounded too.
        let many = ok(Value::Object(
            (0..20)
                .map(|i| {
                    (
                        format!("t{i}"),
                        json!({"type": "string", "default": "", "description": "d"}),
                    )
                })
                .collect(),
        ));
        let long = "x".repeat(60 * 1024);
        let args: Vec<String> = (0..20).map(|i| format!("t{i}={long}")).collect();
        let p = many
            .prepare_change(
                SUBJECT,
                &many.defaults(),
                &parse_assignments(SUBJECT, &args).unwrap_or_default(),
            )
            .expect_err("accepted");
        assert_eq!(
            codes(&p),
            [(ProblemCode::ConfigTooLong, String::new())],
            "{p}"
        );
    }

    #[test]
    fn a_password_is_never_in_a_message() {
        let s = demo();
        for arg in ["secret=this-is-far-too-long-for-16", "this-is-far"] {
            let p = set(&s, &[arg]).expect_err("accepted");
            let text = p.to_string();
            assert!(!text.contains("this-is-far"), "{text}");
        }
        let with_type =
            ok(json!({"pin": {"type": "password", "default": "1", "description": "d"}}));
        let p = with_type
            .prepare_change(
                SUBJECT,
                &with_type.defaults(),
                &[Assignment {
                    item: "pin".into(),
                    value: AssignedValue::Json(json!(4711)),
                }],
            )
            .expect_err("accepted");
        assert!(!p.to_string().contains("4711"), "{p}");
        assert_eq!(s.defaults().shown(&s)["secret"], json!(MASK));
        let item = serde_json::to_value(&s.items["secret"]).unwrap_or_default();
        assert_eq!(item["default"], json!(MASK));
        assert!(!format!("{:?}", s.defaults()).contains("hunter2"));
        let a = parse_assignments(SUBJECT, &["secret=hunter3".to_string()]).unwrap_or_default();
        assert!(!format!("{a:?}").contains("hunter3"));
    }

    #[test]
    fn stored_values_that_do_not_fit_block_until_set() {
        let s = demo();
        let mut stored = s.defaults();
        stored.0.insert("speed".into(), json!(7));
        stored.0.insert("gone".into(), json!(1));
        stored.0.insert("serial".into(), json!("hand-edited"));
        let p = s.resolve(SUBJECT, &stored).expect_err("accepted");
        assert_eq!(
            codes(&p),
            [(
                ProblemCode::ConfigValuesUnreadable,
                "config.speed".to_string()
            )]
        );
        // A change that leaves the bad value is refused; one that sets it
        // applies (and drops the unknown item, restores the read-only one).
        let keep = [Assignment {
            item: "count".into(),
            value: AssignedValue::Text("5".into()),
        }];
        let p = s
            .prepare_change(SUBJECT, &stored, &keep)
            .expect_err("accepted");
        assert!(
            p.to_string()
                .contains("stored value of config item \"speed\""),
            "{p}"
        );
        let fix = [Assignment {
            item: "speed".into(),
            value: AssignedValue::Text("0.1".into()),
        }];
        let c = s.prepare_change(SUBJECT, &stored, &fix).expect("valid");
        assert_eq!(c.values.get("gone"), None);
        assert_eq!(c.values.get("serial"), Some(&json!("SN-1")));
        // Missing items count as their defaults.
        let r = s
            .resolve(SUBJECT, &ConfigValues::default())
            .expect("defaults");
        assert_eq!(r, s.defaults());
    }

    #[test]
    fn migration_keeps_resets_drops_and_adds() {
        let old = ok(json!({
            "speed": {"type": "float", "default": 0.5, "maximum": 1.0, "description": "d"},
            "count": {"type": "integer", "default": 3, "description": "d"},
            "mode": {"type": "enumeration", "options": ["a", "b", "c"], "default": "a", "description": "d"},
            "gain": {"type": "float", "default": 1.0, "description": "d"},
            "legacy": {"type": "string", "default": "x", "description": "d"},
            "serial": {"type": "string", "default": "S1", "readonly": true, "description": "d"},
            "pin": {"type": "password", "default": "", "description": "d"},
            "same": {"type": "integer", "default": 1, "description": "d"}
        }));
        let new = ok(json!({
            "speed": {"type": "float", "default": 0.5, "maximum": 0.8, "description": "d"},
            "count": {"type": "string", "default": "three", "description": "d"},
            "mode": {"type": "enumeration", "options": ["a", "b"], "default": "b", "description": "d"},
            "gain": {"type": "float", "default": 2.0, "description": "d"},
            "serial": {"type": "string", "default": "S2", "readonly": true, "description": "d"},
            "pin": {"type": "password", "default": "", "description": "d"},
            "same": {"type": "integer", "default": 1, "description": "d"},
            "fresh": {"type": "boolean", "default": true, "description": "d"}
        }));
        let mut stored = old.defaults();
        for (k, v) in [
            ("speed", json!(0.9)),
            ("count", json!(7)),
            ("mode", json!("c")),
            ("gain", json!(1.5)),
            ("legacy", json!("y")),
            ("pin", json!("1234")),
        ] {
            stored.0.insert(k.into(), v);
        }
        stored.0.remove("same");
        let m = migrate(Some(&old), Some(&stored), &new);
        let line = |item: &str| {
            m.changes
                .iter()
                .find(|c| c.item == item)
                .unwrap_or_else(|| panic!("{item}"))
        };
        use MigrationAction::{Added, Dropped, Kept, Reset};
        for (item, action, reason) in [
            ("speed", Reset, Some("0.9 is above the maximum 0.8")),
            ("count", Reset, Some("type changed from integer to string")),
            ("mode", Reset, Some("not one of the options")),
            ("gain", Kept, Some("default is 2.0")),
            ("legacy", Dropped, None),
            ("serial", Reset, Some("read-only")),
            ("pin", Kept, None),
            ("same", Kept, None),
            ("fresh", Added, None),
        ] {
            let c = line(item);
            assert_eq!(c.action, action, "{item}");
            match reason {
                Some(r) => assert!(
                    c.reason.as_deref().unwrap_or("").contains(r),
                    "{item}: {c:?}"
                ),
                None => assert_eq!(c.reason, None, "{item}"),
            }
        }
        assert_eq!(line("legacy").previous, Some(json!("y")));
        assert_eq!(line("pin").value, Some(json!(MASK)));
        assert_eq!(line("pin").previous, Some(json!(MASK)));
        assert_eq!(
            m.values.to_json(),
            json!({"speed": 0.5, "count": "three", "mode": "b", "gain": 1.5, "serial": "S2",
                   "pin": "1234", "same": 1, "fresh": true})
        );
        assert_eq!(m.changes.len(), 9);
        for c in &m.changes {
            assert!(!c.to_string().contains("1234"), "{c}");
        }
        // First install: every item added with its default.
        let first = migrate(None, None, &new);
        assert_eq!(first.values, new.defaults());
        assert!(first
            .changes
            .iter()
            .all(|c| c.action == MigrationAction::Added));
        // Unreadable stored values: every common item reset, saying why.
        let lost = migrate(Some(&old), None, &new);
        assert_eq!(lost.values, new.defaults());
        assert_eq!(
            lost.changes
                .iter()
                .filter(|c| c.action == MigrationAction::Reset)
                .count(),
            7
        );
    }

    #[test]
    fn ordered_by_order_then_name() {
        let s = ok(json!({
            "b": {"type": "boolean", "default": true, "order": 2, "description": "d"},
            "a": {"type": "boolean", "default": true, "description": "d"},
            "c": {"type": "boolean", "default": true, "order": 1, "description": "d"}
        }));
        let names: Vec<&str> = s.ordered().iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["c", "b", "a"]);
    }

    #[test]
    fn steps_count_from_the_minimum_or_zero() {
        let s = ok(json!({
            "i": {"type": "integer", "default": -4, "step": 4, "description": "d"},
            "f": {"type": "float", "default": 0.3, "minimum": 0.1, "step": 0.1, "description": "d"},
            "big": {"type": "integer", "default": 9223372036854775807_i64, "minimum": -9223372036854775807_i64, "step": 2, "description": "d"}
        }));
        assert!(set(&s, &["i=8"]).is_ok());
        assert!(set(&s, &["i=6"]).is_err());
        assert!(set(&s, &["f=0.7"]).is_ok());
        assert!(set(&s, &["f=0.75"]).is_err());
        assert!(set(&s, &["big=-9223372036854775807"]).is_ok());
        assert!(set(&s, &["big=9223372036854775806"]).is_err());
    }
}
