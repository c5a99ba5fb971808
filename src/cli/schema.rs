//! `gantry schema [KIND]`: print the JSON Schemas.

use crate::manifest::schema::{self, SchemaKind};

use super::{Exit, OpsError};

pub fn run(kind: Option<&str>) -> Result<Exit, OpsError> {
    match kind {
        Some(name) => {
            let kind = SchemaKind::from_name(name).ok_or_else(|| {
                let names: Vec<&str> = SchemaKind::all().iter().map(|k| k.name()).collect();
                OpsError::Usage(format!("unknown schema `{name}` (one of: {})", names.join(", ")))
            })?;
            print!("{}", schema::schema_text(kind));
        }
        None => {
            // All schemas as one JSON object keyed by kind, so the output stays valid JSON.
            let mut all = serde_json::Map::new();
            for kind in SchemaKind::all() {
                let value: serde_json::Value = serde_json::from_str(schema::schema_text(*kind))
                    .map_err(|e| OpsError::Usage(format!("built-in schema {} is not JSON: {e}", kind.name())))?;
                all.insert(kind.name().to_string(), value);
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&all).map_err(|e| OpsError::Usage(e.to_string()))?
            );
        }
    }
    Ok(Exit::Ok)
}
