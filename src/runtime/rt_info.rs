//! A model's runtime-info tree (`rt_info`), as OVMS serves it in KServe REST model metadata:
//! nested JSON objects with string leaves. The OpenVINO Model API builds its model wrapper from
//! `rt_info.model_info` (model type, labels, thresholds...).
//!
//! Read from the IR's XML, where `ov::save_model` writes the tree under `<net><rt_info>`: a key
//! is an element (or `<info name="key">` when the key is no valid XML name), a leaf has a
//! `value` attribute. OpenVINO's C API has no rt_info call, and reading the file keeps this
//! independent of where the model runs (placement workers). Other formats have no tree here.

use crate::runtime::files::ModelFiles;
use serde_json::{Map, Value};
use std::path::Path;

/// The tree of the model in `dir`; an empty object when it has none or is not an IR.
pub fn read(dir: &Path) -> Value {
    let Ok(ModelFiles::Ir { xml, .. }) = ModelFiles::find(dir) else {
        return Value::Object(Map::new());
    };
    match std::fs::read_to_string(&xml) {
        Ok(text) => from_ir(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %xml.display(), error = %e, "cannot read the model's rt_info");
            Value::Object(Map::new())
        }),
        Err(e) => {
            tracing::warn!(path = %xml.display(), error = %e, "cannot read the model's rt_info");
            Value::Object(Map::new())
        }
    }
}

/// The `<net><rt_info>` tree of an IR document (layers have rt_info of their own: not these).
pub fn from_ir(xml: &str) -> Result<Value, roxmltree::Error> {
    let document = roxmltree::Document::parse_with_options(
        xml,
        roxmltree::ParsingOptions {
            allow_dtd: false,
            ..Default::default()
        },
    )?;
    let tree = document
        .root_element()
        .children()
        .find(|n| n.has_tag_name("rt_info"))
        .map(object)
        .unwrap_or_default();
    Ok(Value::Object(tree))
}

fn object(node: roxmltree::Node) -> Map<String, Value> {
    node.children()
        .filter(roxmltree::Node::is_element)
        .map(|child| {
            let key = match (child.tag_name().name(), child.attribute("name")) {
                ("info", Some(name)) => name.to_string(),
                (tag, _) => tag.to_string(),
            };
            let has_children = child.children().any(|c| c.is_element());
            let value = match child.attribute("value") {
                Some(value) if !has_children => Value::String(value.to_string()),
                _ => Value::Object(object(child)),
            };
            (key, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_net_level_tree_as_nested_objects_with_string_leaves() {
        let xml = r#"<?xml version="1.0"?>
<net name="m" version="11">
  <layers>
    <layer id="0" name="x" type="Parameter"><rt_info><attribute name="fused_names" value="x"/></rt_info></layer>
  </layers>
  <rt_info>
    <info name="OpenVINO Runtime" value="2026.4.1" />
    <model_info>
      <confidence_threshold value="0.5" />
      <labels value="cat dog" />
      <model_type value="Classification" />
    </model_info>
    <toplevel_key value="top" />
  </rt_info>
</net>"#;
        assert_eq!(
            from_ir(xml).unwrap(),
            json!({
                "OpenVINO Runtime": "2026.4.1",
                "model_info": {"confidence_threshold": "0.5", "labels": "cat dog", "model_type": "Classification"},
                "toplevel_key": "top"
            })
        );
    }

    #[test]
    fn no_tree_is_an_empty_object() {
        assert_eq!(from_ir("<net><layers/></net>").unwrap(), json!({}));
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("m.onnx"), b"x").unwrap();
        assert_eq!(read(d.path()), json!({}));
    }
}
