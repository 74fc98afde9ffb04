//! Request size limits per call, enforced on the gRPC framing before anything is buffered.
//!
//! tonic checks one size limit per service, and only after the message's frame header arrived
//! it reserves room for the whole message. [`RequestLimits`] wraps a service and reads every
//! request body as it streams in: the first frame header that declares more bytes than the
//! call accepts ends the request with RESOURCE_EXHAUSTED / REQUEST_TOO_LARGE, before any of the
//! message is kept. It also refuses bodies that are not gRPC framing (unknown flag byte, a body
//! ending inside a message, a unary request without exactly one message) with
//! INVALID_ARGUMENT / INVALID_MESSAGE, where tonic would answer INTERNAL.

use std::borrow::Cow;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Frame;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Bytes, Service, http};
use tonic::server::NamedService;

use super::status;
use crate::cluster::echo;
use crate::proto::monitor::monitor_server::SERVICE_NAME as MONITOR;

/// Requests of ids, numbers and short names (a uuid, an address, labels of ≤ 255 bytes, pool
/// names of ≤ 255 bytes, image names of ≤ 512 bytes, member lists of one PG).
const SMALL: usize = 64 << 10;
/// Requests with an entry per pool (the map calls), or with an OSD's config text of ≤ 256 KiB
/// and an entry per shard (Boot).
const MEDIUM: usize = 1 << 20;
/// DataStatistics: an entry per PG the OSD leads, which runs into MiBs.
const LARGE: usize = 64 << 20;
/// Calls of the other services (health, reflection), and unknown calls.
const OTHER: usize = 64 << 10;

/// The limits table from the list of calls (`crate::rpcs`), each row naming its size class.
macro_rules! limits_table {
    ($($group:ident {
        $($name:ident $method:ident($req:ident) -> $resp:ident, $limit:ident;)*
    })*) => {
        &[$($((stringify!($name), $limit),)*)*]
    };
}

/// The largest request message of each Monitor call, in bytes. docs/api.md lists the same.
pub const MONITOR_LIMITS: &[(&str, usize)] = crate::rpcs::for_each_rpc!(limits_table);

/// The largest limit of any call: the Monitor service's own decoding limit, a backstop that
/// [`RequestLimits`] never lets a request reach.
pub const LARGEST: usize = LARGE;

/// What the body of one call may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CallLimit {
    /// The call's name in errors.
    call: Cow<'static, str>,
    /// The largest message, in bytes.
    max_message: usize,
    /// The call takes exactly one request message (every Monitor call does).
    unary: bool,
}

/// The limit of the call at `path` (`/<service>/<method>`).
fn limit_for(path: &str) -> CallLimit {
    let method = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(service, _)| *service == MONITOR)
        .map(|(_, method)| method);
    match method.and_then(|m| MONITOR_LIMITS.iter().find(|(name, _)| *name == m)) {
        Some(&(call, max_message)) => CallLimit {
            call: Cow::Borrowed(call),
            max_message,
            unary: true,
        },
        None => CallLimit {
            call: Cow::Owned(echo(path)),
            max_message: OTHER,
            unary: false,
        },
    }
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// A frame header declared a message longer than the call's limit.
    TooLarge(usize),
    /// A frame's flag byte is neither 0 (plain) nor 1 (compressed).
    BadFlag(u8),
    /// The body ended inside a frame.
    Truncated,
    /// A unary call's body held no message.
    NoMessage,
    /// A unary call's body held a second message.
    ExtraMessage,
}

/// Bytes of a gRPC frame header: a flag byte and a big-endian u32 message length.
const HEADER: usize = 5;

/// Follows the gRPC framing of a request body chunk by chunk, keeping only the header being
/// read, never message bytes.
#[derive(Debug)]
struct FrameCheck {
    max_message: usize,
    unary: bool,
    header: [u8; HEADER],
    /// Header bytes read so far (0 while inside or between messages).
    header_len: usize,
    /// Message bytes still to come of the current frame.
    remaining: usize,
    messages: usize,
}

impl FrameCheck {
    fn new(max_message: usize, unary: bool) -> FrameCheck {
        FrameCheck {
            max_message,
            unary,
            header: [0; HEADER],
            header_len: 0,
            remaining: 0,
            messages: 0,
        }
    }

