//! An answer body that tells its connection's [`SendWatch`] when it waits for its client, and
//! hands its data out in slices so that waiting means "the client took less than one slice".
//!
//! hyper (1.x, `PipeToSendStream`) polls a body for a frame, holds that frame until h2 gives the
//! stream send capacity beyond what h2 already buffers for it (the capacity is the client's
//! window less the buffered bytes), hands it over, and only then polls the body again. So from
//! the moment a slice is given out until the next poll, the answer waits for its client.
//!
//! tonic encodes a unary answer as one chunk; handed over whole, h2 would buffer all of it
//! after the client grants a single byte of window, and the body would be done. Slices of at
//! most [`SLICE`] keep the body in hyper's loop until the client has taken all but the last
//! [`TAIL`] bytes; `split_to` shares the buffer, nothing is copied. After the tail, what is
//! left unsent is at most the tail, HTTP/2 frames and the trailers; bytes the window covers
//! are the TCP send timeout's.

use crate::api::grpc::send_watch::SendWatch;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The largest slice handed to hyper: the unit of progress the send timeout measures.
pub const SLICE: usize = 1 << 20;
/// The last bytes of a chunk go out as a slice of their own, so that h2 holds at most this much
/// of an answer beyond the client's window once the body is done. One HTTP/2 frame at the
/// default SETTINGS_MAX_FRAME_SIZE: answers this small are one slice, with no extra frame.
pub const TAIL: usize = 16 << 10;

pub struct WatchedBody<B> {
    inner: B,
    /// What is left of the chunk being sliced.
    rest: Bytes,
    watch: Arc<SendWatch>,
    /// Set while a slice is given out and the body has not been polled since.
    waiting: Option<usize>,
}

impl<B> WatchedBody<B> {
    pub fn new(inner: B, watch: Arc<SendWatch>) -> WatchedBody<B> {
        WatchedBody {
            inner,
            rest: Bytes::new(),
            watch,
            waiting: None,
        }
    }

    fn stop_waiting(&mut self) {
        if let Some(slot) = self.waiting.take() {
            self.watch.stop_waiting(slot);
        }
    }

    /// The next slice of `rest`, now waiting for the client.
    fn next_slice(&mut self) -> Bytes {
        let slice = take_slice(&mut self.rest);
        self.waiting = Some(self.watch.start_waiting());
        slice
    }
}

/// The front of `rest` to send next: at most [`SLICE`], and the last [`TAIL`] bytes alone.
fn take_slice(rest: &mut Bytes) -> Bytes {
    let len = rest.len();
    let take = if len <= TAIL {
        len
    } else {
        (len - TAIL).min(SLICE)
    };
    rest.split_to(take)
}

impl<B> Drop for WatchedBody<B> {
    fn drop(&mut self) {
        self.stop_waiting();
    }
}

impl<B> Body for WatchedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        // Polled again: hyper handed the last slice to h2, the client made room for it.
        self.stop_waiting();
        if !self.rest.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(self.next_slice()))));
        }
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(match frame {
            Some(Ok(frame)) => Some(Ok(match frame.into_data() {
                // Empty chunks need no window: hyper sends them at once.
                Ok(data) if data.is_empty() => Frame::data(data),
                Ok(data) => {
                    self.rest = data;
                    Frame::data(self.next_slice())
                }
                Err(frame) => frame,
            })),
            other => other,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::time::Duration;

    type Frames = StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, ()>>>>;

    fn body(frames: Vec<Frame<Bytes>>) -> Frames {
        let frames: Vec<_> = frames.into_iter().map(Ok).collect();
        StreamBody::new(futures::stream::iter(frames))
    }

    fn watched(frames: Vec<Frame<Bytes>>) -> (WatchedBody<Frames>, Arc<SendWatch>) {
        let watch = Arc::new(SendWatch::new(Duration::from_secs(3600), None));
        (WatchedBody::new(body(frames), watch.clone()), watch)
    }

    fn trailers() -> http::HeaderMap {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers
    }

    #[test]
    fn slices_are_at_most_a_mebibyte_and_the_tail_goes_alone() {
        let sizes = |len: usize| {
            let mut rest = Bytes::from(vec![0u8; len]);
            std::iter::from_fn(|| (!rest.is_empty()).then(|| take_slice(&mut rest).len()))
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(100), [100]);
        assert_eq!(sizes(TAIL), [TAIL]);
        assert_eq!(sizes(TAIL + 1), [1, TAIL]);
        assert_eq!(sizes(3 * SLICE), [SLICE, SLICE, SLICE - TAIL, TAIL]);
    }

    /// The bytes come out identical and in order, in slices, then the trailers unchanged.
    #[tokio::test]
    async fn slicing_keeps_the_bytes_and_the_trailers_pass_through() {
        let message: Vec<u8> = (0..3 * SLICE + 12345).map(|i| (i % 251) as u8).collect();
        let small = Bytes::from_static(b"second message");
        let (mut watched, watch) = watched(vec![
            Frame::data(Bytes::from(message.clone())),
            Frame::data(small.clone()),
            Frame::trailers(trailers()),
        ]);
        let mut data = Vec::new();
        let mut slices = 0;
        let received_trailers = loop {
            let frame = watched.frame().await.unwrap().unwrap();
            match frame.into_data() {
                Ok(slice) => {
                    assert!(slice.len() <= SLICE);
                    assert!(watched.waiting.is_some(), "a slice given out waits");
                    data.extend_from_slice(&slice);
                    slices += 1;
                }
                Err(frame) => break frame.into_trailers().unwrap(),
            }
        };
        assert_eq!(data.len(), message.len() + small.len());
        assert!(data[..message.len()] == message[..] && data[message.len()..] == small[..]);
        assert_eq!(
            slices,
            4 + 1,
            "1 MiB, 1 MiB, the rest but the tail, the tail; the small one"
        );
        assert_eq!(received_trailers, trailers());
        assert!(watched.waiting.is_none(), "trailers do not wait");
        assert!(watched.frame().await.is_none());
        assert!(watch.waiting_is_empty());
    }

    #[tokio::test]
    async fn a_body_dropped_while_its_slice_waits_stops_waiting() {
        let (mut watched, watch) = watched(vec![Frame::data(Bytes::from(vec![1u8; 10]))]);
        watched.frame().await.unwrap().unwrap();
        assert!(!watch.waiting_is_empty());
        drop(watched);
        assert!(watch.waiting_is_empty());
    }
}
