//! The hash-chained audit log: how an entry is sealed (hashed over every column), how chain heads
//! are signed, and how a chain is verified. Pure: the store feeds rows in, nothing here reads them.

use crate::ids::{AuditId, TicketId};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit entry as the application describes it, before the store places it in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub ticket_id: Option<TicketId>,
    pub details: serde_json::Value,
}

impl AuditDraft {
    #[expect(
        clippy::needless_pass_by_value,
        reason = "ids are Copy and read better by value"
    )]
    pub fn new(actor: &str, action: &str, object_type: &str, object_id: impl ToString) -> Self {
        Self {
            actor: actor.to_string(),
            action: action.to_string(),
            object_type: object_type.to_string(),
            object_id: object_id.to_string(),
            ticket_id: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn ticket(mut self, id: TicketId) -> Self {
        self.ticket_id = Some(id);
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Places the draft in the chain after `prev_hash` as entry `seq`.
    pub fn seal(self, seq: i64, prev_hash: &str, occurred_at_ms: i64) -> AuditRecord {
        let mut rec = AuditRecord {
            seq,
            id: AuditId::new(),
            occurred_at_ms,
            actor: self.actor,
            action: self.action,
            object_type: self.object_type,
            object_id: self.object_id,
            ticket_id: self.ticket_id,
            // serde_json's map is ordered, so this text is canonical for a given value.
            details: self.details.to_string(),
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        rec.hash = rec.compute_hash();
        rec
    }
}

/// One row of `audit_log`, exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub id: AuditId,
    pub occurred_at_ms: i64,
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub ticket_id: Option<TicketId>,
    /// JSON text, hashed byte for byte.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// SHA-256 over every column but `hash` itself, each length-prefixed so no two rows collide.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"firebreak-audit-v1");
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        field(&self.seq.to_be_bytes());
        field(self.id.0.as_bytes());
        field(&self.occurred_at_ms.to_be_bytes());
        field(self.actor.as_bytes());
        field(self.action.as_bytes());
        field(self.object_type.as_bytes());
        field(self.object_id.as_bytes());
        match &self.ticket_id {
            Some(t) => field(t.0.as_bytes()),
            None => field(b"-"),
        }
        field(self.details.as_bytes());
        field(self.prev_hash.as_bytes());
        hex::encode(h.finalize())
    }
}

/// A signed chain head: "the chain up to `seq` ends in `hash`", signed with a key kept outside the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub key_id: String,
    pub signature: String,
}

fn checkpoint_message(seq: i64, hash: &str) -> Vec<u8> {
    format!("firebreak-audit-head-v1\n{seq}\n{hash}").into_bytes()
}

/// A short public identifier of a verifying key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

pub fn sign_checkpoint(key: &SigningKey, seq: i64, hash: &str) -> Checkpoint {
    let sig = key.sign(&checkpoint_message(seq, hash));
    Checkpoint {
        seq,
        hash: hash.to_string(),
        key_id: key_id(&key.verifying_key()),
        signature: hex::encode(sig.to_bytes()),
    }
}

pub fn checkpoint_is_valid(key: &VerifyingKey, cp: &Checkpoint) -> bool {
    let Ok(bytes) = hex::decode(&cp.signature) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify(&checkpoint_message(cp.seq, &cp.hash), &sig)
        .is_ok()
}

/// Where and why a chain stopped being trustworthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at entry {seq}: {reason}")]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub entries: i64,
    pub checkpoints: usize,
    pub last_seq: i64,
    pub last_hash: String,
    pub head_file_seq: Option<i64>,
}

/// Verifies a chain fed in `seq` order, against the stored checkpoints and the head kept outside
/// the database. Never panics on any input.
pub struct ChainVerifier {
    key: VerifyingKey,
    checkpoints: BTreeMap<i64, Checkpoint>,
    head: Option<Checkpoint>,
    expected_seq: i64,
    prev_hash: String,
    entries: i64,
}

impl ChainVerifier {
    pub fn new(key: VerifyingKey, checkpoints: Vec<Checkpoint>, head: Option<Checkpoint>) -> Self {
        Self {
            key,
            checkpoints: checkpoints.into_iter().map(|c| (c.seq, c)).collect(),
            head,
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
            entries: 0,
        }
    }

    /// Adds checkpoints committed since the verifier was created (verification while servers write).
    pub fn add_checkpoints(&mut self, cps: Vec<Checkpoint>) {
        for c in cps {
            self.checkpoints.entry(c.seq).or_insert(c);
        }
    }

