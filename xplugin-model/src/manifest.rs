//! Plugin manifests (`NAME.json`): parsing and strict validation.
//!
//! Both sides are read with [`parse_manifest`], which collects every problem
//! of a manifest instead of stopping at the first and returns a
//! [`Manifest`] only when there is no error among them.
//!
//! Accepted forms:
//!
//! ```text
//! client.zip:     {"client_plugin": {"name": "NAME", ...}}
//! controller.zip: {"controller_plugin": {"NAME": {"name": "NAME", ...}}}   keyed (vendor docs)
//!                 {"controller_plugin": {"name": "NAME", ...}}            flat
//! ```
//!
//! A client manifest keyed by name (`{"client_plugin": {"NAME": {...}}}`)
//! is refused with the flat form as the hint.
//!
//! The controller form is decided like this: if the object has a `name`
//! field whose value is not an object, it is the flat form; otherwise, if it
//! has exactly one key and that key holds an object, it is the keyed form
//! and the key must equal the folder name and the inner `name`.
//!
//! Text rules come from [`crate::jsonc`]: `//` and `/* */` comments, a UTF-8
//! BOM, and trailing commas (each reported as a warning) are accepted;
//! duplicate keys are errors.
//!
//! Field rules (tables in SPEC section 2):
//!
//! * `name` (string, required): must equal the folder name (case-sensitive),
//!   satisfy [`check_name`].
//! * `enable` (bool, required), `version` (string, required, a [`Version`]).
//! * `depend` (list): entries are a plugin name or
//!   `{"name": "x", "version": "<range>"}` ([`VersionReq`] syntax). A plugin
//!   depending on itself is an error; the same name listed twice is a
//!   warning (both entries are kept, so every constraint applies).
//! * client only: `ctrlDepend` (list, same entry forms, naming controller
//!   plugins; naming the controller part of the same package is normal),
//!   `min_hmi_version` (version), `custom_hmi_version` (list of versions).
//! * controller only: `min_controller_version` (version),
//!   `must_controller_version` (list of versions). `ctrlDepend` on a
//!   controller plugin is an error (controller plugins use `depend`).
//! * `author`, `description` (strings), `config` (an object of typed
//!   configuration items, checked by [`crate::config_schema`]; its problems
//!   are the manifest's).
//! * An optional field set to `null` counts as absent; a required one is an
//!   error. Unknown fields are warnings and are ignored.

use crate::code::ProblemCode;
use crate::config_schema::{parse_schema, ConfigSchema};
use crate::jsonc::{self, JsoncError};
use crate::problem::{Problem, Problems};
use crate::version::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// Largest manifest accepted, in bytes. Real manifests are a few hundred
/// bytes; a generous `config` section fits comfortably.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

/// Longest plugin name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Which loader a plugin belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Teach pendant (HMI) plugin, from `client.zip`.
    Client,
    /// Controller plugin, from `controller.zip`.
    Controller,
}

impl Side {
    /// The manifest's top-level key: `client_plugin` / `controller_plugin`.
    pub fn manifest_key(self) -> &'static str {
        match self {
            Side::Client => "client_plugin",
            Side::Controller => "controller_plugin",
        }
    }

    /// `client plugin` / `controller plugin`, for messages.
    pub fn plugin_label(self) -> &'static str {
        match self {
            Side::Client => "client plugin",
            Side::Controller => "controller plugin",
        }
    }

    /// The inner archive of this side: `client.zip` / `controller.zip`.
    pub fn archive_name(self) -> &'static str {
        match self {
            Side::Client => "client.zip",
            Side::Controller => "controller.zip",
        }
    }

    /// What the host of this side is called: `HMI` / `controller`.
    pub fn host_label(self) -> &'static str {
        match self {
            Side::Client => "HMI",
            Side::Controller => "controller",
        }
    }

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Controller,
            Side::Controller => Side::Client,
        }
    }

    /// How a plugin of this side is named in problems: `client plugin "NAME"`.
    pub fn subject(self, name: &str) -> String {
        format!("{} \"{name}\"", self.plugin_label())
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Controller => "controller",
        })
    }
}

/// One entry of `depend` / `ctrlDepend`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Dependency {
    /// The plugin depended on.
    pub name: String,
    /// The versions accepted; `None` accepts any version.
    #[serde(rename = "version", skip_serializing_if = "Option::is_none")]
    pub req: Option<VersionReq>,
}

impl Dependency {
    /// A dependency on any version of `name`.
    pub fn any(name: impl Into<String>) -> Dependency {
        Dependency {
            name: name.into(),
            req: None,
        }
    }

    /// A dependency on the versions of `name` matching `req`.
    pub fn with_req(name: impl Into<String>, req: VersionReq) -> Dependency {
        Dependency {
            name: name.into(),
            req: Some(req),
        }
    }

