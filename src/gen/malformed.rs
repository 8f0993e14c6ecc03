//! Malformed lines for the generator: one of each class of bad input of SPEC §7/§9, so a
//! generated file exercises every dead-letter reason. Every line made here must fail to
//! decode (checked by the tests).

use crate::domain::time::Timestamp;
use rand::rngs::SmallRng;
use rand::Rng;

/// Number of distinct malformed-line classes.
pub(super) const CLASSES: u32 = 16;

/// A malformed line of class `class % CLASSES`, with id `bad-{n}`, for `shop` around `t`.
pub(super) fn line(class: u32, n: u64, shop: &str, t: Timestamp) -> Vec<u8> {
    let id = format!("bad-{n}");
    let time = t.to_rfc3339();
    let head =
        |ty: &str| format!(r#"{{"event_id":"{id}","type":"{ty}","shop_id":"{shop}","event_time":"{time}""#);
    let paid = |rest: &str| format!(r#"{},"order_id":"o-{id}","buyer_id":"b1"{rest}}}"#, head("order.paid"));
    let s = match class % CLASSES {
        0 => {
            let full = paid(r#","amount_fen":1999"#);
            full[..full.len() / 2].to_string()
        }
        1 => format!("[{}]", paid(r#","amount_fen":1999"#)),
        2 => format!(r#"{},"order_id":"o1","buyer_id":"b1"}}"#, head("order.shipped")),
        3 => format!(
            r#"{},"order_id":"o1","tracking_no":"SF1","carrier":"SF","status":"picked_up"}}"#,
            head("logistics.update")
        ),
        4 => format!(r#"{},"buyer_id":"b1","amount_fen":1999}}"#, head("order.paid")),
        5 => paid(r#","amount_fen":1999.0"#),
        6 => paid(r#","amount_fen":"1999""#),
        7 => paid(r#","amount_fen":-1999"#),
        8 => format!(
            r#"{},"order_id":"o1","buyer_id":"b1","description":6,"service":5,"logistics":5}}"#,
            head("order.rated")
        ),
        9 => paid(r#","amount_fen":1999,"amount_fen":1999"#),
        10 => paid(&format!(
            r#","amount_fen":1999,"ship_deadline":"{}""#,
            Timestamp(t.0 - 3_600_000).to_rfc3339()
        )),
        11 => format!(
            r#"{{"event_id":"{id}","type":"order.completed","shop_id":"{shop}","event_time":"1999-12-31T12:00:00+08:00","order_id":"o1","buyer_id":"b1"}}"#
        ),
        12 => format!(
            r#"{{"event_id":"{id}","type":"order.closed","shop_id":"{shop}","event_time":"{}","order_id":"o1","buyer_id":"b1"}}"#,
            time.replacen('T', " ", 1)
        ),
        13 => format!(
            r#"{},"refund_id":"r1","order_id":"o1","buyer_id":"b1","stage":"COMPLETED","refunded":"yes","closed_by":"BUYER"}}"#,
            head("refund.update")
        ),
        14 => "this is not JSON".to_string(),
        _ => {
            let mut bytes = paid(r#","amount_fen":1999"#).into_bytes();
            let at = bytes.len() / 3;
            bytes[at] = 0xff;
            return bytes;
        }
    };
    s.into_bytes()
}

/// Picks a class at random.
pub(super) fn random(rng: &mut SmallRng, n: u64, shop: &str, t: Timestamp) -> Vec<u8> {
    line(rng.random_range(0..CLASSES), n, shop, t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decode::{decode_json, DecodeOptions};

    #[test]
    fn every_class_fails_with_its_reason() {
        let t = Timestamp::parse_rfc3339("2024-05-01T10:00:00+08:00").unwrap();
        let expected = [
            "malformed_json",
            "not_an_object",
            "unknown_type",
            "unknown_enum_value",
            "missing_field",
            "ill_typed",
            "ill_typed",
            "negative_amount",
            "score_out_of_range",
            "duplicate_key",
            "impossible_time",
            "impossible_time",
            "ill_typed",
            "ill_typed",
            "malformed_json",
            "not_utf8",
        ];
        assert_eq!(expected.len(), CLASSES as usize);
        for (class, code) in expected.iter().enumerate() {
            let bytes = line(class as u32, 7, "shop-00001", t);
            assert!(!bytes.contains(&b'\n'));
            let err = decode_json(&bytes, None, &DecodeOptions::default()).unwrap_err();
            assert_eq!(err.code(), *code, "class {class}: {err}");
        }
    }
}
