//! The two halves of an open WebSocket, each owned by one task: the reader decodes
//! what arrives, the writer encodes and sends what the server queued. Both hold memory
//! only while bytes are in flight; a quiet connection costs the socket and little else.

use std::io;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::frame::{self, opcode, Decoder, FrameError, Incoming};

/// The least read from the socket at once: a few requests' worth.
const READ_CHUNK: usize = 4 * 1024;
/// A read never reserves more than this ahead; a larger frame takes several reads.
const MAX_READ: usize = 256 * 1024;

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("reading from the socket failed: {0}")]
    Io(#[from] io::Error),
}

pub struct Reader {
    socket: OwnedReadHalf,
    decoder: Decoder,
}

impl Reader {
    /// `early` holds bytes that arrived with the handshake.
    pub fn new(socket: OwnedReadHalf, early: &[u8], max_message: usize) -> Reader {
        let mut decoder = Decoder::new(max_message);
        decoder.input().extend_from_slice(early);
        Reader { socket, decoder }
    }

    /// The next message or control frame; `None` once the client has closed the TCP
    /// connection. Cancel-safe: bytes already read stay in the decoder.
    pub async fn next(&mut self) -> Option<Result<Incoming, ReadError>> {
        loop {
            match self.decoder.next() {
                Ok(Some(incoming)) => return Some(Ok(incoming)),
                Ok(None) => {}
                Err(e) => return Some(Err(e.into())),
            }
            // Wait without a buffer: an idle connection must not hold one.
            if let Err(e) = self.socket.readable().await {
                return Some(Err(e.into()));
            }
            let want = self.decoder.wanted().clamp(READ_CHUNK, MAX_READ);
            let input = self.decoder.input();
            input.reserve(want);
            match self.socket.try_read_buf(input) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}

pub struct Writer {
    socket: OwnedWriteHalf,
    out: Vec<u8>,
    closed: bool,
}

impl Writer {
    pub fn new(socket: OwnedWriteHalf) -> Writer {
        Writer { socket, out: Vec::new(), closed: false }
    }

    /// Makes room for `bytes` more encoded bytes, so that a batch of frames is encoded
    /// into one allocation.
    pub fn reserve(&mut self, bytes: usize) {
        self.out.reserve(bytes);
    }

    pub fn text(&mut self, text: &str) {
        frame::encode(&mut self.out, opcode::TEXT, text.as_bytes());
    }

    pub fn ping(&mut self) {
        frame::encode(&mut self.out, opcode::PING, &[]);
    }

    pub fn pong(&mut self, payload: &[u8]) {
        frame::encode(&mut self.out, opcode::PONG, payload);
    }

    /// Queues the close frame; nothing is sent after it (§5.5.1).
    pub fn close(&mut self, code: u16, reason: &str) {
        if !self.closed {
            frame::encode_close(&mut self.out, code, reason);
            self.closed = true;
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Sends everything encoded so far, then gives the buffer back: a connection that
    /// once got a 300 KB history page must not keep 300 KB.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.socket.write_all(&self.out).await?;
        self.out = Vec::new();
        Ok(())
    }

    /// Ends the TCP connection's sending side once the close frame is out.
    pub async fn shutdown(&mut self) {
        let _ = self.socket.shutdown().await;
    }
}