    /// The newest checkpointed entry known.
    pub fn newest_checkpoint(&self) -> i64 {
        self.checkpoints.keys().next_back().copied().unwrap_or(0)
    }

    /// Forgets checkpoints beyond the last verified entry: used when writers keep committing and
    /// verification stops at a point it has fully checked (the newer entries exist, unverified).
    pub fn stop_at_verified(&mut self) {
        let last = self.expected_seq - 1;
        self.checkpoints.retain(|seq, _| *seq <= last);
    }

    /// The last entry verified so far.
    pub fn verified_up_to(&self) -> i64 {
        self.expected_seq - 1
    }

    pub fn push(&mut self, rec: &AuditRecord) -> Result<(), ChainBreak> {
        let brk = |seq: i64, reason: String| Err(ChainBreak { seq, reason });
        if rec.seq != self.expected_seq {
            return brk(
                self.expected_seq,
                format!(
                    "expected entry {} but found entry {} (entries deleted, inserted or reordered)",
                    self.expected_seq, rec.seq
                ),
            );
        }
        if rec.prev_hash != self.prev_hash {
            return brk(
                rec.seq,
                "prev_hash does not match the previous entry's hash".into(),
            );
        }
        if rec.compute_hash() != rec.hash {
            return brk(
                rec.seq,
                "content does not match its hash (entry altered)".into(),
            );
        }
        if let Some(cp) = self.checkpoints.get(&rec.seq) {
            if !checkpoint_is_valid(&self.key, cp) {
                return brk(
                    rec.seq,
                    "checkpoint signature is not valid for the audit key".into(),
                );
            }
            if cp.hash != rec.hash {
                return brk(
                    rec.seq,
                    "entry hash differs from its signed checkpoint".into(),
                );
            }
        }
        if let Some(head) = &self.head
            && head.seq == rec.seq
            && head.hash != rec.hash
        {
            return brk(
                rec.seq,
                "entry hash differs from the signed head kept outside the database".into(),
            );
        }
        self.prev_hash = rec.hash.clone();
        self.expected_seq += 1;
        self.entries += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<VerifyReport, ChainBreak> {
        let last_seq = self.expected_seq - 1;
        if let Some((&seq, _)) = self.checkpoints.range(last_seq + 1..).next() {
            return Err(ChainBreak {
                seq: last_seq + 1,
                reason: format!(
                    "a signed checkpoint covers entry {seq}, but the log ends at entry {last_seq} (newest entries removed)"
                ),
            });
        }
        if let Some(head) = &self.head {
            if !checkpoint_is_valid(&self.key, head) {
                return Err(ChainBreak {
                    seq: head.seq,
                    reason: "the head file's signature is not valid for the audit key".into(),
                });
            }
            if head.seq > last_seq {
                return Err(ChainBreak {
                    seq: last_seq + 1,
                    reason: format!(
                        "the signed head outside the database is at entry {}, but the log ends at entry {last_seq} (newest entries removed)",
                        head.seq
                    ),
                });
            }
        }
        if last_seq > 0 && !self.checkpoints.contains_key(&last_seq) {
            return Err(ChainBreak {
                seq: last_seq,
                reason: "the newest entry is not covered by a signed checkpoint (entry forged)"
                    .into(),
            });
        }
        Ok(VerifyReport {
            entries: self.entries,
            checkpoints: self.checkpoints.len(),
            last_seq,
            last_hash: self.prev_hash,
            head_file_seq: self.head.map(|h| h.seq),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    /// A chain of `n` entries committed in batches of `batch`, with checkpoints and a head file.
    fn chain(n: usize, batch: usize) -> (Vec<AuditRecord>, Vec<Checkpoint>, Option<Checkpoint>) {
        let k = key();
        let mut prev = GENESIS_HASH.to_string();
        let mut recs = Vec::new();
        let mut cps = Vec::new();
        for i in 1..=n as i64 {
            let d = AuditDraft::new("alice", "ticket.updated", "ticket", i)
                .details(serde_json::json!({"i": i, "text": format!("entry {i}")}));
            let r = d.seal(i, &prev, 1_700_000_000_000 + i);
            prev = r.hash.clone();
            if (i as usize).is_multiple_of(batch) || i as usize == n {
                cps.push(sign_checkpoint(&k, i, &r.hash));
            }
            recs.push(r);
        }
        let head = cps.last().cloned();
        (recs, cps, head)
    }

    fn verify(
        recs: &[AuditRecord],
        cps: Vec<Checkpoint>,
        head: Option<Checkpoint>,
    ) -> Result<VerifyReport, ChainBreak> {
        let mut v = ChainVerifier::new(key().verifying_key(), cps, head);
        for r in recs {
            v.push(r)?;
        }
        v.finish()
    }

    #[test]
    fn intact_chain_verifies() {
        let (recs, cps, head) = chain(10, 3);
        let rep = verify(&recs, cps, head).unwrap();
        assert_eq!(rep.entries, 10);
        assert_eq!(rep.last_seq, 10);
    }

    #[test]
    fn empty_chain_verifies() {
        assert_eq!(verify(&[], vec![], None).unwrap().entries, 0);
    }

    #[derive(Debug, Clone)]
    enum Tamper {
        Edit(usize),
        EditAndRehash(usize),
        Delete(usize),
        Insert(usize),
        Swap(usize),
        Truncate(usize),
        ForgeTail,
    }

    fn tamper() -> impl Strategy<Value = Tamper> {
        prop_oneof![
            any::<usize>().prop_map(Tamper::Edit),
            any::<usize>().prop_map(Tamper::EditAndRehash),
            any::<usize>().prop_map(Tamper::Delete),
            any::<usize>().prop_map(Tamper::Insert),
            any::<usize>().prop_map(Tamper::Swap),
            any::<usize>().prop_map(Tamper::Truncate),
            Just(Tamper::ForgeTail),
        ]
    }

    /// Rewrites every entry from `from` on so the chain is internally consistent again, as an
    /// attacker with database access (but not the signing key) would.
    fn rechain(recs: &mut [AuditRecord], from: usize) {
        for i in from..recs.len() {
            recs[i].seq = i as i64 + 1;
            recs[i].prev_hash = if i == 0 {
                GENESIS_HASH.into()
            } else {
                recs[i - 1].hash.clone()
            };
            recs[i].hash = recs[i].compute_hash();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn every_tampering_is_detected(n in 2usize..60, batch in 1usize..8, t in tamper()) {
            let (mut recs, mut cps, head) = chain(n, batch);
            match t {
                Tamper::Edit(i) => { let i = i % n; recs[i].actor = "mallory".into(); }
                Tamper::EditAndRehash(i) => { let i = i % n; recs[i].details = "{}".into(); rechain(&mut recs, i); }
                Tamper::Delete(i) => { let i = i % n; recs.remove(i); rechain(&mut recs, i); }
                Tamper::Insert(i) => {
                    let i = i % n;
                    let fake = AuditDraft::new("mallory", "ticket.updated", "ticket", 0).seal(0, GENESIS_HASH, 0);
                    recs.insert(i, fake);
                    rechain(&mut recs, i);
                }
                Tamper::Swap(i) => { let i = i % (n - 1); recs.swap(i, i + 1); rechain(&mut recs, i); }
                Tamper::Truncate(i) => {
                    let keep = i % n;
                    recs.truncate(keep);
                    // the attacker also removes the checkpoints of the removed entries
                    cps.retain(|c| c.seq <= keep as i64);
                }
                Tamper::ForgeTail => {
                    let last = recs.last().unwrap();
                    let fake = AuditDraft::new("mallory", "user.created", "user", 0)
                        .seal(last.seq + 1, &last.hash, 0);
                    // a forged checkpoint signed with another key
                    let other = SigningKey::from_bytes(&[9u8; 32]);
                    cps.push(sign_checkpoint(&other, fake.seq, &fake.hash));
                    recs.push(fake);
                }
            }
            let res = verify(&recs, cps, head);
            prop_assert!(res.is_err(), "tampering {:?} not detected", t);
        }
    }

    #[test]
    fn verifier_names_first_bad_entry() {
        let (mut recs, cps, head) = chain(10, 2);
        recs[4].action = "x".into();
        let err = verify(&recs, cps, head).unwrap_err();
        assert_eq!(err.seq, 5);
    }

    #[test]
    fn entries_newer_than_the_head_file_are_accepted_when_signed() {
        // verify runs while servers write: the head file may lag behind the database
        let (recs, cps, _) = chain(10, 2);
        let head = cps.iter().find(|c| c.seq == 4).cloned();
        assert!(verify(&recs, cps, head).is_ok());
    }
}
