//! Frames: a 4-byte big-endian length, then that many bytes of bincode.
//! Decoding never trusts the length beyond [`MAX_FRAME`], and a connection
//! that ends inside a frame is an error, not a clean close.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Frames larger than this are refused (a raft snapshot chunk is at most
/// 3 MiB, a feed snapshot chunk 1 MiB).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("truncated frame: {0}")]
    Truncated(io::Error),
    #[error("undecodable frame: {0}")]
    Decode(bincode::Error),
    #[error("{0}")]
    Io(io::Error),
}

impl FrameError {
    /// A clean close between frames, as opposed to a protocol violation.
    pub fn is_closed(&self) -> bool {
        matches!(self, FrameError::Closed)
    }
}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> io::Error {
        match e {
            FrameError::Io(e) | FrameError::Truncated(e) => e,
            FrameError::Closed => io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

/// Encodes one message as a complete frame (length prefix included), so a
/// frame sent to many peers is encoded once.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let size = bincode::serialized_size(msg).map_err(FrameError::Decode)? as usize;
    if size > MAX_FRAME {
        return Err(FrameError::TooLarge(size));
    }
    let mut buf = Vec::with_capacity(size + 4);
    buf.extend_from_slice(&(size as u32).to_be_bytes());
    bincode::serialize_into(&mut buf, msg).map_err(FrameError::Decode)?;
    Ok(buf)
}

pub async fn write_frame<W: AsyncWriteExt + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    let buf = encode(msg)?;
    w.write_all(&buf).await.map_err(FrameError::Io)?;
    w.flush().await.map_err(FrameError::Io)
}

/// Reads one frame's payload.
pub async fn read_raw<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    match r.read(&mut len[..1]).await {
        Ok(0) => return Err(FrameError::Closed),
        Ok(_) => {}
        Err(e) => return Err(FrameError::Io(e)),
    }
    r.read_exact(&mut len[1..])
        .await
        .map_err(FrameError::Truncated)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)
        .await
        .map_err(FrameError::Truncated)?;
    Ok(buf)
}

pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    bincode::deserialize(payload).map_err(FrameError::Decode)
}

pub async fn read_frame<R: AsyncReadExt + Unpin, T: DeserializeOwned>(
    r: &mut R,
) -> Result<T, FrameError> {
    decode(&read_raw(r).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_errors() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, &("hello".to_string(), 7u64))
            .await
            .unwrap();
        let got: (String, u64) = read_frame(&mut b).await.unwrap();
        assert_eq!(got, ("hello".to_string(), 7));

        // A length over the limit is refused before anything is allocated.
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_frame::<_, u64>(&mut b).await,
            Err(FrameError::TooLarge(_))
        ));

        // Garbage that does not decode.
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&[0, 0, 0, 3, 0xff, 0xfe, 0xfd]).await.unwrap();
        assert!(matches!(
            read_frame::<_, (String, u64)>(&mut b).await,
            Err(FrameError::Decode(_))
        ));

        // A close inside a frame is truncation; between frames it is a close.
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&[0, 0, 0, 9, 1]).await.unwrap();
        drop(a);
        assert!(matches!(
            read_frame::<_, u64>(&mut b).await,
            Err(FrameError::Truncated(_))
        ));
        let (a, mut b) = tokio::io::duplex(1 << 16);
        drop(a);
        assert!(read_frame::<_, u64>(&mut b).await.unwrap_err().is_closed());
    }
}
