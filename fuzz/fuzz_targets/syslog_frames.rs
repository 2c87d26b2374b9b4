//! The RFC 6587 TCP framing decoder (`firebreak_intake::syslog::FrameDecoder`): octet
//! counting and LF/NUL-terminated frames, fed in pieces. The first byte picks the maximum frame
//! size and the second the piece size. Checked: no frame is empty or exceeds the maximum, and
//! once it asks for more bytes the decoder holds at most one frame plus its octet count.
#![no_main]

use firebreak_intake::syslog::FrameDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [max_sel, piece_sel, stream @ ..] = data else {
        return;
    };
    let max = usize::from(*max_sel) * 8 + 1;
    let piece = usize::from(*piece_sel % 64) + 1;
    let mut d = FrameDecoder::new(max);
    for chunk in stream.chunks(piece) {
        d.push(chunk);
        while let Some(frame) = d.next_frame() {
            if let Ok(f) = frame {
                assert!(!f.is_empty(), "empty frame returned");
                assert!(f.len() <= max, "frame of {} bytes > max {max}", f.len());
            }
        }
        // at most a 9-digit count, a space and an incomplete frame
        assert!(d.buffered() <= max + 10, "{} bytes buffered", d.buffered());
    }
});
