//! ECS conformance of netta's lines, checked against the vendored official field
//! definitions (`tests/ecs/ecs_flat.yml`, see `tests/ecs/README.md`): every field
//! outside `netta.*` exists, has its JSON type, is an array exactly when ECS
//! normalises it to one, takes only allowed values, and each `event.type` is
//! expected for every `event.category` of the line. Required fields are present.
use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// The ECS release the vendored file is from.
pub const ECS_VERSION: &str = "9.4.0";

/// The custom namespace netta keeps its own fields in.
const CUSTOM: &str = "netta";

pub struct Field {
    pub ty: String,
    pub array: bool,
    pub required: bool,
    /// `allowed_values` names, each with its expected event types.
    pub allowed: Option<HashMap<String, Vec<String>>>,
}

pub struct Schema {
    pub fields: HashMap<String, Field>,
}

fn strs(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Schema {
    pub fn parse(text: &str) -> Result<Schema, String> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| format!("ecs_flat.yml: {e}"))?;
        let top = docs
            .first()
            .and_then(Yaml::as_hash)
            .ok_or("ecs_flat.yml: not a mapping")?;
        let mut fields = HashMap::new();
        for (k, v) in top {
            let (Some(name), Some(ty)) = (k.as_str(), v["type"].as_str()) else {
                continue;
            };
            let allowed = v["allowed_values"].as_vec().map(|vals| {
                vals.iter()
                    .filter_map(|a| {
                        let n = a["name"].as_str()?;
                        Some((n.to_string(), strs(&a["expected_event_types"])))
                    })
                    .collect()
            });
            fields.insert(
                name.to_string(),
                Field {
                    ty: ty.to_string(),
                    array: strs(&v["normalize"]).iter().any(|n| n == "array"),
                    required: v["required"].as_bool() == Some(true),
                    allowed,
                },
            );
        }
        Ok(Schema { fields })
    }

    /// The vendored schema, parsed once per test process.
    pub fn official() -> &'static Schema {
        static S: OnceLock<Schema> = OnceLock::new();
        S.get_or_init(|| {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ecs/ecs_flat.yml");
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            Schema::parse(&text).unwrap_or_else(|e| panic!("{e}"))
        })
    }

    /// Every way `line` departs from ECS, one message each (empty: conforms).
    pub fn check(&self, line: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        let Some(obj) = line.as_object() else {
            return vec!["not a JSON object".into()];
        };
        let mut leaves = Vec::new();
        for (k, v) in obj {
            flatten(k.clone(), v, &mut leaves);
        }
        for (name, v) in &leaves {
            if name == CUSTOM || name.starts_with("netta.") {
                continue;
            }
            let Some(f) = self.fields.get(name) else {
                errs.push(format!("{name}: not an ECS field"));
                continue;
            };
            let values: Vec<&Value> = match v {
                Value::Array(a) if f.array => a.iter().collect(),
                Value::Array(_) => {
                    errs.push(format!("{name}: an array, ECS has a single value"));
                    continue;
                }
                _ if f.array => {
                    errs.push(format!("{name}: ECS normalises it to an array"));
                    vec![v]
                }
                _ => vec![v],
            };
            for v in values {
                if let Err(e) = type_ok(&f.ty, v) {
                    errs.push(format!("{name}: {e} (ECS type {}), got {v}", f.ty));
                }
                if let (Some(allowed), Some(s)) = (&f.allowed, v.as_str()) {
                    if !allowed.contains_key(s) {
                        errs.push(format!("{name}: {s:?} is not an allowed value"));
                    }
                }
            }
        }
        for (name, f) in &self.fields {
            if f.required && !leaves.iter().any(|(n, _)| n == name) {
                errs.push(format!("{name}: required by ECS, missing"));
            }
        }
        if let Some(key) = leaves.iter().find(|(n, _)| n.starts_with("netta.")) {
            if self.fields.contains_key(&key.0) {
                errs.push(format!("{}: custom field shadows ECS", key.0));
            }
        }
        errs.extend(self.check_types_for_categories(line));
        errs
    }

    fn check_types_for_categories(&self, line: &Value) -> Vec<String> {
        let Some(cats) = self
            .fields
            .get("event.category")
            .and_then(|f| f.allowed.as_ref())
        else {
            return vec!["event.category has no allowed values in the schema".into()];
        };
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let categories = list(&line["event"]["category"]);
        let types = list(&line["event"]["type"]);
        let mut errs = Vec::new();
        for c in &categories {
            let Some(expected) = cats.get(c) else {
                continue;
            };
            for t in &types {
                if !expected.contains(t) {
                    errs.push(format!(
                        "event.type {t:?} is not expected for event.category {c:?} (expected {expected:?})"
                    ));
                }
            }
        }
        errs
    }
}