    /// Reads one chunk of the body.
    fn feed(&mut self, mut chunk: &[u8]) -> Result<(), Refusal> {
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(chunk.len());
                self.remaining -= skip;
                chunk = &chunk[skip..];
                continue;
            }
            let take = (HEADER - self.header_len).min(chunk.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&chunk[..take]);
            self.header_len += take;
            chunk = &chunk[take..];
            if self.header_len == HEADER {
                self.header_len = 0;
                self.start_message()?;
            }
        }
        Ok(())
    }

    fn start_message(&mut self) -> Result<(), Refusal> {
        let flag = self.header[0];
        if flag > 1 {
            return Err(Refusal::BadFlag(flag));
        }
        let len = u32::from_be_bytes([
            self.header[1],
            self.header[2],
            self.header[3],
            self.header[4],
        ]) as usize;
        if len > self.max_message {
            return Err(Refusal::TooLarge(len));
        }
        self.messages += 1;
        if self.unary && self.messages > 1 {
            return Err(Refusal::ExtraMessage);
        }
        self.remaining = len;
        Ok(())
    }

    /// The body ended.
    fn finish(&self) -> Result<(), Refusal> {
        if self.header_len > 0 || self.remaining > 0 {
            return Err(Refusal::Truncated);
        }
        if self.unary && self.messages == 0 {
            return Err(Refusal::NoMessage);
        }
        Ok(())
    }
}

fn refusal_status(limit: &CallLimit, refusal: Refusal) -> Status {
    let call = &limit.call;
    match refusal {
        Refusal::TooLarge(size) => status::request_too_large(call, size, limit.max_message),
        Refusal::BadFlag(flag) => status::invalid_message(format!(
            "{call}: a gRPC frame starts with flag {flag} (0 or 1 expected); is the body gRPC?"
        )),
        Refusal::Truncated => {
            status::invalid_message(format!("{call}: the request body ends inside a message"))
        }
        Refusal::NoMessage => {
            status::invalid_message(format!("{call}: the request body holds no message"))
        }
        Refusal::ExtraMessage => status::invalid_message(format!(
            "{call}: the request body holds more than one message"
        )),
    }
}

/// A request body checked frame by frame; a refused body yields one error and ends.
struct CheckedBody {
    inner: Body,
    limit: CallLimit,
    check: FrameCheck,
    done: bool,
}

impl CheckedBody {
    fn refuse(&mut self, refusal: Refusal) -> Status {
        self.done = true;
        refusal_status(&self.limit, refusal)
    }
}

impl http_body::Body for CheckedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(match polled {
            Some(Ok(frame)) => {
                // Checked before the chunk is passed on, so a refused message is never kept.
                let checked = match frame.data_ref() {
                    Some(data) => self.check.feed(data),
                    None => Ok(()),
                };
                match checked {
                    Ok(()) => Some(Ok(frame)),
                    Err(refusal) => Some(Err(self.refuse(refusal))),
                }
            }
            Some(Err(e)) => Some(Err(e)),
            None => match self.check.finish() {
                Ok(()) => None,
                Err(refusal) => Some(Err(self.refuse(refusal))),
            },
        })
    }

    fn is_end_stream(&self) -> bool {
        // The end of the inner body is where a missing or cut message is found.
        self.done
    }
}

/// A gRPC service whose request bodies are checked against their call's limit.
#[derive(Debug, Clone)]
pub struct RequestLimits<S> {
    inner: S,
}

impl<S> RequestLimits<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> RequestLimits<S> {
        RequestLimits { inner }
    }
}

