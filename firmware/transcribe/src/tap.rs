//! The audio tap between the recorder and the transcriber: a bounded buffer of 16 kHz
//! interleaved PCM (one channel per seat) that the recorder writes into and the
//! transcriber drains at its own pace.
//!
//! Design: the recorder must never wait for transcription. [`Tap::push`] copies the block
//! under a short lock and returns; it never waits for the reader. When the transcriber is
//! so far behind that the buffer is full, the *oldest* unread audio is discarded and the
//! reader is told how much ([`Read::Gap`]): transcription skips ahead with a reported gap,
//! the recording itself loses nothing. Samples are kept as i16 (2 bytes), so the default
//! ten minutes of five seats is 96 MB at most.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What a read returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// Audio: one vector per channel, equally long, full scale 1.0.
    Audio(Vec<Vec<f32>>),
    /// This many samples per channel were discarded before the next audio.
    Gap(u64),
    /// Nothing arrived within the timeout.
    Empty,
    /// The writer closed the tap and everything was read.
    Closed,
}

#[derive(Debug)]
struct State {
    /// Interleaved samples, oldest first.
    buf: VecDeque<i16>,
    /// Timeline sample (per channel) of `buf`'s first frame.
    front: u64,
    /// Timeline sample the reader reads next.
    read: u64,
    closed: bool,
}

/// Counters of a tap, readable from any thread.
#[derive(Debug, Default)]
pub struct TapStats {
    /// Frames (one sample per channel) written by the recorder.
    pub written: AtomicU64,
    /// Frames discarded unread because the buffer was full.
    pub discarded: AtomicU64,
    /// Most frames ever waiting to be read.
    pub peak_backlog: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    channels: usize,
    capacity: usize,
    stats: TapStats,
}

/// A tap: cloneable; the recorder holds one clone, the transcriber another.
#[derive(Debug, Clone)]
pub struct Tap {
    shared: Arc<Shared>,
}

impl Tap {
    /// A tap of `channels` channels holding at most `capacity` frames.
    pub fn new(channels: usize, capacity: usize) -> Self {
        let channels = channels.max(1);
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    buf: VecDeque::with_capacity(channels * capacity.min(16_000 * 60)),
                    front: 0,
                    read: 0,
                    closed: false,
                }),
                ready: Condvar::new(),
                channels,
                capacity: capacity.max(1),
                stats: TapStats::default(),
            }),
        }
    }

    /// Channels per frame.
    pub fn channels(&self) -> usize {
        self.shared.channels
    }

    /// The tap's counters.
    pub fn stats(&self) -> &TapStats {
        &self.shared.stats
    }

    /// Frames held and not yet read.
    pub fn backlog(&self) -> u64 {
        (self.lock().buf.len() / self.shared.channels) as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking holder cannot leave the buffer inconsistent (every update is a
        // plain copy), so a poisoned lock is used as is.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes interleaved samples (a trailing partial frame is ignored). Never waits for
    /// the reader: when full, the oldest unread frames are discarded.
    pub fn push(&self, interleaved: &[i16]) {
        let ch = self.shared.channels;
        let frames = interleaved.len() / ch;
        if frames == 0 {
            return;
        }
        let cap = self.shared.capacity;
        let stats = &self.shared.stats;
        let mut s = self.lock();
        s.buf.extend(&interleaved[..frames * ch]);
        let held = s.buf.len() / ch;
        if held > cap {
            let excess = held - cap;
            s.buf.drain(..excess * ch);
            s.front += excess as u64;
            // Design: everything in `buf` is unread (reads drain it), so all of it is lost.
            stats.discarded.fetch_add(excess as u64, Ordering::Relaxed);
        }
        let backlog = (s.buf.len() / ch) as u64;
        drop(s);
        stats.written.fetch_add(frames as u64, Ordering::Relaxed);
        stats.peak_backlog.fetch_max(backlog, Ordering::Relaxed);
        self.shared.ready.notify_one();
    }

    /// Ends the stream: the reader gets the rest, then [`Read::Closed`].
    pub fn close(&self) {
        self.lock().closed = true;
        self.shared.ready.notify_all();
    }

    /// Reads up to `max` frames, waiting up to `timeout` for some.
    pub fn read(&self, max: usize, timeout: Duration) -> Read {
        let ch = self.shared.channels;
        let mut s = self.lock();
        if s.read < s.front {
            let gap = s.front - s.read;
            s.read = s.front;
            return Read::Gap(gap);
        }
        if s.buf.is_empty() && !s.closed {
            s = self
                .shared
                .ready
                .wait_timeout(s, timeout)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            if s.read < s.front {
                let gap = s.front - s.read;
                s.read = s.front;
                return Read::Gap(gap);
            }
        }
        if s.buf.is_empty() {
            return if s.closed { Read::Closed } else { Read::Empty };
        }
        let frames = (s.buf.len() / ch).min(max.max(1));
        let mut out = vec![Vec::with_capacity(frames); ch];
        for (i, v) in s.buf.drain(..frames * ch).enumerate() {
            out[i % ch].push(f32::from(v) / 32768.0);
        }
        s.front += frames as u64;
        s.read = s.front;
        Read::Audio(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_deinterleaved_per_seat_in_order() {
        let tap = Tap::new(2, 100);
        tap.push(&[1, -1, 2, -2, 3]);
        let Read::Audio(a) = tap.read(10, Duration::ZERO) else {
            panic!("audio expected");
        };
        assert_eq!(a[0], vec![1.0 / 32768.0, 2.0 / 32768.0]);
        assert_eq!(a[1], vec![-1.0 / 32768.0, -2.0 / 32768.0]);
        assert_eq!(tap.read(10, Duration::ZERO), Read::Empty);
    }

    #[test]
    fn a_full_tap_discards_the_oldest_audio_and_tells_the_reader_how_much() {
        let tap = Tap::new(1, 4);
        for i in 0..10 {
            tap.push(&[i]);
        }
        assert_eq!(tap.stats().written.load(Ordering::Relaxed), 10);
        assert_eq!(tap.stats().discarded.load(Ordering::Relaxed), 6);
        assert_eq!(tap.read(100, Duration::ZERO), Read::Gap(6));
        let Read::Audio(a) = tap.read(100, Duration::ZERO) else {
            panic!("audio expected");
        };
        assert_eq!(a[0].len(), 4);
        assert_eq!(a[0][0], 6.0 / 32768.0);
    }

    #[test]
    fn the_reader_gets_everything_written_before_close_then_closed() {
        let tap = Tap::new(1, 100);
        tap.push(&[5; 30]);
        tap.close();
        assert!(matches!(tap.read(100, Duration::ZERO), Read::Audio(_)));
        assert_eq!(tap.read(100, Duration::ZERO), Read::Closed);
    }

    #[test]
    fn a_writer_far_ahead_of_a_slow_reader_never_waits() {
        let tap = Tap::new(4, 16_000);
        let writer = {
            let tap = tap.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    tap.push(&[0; 4 * 320]);
                }
            })
        };
        // Nobody reads until the writer is done: it must finish on its own.
        writer.join().expect("writer");
        assert_eq!(tap.stats().written.load(Ordering::Relaxed), 320_000);
        assert_eq!(tap.backlog(), 16_000);
    }
}
