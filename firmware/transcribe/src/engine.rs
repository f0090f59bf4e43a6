//! Speech recognition engines: whisper.cpp through whisper-rs, behind a trait so the
//! streaming shell can be tested with a deliberately slow engine.

use std::path::Path;

use crate::TranscribeError;
use crate::core::{Hypothesis, Stage};

/// Recognises one utterance at a time (blocking; run on the transcriber's thread).
pub trait Engine: Send {
    /// Recognises 16 kHz mono PCM.
    fn decode(&mut self, pcm: &[f32], stage: Stage) -> Result<Hypothesis, TranscribeError>;
    /// The model's name for transcript lines (`base`, `tiny.en`).
    fn model(&self) -> &str;
}

/// Decoding options of the whisper engine.
#[derive(Debug, Clone, PartialEq)]
pub struct WhisperOptions {
    /// Inference threads (from the profile).
    pub threads: u16,
    /// `en`, `zh`, or `auto` (detect per utterance).
    pub language: String,
    /// Initial prompt: the court's vocabulary (legal terms, names) biases recognition
    /// towards it; for Chinese, a prompt in Simplified characters also steers whisper
    /// away from Traditional output.
    pub prompt: Option<String>,
}

/// whisper.cpp with one loaded model and one decoding state.
pub struct WhisperEngine {
    /// Design: the context owns the weights; the state (KV caches, mel buffer) is made
    /// once and reused for every utterance, so memory does not grow with the hearing.
    state: whisper_rs::WhisperState,
    _context: whisper_rs::WhisperContext,
    options: WhisperOptions,
    model: String,
    multilingual: bool,
}

impl WhisperEngine {
    /// Loads a ggml model file (`models/cache/whisper/ggml-base.bin`); `model` is the name
    /// put on lines.
    pub fn load(
        path: &Path,
        model: &str,
        options: WhisperOptions,
    ) -> Result<Self, TranscribeError> {
        if !path.is_file() {
            return Err(TranscribeError::Model(format!(
                "{} does not exist: run `cargo xtask models`",
                path.display()
            )));
        }
        let path_str = path
            .to_str()
            .ok_or_else(|| TranscribeError::Model(format!("{}: not UTF-8", path.display())))?;
        silence_whisper_logs();
        let context = whisper_rs::WhisperContext::new_with_params(
            path_str,
            whisper_rs::WhisperContextParameters::default(),
        )
        .map_err(|e| TranscribeError::Model(format!("{}: {e}", path.display())))?;
        let multilingual = context.is_multilingual();
        if !multilingual && !matches!(options.language.as_str(), "en" | "auto") {
            return Err(TranscribeError::Model(format!(
                "{model} is English-only and cannot transcribe language {:?}",
                options.language
            )));
        }
        let state = context
            .create_state()
            .map_err(|e| TranscribeError::Model(format!("creating the decoding state: {e}")))?;
        Ok(Self {
            state,
            _context: context,
            options,
            model: model.to_owned(),
            multilingual,
        })
    }
}

/// Routes whisper.cpp's own logging away from stderr (it logs every model load).
fn silence_whisper_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(whisper_rs::install_logging_hooks);
}

impl Engine for WhisperEngine {
    fn decode(&mut self, pcm: &[f32], stage: Stage) -> Result<Hypothesis, TranscribeError> {
        use whisper_rs::{FullParams, SamplingStrategy};
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(i32::from(self.options.threads.max(1)));
        let language = if self.multilingual {
            self.options.language.as_str()
        } else {
            "en"
        };
        params.set_language(Some(language));
        params.set_translate(false);
        params.set_no_context(true);
        params.set_single_segment(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        // Design: no temperature fallback: one decode per request keeps latency bounded
        // and the result deterministic.
        params.set_temperature_inc(0.0);
        if stage == Stage::Partial {
            // Design: a partial only shows progress, so its encoder runs on the audio's
            // own length (one position per 20 ms, plus a margin) instead of whisper's
            // fixed 30 s window: several times cheaper, so partials do not delay finals.
            // Finals use the full window, as whisper was trained.
            let ctx = (pcm.len() / 320 + 64).min(1500);
            params.set_audio_ctx(i32::try_from(ctx).unwrap_or(1500));
        }
        if let Some(prompt) = &self.options.prompt {
            params.set_initial_prompt(prompt);
        }
        self.state
            .full(params, pcm)
            .map_err(|e| TranscribeError::Engine(e.to_string()))?;
        let mut text = String::new();
        let (mut prob_sum, mut prob_n) = (0.0f32, 0u32);
        let mut no_speech = 0.0f32;
        for segment in self.state.as_iter() {
            text.push_str(
                &segment
                    .to_str_lossy()
                    .map_err(|e| TranscribeError::Engine(e.to_string()))?,
            );
            no_speech = no_speech.max(segment.no_speech_probability());
            for t in 0..segment.n_tokens() {
                if let Some(token) = segment.get_token(t) {
                    let data = token.token_data();
                    // Special tokens (timestamps, language, end) are not words.
                    if token
                        .to_str_lossy()
                        .is_ok_and(|s| !s.starts_with("[_") && !s.starts_with("<|"))
                    {
                        prob_sum += data.p;
                        prob_n += 1;
                    }
                }
            }
        }
        let detected = if self.multilingual {
            let id = self.state.full_lang_id_from_state();
            whisper_rs::get_lang_str(id).unwrap_or(language).to_owned()
        } else {
            "en".to_owned()
        };
        Ok(Hypothesis {
            text: text.trim().to_owned(),
            language: detected,
            confidence: if prob_n == 0 {
                0.0
            } else {
                prob_sum / prob_n as f32
            },
            no_speech,
        })
    }

    fn model(&self) -> &str {
        &self.model
    }
}
