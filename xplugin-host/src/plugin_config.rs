//! Plugin configuration (the SPEC's `config` extension, after the Fledge
//! model): a manifest's `config` object maps item names to typed items with
//! defaults, e.g. `{"speed": {"type": "float", "default": "0.5"}}`. The value
//! a plugin receives in `init` is an object of item name to typed value.
//!
//! Only defaults are resolved today; keeping the user's values across
//! upgrades and runtime reconfigure are planned (SPEC section 6).

use serde_json::{Map, Value};

/// Resolves the defaults of a `config` object into the JSON a plugin gets.
/// Items without a usable default are left out; a default given as a string
/// (the Fledge convention) is converted to the item's `type` when it parses.
pub fn resolve_defaults(config: &Value) -> Value {
    let mut out = Map::new();
    let Some(items) = config.as_object() else {
        return Value::Object(out);
    };
    for (name, item) in items {
        let Some(default) = item.get("default") else {
            continue;
        };
        let ty = item.get("type").and_then(Value::as_str).unwrap_or("");
        let value = match (ty, default) {
            ("integer", Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(default.clone()),
            ("float", Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                .unwrap_or(default.clone()),
            ("boolean", Value::String(s)) => match s.trim() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => default.clone(),
            },
            ("json", Value::String(s)) => serde_json::from_str(s).unwrap_or(default.clone()),
            _ => default.clone(),
        };
        out.insert(name.clone(), value);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_defaults_are_typed() {
        let c = serde_json::json!({
            "speed": {"type": "float", "default": "0.5"},
            "count": {"type": "integer", "default": "3"},
            "on": {"type": "boolean", "default": "true"},
            "name": {"type": "string", "default": "x"},
            "nodefault": {"type": "string"}
        });
        assert_eq!(
            resolve_defaults(&c),
            serde_json::json!({"speed": 0.5, "count": 3, "on": true, "name": "x"})
        );
    }
}
