//! `COPY ... TO STDOUT` on one session streamed into `COPY ... FROM STDIN` on
//! another, never landing anywhere: the one pipe of the initial copy, the apply
//! (source rows into the target's staging table) and sync.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::{CopyInSink, CopyOutStream};

/// Which end of the pipe failed, or why it was stopped.
#[derive(Debug)]
pub enum PipeError<E> {
    /// Reading the `COPY TO STDOUT`.
    Source(tokio_postgres::Error),
    /// Writing the `COPY FROM STDIN` (or finishing it).
    Target(tokio_postgres::Error),
    /// `on_flush` asked to stop.
    Stopped(E),
}

/// What went through the pipe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Piped {
    /// Bytes read from the source.
    pub bytes: u64,
    /// Rows the target took (its `COPY` count).
    pub rows: u64,
}

/// Streams `out` into `sink` and finishes the target's COPY.
///
/// The source sends one message per row. With `gather` 0 the chunks go to the
/// sink as they come, which gathers them into 4 KiB messages itself (`feed`,
/// not `send`: no flush per row). With `gather` > 0 they are gathered into
/// buffers of about that many bytes first, so the target receives a few large
/// CopyData messages: the faster way for bulk copies. `on_flush(rows, bytes)` is
/// called for each buffer handed to the sink (never with `gather` 0) and may
/// stop the pipe (the target's COPY is then left unfinished: roll it back).
pub async fn pipe<E>(
    out: CopyOutStream,
    sink: CopyInSink<Bytes>,
    gather: usize,
    mut on_flush: impl FnMut(u64, u64) -> Result<(), E>,
) -> Result<Piped, PipeError<E>> {
    futures_util::pin_mut!(out);
    futures_util::pin_mut!(sink);
    let mut bytes = 0u64;
    if gather == 0 {
        while let Some(chunk) = out.next().await {
            let chunk = chunk.map_err(PipeError::Source)?;
            bytes += chunk.len() as u64;
            sink.feed(chunk).await.map_err(PipeError::Target)?;
        }
    } else {
        let mut buf = BytesMut::with_capacity(gather);
        let mut rows_in_buf = 0u64;
        while let Some(chunk) = out.next().await {
            let chunk = chunk.map_err(PipeError::Source)?;
            buf.extend_from_slice(&chunk);
            rows_in_buf += 1;
            if buf.len() >= gather {
                let n = buf.len() as u64;
                on_flush(rows_in_buf, n).map_err(PipeError::Stopped)?;
                bytes += n;
                rows_in_buf = 0;
                sink.feed(buf.split().freeze())
                    .await
                    .map_err(PipeError::Target)?;
            }
        }
        if !buf.is_empty() {
            bytes += buf.len() as u64;
            sink.feed(buf.split().freeze())
                .await
                .map_err(PipeError::Target)?;
        }
    }
    let rows = sink.as_mut().finish().await.map_err(PipeError::Target)?;
    Ok(Piped { bytes, rows })
}