    /// True if `version` is acceptable.
    pub fn accepts(&self, version: &Version) -> bool {
        self.req.as_ref().is_none_or(|r| r.matches(version))
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.req {
            Some(r) => write!(f, "{} {r}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A validated plugin manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// Client or controller.
    pub side: Side,
    /// Plugin name (equal to the folder name and file stems).
    pub name: String,
    /// Plugin version.
    pub version: Version,
    /// Client: enabled after loading. Controller: loaded at all.
    pub enable: bool,
    /// Plugins of the same side this one needs.
    pub depend: Vec<Dependency>,
    /// Controller plugins this client plugin needs (always empty on the
    /// controller side).
    pub ctrl_depend: Vec<Dependency>,
    /// `min_hmi_version` (client) or `min_controller_version` (controller).
    pub min_host_version: Option<Version>,
    /// `custom_hmi_version` (client only; empty on the controller side).
    pub custom_hmi_versions: Vec<Version>,
    /// `must_controller_version` (controller only; empty on the client side).
    pub must_controller_versions: Vec<Version>,
    /// `author`.
    pub author: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `config`: the plugin's configuration items (empty without one).
    pub config: ConfigSchema,
    /// `cycle_budget_us` (controller only, an extension of this product):
    /// the step budget in microseconds.
    pub cycle_budget_us: Option<u64>,
    /// `bridge` (an extension of this product): the topics this plugin
    /// sends to and accepts from plugins on the other computer over the
    /// pendant link. Empty without one: nothing crosses.
    pub bridge: BridgeTopics,
}

/// A plugin's `bridge` object: `{"send": [...], "receive": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BridgeTopics {
    /// Topics it publishes that go to the other computer.
    pub send: Vec<String>,
    /// Topics from the other computer delivered to it.
    pub receive: Vec<String>,
}

/// Longest bridge topic, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;
/// Most topics in one `send` or `receive` list.
pub const MAX_BRIDGE_TOPICS: usize = 64;
/// Topics under this prefix are the host's own (`xplugin/link`).
pub const RESERVED_TOPIC_PREFIX: &str = "xplugin/";

/// Why a bridge topic is refused, or `None` when it is fine: 1 to
/// [`MAX_TOPIC_LEN`] bytes of `A-Z a-z 0-9 _ . - /`, not starting with
/// [`RESERVED_TOPIC_PREFIX`].
pub fn topic_problem(topic: &str) -> Option<String> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Some(format!(
            "a topic is 1 to {MAX_TOPIC_LEN} bytes, found {} bytes",
            topic.len()
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')))
    {
        return Some(format!(
            "topic {topic:?} contains {c:?}; topics use A-Z a-z 0-9 _ . - /"
        ));
    }
    if topic.starts_with(RESERVED_TOPIC_PREFIX) {
        return Some(format!(
            "topic {topic:?} is under {RESERVED_TOPIC_PREFIX:?}, which the host reserves"
        ));
    }
    None
}

impl Manifest {
    /// `client plugin "NAME"` / `controller plugin "NAME"`.
    pub fn subject(&self) -> String {
        self.side.subject(&self.name)
    }

    /// True if the loader loads this plugin at all (controller plugins with
    /// `enable: false` are not loaded; client ones are loaded but not enabled).
    pub fn loads(&self) -> bool {
        self.side == Side::Client || self.enable
    }
}

/// The result of [`parse_manifest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestOutcome {
    /// The manifest, present exactly when `problems` holds no error.
    pub manifest: Option<Manifest>,
    /// Every error and warning found.
    pub problems: Problems,
}

/// Why a plugin name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("the plugin name is empty; {NAME_RULE}")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("the plugin name \"{name}\" is {len} bytes long; {NAME_RULE}")]
    TooLong {
        /// The offending name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The name has a character outside `[A-Za-z0-9_.-]`.
    #[error("the plugin name \"{name}\" contains {found:?}; {NAME_RULE}")]
    BadCharacter {
        /// The offending name.
        name: String,
        /// The first offending character.
        found: char,
    },
    /// The name starts with `.` (hidden files, `..`).
    #[error("the plugin name \"{name}\" starts with '.'; {NAME_RULE}")]
    LeadingDot {
        /// The offending name.
        name: String,
    },
}

const NAME_RULE: &str = "plugin names use only letters A-Z a-z, digits, '_', '.' and '-', are 1 to 64 bytes long and do not start with '.'";

/// Checks the plugin name rules (also usable for folder names).
///
/// # Errors
///
/// [`NameError`] saying which rule is broken.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            name: name.into(),
            len: name.len(),
        });
    }
    if let Some(found) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(NameError::BadCharacter {
            name: name.into(),
            found,
        });
    }
    if name.starts_with('.') {
        return Err(NameError::LeadingDot { name: name.into() });
    }
    Ok(())
}

const CLIENT_FIELDS: &[&str] = &[
    "name",
    "depend",
    "ctrlDepend",
    "enable",
    "version",
    "min_hmi_version",
    "custom_hmi_version",
    "author",
    "description",
    "config",
    "bridge",
];

const CONTROLLER_FIELDS: &[&str] = &[
    "name",
    "depend",
    "enable",
    "version",
    "min_controller_version",
    "must_controller_version",
    "author",
    "description",
    "config",
    "cycle_budget_us",
    "bridge",
];

/// Parses and validates the manifest of the plugin in folder `expected_name`
/// on `side`. Never panics and never stops at the first problem.
pub fn parse_manifest(side: Side, expected_name: &str, bytes: &[u8]) -> ManifestOutcome {
    let mut cx = Checker {
        side,
        subject: side.subject(expected_name),
        file: format!("{expected_name}.json"),
        problems: Problems::default(),
    };
    let manifest = cx.manifest(expected_name, bytes);
    let manifest = if cx.problems.has_errors() {
        None
    } else {
        manifest
    };
    ManifestOutcome {
        manifest,
        problems: cx.problems,
    }
}

