//! Wiring of the `transcribe` capability: the recorder's transcription tap on the seat
//! source, one [`gavel_transcribe::Transcriber`] per hearing sharing one loaded model, and
//! the lines onto the durable outbox as `transcript` events (partial: `update`, final:
//! `end`, one id per line `tr-<hearing>-<seat>-<line>`).
//!
//! Design: the tap's callback runs on the recorder's streaming thread, so it only copies
//! PCM into the hearing's bounded [`Tap`] (starting a transcriber thread when a new
//! hearing's audio first arrives) and returns. The model is loaded once at start, off the
//! async runtime. Lines cross to the async side over an unbounded channel whose volume is
//! bounded by speech (a few lines per second at most).

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use gavel_link::Outbox;
use gavel_profile::{Profile, TranscribeSettings};
use gavel_protocol::{Capability, CapabilityState, EventBody, Phase};
use gavel_record::{PcmTap, TapData};
use gavel_transcribe::{
    Event, RATE, SharedEngine, Stage, Tap, Transcriber, Vocabulary, WhisperEngine, WhisperOptions,
    WorkerSettings,
};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::AgentConfig;

/// What transcription needs, resolved from the profile and the agent config.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The recorded source carrying the seat microphones.
    pub source: String,
    /// (channel, seat id) of every seat.
    pub seats: Vec<(usize, String)>,
    pub settings: TranscribeSettings,
    /// The ggml model file.
    pub model: PathBuf,
    pub vocabulary: Option<Vocabulary>,
}

/// Where the whisper models are: `GAVEL_MODELS_DIR` (default `/usr/share/gavel/models`,
/// laid out as `models/cache/` after `cargo xtask models`), `whisper/ggml-<name>.bin`.
pub fn model_path(name: &str) -> PathBuf {
    std::env::var_os("GAVEL_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/share/gavel/models".into())
        .join("whisper")
        .join(format!("ggml-{name}.bin"))
}

/// Resolves transcription for `profile`; `None` without `[capabilities.transcribe]`, an
/// error (why it cannot run) when something is missing.
pub fn plan(profile: &Profile, config: &AgentConfig) -> Option<anyhow::Result<Plan>> {
    let settings = profile.capabilities.transcribe.clone()?;
    Some((|| {
        let gavel_profile::SeatMicrophones { source, seats } = profile
            .seat_microphones()
            .context("no recorded source with role \"seats\" carries the seat microphones")?;
        let vocabulary = match &settings.vocabulary {
            Some(name) => Some(Vocabulary::load(
                &config
                    .profiles_dir
                    .join("vocabulary")
                    .join(format!("{name}.toml")),
            )?),
            None => None,
        };
        let model = model_path(settings.model_name());
        if !model.is_file() {
            anyhow::bail!(
                "no model at {} (run `cargo xtask models`, or set GAVEL_MODELS_DIR)",
                model.display()
            );
        }
        Ok(Plan {
            source,
            seats,
            settings,
            model,
            vocabulary,
        })
    })())
}

/// The hearing being transcribed.
struct Active {
    hearing_id: String,
    tap: Tap,
    transcriber: Transcriber,
}

/// A transcript line on its way to the outbox.
struct Outgoing {
    hearing_id: String,
    event: Event,
}

