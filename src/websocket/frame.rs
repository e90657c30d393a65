//! RFC 6455 framing (§5) for the server side: decoding what a client sends into whole
//! messages, and encoding what the server sends. No I/O here: the socket halves in
//! `stream.rs` feed the decoder and write what the encoder produced.
//!
//! The decoder keeps only bytes not yet part of a whole frame and the fragments of a
//! message not yet finished, and gives its memory back once it has none of either, so
//! an idle connection holds no read buffer at all.

use std::ops::Range;

/// Frame opcodes (§5.2).
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// A control frame's payload is at most this long (§5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// A whole message, or a control frame, from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    /// Binary messages are refused by the protocol layer, so their bytes are not kept.
    Binary,
    Ping(Vec<u8>),
    Pong,
    /// The client's close status, if it gave one.
    Close(Option<u16>),
}

/// Why a client's bytes cannot be read as WebSocket frames; the connection is closed
/// with [`FrameError::close_code`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("frame too large")]
    TooLarge,
    #[error("text frame is not valid UTF-8")]
    Utf8,
}

impl FrameError {
    /// The close status this error deserves (§7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => 1002,
            FrameError::TooLarge => 1009,
            FrameError::Utf8 => 1007,
        }
    }

    /// The close reason: short, fixed text (the peer broke the protocol; details go to
    /// the log, not back to it).
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::Protocol(_) => "WebSocket protocol error",
            FrameError::TooLarge => "frame too large",
            FrameError::Utf8 => "text frame is not valid UTF-8",
        }
    }
}

/// A text or binary message whose later fragments have not arrived yet.
#[derive(Debug)]
struct Unfinished {
    text: bool,
    /// The text so far (binary messages are refused whole, so their bytes are not kept).
    bytes: Vec<u8>,
    /// Bytes so far, against the message limit.
    len: usize,
}

/// Client bytes in, whole messages out.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes read; those before `start` are decoded. Once `next` has returned `None`,
    /// `start` is 0 and what is left is at most one unfinished frame.
    input: Vec<u8>,
    start: usize,
    unfinished: Option<Unfinished>,
    /// The longest message (all fragments together) accepted.
    max_message: usize,
}

/// What the front of the input holds.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Header bytes, mask included.
    len: usize,
    payload: usize,
}

impl Decoder {
    pub fn new(max_message: usize) -> Decoder {
        Decoder { input: Vec::new(), start: 0, unfinished: None, max_message }
    }

    /// Where bytes read from the socket go.
    pub fn input(&mut self) -> &mut Vec<u8> {
        &mut self.input
    }

    /// How many more bytes the frame at the front needs, at least one: a reader sizes
    /// its next read with this so that a large frame is read in few calls.
    pub fn wanted(&self) -> usize {
        match self.header() {
            Ok(Some(header)) => (header.len + header.payload).saturating_sub(self.input.len() - self.start).max(1),
            _ => 1,
        }
    }

    /// The next whole message or control frame, if the input holds one.
    pub fn next(&mut self) -> Result<Option<Incoming>, FrameError> {
        loop {
            let header = match self.header()? {
                Some(header) if self.input.len() - self.start >= header.len + header.payload => header,
                _ => {
                    self.compact();
                    return Ok(None);
                }
            };
            let payload = self.start + header.len..self.start + header.len + header.payload;
            unmask(&mut self.input[payload.clone()], header.mask);
            self.start = payload.end;
            let incoming = self.frame(&header, payload)?;
            if incoming.is_some() {
                return Ok(incoming);
            }
        }
    }

    /// Moves an unfinished frame to the front, or gives the memory back once nothing
    /// is waiting in it.
    fn compact(&mut self) {
        if self.start == self.input.len() {
            self.input = Vec::new();
        } else {
            self.input.drain(..self.start);
        }
        self.start = 0;
    }

