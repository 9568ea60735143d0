//! Adjustments that make the schemas schemars derives fit what the Kubernetes API server expects,
//! applied to every Kolbak schema struct through `#[schemars(transform = ...)]`.

use schemars::Schema;
use schemars::transform::transform_subschemas;
use serde_json::Value;

/// Rewrites a schema and all its subschemas for Kubernetes:
///
/// - Rust `u32` becomes `format: int32` with `maximum: 2147483647`. Kubernetes knows only the
///   OpenAPI integer formats and answers every CRD apply with an `unrecognized format "uint32"`
///   warning otherwise; the maximum keeps stored values readable as `u32` and as Go `int32`.
/// - In an `anyOf` / `oneOf` (e.g. the `Option<T>` wrapper), branch descriptions are dropped when
///   the enclosing schema has its own. Kubernetes forbids descriptions inside these junctors, and
///   kube's `Option<enum>` rewrite would otherwise replace a field's documentation with the enum
///   type's.
pub(crate) fn kubernetes_compat(schema: &mut Schema) {
    transform_subschemas(&mut kubernetes_compat, schema);
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object.get("format").and_then(Value::as_str) == Some("uint32") {
        object.insert("format".into(), "int32".into());
        object.entry("maximum").or_insert(i32::MAX.into());
    }
    if object.contains_key("description") {
        for junctor in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = object.get_mut(junctor) {
                for branch in branches.iter_mut().filter_map(Value::as_object_mut) {
                    branch.remove("description");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::json_schema;

    #[test]
    fn u32_becomes_bounded_int32() {
        let mut schema = json_schema!({
            "type": "object",
            "properties": {
                "count": {"type": "integer", "format": "uint32", "minimum": 1},
                "big": {"type": "integer", "format": "int64"},
            }
        });
        kubernetes_compat(&mut schema);
        assert_eq!(
            schema.as_value()["properties"],
            serde_json::json!({
                "count": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 2147483647},
                "big": {"type": "integer", "format": "int64"},
            })
        );
    }

    #[test]
    fn field_description_wins_over_branch_description() {
        let mut schema = json_schema!({
            "description": "field doc",
            "anyOf": [
                {"description": "type doc", "type": "string", "enum": ["a"]},
                {"type": "null"},
            ]
        });
        kubernetes_compat(&mut schema);
        assert_eq!(
            schema.as_value()["anyOf"][0],
            serde_json::json!({"type": "string", "enum": ["a"]})
        );
        assert_eq!(schema.as_value()["description"], "field doc");
    }
}