/// Loads the model (blocking: call off the runtime) and returns the recorder's tap, the
/// capability to report and the task that publishes lines.
pub fn start(
    plan: Plan,
    outbox: Arc<Outbox>,
    runtime: tokio::runtime::Handle,
) -> anyhow::Result<(PcmTap, Capability, tokio::task::JoinHandle<()>)> {
    let name = plan.settings.model_name().to_owned();
    let language = plan.settings.language.clone();
    let prompt = plan.vocabulary.as_ref().and_then(|v| v.prompt(&language));
    let engine = WhisperEngine::load(
        &plan.model,
        &name,
        WhisperOptions {
            threads: plan.settings.threads,
            language: language.clone(),
            prompt,
        },
    )?;
    let engine: SharedEngine = gavel_transcribe::shared(engine);
    let version = plan.vocabulary.as_ref().map(|v| v.version.clone());
    let (tx, rx) = mpsc::unbounded_channel::<Outgoing>();
    let active: Arc<Mutex<Option<Active>>> = Arc::new(Mutex::new(None));
    let capacity = RATE as usize * plan.settings.backlog_s as usize;
    let seats = plan.seats.clone();
    let sink = {
        let active = active.clone();
        move |data: TapData<'_>| {
            let mut guard = active
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match data {
                TapData::Pcm {
                    hearing_id,
                    source,
                    channels,
                    samples,
                } => {
                    if guard.as_ref().is_none_or(|a| a.hearing_id != hearing_id) {
                        if let Some(old) = guard.take() {
                            old.tap.close();
                        }
                        let tap = Tap::new(channels, capacity);
                        let tx = tx.clone();
                        let hearing = hearing_id.to_owned();
                        let seats = seats
                            .iter()
                            .filter(|(c, _)| *c < channels)
                            .cloned()
                            .collect();
                        match Transcriber::spawn(
                            WorkerSettings::default(),
                            engine.clone(),
                            tap.clone(),
                            source.to_owned(),
                            seats,
                            move |event| {
                                let _ = tx.send(Outgoing {
                                    hearing_id: hearing.clone(),
                                    event,
                                });
                            },
                        ) {
                            Ok(transcriber) => {
                                info!(hearing = hearing_id, %source, "transcribing");
                                *guard = Some(Active {
                                    hearing_id: hearing_id.to_owned(),
                                    tap,
                                    transcriber,
                                });
                            }
                            Err(e) => {
                                warn!(error = %e, "starting the transcriber failed");
                                return;
                            }
                        }
                    }
                    if let Some(a) = guard.as_ref() {
                        a.tap.push(samples);
                    }
                }
                TapData::End { hearing_id, .. } => {
                    if guard.as_ref().is_some_and(|a| a.hearing_id == hearing_id)
                        && let Some(a) = guard.take()
                    {
                        a.tap.close();
                        // The thread finishes its final lines on its own.
                        drop(a.transcriber);
                    }
                }
            }
        }
    };
    let tap = PcmTap {
        sources: vec![plan.source.clone()],
        sink: Arc::new(sink),
        dropped: Arc::new(AtomicU64::new(0)),
    };
    let task = runtime.spawn(publish(rx, outbox, name.clone(), version.clone()));
    let detail = format!(
        "whisper {name} on {} threads, language {language}{}, seats {}",
        plan.settings.threads,
        version
            .map(|v| format!(", vocabulary {v}"))
            .unwrap_or_default(),
        plan.seats
            .iter()
            .map(|(c, s)| format!("{s}={}:{c}", plan.source))
            .collect::<Vec<_>>()
            .join(" ")
    );
    info!(%detail, "transcription ready");
    Ok((
        tap,
        Capability {
            name: "transcribe".into(),
            state: CapabilityState::Running,
            detail: Some(detail.chars().take(200).collect()),
        },
        task,
    ))
}

/// The transcript event of a line.
pub fn event_of(
    hearing_id: &str,
    seat: &str,
    source: &str,
    line: &gavel_transcribe::Line,
    model: &str,
    vocabulary: Option<&str>,
) -> (String, Phase, EventBody) {
    let id = format!("tr-{hearing_id}-{seat}-{}", line.line);
    let phase = match line.stage {
        Stage::Partial => Phase::Update,
        Stage::Final => Phase::End,
    };
    (
        id,
        phase,
        EventBody::Transcript {
            hearing_id: hearing_id.to_owned(),
            seat: seat.to_owned(),
            source: source.to_owned(),
            line: line.line,
            offset_ns: line.offset_ns,
            duration_ns: line.duration_ns,
            text: within(&line.text, gavel_protocol::MAX_LINE_TEXT),
            language: line.language.clone(),
            model: model.to_owned(),
            vocabulary: vocabulary.map(str::to_owned),
            confidence: Some(line.confidence.clamp(0.0, 1.0)),
        },
    )
}

