//! Small parsers of untrusted text, grouped (the first byte picks one):
//! 0 ids (`TicketId`... `FromStr`), ticket references (`api::parse_number`) and list cursors
//! (`tickets::decode_cursor`); 1 usernames (`user::validate_username`) and upload file names
//! (`documents::clean_filename`); 2 webhook signature headers (`webhook::verify_hmac_sha256`);
//! 3 schedules (`playbook::Cron::parse` + `next_after`) and durations
//! (`playbook::parse_duration`); 4 the asset CSV import (`asset::parse_csv`).
#![no_main]

use firebreak_app::documents::clean_filename;
use firebreak_app::playbook::{Cron, parse_duration};
use firebreak_app::tickets::decode_cursor;
use firebreak_domain::api::parse_number;
use firebreak_domain::asset::parse_csv;
use firebreak_domain::ids::{AuditId, TicketId, UserId};
use firebreak_domain::user::validate_username;
use firebreak_intake::webhook::verify_hmac_sha256;
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

fuzz_target!(|data: &[u8]| {
    let [sel, rest @ ..] = data else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    match sel % 5 {
        0 => {
            let _ = s.parse::<TicketId>();
            let _ = s.parse::<UserId>();
            let _ = s.parse::<AuditId>();
            if let Some(n) = parse_number("SEC", s) {
                assert!(n > 0);
                assert_eq!(
                    parse_number("SEC", &firebreak_domain::api::format_number("SEC", n)),
                    Some(n)
                );
            }
            let _ = decode_cursor("tickets", s);
        }
        1 => {
            let _ = validate_username(s);
            let name = clean_filename(s);
            assert!(!name.is_empty() && name.len() <= 255);
            assert!(!name.contains(['/', '\\']) && !name.starts_with('.'));
            assert!(!name.chars().any(char::is_control));
        }
        2 => {
            let (secret, header) = s.split_once('\n').unwrap_or(("secret", s));
            let _ = verify_hmac_sha256(secret.as_bytes(), b"{\"a\":1}", header);
        }
        3 => {
            let _ = parse_duration(s);
            if let Ok(c) = Cron::parse(s) {
                for after in [
                    datetime!(2024-02-28 23:59:30 UTC),
                    datetime!(2025-12-31 23:59 +01:00),
                ] {
                    if let Some(next) = c.next_after(after) {
                        assert!(next > after);
                    }
                }
            }
        }
        _ => {
            let _ = parse_csv(s);
        }
    }
});