impl<S: NamedService> NamedService for RequestLimits<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for RequestLimits<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let limit = limit_for(request.uri().path());
        let check = FrameCheck::new(limit.max_message, limit.unary);
        self.inner.call(request.map(|inner| {
            Body::new(CheckedBody {
                inner,
                limit,
                check,
                done: false,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::reasons;

    fn frame(flag: u8, len: u32) -> Vec<u8> {
        let mut f = vec![flag];
        f.extend_from_slice(&len.to_be_bytes());
        f
    }

    fn message(len: usize) -> Vec<u8> {
        let mut m = frame(0, len as u32);
        m.extend(std::iter::repeat_n(7u8, len));
        m
    }

    /// Feeds `body` in chunks of `chunk` bytes, then ends it.
    fn run(check: &mut FrameCheck, body: &[u8], chunk: usize) -> Result<(), Refusal> {
        for c in body.chunks(chunk) {
            check.feed(c)?;
        }
        check.finish()
    }

    #[test]
    fn messages_within_the_limit_pass_however_the_body_is_cut() {
        for chunk in [1, 2, 3, 5, 7, 100, 4096] {
            let mut one = FrameCheck::new(100, true);
            assert_eq!(run(&mut one, &message(100), chunk), Ok(()), "chunk {chunk}");
            let mut empty_message = FrameCheck::new(100, true);
            assert_eq!(run(&mut empty_message, &message(0), chunk), Ok(()));
            let mut stream = FrameCheck::new(100, false);
            let body = [message(3), message(0), message(100)].concat();
            assert_eq!(run(&mut stream, &body, chunk), Ok(()), "chunk {chunk}");
            assert_eq!(stream.messages, 3);
        }
    }

    #[test]
    fn an_oversized_message_is_refused_at_its_header() {
        let mut check = FrameCheck::new(100, true);
        assert_eq!(check.feed(&frame(0, 101)), Err(Refusal::TooLarge(101)));
        // Split across chunks, before any message byte.
        let mut check = FrameCheck::new(64 << 10, true);
        let header = frame(0, 60 << 20);
        assert_eq!(check.feed(&header[..3]), Ok(()));
        assert_eq!(check.feed(&header[3..]), Err(Refusal::TooLarge(60 << 20)));
        // The second message of a stream is checked too.
        let mut stream = FrameCheck::new(100, false);
        let body = [message(10), frame(0, u32::MAX)].concat();
        assert_eq!(
            stream.feed(&body),
            Err(Refusal::TooLarge(u32::MAX as usize))
        );
    }

    #[test]
    fn bodies_that_are_not_grpc_framing_are_refused() {
        let mut check = FrameCheck::new(100, true);
        assert_eq!(check.feed(b"hello, monitor"), Err(Refusal::BadFlag(b'h')));
        let mut check = FrameCheck::new(100, true);
        assert_eq!(
            run(&mut check, &message(10)[..8], 4),
            Err(Refusal::Truncated)
        );
        let mut check = FrameCheck::new(100, true);
        assert_eq!(run(&mut check, &[0, 0, 0], 3), Err(Refusal::Truncated));
        assert_eq!(FrameCheck::new(100, true).finish(), Err(Refusal::NoMessage));
        let mut check = FrameCheck::new(100, true);
        let two = [message(1), message(1)].concat();
        assert_eq!(check.feed(&two), Err(Refusal::ExtraMessage));
        // A stream may end with no message at all.
        assert_eq!(FrameCheck::new(100, false).finish(), Ok(()));
    }

    #[test]
    fn every_monitor_call_has_its_own_limit() {
        let service = crate::proto::monitor_service();
        let mut methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        let mut listed: Vec<&str> = MONITOR_LIMITS.iter().map(|(m, _)| *m).collect();
        methods.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, methods, "MONITOR_LIMITS lists every call once");
        for m in &methods {
            let limit = limit_for(&format!("/{MONITOR}/{m}"));
            assert_eq!(limit.call, *m);
            assert!(limit.unary && limit.max_message <= LARGEST);
        }
        assert!(service.method.iter().all(|m| !m.client_streaming()));
    }

    #[test]
    fn other_calls_get_the_default_limit_and_a_quoted_name() {
        let health = limit_for("/grpc.health.v1.Health/Check");
        assert_eq!(
            health,
            CallLimit {
                call: Cow::Borrowed("/grpc.health.v1.Health/Check"),
                max_message: OTHER,
                unary: false,
            }
        );
        let long = format!("/{MONITOR}/{}", "x".repeat(10_000));
        assert!(limit_for(&long).call.ends_with("…(10030 bytes)"));
    }

    #[test]
    fn refusals_name_the_call_and_the_limit() {
        let limit = limit_for(&format!("/{MONITOR}/ApplyId"));
        let s = refusal_status(&limit, Refusal::TooLarge(60 << 20));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status::reason(&s).as_deref(),
            Some(reasons::REQUEST_TOO_LARGE)
        );
        assert_eq!(
            s.message(),
            "the ApplyId request message is 62914560 bytes; ApplyId accepts at most 65536 bytes"
        );
        for refusal in [
            Refusal::BadFlag(9),
            Refusal::Truncated,
            Refusal::NoMessage,
            Refusal::ExtraMessage,
        ] {
            let s = refusal_status(&limit, refusal);
            assert_eq!(s.code(), tonic::Code::InvalidArgument);
            assert_eq!(
                status::reason(&s).as_deref(),
                Some(reasons::INVALID_MESSAGE)
            );
            assert!(s.message().contains("ApplyId"), "{}", s.message());
        }
    }
}
