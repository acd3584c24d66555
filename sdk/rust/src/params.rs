//! Module params: the WIT `list<param>` (flat, dotted keys) to the module's `Config`.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use crate::__private::bindings::weir::sip::types::{Param, ParamValue};
use crate::{Error, Module};

// === NoConfig ===

/// `Module::Config` for a module without params: accepts an empty `params` table and
/// refuses any key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoConfig;

impl<'de> Deserialize<'de> for NoConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NoKeys;
        impl<'de> Visitor<'de> for NoKeys {
            type Value = NoConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("no params")
            }
            fn visit_unit<E: de::Error>(self) -> Result<NoConfig, E> {
                Ok(NoConfig)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoConfig, A::Error> {
                match map.next_key::<String>()? {
                    Some(key) => {
                        let _: IgnoredAny = map.next_value()?;
                        Err(de::Error::custom(format!(
                            "unknown param `{key}`: this module takes no params"
                        )))
                    }
                    None => Ok(NoConfig),
                }
            }
        }
        deserializer.deserialize_any(NoKeys)
    }
}

// === decoding ===

/// Decode the params and build the module: what the `init` export does.
pub(crate) fn instantiate<M: Module>(params: Vec<Param>) -> Result<M, Error> {
    let config = decode::<M::Config>(params)?;
    M::init(config)
}

/// Nest the flat params into a JSON object and deserialize `C` from it. Errors name the
/// offending key.
pub(crate) fn decode<C: DeserializeOwned>(params: Vec<Param>) -> Result<C, Error> {
    let value = to_value(params)?;
    // `&Value` is a deserializer itself: the same as `serde_json::from_value`, without
    // giving up the value, which `locate` needs on error.
    match C::deserialize(&value) {
        Ok(config) => Ok(config),
        Err(err) => Err(match locate::<C>(&value) {
            Some(path) if !path.is_empty() => Error::new(format!("param `{path}`: {err}")),
            _ => Error::new(format!("params: {err}")),
        }),
    }
}

/// The params as one JSON object, dotted keys (`a.b`) nested again (`{"a": {"b": ..}}`).
pub(crate) fn to_value(params: Vec<Param>) -> Result<Value, Error> {
    let mut root = Map::new();
    for Param { key, value } in params {
        let value = match value {
            ParamValue::Text(s) => Value::String(s),
            ParamValue::Integer(i) => Value::from(i),
            ParamValue::Float(f) => match Number::from_f64(f) {
                Some(n) => Value::Number(n),
                None => {
                    return Err(Error::new(format!(
                        "param `{key}`: {f} is not a finite number"
                    )))
                }
            },
            ParamValue::Boolean(b) => Value::Bool(b),
            ParamValue::TextList(list) => Value::from(list),
            ParamValue::IntegerList(list) => Value::from(list),
        };
        insert(&mut root, &key, value)?;
    }
    Ok(Value::Object(root))
}

fn insert(root: &mut Map<String, Value>, key: &str, value: Value) -> Result<(), Error> {
    let segments: Vec<&str> = key.split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(Error::new(format!("param `{key}`: empty key segment")));
    }
    let conflict = || {
        Error::new(format!(
            "param `{key}`: given twice, or both as a value and a table"
        ))
    };
    let (last, parents) = match segments.split_last() {
        Some(split) => split,
        None => return Err(conflict()),
    };
    let mut table = root;
    for segment in parents {
        let entry = table
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        table = match entry {
            Value::Object(map) => map,
            _ => return Err(conflict()),
        };
    }
    if table.contains_key(*last) {
        return Err(conflict());
    }
    table.insert(last.to_string(), value);
    Ok(())
}

/// Find the key path of a decoding error. `serde_json::from_value` errors carry no
/// position, but text errors carry a line: write the value one token per line, recording
/// the key path of each line, and decode that text to learn where it fails.
fn locate<C: DeserializeOwned>(value: &Value) -> Option<String> {
    let mut out = Lines::default();
    out.emit(value, "")?;
    out.newline("");
    let err = serde_json::from_str::<C>(&out.text).err()?;
    out.paths.get(err.line().checked_sub(1)?).cloned()
}

/// JSON text with one scalar, key or bracket per line, and the key path of each line.
#[derive(Default)]
struct Lines {
    text: String,
    paths: Vec<String>,
}

impl Lines {
    fn newline(&mut self, path: &str) {
        self.text.push('\n');
        self.paths.push(path.to_string());
    }