/// `text` cut to at most `max` bytes on a character boundary.
fn within(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

async fn publish(
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    outbox: Arc<Outbox>,
    model: String,
    vocabulary: Option<String>,
) {
    while let Some(o) = rx.recv().await {
        match o.event {
            Event::Line { seat, source, line } => {
                let (id, phase, body) = event_of(
                    &o.hearing_id,
                    &seat,
                    &source,
                    &line,
                    &model,
                    vocabulary.as_deref(),
                );
                if let Err(e) = outbox.emit(id, phase, body).await {
                    warn!(error = %e, "storing a transcript line failed");
                }
            }
            Event::Gap {
                offset_ns,
                duration_ns,
            } => warn!(
                hearing = %o.hearing_id,
                at_s = offset_ns / 1_000_000_000,
                skipped_s = duration_ns / 1_000_000_000,
                "transcription fell too far behind and skipped audio (the recording is complete)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_final_line_is_an_end_event_with_one_id_per_line_and_validates() {
        let line = gavel_transcribe::Line {
            channel: 0,
            line: 12,
            stage: Stage::Final,
            offset_ns: 733_400_000_000,
            duration_ns: 3_200_000_000,
            text: "现在开庭，请原告陈述诉讼请求。".into(),
            language: "zh".into(),
            confidence: 0.87,
        };
        let (id, phase, body) = event_of(
            "H2026-0117",
            "judge",
            "mics:0",
            &line,
            "base",
            Some("court-legal-2026.11"),
        );
        assert_eq!(id, "tr-H2026-0117-judge-12");
        assert_eq!(phase, Phase::End);
        let event = gavel_protocol::Event {
            v: gavel_protocol::PROTOCOL_VERSION,
            ts: time::OffsetDateTime::now_utc(),
            boot_id: "b".into(),
            seq: 1,
            id,
            phase,
            historical: false,
            body,
        };
        let decoded: gavel_protocol::Event =
            gavel_protocol::decode(&gavel_protocol::encode(&event)).expect("a valid event");
        assert_eq!(decoded.id, "tr-H2026-0117-judge-12");
        let partial = gavel_transcribe::Line {
            stage: Stage::Partial,
            ..line
        };
        assert_eq!(
            event_of("H1", "judge", "mics:0", &partial, "base", None).1,
            Phase::Update
        );
    }

    #[test]
    fn an_overlong_line_is_cut_on_a_character_boundary_and_still_validates() {
        let line = gavel_transcribe::Line {
            channel: 0,
            line: 0,
            stage: Stage::Partial,
            offset_ns: 0,
            duration_ns: 1_000_000_000,
            // 3-byte characters: the limit falls inside one.
            text: "庭".repeat(gavel_protocol::MAX_LINE_TEXT),
            language: "zh".into(),
            confidence: 0.5,
        };
        let (id, phase, body) = event_of("H1", "judge", "mics:0", &line, "base", None);
        let gavel_protocol::EventBody::Transcript { ref text, .. } = body else {
            panic!("not a transcript event");
        };
        assert!(text.len() <= gavel_protocol::MAX_LINE_TEXT && text.len() % 3 == 0);
        let event = gavel_protocol::Event {
            v: gavel_protocol::PROTOCOL_VERSION,
            ts: time::OffsetDateTime::now_utc(),
            boot_id: "b".into(),
            seq: 1,
            id,
            phase,
            historical: false,
            body,
        };
        gavel_protocol::decode::<gavel_protocol::Event>(&gavel_protocol::encode(&event))
            .expect("a valid event");
    }
}