fn flatten(prefix: String, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                flatten(format!("{prefix}.{k}"), v, out);
            }
        }
        _ => out.push((prefix, v.clone())),
    }
}

fn type_ok(ty: &str, v: &Value) -> Result<(), String> {
    let (ok, what) = match ty {
        "keyword" | "constant_keyword" | "wildcard" | "text" | "match_only_text" => {
            (v.is_string(), "a string")
        }
        "long" | "integer" | "short" | "byte" => (v.as_i64().is_some(), "an integer"),
        "unsigned_long" => (v.as_u64().is_some(), "an unsigned integer"),
        "float" | "double" | "half_float" | "scaled_float" => (v.as_f64().is_some(), "a number"),
        "boolean" => (v.is_boolean(), "a boolean"),
        "ip" => (
            v.as_str()
                .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
            "an IP address",
        ),
        "date" => (
            v.as_str()
                .is_some_and(|s| humantime::parse_rfc3339(s).is_ok()),
            "an RFC 3339 date",
        ),
        "object" | "flattened" | "nested" => (true, ""),
        other => return Err(format!("type {other} not handled by the validator")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("not {what}"))
    }
}

/// Panics with every departure from ECS if `line` does not conform.
pub fn assert_conforms(line: &Value) {
    let errs = Schema::official().check(line);
    assert!(
        errs.is_empty(),
        "line departs from ECS {ECS_VERSION}:\n  {}\nline: {line}",
        errs.join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "@timestamp": "2026-01-01T00:00:00.000000001Z",
            "ecs": {"version": ECS_VERSION},
            "event": {"kind": "event", "category": ["network"], "type": ["connection", "start"],
                      "action": "connection-opened", "outcome": "success", "duration": 5},
            "network": {"transport": "tcp", "iana_number": "6", "community_id": "1:abc"},
            "source": {"ip": "127.0.0.1", "port": 1},
            "related": {"ip": ["127.0.0.1"]},
            "netta": {"anything": [1, 2]},
        })
    }

    #[test]
    fn the_official_schema_parses() {
        let s = Schema::official();
        assert!(s.fields.len() > 1000, "{}", s.fields.len());
        assert_eq!(s.fields["source.port"].ty, "long");
        assert!(s.fields["@timestamp"].required);
        assert!(s.fields["event.type"].array);
        let cats = s.fields["event.category"].allowed.as_ref().unwrap();
        assert!(cats["network"].contains(&"connection".to_string()));
    }

    #[test]
    fn accepts_a_conforming_line() {
        assert_eq!(Schema::official().check(&good()), Vec::<String>::new());
    }

    #[test]
    fn finds_each_kind_of_departure() {
        let s = Schema::official();
        let cases: &[(&[&str], Value, &str)] = &[
            (&["ecs"], Value::Null, "ecs.version: required"),
            (
                &["source", "port"],
                json!("1"),
                "source.port: not an integer",
            ),
            (
                &["source", "ip"],
                json!("localhost"),
                "source.ip: not an IP",
            ),
            (
                &["source", "sock"],
                json!(1),
                "source.sock: not an ECS field",
            ),
            (
                &["event", "type"],
                json!(["connection", "error"]),
                "\"error\" is not expected",
            ),
            (&["event", "kind"], json!("alarm"), "not an allowed value"),
            (
                &["event", "category"],
                json!("network"),
                "normalises it to an array",
            ),
            (
                &["event", "action"],
                json!(["a"]),
                "an array, ECS has a single value",
            ),
            (&["@timestamp"], json!("yesterday"), "not an RFC 3339 date"),
        ];
        for (path, bad, want) in cases {
            let mut line = good();
            let (last, parents) = path.split_last().unwrap();
            let mut at = &mut line;
            for p in parents {
                at = &mut at[*p];
            }
            if bad.is_null() {
                at.as_object_mut().unwrap().remove(*last);
            } else {
                at[*last] = bad.clone();
            }
            let errs = s.check(&line);
            assert!(errs.iter().any(|e| e.contains(want)), "{path:?}: {errs:?}");
        }
    }
}
