//! One TLS record and one `writev` per HTTP/2 flush, instead of one per frame.
//!
//! h2 keeps a DATA frame of 256 bytes or more out of its write buffer when the
//! connection supports vectored writes (it chains the payload, to avoid a copy), and a
//! chained frame must be flushed before the next frame can be buffered. A unary gRPC
//! call's message is usually a few hundred bytes, so each request went out as two
//! `writev`s (the message, then an empty DATA frame ending the stream) and each
//! response as two (headers and message, then the trailers), each its own TLS record,
//! socket write and wake-up of the peer. Reported as not vectored, h2 copies payloads
//! under 1 KiB into its buffer; the buffer below keeps the header and payload of a
//! larger frame together too, so a flush reaches rustls as one write.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};

/// Room for a full-size HTTP/2 frame (16 KiB) with frames buffered before it; a
/// larger write passes straight through.
const GATHER_BYTES: usize = 32 * 1024;

/// A connection whose writes wait for `poll_flush` (h2 flushes when it has nothing
/// more to send).
pub struct Gathered<T> {
    inner: BufWriter<T>,
}

impl<T: AsyncWrite> Gathered<T> {
    pub fn new(inner: T) -> Gathered<T> {
        Gathered {
            inner: BufWriter::with_capacity(GATHER_BYTES, inner),
        }
    }

    pub fn get_ref(&self) -> &T {
        self.inner.get_ref()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Gathered<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Gathered<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// False on purpose: it is what makes h2 copy small frames instead of chaining
    /// them (see the module comment).
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the writes that reach the connection under the gatherer.
    struct Counting {
        writes: usize,
        bytes: Vec<u8>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes += 1;
            self.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Counting {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_written_between_flushes_reach_the_connection_as_one_write_in_order(
    ) -> io::Result<()> {
        let mut conn = Gathered::new(Counting {
            writes: 0,
            bytes: vec![],
        });
        assert!(!conn.is_write_vectored());
        // A response: headers and message, then the trailers.
        conn.write_all(&[1u8; 379]).await?;
        conn.write_all(&[2u8; 32]).await?;
        assert_eq!(
            conn.get_ref().writes,
            0,
            "nothing is written before the flush"
        );
        conn.flush().await?;
        assert_eq!(conn.get_ref().writes, 1);
        let mut expected = vec![1u8; 379];
        expected.extend_from_slice(&[2u8; 32]);
        assert_eq!(conn.get_ref().bytes, expected);
        // Shutting down flushes what is left.
        conn.write_all(&[3u8; 9]).await?;
        conn.shutdown().await?;
        assert_eq!(conn.get_ref().writes, 2);
        assert_eq!(conn.get_ref().bytes.len(), 379 + 32 + 9);
        let mut read = [0u8; 4];
        assert_eq!(conn.read(&mut read).await?, 0);
        Ok(())
    }
}
