//! Where facts were read, stored compactly: a fact keeps its source position with the topic
//! or file name replaced by a small number, and the names are stored once per state
//! ([`Origins`], in the engine's saved bookkeeping).
//!
//! Every fact carries its source position for the compensation lineage (SPEC §5). With the
//! name in each fact, a topic name like `prod.tmall.orders.v1` was repeated in every order's
//! payment, shipping and completion facts, decoded, copied and written with them. Measured
//! in session 8 (interleaved runs): file mode 4–10 % faster (7 of 7 pairs) and 10 % less peak
//! memory; Kafka mode +5 % (median of 18 pairs), within the noise.
//!
//! Numbers are given in the order names are registered or first seen. Kafka mode registers
//! its input topics when a shard's engine is loaded ([`Origins::register`]), so a new
//! state numbers them in layout order whatever arrives first; a state numbered otherwise
//! before (session 24) keeps its numbers. Nothing compares numbers, only the names they
//! stand for ([`Origins::kafka_before`]), and outputs carry names ([`Origins::source`]).

use crate::output::SourcePos;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A source position with its origin (topic or file) as a number of [`Origins`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pos {
    File { origin: u32, line: u64 },
    Kafka { origin: u32, partition: i32, offset: i64 },
}

/// The topic and file names facts were read from, numbered in order of first sight.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct Origins {
    names: Vec<String>,
    numbers: HashMap<String, u32>,
}

impl From<Vec<String>> for Origins {
    fn from(names: Vec<String>) -> Origins {
        let numbers = names.iter().enumerate().map(|(i, n)| (n.clone(), i as u32)).collect();
        Origins { names, numbers }
    }
}

impl From<Origins> for Vec<String> {
    fn from(o: Origins) -> Vec<String> {
        o.names
    }
}

impl Origins {
    /// The number of `name`, given it if new.
    fn number(&mut self, name: &str) -> u32 {
        if let Some(&n) = self.numbers.get(name) {
            return n;
        }
        let n = u32::try_from(self.names.len()).expect("fewer than 2^32 topics and files");
        self.names.push(name.to_owned());
        self.numbers.insert(name.to_owned(), n);
        n
    }

    /// Gives `name` a number now, if it has none, so that numbers do not depend on which
    /// name's first fact comes first.
    pub fn register(&mut self, name: &str) {
        self.number(name);
    }

    /// The compact form of `source`.
    pub fn pos(&mut self, source: &SourcePos) -> Pos {
        match source {
            SourcePos::File { file, line } => Pos::File { origin: self.number(file), line: *line },
            SourcePos::Kafka { topic, partition, offset } => {
                Pos::Kafka { origin: self.number(topic), partition: *partition, offset: *offset }
            }
        }
    }

    fn name(&self, origin: u32) -> &str {
        // Every stored number was given by this state's Origins, saved in the same commit.
        self.names.get(origin as usize).map_or("?", String::as_str)
    }

    /// The full source position of `pos`.
    pub fn source(&self, pos: &Pos) -> SourcePos {
        match *pos {
            Pos::File { origin, line } => SourcePos::File { file: self.name(origin).to_owned(), line },
            Pos::Kafka { origin, partition, offset } => {
                SourcePos::Kafka { topic: self.name(origin).to_owned(), partition, offset }
            }
        }
    }

    /// `a` and `b` are Kafka positions and `a` comes first by (topic name, partition,
    /// offset).
    pub fn kafka_before(&self, a: &Pos, b: &Pos) -> bool {
        match (a, b) {
            (
                Pos::Kafka { origin: ta, partition: pa, offset: oa },
                Pos::Kafka { origin: tb, partition: pb, offset: ob },
            ) => (self.name(*ta), pa, oa) < (self.name(*tb), pb, ob),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(topic: &str, partition: i32, offset: i64) -> SourcePos {
        SourcePos::Kafka { topic: topic.into(), partition, offset }
    }

    #[test]
    fn positions_round_trip_and_names_are_stored_once() {
        let mut o = Origins::default();
        let a = o.pos(&kafka("orders", 2, 17));
        let b = o.pos(&kafka("logistics", 0, 5));
        let c = o.pos(&kafka("orders", 1, 9));
        let f = o.pos(&SourcePos::File { file: "in/a.jsonl".into(), line: 3 });
        assert_eq!(o.source(&a), kafka("orders", 2, 17));
        assert_eq!(o.source(&b), kafka("logistics", 0, 5));
        assert_eq!(o.source(&c), kafka("orders", 1, 9));
        assert_eq!(o.source(&f), SourcePos::File { file: "in/a.jsonl".into(), line: 3 });
        assert_eq!(Vec::from(o.clone()), vec!["orders", "logistics", "in/a.jsonl"]);
        // Stored and loaded, the numbers stay and new names continue after them.
        let bytes = postcard::to_stdvec(&o).unwrap();
        let mut loaded: Origins = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(loaded, o);
        assert_eq!(loaded.pos(&kafka("orders", 2, 17)), a);
        let d = loaded.pos(&kafka("refunds", 0, 1));
        assert_eq!(d, Pos::Kafka { origin: 3, partition: 0, offset: 1 });
    }

    #[test]
    fn kafka_order_is_by_name_whatever_the_numbers() {
        // "orders" numbered before "logistics", but "logistics" sorts first.
        let mut o = Origins::default();
        let orders = o.pos(&kafka("orders", 0, 1));
        let logistics = o.pos(&kafka("logistics", 5, 99));
        assert!(o.kafka_before(&logistics, &orders));
        assert!(!o.kafka_before(&orders, &logistics));
        let later = o.pos(&kafka("orders", 0, 2));
        assert!(o.kafka_before(&orders, &later) && !o.kafka_before(&later, &orders));
        let file = o.pos(&SourcePos::File { file: "f".into(), line: 1 });
        assert!(!o.kafka_before(&file, &orders) && !o.kafka_before(&orders, &file));
    }
}
