//! Rendered records: what a target receives, one per delivery, with the fields in mapping order.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The records a target gets in one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The batch's stable id. A batch target's batch that fails is retried whole: the same id,
    /// creation time and records, so a file named from them is written again under the same
    /// name rather than duplicated.
    pub id: String,
    /// When the batch was first formed, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The records, in delivery order.
    pub records: Vec<Record>,
}

impl Batch {
    /// An 8-digit number derived from the batch id: the `{seq}` of file targets, the same in
    /// any process for a retried batch. See [`batch_seq`].
    pub fn seq(&self) -> u64 {
        batch_seq(&self.id)
    }
}

/// 8 digits derived from a batch id with 64-bit FNV-1a, a hash fixed by its definition, so
/// the same batch gets the same number in any process and version. Two batches formed in the
/// same second share a file name only if their numbers collide, about one chance in 90
/// million.
pub fn batch_seq(batch_id: &str) -> u64 {
    const BASE: u64 = 10_000_000;
    const SPAN: u64 = 90_000_000;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in batch_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    BASE + hash % SPAN
}

/// One delivery's rendered fields, handed to a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The delivery's stable id, the same on every attempt (sent as `Idempotency-Key`).
    pub delivery_id: String,
    /// The CRM order id, for logs.
    pub order_id: String,
    /// Export name and value of every mapping, in mapping order.
    pub fields: Vec<Field>,
}

/// One rendered mapping.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The export name: a parameter, JSON key, CSV column or `header:NAME`.
    pub name: String,
    /// The rendered text.
    pub value: String,
    /// True when the value came from a secret; previews and logs show it masked.
    #[serde(default)]
    pub secret: bool,
}

impl Field {
    /// The value as it may be shown to a person: masked when it is a secret.
    pub fn shown(&self) -> &str {
        if self.secret { "***" } else { &self.value }
    }
}

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}", self.name, self.shown())
    }
}
