//! (placeholder until the decode branch lands: same signatures, no decoding)

use crate::domain::{Event, Stream};

#[derive(Clone, Debug)]
pub struct DecodeOptions {
    pub default_ship_window_ms: i64,
}
impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions { default_ship_window_ms: 48 * 3_600_000 }
    }
}
#[derive(Debug, thiserror::Error)]
#[error("placeholder")]
pub struct DecodeError;
impl DecodeError {
    pub fn code(&self) -> &'static str {
        "placeholder"
    }
}
pub fn decode_json(_b: &[u8], _s: Option<Stream>, _o: &DecodeOptions) -> Result<Event, DecodeError> {
    Err(DecodeError)
}
pub fn encode_json(_e: &Event) -> String {
    String::new()
}
