//! Audit-chain verification (`firebreak_domain::audit::ChainVerifier`, RELIABILITY.md G5:
//! "fuzzed `verify` never panics").
//!
//! Most inputs are a script: a genuine chain of 1-16 entries is sealed and checkpointed with a
//! fixed key, then mutated (edit, delete, swap, duplicate, truncate, re-hash a forged entry,
//! corrupt or drop a checkpoint, move the head) before it is verified. Checked: an untouched
//! chain verifies, and a chain that still holds an entry edited without re-hashing never does.
//! Inputs whose first byte is 3 mod 4 are instead read as JSON
//! `{"records": [...], "checkpoints": [...], "head": ...}` and verified as they are.
#![no_main]

use ed25519_dalek::SigningKey;
use firebreak_domain::audit::{
    AuditDraft, AuditRecord, ChainVerifier, Checkpoint, GENESIS_HASH, sign_checkpoint,
};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

#[derive(serde::Deserialize)]
struct Raw {
    records: Vec<AuditRecord>,
    #[serde(default)]
    checkpoints: Vec<Checkpoint>,
    #[serde(default)]
    head: Option<Checkpoint>,
}

fn verify(
    key: &SigningKey,
    records: &[AuditRecord],
    cps: Vec<Checkpoint>,
    head: Option<Checkpoint>,
) -> Result<i64, String> {
    let mut v = ChainVerifier::new(key.verifying_key(), cps, head);
    for r in records {
        v.push(r).map_err(|e| e.to_string())?;
    }
    let _ = v.verified_up_to();
    let _ = v.newest_checkpoint();
    v.finish().map(|r| r.entries).map_err(|e| e.to_string())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let [sel, rest @ ..] = data else {
        return;
    };
    if sel % 4 == 3 {
        if let Ok(raw) = serde_json::from_slice::<Raw>(rest) {
            let _ = verify(&key, &raw.records, raw.checkpoints, raw.head);
        }
        return;
    }

    // Build a genuine chain.
    let n = usize::from(sel % 16) + 1;
    let (body, script) = rest.split_at(rest.len().min(n * 4));
    let mut records: Vec<AuditRecord> = Vec::new();
    let mut prev = GENESIS_HASH.to_string();
    for i in 0..n {
        let piece = body.get(i * 4..i * 4 + 4).unwrap_or(&[]);
        let rec = AuditDraft::new(&text(piece), "ticket.updated", "ticket", i)
            .details(json!({ "i": i, "b": text(piece) }))
            .seal(i as i64 + 1, &prev, 1_700_000_000_000 + i as i64);
        prev = rec.hash.clone();
        records.push(rec);
    }
    let every = usize::from(sel / 16 % 4) + 1;
    let mut cps: Vec<Checkpoint> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| (i + 1) % every == 0 || i + 1 == n)
        .map(|(_, r)| sign_checkpoint(&key, r.seq, &r.hash))
        .collect();
    let mut head = (sel & 0x80 != 0).then(|| {
        let last = &records[n - 1];
        sign_checkpoint(&key, last.seq, &last.hash)
    });

    // Mutate; `tainted[i]` marks an entry edited and not re-hashed.
    let mut tainted = vec![false; n];
    let mut mutated = false;
    for op in script.chunks(2) {
        let (&kind, arg) = match op {
            [k, a] => (k, usize::from(*a)),
            [k] => (k, 0),
            _ => break,
        };
        let len = records.len();
        if len == 0 {
            break;
        }
        let i = arg % len;
        mutated = true;
        match kind % 10 {
            0 => {
                records[i].actor.push('x');
                tainted[i] = true;
            }
            1 => {
                records[i].details = format!("{{\"forged\":{arg}}}");
                tainted[i] = true;
            }
            2 => {
                // an addition: two edits never cancel out
                records[i].occurred_at_ms = records[i].occurred_at_ms.wrapping_add(1 + arg as i64);
                tainted[i] = true;
            }
            3 => {
                records.remove(i);
                tainted.remove(i);
            }
            4 => {
                records.swap(i, (arg / 7) % len);
                tainted.swap(i, (arg / 7) % len);
            }
            5 => {
                records.insert(i, records[i].clone());
                tainted.insert(i, tainted[i]);
            }
            6 => {
                records.truncate(i + 1);
                tainted.truncate(i + 1);
            }
            7 => {
                // a forger who can compute hashes but not sign
                records[i].action = "audit.forged".into();
                records[i].hash = records[i].compute_hash();
                tainted[i] = false;
            }
            8 => {
                let at = arg % cps.len().max(1);
                if let Some(cp) = cps.get_mut(at) {
                    let mut sig = cp.signature.clone().into_bytes();
                    if let Some(b) = sig.get_mut(arg % 128) {
                        *b = if *b == b'0' { b'1' } else { b'0' };
                    }
                    cp.signature = String::from_utf8_lossy(&sig).into_owned();
                }
            }
            _ => {
                if arg % 2 == 0 && !cps.is_empty() {
                    cps.remove(arg % cps.len());
                } else {
                    head = Some(sign_checkpoint(&key, records[i].seq, &records[i].hash));
                }
            }
        }
    }

    let outcome = verify(&key, &records, cps, head);
    if !mutated {
        assert_eq!(outcome, Ok(n as i64), "a genuine chain must verify");
    }
    if tainted.iter().any(|t| *t) {
        assert!(outcome.is_err(), "an edited entry was not detected");
    }
});
