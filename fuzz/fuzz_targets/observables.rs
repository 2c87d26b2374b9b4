//! The observable extractor and its helpers (`firebreak_intake::observables`): `extract` over
//! free text (defanged IPs, URLs, emails, hashes, CVEs, file names), `refang`, and `classify`
//! of a single value under every kind hint, as feeds and API callers use it.
#![no_main]

use firebreak_intake::ObservableKind;
use firebreak_intake::observables;
use libfuzzer_sys::fuzz_target;

const KINDS: [Option<ObservableKind>; 13] = [
    None,
    Some(ObservableKind::Ip),
    Some(ObservableKind::Domain),
    Some(ObservableKind::Url),
    Some(ObservableKind::Email),
    Some(ObservableKind::Md5),
    Some(ObservableKind::Sha1),
    Some(ObservableKind::Sha256),
    Some(ObservableKind::Cve),
    Some(ObservableKind::Filename),
    Some(ObservableKind::Hostname),
    Some(ObservableKind::User),
    Some(ObservableKind::Other),
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let found = observables::extract(&text);
    for o in &found {
        // What extract gives is canonical: classifying it again (as feeds do with indicator
        // values) gives it back unchanged, so indicators and observables compare equal.
        let again = observables::classify(Some(o.kind), &o.value);
        assert_eq!(
            again.as_ref(),
            Some(o),
            "extracted {o:?} classifies as {again:?}"
        );
    }
    let _ = observables::dedup(found);
    let _ = observables::refang(&text);
    let _ = observables::canonical_ip(&text);
    let _ = observables::email_domain(&text);
    let _ = observables::hash_by_length(&text);
    for kind in KINDS {
        let _ = observables::classify(kind, &text);
    }
});