    /// Reads the header at the front of the input (`None`: not all of it is there yet)
    /// and checks everything that can be checked before the payload arrives.
    fn header(&self) -> Result<Option<Header>, FrameError> {
        let input = &self.input[self.start..];
        let [first, second, ..] = *input else {
            return Ok(None);
        };
        if first & 0x70 != 0 {
            return Err(FrameError::Protocol("reserved bits set (no extension was agreed)"));
        }
        if second & 0x80 == 0 {
            return Err(FrameError::Protocol("client frames must be masked"));
        }
        let fin = first & 0x80 != 0;
        let opcode = first & 0x0F;
        let (length_bytes, short) = match second & 0x7F {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(n as u64)),
        };
        let len = 2 + length_bytes + 4;
        if input.len() < len {
            return Ok(None);
        }
        let payload = match short {
            Some(n) => n,
            None => input[2..2 + length_bytes].iter().fold(0u64, |n, &b| n << 8 | u64::from(b)),
        };
        if payload >> 63 != 0 {
            return Err(FrameError::Protocol("the most significant bit of a 64-bit length must be 0"));
        }
        match opcode {
            opcode::CLOSE | opcode::PING | opcode::PONG => {
                if !fin {
                    return Err(FrameError::Protocol("control frames must not be fragmented"));
                }
                if payload > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(FrameError::Protocol("control frame payload over 125 bytes"));
                }
            }
            opcode::TEXT | opcode::BINARY if self.unfinished.is_some() => {
                return Err(FrameError::Protocol("a new message began before the last one was finished"));
            }
            opcode::CONTINUATION if self.unfinished.is_none() => {
                return Err(FrameError::Protocol("a continuation frame with no message to continue"));
            }
            opcode::TEXT | opcode::BINARY | opcode::CONTINUATION => {
                // Refused before its payload arrives: a declared length is enough.
                let so_far = self.unfinished.as_ref().map_or(0, |u| u.len) as u64;
                if so_far.saturating_add(payload) > self.max_message as u64 {
                    return Err(FrameError::TooLarge);
                }
            }
            _ => return Err(FrameError::Protocol("reserved opcode")),
        }
        let mut mask = [0; 4];
        mask.copy_from_slice(&input[len - 4..len]);
        // Within `max_message` (data) or 125 (control), so it fits in a usize.
        Ok(Some(Header { fin, opcode, mask, len, payload: payload as usize }))
    }

    /// Decodes the frame whose (unmasked) payload is at `payload`. `None`: a fragment
    /// that does not finish its message.
    fn frame(&mut self, header: &Header, payload: Range<usize>) -> Result<Option<Incoming>, FrameError> {
        let payload = &self.input[payload];
        let incoming = match header.opcode {
            opcode::PING => Incoming::Ping(payload.to_vec()),
            opcode::PONG => Incoming::Pong,
            opcode::CLOSE => Incoming::Close(close_status(payload)?),
            opcode::CONTINUATION => {
                let Some(mut unfinished) = self.unfinished.take() else {
                    return Err(FrameError::Protocol("a continuation frame with no message to continue"));
                };
                unfinished.len += payload.len();
                if unfinished.text {
                    unfinished.bytes.extend_from_slice(payload);
                }
                if !header.fin {
                    self.unfinished = Some(unfinished);
                    return Ok(None);
                }
                message(unfinished.text, unfinished.bytes)?
            }
            _ => {
                let text = header.opcode == opcode::TEXT;
                let bytes = if text { payload.to_vec() } else { Vec::new() };
                if !header.fin {
                    self.unfinished = Some(Unfinished { text, bytes, len: payload.len() });
                    return Ok(None);
                }
                message(text, bytes)?
            }
        };
        Ok(Some(incoming))
    }
}

fn message(text: bool, bytes: Vec<u8>) -> Result<Incoming, FrameError> {
    if !text {
        return Ok(Incoming::Binary);
    }
    String::from_utf8(bytes).map(Incoming::Text).map_err(|_| FrameError::Utf8)
}

/// The status code of a close frame's payload (§5.5.1, §7.4).
fn close_status(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("a close payload of one byte")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !sendable {
                return Err(FrameError::Protocol("a close status no endpoint may send"));
            }
            std::str::from_utf8(reason).map_err(|_| FrameError::Utf8)?;
            Ok(Some(code))
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let masked = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&masked.to_ne_bytes());
    }
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask) {
        *byte ^= key;
    }
}

/// Appends an unmasked, unfragmented server frame (§5.2) to `out`.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// The bytes `encode` adds for a payload of `len` bytes.
pub fn encoded_len(len: usize) -> usize {
    let header = match len {
        n if n < 126 => 2,
        n if n <= usize::from(u16::MAX) => 4,
        _ => 10,
    };
    header + len
}

