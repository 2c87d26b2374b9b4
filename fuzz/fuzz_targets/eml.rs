//! Reported emails (`firebreak_intake::eml::parse`: MIME, attachments, attached messages) and
//! the event made of one (`eml::to_event`), plus the ticket-number finder run on subjects.
#![no_main]

use firebreak_intake::eml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mail) = eml::parse(data) {
        let raw = String::from_utf8_lossy(data);
        let _ = eml::to_event(&mail, &raw);
        if let Some(subject) = &mail.subject {
            let _ = eml::ticket_number_in_subject(subject, "SEC");
        }
    }
    let text = String::from_utf8_lossy(data);
    let _ = eml::ticket_number_in_subject(&text, "SEC");
    let _ = eml::ticket_number_in_subject(&text, "inc-");
});