    fn emit(&mut self, value: &Value, path: &str) -> Option<()> {
        match value {
            Value::Object(map) if !map.is_empty() => {
                self.text.push('{');
                self.newline(path);
                let mut rest = map.len();
                for (key, child) in map {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    self.text.push_str(&serde_json::to_string(key).ok()?);
                    self.text.push(':');
                    self.emit(child, &child_path)?;
                    rest -= 1;
                    if rest > 0 {
                        self.text.push(',');
                    }
                    self.newline(&child_path);
                }
                self.text.push('}');
            }
            Value::Array(items) if !items.is_empty() => {
                self.text.push('[');
                self.newline(path);
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    self.emit(item, &item_path)?;
                    if i + 1 < items.len() {
                        self.text.push(',');
                    }
                    self.newline(&item_path);
                }
                self.text.push(']');
            }
            scalar => self.text.push_str(&serde_json::to_string(scalar).ok()?),
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(key: &str, value: ParamValue) -> Param {
        Param {
            key: key.into(),
            value,
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        burst: u32,
        rate: f64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        name: String,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        ports: Vec<u16>,
        enabled: bool,
        limits: Limits,
    }

    fn good() -> Vec<Param> {
        vec![
            p("name", ParamValue::Text("edge".into())),
            p("tags", ParamValue::TextList(vec!["a".into(), "b".into()])),
            p("ports", ParamValue::IntegerList(vec![5060, 5061])),
            p("enabled", ParamValue::Boolean(true)),
            p("limits.burst", ParamValue::Integer(10)),
            p("limits.rate", ParamValue::Float(2.5)),
        ]
    }

    #[test]
    fn dotted_keys_nest() {
        let cfg: Cfg = decode(good()).unwrap();
        assert_eq!(
            cfg,
            Cfg {
                name: "edge".into(),
                tags: vec!["a".into(), "b".into()],
                ports: vec![5060, 5061],
                enabled: true,
                limits: Limits {
                    burst: 10,
                    rate: 2.5
                },
            }
        );
    }

    #[test]
    fn type_errors_name_the_key() {
        let mut params = good();
        params[4] = p("limits.burst", ParamValue::Text("ten".into()));
        let err = decode::<Cfg>(params).unwrap_err().to_string();
        assert!(
            err.starts_with("param `limits.burst`: invalid type"),
            "{err}"
        );

        let mut params = good();
        params[2] = p("ports", ParamValue::IntegerList(vec![5060, 70000]));
        let err = decode::<Cfg>(params).unwrap_err().to_string();
        assert!(err.starts_with("param `ports[1]`: invalid value"), "{err}");

        let mut params = good();
        params[1] = p("tags", ParamValue::Text("a".into()));
        let err = decode::<Cfg>(params).unwrap_err().to_string();
        assert!(err.starts_with("param `tags`: invalid type"), "{err}");
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        let mut params = good();
        params.push(p("limits.brust", ParamValue::Integer(1)));
        let err = decode::<Cfg>(params).unwrap_err().to_string();
        assert!(
            err.starts_with("param `limits.brust`: unknown field `brust`"),
            "{err}"
        );

        let mut params = good();
        params.remove(0);
        let err = decode::<Cfg>(params).unwrap_err().to_string();
        assert_eq!(err, "params: missing field `name`");

        let mut params = good();
        params.remove(5);
        let err = decode::<Cfg>(params).unwrap_err().to_string();
        assert_eq!(err, "param `limits`: missing field `rate`");
    }

    #[test]
    fn conflicting_keys_are_errors() {
        let params = vec![
            p("a", ParamValue::Integer(1)),
            p("a.b", ParamValue::Integer(2)),
        ];
        assert!(to_value(params).unwrap_err().to_string().contains("`a.b`"));
        let params = vec![
            p("a.b", ParamValue::Integer(1)),
            p("a", ParamValue::Integer(2)),
        ];
        assert!(to_value(params).is_err());
        let params = vec![p("a..b", ParamValue::Integer(1))];
        assert!(to_value(params)
            .unwrap_err()
            .to_string()
            .contains("empty key segment"));
        let params = vec![p("x", ParamValue::Float(f64::NAN))];
        assert!(to_value(params).is_err());
    }

    #[test]
    fn no_config_refuses_keys() {
        assert_eq!(decode::<NoConfig>(vec![]).unwrap(), NoConfig);
        let err = decode::<NoConfig>(vec![p("x", ParamValue::Boolean(true))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown param `x`"), "{err}");
    }
}

/// A common module param: which messages a module edits. Put it in a config struct
/// as `apply_to: ApplyTo` with the module's own default (`#[serde(default =
/// "...")]`), and ask [`ApplyTo::requests`] / [`ApplyTo::replies`] in the hooks. TOML:
/// `apply_to = "requests" | "replies" | "both"`.
/// `Default` is `Both`; a module picks its own default in its config.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyTo {
    /// Requests only.
    Requests,
    /// Replies only.
    Replies,
    /// Requests and replies.
    #[default]
    Both,
}

impl ApplyTo {
    /// Whether requests are edited.
    pub fn requests(self) -> bool {
        self != ApplyTo::Replies
    }

    /// Whether replies are edited.
    pub fn replies(self) -> bool {
        self != ApplyTo::Requests
    }
}
