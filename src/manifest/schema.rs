//! PLACEHOLDER until the schemas branch lands (not committed).
#[derive(Debug, Clone, Copy)]
pub enum SchemaKind {
    Component,
    Release,
    Target,
    Policy,
    Window,
    Approval,
    Config,
    Plan,
}
impl SchemaKind {
    pub fn from_name(_: &str) -> Option<Self> {
        None
    }
    pub fn all() -> &'static [SchemaKind] {
        &[]
    }
    pub fn name(&self) -> &'static str {
        ""
    }
}
pub fn schema_text(_: SchemaKind) -> &'static str {
    ""
}
pub struct SchemaViolation {
    pub pointer: String,
    pub message: String,
}
pub fn validate(_k: SchemaKind, _v: &serde_json::Value) -> Vec<SchemaViolation> {
    Vec::new()
}