/// Appends a close frame with `code` and as much of `reason` as fits (123 bytes, cut at
/// a character boundary).
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(out, opcode::CLOSE, &payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked, as §5.3 requires.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Incoming>, FrameError> {
        let mut decoder = Decoder::new(max);
        decoder.input().extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(incoming) = decoder.next()? {
            out.push(incoming);
        }
        Ok(out)
    }

    #[test]
    fn a_masked_text_frame_decodes_to_its_text_at_every_length_encoding() {
        for len in [0, 1, 5, 125, 126, 65535, 65536, 200_000] {
            let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let frame = client_frame(0x80 | opcode::TEXT, text.as_bytes());
            assert_eq!(decode_all(&frame, 1 << 20), Ok(vec![Incoming::Text(text)]), "length {len}");
        }
    }

    #[test]
    fn frames_arriving_a_byte_at_a_time_decode_the_same_and_leave_no_buffer() {
        let mut bytes = client_frame(opcode::TEXT, b"{\"a\":");
        bytes.extend(client_frame(0x80 | opcode::PING, b"hi"));
        bytes.extend(client_frame(0x80 | opcode::CONTINUATION, b"1}"));
        bytes.extend(client_frame(0x80 | opcode::CLOSE, &1000u16.to_be_bytes()));
        let mut decoder = Decoder::new(100);
        let mut out = Vec::new();
        for byte in bytes {
            decoder.input().push(byte);
            while let Some(incoming) = decoder.next().unwrap() {
                out.push(incoming);
            }
        }
        assert_eq!(
            out,
            vec![Incoming::Ping(b"hi".to_vec()), Incoming::Text("{\"a\":1}".into()), Incoming::Close(Some(1000))]
        );
        assert_eq!(decoder.input().capacity(), 0, "an idle decoder holds no memory");
    }

    #[test]
    fn a_character_split_across_fragments_is_valid_utf8_once_joined() {
        let text = "Zoë".as_bytes();
        let mut bytes = client_frame(opcode::TEXT, &text[..3]);
        bytes.extend(client_frame(0x80 | opcode::CONTINUATION, &text[3..]));
        assert_eq!(decode_all(&bytes, 100), Ok(vec![Incoming::Text("Zoë".into())]));
    }

    #[test]
    fn protocol_violations_are_1002() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unmasked", vec![0x81, 0x01, b'x']),
            ("64-bit length with its top bit set", vec![0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]),
            ("reserved bit", client_frame(0xC1, b"x")),
            ("reserved opcode", client_frame(0x83, b"x")),
            ("long ping", client_frame(0x80 | opcode::PING, &[0; 126])),
            ("fragmented ping", client_frame(opcode::PING, b"x")),
            ("continuation first", client_frame(0x80 | opcode::CONTINUATION, b"x")),
            ("close status 999", client_frame(0x80 | opcode::CLOSE, &999u16.to_be_bytes())),
            ("close status 1005", client_frame(0x80 | opcode::CLOSE, &1005u16.to_be_bytes())),
            ("close of one byte", client_frame(0x80 | opcode::CLOSE, &[3])),
            ("text inside a fragmented message", {
                let mut b = client_frame(opcode::TEXT, b"a");
                b.extend(client_frame(0x80 | opcode::TEXT, b"b"));
                b
            }),
        ];
        for (what, bytes) in cases {
            let error = decode_all(&bytes, 100).expect_err(what);
            assert_eq!(error.close_code(), 1002, "{what}: {error}");
        }
    }

    #[test]
    fn a_message_over_the_limit_is_refused_from_its_header_alone() {
        let frame = client_frame(0x80 | opcode::TEXT, &[b'x'; 101]);
        // Only the header has arrived.
        assert_eq!(decode_all(&frame[..8], 100), Err(FrameError::TooLarge));
        // Fragments count together.
        let mut bytes = client_frame(opcode::TEXT, &[b'x'; 60]);
        bytes.extend(client_frame(0x80 | opcode::CONTINUATION, &[b'x'; 41]));
        assert_eq!(decode_all(&bytes, 100), Err(FrameError::TooLarge));
        assert_eq!(decode_all(&client_frame(0x80 | opcode::TEXT, &[b'x'; 100]), 100).map(|m| m.len()), Ok(1));
    }

    #[test]
    fn invalid_utf8_is_1007() {
        let error = decode_all(&client_frame(0x81, &[b'a', 0xff]), 100).unwrap_err();
        assert_eq!(error.close_code(), 1007);
        let mut reason = 1000u16.to_be_bytes().to_vec();
        reason.push(0xc3);
        assert_eq!(decode_all(&client_frame(0x88, &reason), 100).unwrap_err().close_code(), 1007);
    }

    #[test]
    fn wanted_asks_for_the_rest_of_a_large_frame() {
        let frame = client_frame(0x80 | opcode::TEXT, &[b'x'; 70_000]);
        let mut decoder = Decoder::new(1 << 20);
        decoder.input().extend_from_slice(&frame[..1000]);
        assert_eq!(decoder.next(), Ok(None));
        assert_eq!(decoder.wanted(), frame.len() - 1000);
    }

    #[test]
    fn encoded_frames_have_the_length_encode_says() {
        for len in [0, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            encode(&mut out, opcode::TEXT, &vec![b'x'; len]);
            assert_eq!(out.len(), encoded_len(len), "length {len}");
            assert_eq!(out[0], 0x81);
        }
        let mut out = Vec::new();
        encode_close(&mut out, 1001, &"ü".repeat(100));
        assert_eq!(out[1] as usize, 2 + 122, "cut to 123 bytes at a character boundary");
        assert_eq!(&out[2..4], &1001u16.to_be_bytes());
    }
}