/// A short description of a JSON value for "found ..." messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let mut shown: String = s.chars().take(40).collect();
            if shown.len() < s.len() {
                shown.push_str("...");
            }
            format!("the string {shown:?}")
        }
        Value::Array(a) => format!("a list of {} item(s)", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

/// Lower-case with `_`/`-` removed and a trailing plural `s` dropped, to
/// recognise near-misses like `Version`, `ctrl_depend`, `custom_hmi_versions`.
fn fold(field: &str) -> String {
    let mut s: String = field
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if s.ends_with('s') {
        s.pop();
    }
    s
}

struct Checker {
    side: Side,
    subject: String,
    file: String,
    problems: Problems,
}

impl Checker {
    /// Records problem `code` (its severity comes with it).
    fn report(&mut self, code: ProblemCode, field: Option<&str>, message: String, hint: String) {
        let mut p = Problem::new(code, self.subject.clone(), message, hint);
        if let Some(f) = field {
            p = p.with_field(f);
        }
        self.problems.push(p);
    }

    fn manifest(&mut self, expected_name: &str, bytes: &[u8]) -> Option<Manifest> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            let (file, len) = (self.file.clone(), bytes.len());
            self.report(
                ProblemCode::ManifestTooLarge,
                None,
                format!(
                    "{file} is {len} bytes; manifests may be at most {MAX_MANIFEST_BYTES} bytes"
                ),
                format!(
                    "shrink {file}; large data belongs in a separate file in the plugin folder"
                ),
            );
            return None;
        }
        let parsed = match jsonc::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                let file = self.file.clone();
                let hint = match e {
                    JsoncError::Syntax { .. } => format!(
                        "fix {file} at the position shown; comments (// and /* */) are allowed, other JSON rules apply"
                    ),
                    _ => format!("fix {file} as the message says"),
                };
                self.report(
                    ProblemCode::ManifestSyntax,
                    None,
                    format!("{file}: {e}"),
                    hint,
                );
                return None;
            }
        };
        for at in &parsed.trailing_commas {
            let file = self.file.clone();
            self.report(ProblemCode::ManifestTrailingComma,
                None,
                format!("{file} has a trailing comma at {at}; accepted here, but strict JSON readers refuse it"),
                "remove the comma before the closing bracket".into(),
            );
        }
        for path in &parsed.duplicate_keys {
            let file = self.file.clone();
            self.report(ProblemCode::ManifestDuplicateKey,
                Some(path),
                format!("key \"{path}\" appears more than once in {file}; JSON readers disagree on which value wins"),
                "keep exactly one entry for this key".into(),
            );
        }
        let Value::Object(top) = &parsed.value else {
            let (file, found) = (self.file.clone(), describe(&parsed.value));
            let key = self.side.manifest_key();
            self.report(ProblemCode::ManifestNotAnObject,
                None,
                format!("{file} must hold a JSON object with a \"{key}\" object, found {found}"),
                format!("write {file} as {{\"{key}\": {{\"name\": ..., \"enable\": ..., \"version\": ...}}}}"),
            );
            return None;
        };
        self.plugin_object(expected_name, top)
    }

    /// Finds the plugin's field object under the side key.
    fn plugin_object(&mut self, expected_name: &str, top: &Map<String, Value>) -> Option<Manifest> {
        let key = self.side.manifest_key();
        let other_key = self.side.other().manifest_key();
        for k in top.keys().filter(|k| k.as_str() != key) {
            if k == other_key && !top.contains_key(key) {
                continue; // reported below as the main problem
            }
            self.report(
                ProblemCode::ManifestUnknownField,
                Some(k),
                format!("top-level key \"{k}\" is not used by xplugin and is ignored"),
                format!(
                    "remove it; a {} manifest has only \"{key}\" at the top",
                    self.side.plugin_label()
                ),
            );
        }
        let Some(body) = top.get(key) else {
            let file = self.file.clone();
            if top.contains_key(other_key) {
                let (this_zip, other_zip) =
                    (self.side.archive_name(), self.side.other().archive_name());
                self.report(ProblemCode::ManifestWrongSide,
                    Some(other_key),
                    format!("{file} is a {} manifest (\"{other_key}\"), but the plugin is in {this_zip}", self.side.other().plugin_label()),
                    format!("move the plugin folder to {other_zip}, or change the key to \"{key}\" if it really is a {}", self.side.plugin_label()),
                );
            } else {
                self.report(
                    ProblemCode::ManifestMissingPluginObject,
                    Some(key),
                    format!("{file} has no \"{key}\" object"),
                    format!("wrap the plugin fields in {{\"{key}\": {{...}}}}"),
                );
            }
            return None;
        };
        let Value::Object(body) = body else {
            let found = describe(body);
            self.report(
                ProblemCode::ManifestNotAnObject,
                Some(key),
                format!("\"{key}\" must be an object, found {found}"),
                format!("write \"{key}\": {{\"name\": ..., \"enable\": ..., \"version\": ...}}"),
            );
            return None;
        };
        match self.side {
            Side::Client => {
                let mut entries = body.iter();
                if let (Some((key, Value::Object(_))), None) = (entries.next(), entries.next()) {
                    if key != "config" {
                        self.report(ProblemCode::ManifestBadShape,
                            Some(&format!("client_plugin.{key}")),
                            format!("\"client_plugin\" holds an object keyed by \"{key}\"; client manifests put the fields directly in \"client_plugin\" (only controller manifests may be keyed by name)"),
                            format!("write {{\"client_plugin\": {{\"name\": \"{expected_name}\", \"enable\": ..., \"version\": ...}}}}"),
                        );
                        return None;
                    }
                }
                Some(self.fields(expected_name, body))
            }
            Side::Controller => self.controller_form(expected_name, body),
        }
    }

    fn controller_form(
        &mut self,
        expected_name: &str,
        body: &Map<String, Value>,
    ) -> Option<Manifest> {
        let flat = body.get("name").is_some_and(|v| !v.is_object());
        if flat {
            return Some(self.fields(expected_name, body));
        }
        let mut entries = body.iter();
        match (entries.next(), entries.next()) {
            (Some((key, Value::Object(inner))), None) => {
                if key != expected_name {
                    self.report(ProblemCode::ManifestKeyMismatch,
                        Some(&format!("controller_plugin.{key}")),
                        format!("the manifest is keyed by \"{key}\", but the plugin folder is \"{expected_name}\""),
                        format!("use the folder name as the key: {{\"controller_plugin\": {{\"{expected_name}\": {{...}}}}}}"),
                    );
                }
                if let Some(Value::String(inner_name)) = inner.get("name") {
                    if inner_name != key {
                        self.report(
                            ProblemCode::ManifestKeyMismatch,
                            Some("name"),
                            format!(
                                "the key \"{key}\" and the \"name\" field \"{inner_name}\" differ"
                            ),
                            "make the key, the \"name\" field and the folder name the same".into(),
                        );
                    }
                }
                Some(self.fields(expected_name, inner))
            }
            (None, _) => {
                self.report(ProblemCode::ManifestBadShape,
                    Some("controller_plugin"),
                    "\"controller_plugin\" is empty".into(),
                    format!("write {{\"controller_plugin\": {{\"{expected_name}\": {{\"name\": \"{expected_name}\", \"enable\": true, \"version\": \"1.0.0\"}}}}}}"),
                );
                None
            }
            _ => {
                let known = body.keys().any(|k| {
                    CONTROLLER_FIELDS.contains(&k.as_str()) || CLIENT_FIELDS.contains(&k.as_str())
                });
                if known {
                    // Fields without "name": the flat form missing its name.
                    return Some(self.fields(expected_name, body));
                }
                let keys: Vec<&str> = body.keys().map(String::as_str).collect();
                self.report(ProblemCode::ManifestBadShape,
                    Some("controller_plugin"),
                    format!("\"controller_plugin\" must describe one plugin, either keyed by its name or flat; found keys {keys:?}"),
                    format!("one manifest per plugin folder: {{\"controller_plugin\": {{\"{expected_name}\": {{...}}}}}} or {{\"controller_plugin\": {{\"name\": \"{expected_name}\", ...}}}}"),
                );
                None
            }
        }
    }

    /// Validates the plugin fields; returns a manifest built from whatever
    /// was valid (the caller drops it if any error was recorded).
    fn fields(&mut self, expected_name: &str, obj: &Map<String, Value>) -> Manifest {
        let side = self.side;
        let name = self.name(expected_name, obj.get("name"));
        let version = self.required_version(obj.get("version"));
        let enable = self.enable(obj.get("enable"));
        let (min_field, list_field) = match side {
            Side::Client => ("min_hmi_version", "custom_hmi_version"),
            Side::Controller => ("min_controller_version", "must_controller_version"),
        };
        let min_host_version = self.optional_version(min_field, obj.get(min_field));
        let host_list = self.version_list(list_field, obj.get(list_field));
        let depend = self.dependencies("depend", obj.get("depend"), Some(expected_name));
        let ctrl_depend = match side {
            Side::Client => self.dependencies("ctrlDepend", obj.get("ctrlDepend"), None),
            Side::Controller => {
                if obj.get("ctrlDepend").is_some_and(|v| !v.is_null()) {
                    self.report(ProblemCode::ManifestCtrlDependOnController,
                        Some("ctrlDepend"),
                        "\"ctrlDepend\" is for client plugins; a controller plugin names the controller plugins it needs in \"depend\"".into(),
                        "move the entries to \"depend\" and remove \"ctrlDepend\"".into(),
                    );
                }
                Vec::new()
            }
        };
        let author = self.optional_string("author", obj.get("author"));
        let description = self.optional_string("description", obj.get("description"));
        let config = match obj.get("config") {
            None | Some(Value::Null) => ConfigSchema::default(),
            Some(v) => parse_schema(&self.subject, v, &mut self.problems),
        };
        let cycle_budget_us = match side {
            Side::Controller => self.cycle_budget(obj.get("cycle_budget_us")),
            Side::Client => None,
        };
        let bridge = self.bridge(obj.get("bridge"));
        self.unknown_fields(obj);
        let (custom_hmi_versions, must_controller_versions) = match side {
            Side::Client => (host_list, Vec::new()),
            Side::Controller => (Vec::new(), host_list),
        };
        Manifest {
            side,
            name: name.unwrap_or_else(|| expected_name.to_string()),
            // Stands in for an invalid version while the other fields are
            // checked; never returned (the manifest is dropped on any error).
            version: version.unwrap_or_else(Version::zero),
            enable: enable.unwrap_or(false),
            depend,
            ctrl_depend,
            min_host_version,
            custom_hmi_versions,
            must_controller_versions,
            author,
            description,
            config,
            cycle_budget_us,
            bridge,
        }
    }

    /// `bridge`: `{"send": [TOPIC, ...], "receive": [TOPIC, ...]}`.
    fn bridge(&mut self, value: Option<&Value>) -> BridgeTopics {
        let hint = "write e.g. \"bridge\": {\"send\": [\"plugindemo/button\"], \"receive\": [\"plugindemo/motion\"]}";
        let obj = match value {
            None | Some(Value::Null) => return BridgeTopics::default(),
            Some(Value::Object(o)) => o,
            Some(other) => {
                let found = describe(other);
                self.report(
                    ProblemCode::ManifestWrongType,
                    Some("bridge"),
                    format!("\"bridge\" must be an object with \"send\" and \"receive\" lists, found {found}"),
                    hint.into(),
                );
                return BridgeTopics::default();
            }
        };
        if let Some(k) = obj.keys().find(|k| *k != "send" && *k != "receive") {
            self.report(
                ProblemCode::ManifestBadTopic,
                Some("bridge"),
                format!(
                    "\"bridge\" has the unknown key {k:?}; it holds only \"send\" and \"receive\""
                ),
                hint.into(),
            );
        }
        BridgeTopics {
            send: self.topics("bridge.send", obj.get("send"), hint),
            receive: self.topics("bridge.receive", obj.get("receive"), hint),
        }
    }

    fn topics(&mut self, field: &str, value: Option<&Value>, hint: &str) -> Vec<String> {
        let list = match value {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(a)) if a.len() <= MAX_BRIDGE_TOPICS => a,
            Some(Value::Array(a)) => {
                self.report(
                    ProblemCode::ManifestBadTopic,
                    Some(field),
                    format!(
                        "\"{field}\" lists {} topics, at most {MAX_BRIDGE_TOPICS} are allowed",
                        a.len()
                    ),
                    "group messages under fewer topics".into(),
                );
                return Vec::new();
            }
            Some(other) => {
                let found = describe(other);
                self.report(
                    ProblemCode::ManifestWrongType,
                    Some(field),
                    format!("\"{field}\" must be a list of topic strings, found {found}"),
                    hint.into(),
                );
                return Vec::new();
            }
        };
        let mut topics: Vec<String> = Vec::new();
        for v in list {
            let Some(t) = v.as_str() else {
                let found = describe(v);
                self.report(
                    ProblemCode::ManifestWrongType,
                    Some(field),
                    format!("\"{field}\" must hold topic strings, found {found}"),
                    hint.into(),
                );
                continue;
            };
            if let Some(why) = topic_problem(t) {
                self.report(
                    ProblemCode::ManifestBadTopic,
                    Some(field),
                    format!("\"{field}\": {why}"),
                    "rename the topic; prefix it with the plugin name, e.g. \"plugindemo/button\""
                        .into(),
                );
            } else if !topics.iter().any(|x| x == t) {
                topics.push(t.to_string());
            }
        }
        topics
    }

    /// `cycle_budget_us`: a whole number of microseconds, 1 to 10 s.
    fn cycle_budget(&mut self, value: Option<&Value>) -> Option<u64> {
        const MAX_US: u64 = 10_000_000;
        match value {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|v| (1..=MAX_US).contains(&v)) => {
                n.as_u64()
            }
            Some(other) => {
                let found = describe(other);
                self.report(
                    ProblemCode::ManifestWrongType,
                    Some("cycle_budget_us"),
                    format!("\"cycle_budget_us\" must be a whole number of microseconds from 1 to {MAX_US}, found {found}"),
                    "give the longest time one step may take, e.g. \"cycle_budget_us\": 200".into(),
                );
                None
            }
        }
    }

    fn missing(&mut self, field: &str, example: &str) {
        let (file, key) = (self.file.clone(), self.side.manifest_key());
        self.report(
            ProblemCode::ManifestMissingField,
            Some(field),
            format!("required field \"{field}\" is missing"),
            format!("add {example} to the \"{key}\" object in {file}"),
        );
    }

    fn name(&mut self, expected_name: &str, v: Option<&Value>) -> Option<String> {
        let example = format!("\"name\": \"{expected_name}\"");
        let name = match v {
            None => {
                self.missing("name", &example);
                return None;
            }
            Some(Value::String(s)) => s,
            Some(other) => {
                let found = describe(other);
                self.report(
                    ProblemCode::ManifestWrongType,
                    Some("name"),
                    format!("\"name\" must be a string, found {found}"),
                    format!("write {example}"),
                );
                return None;
            }
        };
        let mut ok = true;
        if let Err(e) = check_name(name) {
            self.report(
                ProblemCode::ManifestInvalidName,
                Some("name"),
                e.to_string(),
                "rename the plugin (folder, files and \"name\") to follow the rule".into(),
            );
            ok = false;
        }
        if name != expected_name {
            let case_only = name.eq_ignore_ascii_case(expected_name);
            let what = if case_only {
                " (they differ only in upper/lower case, which counts)"
            } else {
                ""
            };
            self.report(ProblemCode::ManifestNameMismatch,
                Some("name"),
                format!("\"name\" is \"{name}\", but the plugin folder is \"{expected_name}\"{what}; folder, \"name\" and file stems must be equal"),
                format!("write {example}, or rename the folder and its files to \"{name}\""),
            );
            ok = false;
        }
        ok.then(|| name.clone())
    }

    fn required_version(&mut self, v: Option<&Value>) -> Option<Version> {
        match v {
            None => {
                self.missing("version", "\"version\": \"1.0.0\"");
                None
            }
            Some(v) => self.version_value("version", v),
        }
    }

    fn version_value(&mut self, field: &str, v: &Value) -> Option<Version> {
        match v {
            Value::String(s) => match Version::parse(s) {
                Ok(version) => Some(version),
                Err(e) => {
                    self.report(
                        ProblemCode::ManifestBadVersion,
                        Some(field),
                        e.to_string(),
                        format!("write \"{field}\" as a quoted version, e.g. \"1.0.2.6\""),
                    );
                    None
                }
            },
            other => {
                let found = describe(other);
                let hint = match other {
                    Value::Number(n) => format!("quote it: \"{field}\": \"{n}\""),
                    _ => format!("write \"{field}\" as a quoted version, e.g. \"1.0.2.6\""),
                };
                self.report(
                    ProblemCode::ManifestWrongType,
                    Some(field),
                    format!("\"{field}\" must be a version string like \"3.0.1\", found {found}"),
                    hint,
                );
                None
            }
        }
    }

    fn optional_version(&mut self, field: &str, v: Option<&Value>) -> Option<Version> {
        match v {
            None | Some(Value::Null) => None,
            Some(v) => self.version_value(field, v),
        }
    }

    fn version_list(&mut self, field: &str, v: Option<&Value>) -> Vec<Version> {
        match v {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(version) = self.version_value(&format!("{field}[{i}]"), item) {
                        out.push(version);
                    }
                }
                out
            }
            Some(other) => {
                let found = describe(other);
                let hint = match other {
                    Value::String(s) => format!("write a list: \"{field}\": [\"{s}\"]"),
                    _ => format!("write a list of versions: \"{field}\": [\"3.0.1\", \"3.0.2\"]"),
                };
                self.report(
                    ProblemCode::ManifestWrongType,
                    Some(field),
                    format!("\"{field}\" must be a list of version strings, found {found}"),
                    hint,
                );
                Vec::new()
            }
        }
    }

    fn enable(&mut self, v: Option<&Value>) -> Option<bool> {
        match v {
            None => {
                self.missing("enable", "\"enable\": true");
                None
            }
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                let found = describe(other);
                let hint = match other {
                    Value::String(s) if s == "true" || s == "false" => {
                        format!("write \"enable\": {s} without quotes")
                    }
                    _ => "write \"enable\": true or \"enable\": false".into(),
                };
                self.report(
                    ProblemCode::ManifestWrongType,
                    Some("enable"),
                    format!("\"enable\" must be true or false, found {found}"),
                    hint,
                );
                None
            }
        }
    }

    fn optional_string(&mut self, field: &str, v: Option<&Value>) -> Option<String> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                let found = describe(other);
                self.report(
                    ProblemCode::ManifestWrongType,
                    Some(field),
                    format!("\"{field}\" must be a string, found {found}"),
                    format!("write \"{field}\": \"...\" or remove it"),
                );
                None
            }
        }
    }

    /// `depend` / `ctrlDepend`; `self_name` is set where depending on
    /// oneself is an error (same side).
    fn dependencies(
        &mut self,
        field: &str,
        v: Option<&Value>,
        self_name: Option<&str>,
    ) -> Vec<Dependency> {
        let example = format!(
            "\"{field}\": [\"plugin1\", {{\"name\": \"plugin2\", \"version\": \">=1.2, <2\"}}]"
        );
        let items = match v {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                let found = describe(other);
                self.report(ProblemCode::ManifestWrongType,
                    Some(field),
                    format!("\"{field}\" must be a list of plugin names or {{\"name\", \"version\"}} objects, found {found}"),
                    format!("write {example}"),
                );
                return Vec::new();
            }
        };
        let mut out: Vec<Dependency> = Vec::new();
        let mut first_index: BTreeMap<String, usize> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let entry_field = format!("{field}[{i}]");
            let dep = match item {
                Value::String(name) => self
                    .dependency_name(&entry_field, name)
                    .map(Dependency::any),
                Value::Object(obj) => self.dependency_object(&entry_field, obj),
                other => {
                    let found = describe(other);
                    self.report(ProblemCode::ManifestWrongType,
                        Some(&entry_field),
                        format!("a dependency must be a plugin name or {{\"name\", \"version\"}} object, found {found}"),
                        format!("write {example}"),
                    );
                    None
                }
            };
            let Some(dep) = dep else { continue };
            if self_name == Some(dep.name.as_str()) {
                self.report(
                    ProblemCode::ManifestSelfDependency,
                    Some(&entry_field),
                    format!("the plugin lists itself (\"{}\") in \"{field}\"", dep.name),
                    format!("remove \"{}\" from \"{field}\"", dep.name),
                );
                continue;
            }
            if let Some(first) = first_index.get(&dep.name) {
                self.report(ProblemCode::ManifestDuplicateDependency,
                    Some(&entry_field),
                    format!("\"{}\" is listed in \"{field}\" twice (entries {first} and {i}); both constraints apply", dep.name),
                    format!("keep one entry for \"{}\"", dep.name),
                );
            } else {
                first_index.insert(dep.name.clone(), i);
            }
            out.push(dep);
        }
        out
    }

    fn dependency_name(&mut self, field: &str, name: &str) -> Option<String> {
        match check_name(name) {
            Ok(()) => Some(name.to_string()),
            Err(e) => {
                self.report(
                    ProblemCode::ManifestInvalidName,
                    Some(field),
                    format!("dependency: {e}"),
                    "write the exact name of the plugin depended on".into(),
                );
                None
            }
        }
    }

    fn dependency_object(&mut self, field: &str, obj: &Map<String, Value>) -> Option<Dependency> {
        let name = match obj.get("name") {
            Some(Value::String(s)) => self.dependency_name(&format!("{field}.name"), s),
            None => {
                self.report(
                    ProblemCode::ManifestMissingField,
                    Some(field),
                    "a dependency object needs a \"name\"".into(),
                    "write {\"name\": \"plugin2\", \"version\": \">=1.2\"}".into(),
                );
                None
            }
            Some(other) => {
                let found = describe(other);
                self.report(
                    ProblemCode::ManifestWrongType,
                    Some(&format!("{field}.name")),
                    format!("a dependency's \"name\" must be a string, found {found}"),
                    "write {\"name\": \"plugin2\", \"version\": \">=1.2\"}".into(),
                );
                None
            }
        };
        let req = match obj.get("version") {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => match VersionReq::parse(s) {
                Ok(r) => Some(Some(r)),
                Err(e) => {
                    self.report(
                        ProblemCode::ManifestBadRange,
                        Some(&format!("{field}.version")),
                        e.to_string(),
                        "write a version range such as \">=1.2, <2\" or \"[1.2,2.0)\"".into(),
                    );
                    None
                }
            },
            Some(other) => {
                let found = describe(other);
                self.report(ProblemCode::ManifestWrongType,
                    Some(&format!("{field}.version")),
                    format!("a dependency's \"version\" must be a range string like \">=1.2, <2\", found {found}"),
                    "quote the range: \"version\": \">=1.2\"".into(),
                );
                None
            }
        };
        for key in obj.keys().filter(|k| *k != "name" && *k != "version") {
            self.report(
                ProblemCode::ManifestUnknownField,
                Some(&format!("{field}.{key}")),
                format!("unknown key \"{key}\" in a dependency object is ignored"),
                "a dependency object has only \"name\" and \"version\"".into(),
            );
        }
        Some(Dependency {
            name: name?,
            req: req?,
        })
    }

    fn unknown_fields(&mut self, obj: &Map<String, Value>) {
        let (own, other) = match self.side {
            Side::Client => (CLIENT_FIELDS, CONTROLLER_FIELDS),
            Side::Controller => (CONTROLLER_FIELDS, CLIENT_FIELDS),
        };
        for key in obj.keys() {
            if own.contains(&key.as_str()) || (self.side == Side::Controller && key == "ctrlDepend")
            {
                continue;
            }
            let label = self.side.plugin_label();
            let hint = if let Some(near) = own.iter().find(|f| fold(f) == fold(key)) {
                format!("did you mean \"{near}\"? Field names are case-sensitive")
            } else if other.contains(&key.as_str()) {
                let other_label = self.side.other().plugin_label();
                match key.as_str() {
                    "min_hmi_version" => "controller plugins use \"min_controller_version\"".into(),
                    "custom_hmi_version" => {
                        "controller plugins use \"must_controller_version\"".into()
                    }
                    "min_controller_version" => "client plugins use \"min_hmi_version\"".into(),
                    "must_controller_version" => "client plugins use \"custom_hmi_version\"".into(),
                    _ => format!("\"{key}\" is a {other_label} field; remove it"),
                }
            } else {
                format!(
                    "remove it, or check the spelling against the {label} fields: {}",
                    own.join(", ")
                )
            };
            self.report(
                ProblemCode::ManifestUnknownField,
                Some(key),
                format!("unknown field \"{key}\" for a {label} is ignored"),
                hint,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Severity;
    use crate::ProblemCode;

    /// The vendor's documented example, byte for byte including comments.
    const VENDOR_CLIENT: &str = r#"{
"client_plugin":{
"name":"plugindemo", // Plugin name, consistent with the plugin file name, required
"depend":["plugin1","plugin2"], // Dependent client plugins, optional
"ctrlDepend":[], // Dependent controller plugins, optional
"enable":false, // Plugin enable status after loading, default not enabled after loading, required
"version":"3.0.1", // Plugin version number, required
"min_hmi_version":"3.0.1", // Minimum supported HMI version (xCore version number), optional
"custom_hmi_version":[], // Custom adapted versions, optional
"author":"rokae", // Author, optional
"description":"description" // Description, optional
}
}"#;

    fn parse_ok(side: Side, name: &str, text: &str) -> (Manifest, Problems) {
        let out = parse_manifest(side, name, text.as_bytes());
        match out.manifest {
            Some(m) => (m, out.problems),
            None => panic!("refused:\n{}", out.problems),
        }
    }

    fn parse_err(side: Side, name: &str, text: &str) -> Problems {
        let out = parse_manifest(side, name, text.as_bytes());
        assert!(out.manifest.is_none(), "accepted: {:?}", out.manifest);
        assert!(out.problems.has_errors());
        out.problems
    }

    fn fields_of(problems: &Problems, severity: Severity) -> Vec<&str> {
        problems
            .0
            .iter()
            .filter(|p| p.severity() == severity)
            .map(|p| p.field.as_deref().unwrap_or("-"))
            .collect()
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn vendor_example_with_comments_parses() {
        let (m, problems) = parse_ok(Side::Client, "plugindemo", VENDOR_CLIENT);
        assert!(problems.is_empty(), "{problems}");
        assert_eq!(m.side, Side::Client);
        assert_eq!(m.name, "plugindemo");
        assert_eq!(m.version, v("3.0.1"));
        assert!(!m.enable);
        assert!(m.loads(), "client plugins load even when not enabled");
        assert_eq!(
            m.depend,
            [Dependency::any("plugin1"), Dependency::any("plugin2")]
        );
        assert!(m.ctrl_depend.is_empty());
        assert_eq!(m.min_host_version, Some(v("3.0.1")));
        assert!(m.custom_hmi_versions.is_empty());
        assert_eq!(m.author.as_deref(), Some("rokae"));
        assert_eq!(m.description.as_deref(), Some("description"));
        assert!(m.config.is_empty());
    }

    #[test]
    fn config_items_are_checked_as_part_of_the_manifest() {
        let text = r#"{"controller_plugin": {"name": "x", "enable": true, "version": "1",
            "config": {
                "speed": {"type": "float", "default": 0.5, "maximum": 1.0, "description": "factor"},
                "bad": {"type": "integer", "default": 11, "maximum": 10, "description": "b"}
            }}}"#;
        let p = parse_err(Side::Controller, "x", text);
        assert_eq!(fields_of(&p, Severity::Error), ["config.bad.default"]);
        assert_eq!(p.0[0].code, ProblemCode::ConfigBadDefault);
        assert_eq!(p.0[0].subject, "controller plugin \"x\"");
        assert!(p.to_string().contains("config item \"bad\""), "{p}");
        let text = text.replace("\"default\": 11", "\"default\": 9");
        let (m, p) = parse_ok(Side::Controller, "x", &text);
        assert!(p.is_empty(), "{p}");
        assert_eq!(m.config.items.len(), 2);
        assert_eq!(m.config.defaults().to_json()["bad"], 9);
    }

    #[test]
    fn controller_keyed_form() {
        let text = r#"{"controller_plugin": {"plugindemo": {
            "name": "plugindemo", "enable": true, "version": "1.0.2.6",
            "depend": ["base", {"name": "motion", "version": ">=2.1, <3"}],
            "min_controller_version": "3.0", "must_controller_version": ["3.0.2", "3.0.5"]
        }}}"#;
        let (m, problems) = parse_ok(Side::Controller, "plugindemo", text);
        assert!(problems.is_empty(), "{problems}");
        assert_eq!(m.side, Side::Controller);
        assert_eq!(m.version.to_string(), "1.0.2.6");
        assert_eq!(m.depend.len(), 2);
        assert_eq!(m.depend[1].name, "motion");
        assert_eq!(
            m.depend[1].req.as_ref().map(ToString::to_string).as_deref(),
            Some(">=2.1, <3")
        );
        assert_eq!(m.min_host_version, Some(v("3.0.0")));
        assert_eq!(m.must_controller_versions, [v("3.0.2"), v("3.0.5")]);
        assert!(m.custom_hmi_versions.is_empty());
    }

    #[test]
    fn controller_flat_form_and_disabled_does_not_load() {
        let text =
            r#"{"controller_plugin": {"name": "plugindemo", "enable": false, "version": "2"}}"#;
        let (m, problems) = parse_ok(Side::Controller, "plugindemo", text);
        assert!(problems.is_empty(), "{problems}");
        assert!(!m.loads());
    }

    #[test]
    fn controller_plugin_literally_named_name_is_keyed() {
        let text =
            r#"{"controller_plugin": {"name": {"name": "name", "enable": true, "version": "1"}}}"#;
        let (m, _) = parse_ok(Side::Controller, "name", text);
        assert_eq!(m.name, "name");
    }

    #[test]
    fn keyed_form_key_must_match_folder_and_inner_name() {
        let text = r#"{"controller_plugin": {"other": {"name": "plugindemo", "enable": true, "version": "1"}}}"#;
        let p = parse_err(Side::Controller, "plugindemo", text);
        let fields = fields_of(&p, Severity::Error);
        assert!(fields.contains(&"controller_plugin.other"), "{p}");
        assert!(fields.contains(&"name"), "{p}");
    }

    #[test]
    fn controller_manifest_with_two_plugins_is_refused() {
        let text = r#"{"controller_plugin": {"a": {"name": "a"}, "b": {"name": "b"}}}"#;
        let p = parse_err(Side::Controller, "a", text);
        assert!(p.to_string().contains("must describe one plugin"), "{p}");
        let p = parse_err(Side::Controller, "a", r#"{"controller_plugin": {}}"#);
        assert!(p.to_string().contains("is empty"), "{p}");
    }

    #[test]
    fn all_problems_are_collected_at_once() {
        let text = r#"{"client_plugin": {
            "name": "Plugindemo",
            "enable": "true",
            "version": "3.0.x",
            "min_hmi_version": 3,
            "custom_hmi_version": "3.0.1",
            "depend": ["plugindemo", "a", "a", 7, {"version": "~1"}, "bad name"],
            "ctrlDepend": [{"name": "plugindemo", "version": ">=1", "why": 1}],
            "author": 5,
            "Description": "x",
            "config": [],
            "color": "red"
        }}"#;
        let p = parse_err(Side::Client, "plugindemo", text);
        let errors = fields_of(&p, Severity::Error);
        for field in [
            "name",
            "enable",
            "version",
            "min_hmi_version",
            "custom_hmi_version",
            "depend[0]",
            "depend[3]",
            "depend[4]",
            "depend[4].version",
            "depend[5]",
            "author",
            "config",
        ] {
            assert!(errors.contains(&field), "no error for {field}:\n{p}");
        }
        let warnings = fields_of(&p, Severity::Warning);
        for field in ["depend[2]", "ctrlDepend[0].why", "Description", "color"] {
            assert!(warnings.contains(&field), "no warning for {field}:\n{p}");
        }
        // ctrlDepend naming the package's own controller part is normal.
        assert!(!errors.iter().any(|f| f.starts_with("ctrlDepend")), "{p}");
        // Which problem each is, by its code.
        let code_of = |field: &str| -> Vec<ProblemCode> {
            p.0.iter()
                .filter(|q| q.field.as_deref() == Some(field))
                .map(|q| q.code)
                .collect()
        };
        for (field, code) in [
            ("name", ProblemCode::ManifestNameMismatch),
            ("enable", ProblemCode::ManifestWrongType),
            ("version", ProblemCode::ManifestBadVersion),
            ("min_hmi_version", ProblemCode::ManifestWrongType),
            ("depend[0]", ProblemCode::ManifestSelfDependency),
            ("depend[2]", ProblemCode::ManifestDuplicateDependency),
            ("depend[4].version", ProblemCode::ManifestBadRange),
            ("depend[5]", ProblemCode::ManifestInvalidName),
            ("Description", ProblemCode::ManifestUnknownField),
        ] {
            assert!(
                code_of(field).contains(&code),
                "{field}: {code} expected:\n{p}"
            );
        }
        // Every problem names the plugin and has a hint.
        for problem in &p.0 {
            assert_eq!(problem.subject, "client plugin \"plugindemo\"");
            assert!(!problem.hint.is_empty(), "{problem}");
        }
        let text = p.to_string();
        assert!(text.contains("differ only in upper/lower case"), "{text}");
        assert!(
            text.contains("write \"enable\": true without quotes"),
            "{text}"
        );
        assert!(text.contains("did you mean \"description\""), "{text}");
        assert!(
            text.contains("quote it: \"min_hmi_version\": \"3\""),
            "{text}"
        );
        assert!(text.contains("[\"3.0.1\"]"), "{text}");
    }

    #[test]
    fn required_fields_missing() {
        let p = parse_err(Side::Client, "x", r#"{"client_plugin": {}}"#);
        assert_eq!(
            fields_of(&p, Severity::Error),
            ["name", "version", "enable"]
        );
        assert!(p.to_string().contains("add \"name\": \"x\""), "{p}");
        let p = parse_err(
            Side::Client,
            "x",
            r#"{"client_plugin": {"name": null, "enable": null, "version": null}}"#,
        );
        assert_eq!(
            fields_of(&p, Severity::Error),
            ["name", "version", "enable"]
        );
    }

    #[test]
    fn optional_nulls_count_as_absent() {
        let text = r#"{"client_plugin": {"name": "x", "enable": true, "version": "1",
            "depend": null, "ctrlDepend": null, "min_hmi_version": null, "custom_hmi_version": null,
            "author": null, "description": null, "config": null}}"#;
        let (m, p) = parse_ok(Side::Client, "x", text);
        assert!(p.is_empty(), "{p}");
        assert_eq!(m.min_host_version, None);
    }

    #[test]
    fn ctrl_depend_on_controller_side_is_an_error() {
        let text = r#"{"controller_plugin": {"name": "x", "enable": true, "version": "1", "ctrlDepend": ["y"]}}"#;
        let p = parse_err(Side::Controller, "x", text);
        assert_eq!(fields_of(&p, Severity::Error), ["ctrlDepend"]);
        assert!(fields_of(&p, Severity::Warning).is_empty(), "{p}");
    }

    #[test]
    fn other_side_fields_are_warnings_with_the_right_name() {
        let text = r#"{"controller_plugin": {"name": "x", "enable": true, "version": "1", "min_hmi_version": "3"}}"#;
        let (_, p) = parse_ok(Side::Controller, "x", text);
        assert_eq!(fields_of(&p, Severity::Warning), ["min_hmi_version"]);
        assert!(p.to_string().contains("min_controller_version"), "{p}");
    }

    #[test]
    fn self_dependency_is_an_error() {
        let text = r#"{"client_plugin": {"name": "x", "enable": true, "version": "1", "depend": [{"name": "x"}]}}"#;
        let p = parse_err(Side::Client, "x", text);
        assert_eq!(fields_of(&p, Severity::Error), ["depend[0]"]);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let text =
            r#"{"client_plugin": {"name": "x", "enable": true, "version": "1", "version": "2"}}"#;
        let p = parse_err(Side::Client, "x", text);
        assert_eq!(fields_of(&p, Severity::Error), ["client_plugin.version"]);
    }

    #[test]
    fn trailing_commas_are_warnings() {
        let text = "{\"client_plugin\": {\"name\": \"x\", \"enable\": true, \"version\": \"1\",},}";
        let (_, p) = parse_ok(Side::Client, "x", text);
        assert_eq!(p.warnings().count(), 2, "{p}");
        assert!(p.to_string().contains("line 1"), "{p}");
    }

    #[test]
    fn keyed_client_manifest_is_refused_with_the_flat_form_as_hint() {
        let text = r#"{"client_plugin": {"x": {"name": "x", "enable": true, "version": "1"}}}"#;
        let p = parse_err(Side::Client, "x", text);
        assert_eq!(fields_of(&p, Severity::Error), ["client_plugin.x"]);
        assert!(
            p.to_string()
                .contains("{\"client_plugin\": {\"name\": \"x\""),
            "{p}"
        );
    }

    #[test]
    fn wrong_side_and_wrong_shapes() {
        let client_text = r#"{"client_plugin": {"name": "x", "enable": true, "version": "1"}}"#;
        let p = parse_err(Side::Controller, "x", client_text);
        assert!(
            p.to_string()
                .contains("move the plugin folder to client.zip"),
            "{p}"
        );
        let p = parse_err(Side::Client, "x", "[1]");
        assert!(p.to_string().contains("found a list of 1 item(s)"), "{p}");
        let p = parse_err(Side::Client, "x", r#"{"client_plugin": "x"}"#);
        assert!(p.to_string().contains("must be an object"), "{p}");
        let p = parse_err(Side::Client, "x", r#"{"plugin": {}}"#);
        assert!(
            p.to_string().contains("has no \"client_plugin\" object"),
            "{p}"
        );
    }

    #[test]
    fn syntax_errors_are_reported_with_line() {
        let p = parse_err(
            Side::Client,
            "x",
            "{\n\"client_plugin\": {\n\"name\": \"x\"\n\"enable\": true}}",
        );
        assert_eq!(p.len(), 1);
        assert!(
            p.to_string().contains("x.json: invalid JSON at line 4"),
            "{p}"
        );
        let p = parse_err(Side::Client, "x", "{ /* open");
        assert!(p.to_string().contains("never closed"), "{p}");
    }

    #[test]
    fn oversized_manifest_is_refused_without_parsing() {
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        let p = parse_err(
            Side::Client,
            "x",
            std::str::from_utf8(&big).unwrap_or_default(),
        );
        assert!(p.to_string().contains("at most"), "{p}");
    }

    #[test]
    fn name_rules() {
        assert_eq!(check_name("plugin-1.2_x"), Ok(()));
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert!(matches!(
            check_name(".hidden"),
            Err(NameError::LeadingDot { .. })
        ));
        assert!(matches!(
            check_name(".."),
            Err(NameError::LeadingDot { .. })
        ));
        assert!(matches!(
            check_name("a/b"),
            Err(NameError::BadCharacter { found: '/', .. })
        ));
        assert!(matches!(
            check_name("插件"),
            Err(NameError::BadCharacter { .. })
        ));
        assert!(matches!(
            check_name(&"a".repeat(65)),
            Err(NameError::TooLong { len: 65, .. })
        ));
        assert_eq!(check_name(&"a".repeat(64)), Ok(()));
        let text = r#"{"client_plugin": {"name": "a b", "enable": true, "version": "1"}}"#;
        let p = parse_err(Side::Client, "a b", text);
        assert!(p.to_string().contains("contains ' '"), "{p}");
    }

    #[test]
    fn serializes_for_json_output() {
        let (m, _) = parse_ok(Side::Client, "plugindemo", VENDOR_CLIENT);
        let json = serde_json::to_value(&m).unwrap_or_default();
        assert_eq!(json["side"], "client");
        assert_eq!(json["version"], "3.0.1");
        assert_eq!(json["depend"][0]["name"], "plugin1");
        let dep = Dependency::with_req(
            "m",
            VersionReq::parse(">=1").unwrap_or_else(|_| VersionReq::any()),
        );
        assert_eq!(
            serde_json::to_value(&dep).unwrap_or_default()["version"],
            ">=1"
        );
    }
}
