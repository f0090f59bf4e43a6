//! The recorder actor: owns the [`Core`], the source pipelines and the index, and talks to
//! the rest of the device through a [`RecorderHandle`].
//!
//! Design: one task owns everything mutable. Pipelines report on an unbounded channel from
//! their bus threads; requests arrive with a oneshot for the answer; a 250 ms tick feeds the
//! core its time and the pipelines' data flow, and fsyncs open segments once a second so a
//! power cut loses no more than a SIGKILL does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gavel_evidence::ManifestSource;
use gavel_link::Outbox;
use gavel_protocol::{EventBody, Phase, RecordingState};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::core::{Core, CoreSettings, Input, Now, Output, Resume};
use crate::index::{HearingRecord, Index, NewSegment, OpenSegment};
use crate::pipeline::{Meter, PcmTap, PipelineEvent, SourceConfig, SourcePipeline};
use crate::{RecordError, mono};

/// Recorder settings.
#[derive(Debug, Clone)]
pub struct RecorderSettings {
    /// Device id written into manifests.
    pub device_id: Option<String>,
    /// Target segment length (segments cut on the next keyframe after it).
    pub segment: Duration,
    /// Sources a hearing records.
    pub sources: Vec<SourceConfig>,
    /// State machine timing.
    pub core: CoreSettings,
    /// Audio meters: which sources report their channels' levels, and where (speaker-
    /// follow). `None`: no meter.
    pub meter: Option<Meter>,
    /// The transcription tap: which sources hand their PCM to the transcriber, labelled
    /// with the hearing. `None`: no tap.
    pub tap: Option<PcmTap>,
}

enum Request {
    Start {
        hearing_id: String,
        reason: Option<String>,
        by: Option<String>,
        reply: oneshot::Sender<Result<RecordingState, RecordError>>,
    },
    Stop {
        hearing_id: String,
        reply: oneshot::Sender<Result<RecordingState, RecordError>>,
    },
    State {
        reply: oneshot::Sender<(Option<String>, RecordingState)>,
    },
}

/// Cloneable handle to the recorder actor.
#[derive(Clone)]
pub struct RecorderHandle {
    tx: mpsc::Sender<Request>,
}

impl RecorderHandle {
    /// Starts recording `hearing_id`; returns the state right after.
    pub async fn start(
        &self,
        hearing_id: &str,
        reason: Option<String>,
        by: Option<String>,
    ) -> Result<RecordingState, RecordError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Start {
                hearing_id: hearing_id.to_owned(),
                reason,
                by,
                reply,
            })
            .await
            .map_err(|_| RecordError::Closed)?;
        rx.await.map_err(|_| RecordError::Closed)?
    }

    /// Stops recording `hearing_id`; returns once the stop has begun.
    pub async fn stop(&self, hearing_id: &str) -> Result<RecordingState, RecordError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Stop {
                hearing_id: hearing_id.to_owned(),
                reply,
            })
            .await
            .map_err(|_| RecordError::Closed)?;
        rx.await.map_err(|_| RecordError::Closed)?
    }

    /// The hearing being recorded and the state.
    pub async fn state(&self) -> Result<(Option<String>, RecordingState), RecordError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::State { reply })
            .await
            .map_err(|_| RecordError::Closed)?;
        rx.await.map_err(|_| RecordError::Closed)
    }
}

fn now() -> Now {
    Now {
        mono: mono(),
        wall: OffsetDateTime::now_utc(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RecordError> + Send + 'static,
) -> Result<T, RecordError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RecordError::Index(format!("blocking task: {e}")))?
}

struct Actor {
    settings: RecorderSettings,
    index: Arc<Index>,
    outbox: Arc<Outbox>,
    core: Core,
    record: Option<HearingRecord>,
    pipelines: BTreeMap<String, SourcePipeline>,
    generation: u64,
    events_tx: mpsc::UnboundedSender<PipelineEvent>,
    /// Set while shutting down: the hearing stays active so the next start resumes it.
    shutting_down: bool,
}

/// Starts the recorder. A hearing the store says was recording when the device stopped is
/// resumed at once. The task ends when `shutdown` resolves (after closing open segments;
/// the hearing stays active) or when every handle is dropped.
pub fn spawn(
    settings: RecorderSettings,
    index: Index,
    outbox: Arc<Outbox>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(RecorderHandle, tokio::task::JoinHandle<()>), RecordError> {
    crate::pipeline::init()?;
    let (tx, rx) = mpsc::channel(16);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let actor = Actor {
        core: Core::new(settings.core.clone()),
        settings,
        index: Arc::new(index),
        outbox,
        record: None,
        pipelines: BTreeMap::new(),
        generation: 0,
        events_tx,
        shutting_down: false,
    };
    let task = tokio::spawn(actor.run(rx, events_rx, shutdown));
    Ok((RecorderHandle { tx }, task))
}

impl Actor {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut events: mpsc::UnboundedReceiver<PipelineEvent>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        if let Err(e) = self.resume().await {
            error!(error = %e, "resuming the interrupted hearing failed");
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let mut handles_gone = false;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown, if !self.shutting_down => {
                    info!("recorder shutting down");
                    self.shutting_down = true;
                    if self.core.hearing_id().is_some() {
                        self.input(Input::Stop).await;
                    }
                }
                req = rx.recv(), if !handles_gone => match req {
                    Some(r) => self.request(r).await,
                    None => {
                        handles_gone = true;
                        self.shutting_down = true;
                        if self.core.hearing_id().is_some() {
                            self.input(Input::Stop).await;
                        }
                    }
                },
                Some(ev) = events.recv() => self.pipeline_event(ev).await,
                _ = tick.tick() => {
                    ticks += 1;
                    let flows: Vec<_> = self
                        .pipelines
                        .iter()
                        .filter_map(|(id, p)| p.flow.times().map(|(f, l)| (id.clone(), f, l)))
                        .collect();
                    for (source, first, last) in flows {
                        self.input(Input::Data { source, first, last }).await;
                    }
                    self.input(Input::Tick).await;
                    if ticks.is_multiple_of(4) {
                        self.sync_open_segments().await;
                    }
                }
            }
            if self.shutting_down && self.core.hearing_id().is_none() {
                break;
            }
        }
        for (_, p) in std::mem::take(&mut self.pipelines) {
            p.teardown();
        }
        info!("recorder stopped");
    }

    async fn resume(&mut self) -> Result<(), RecordError> {
        let index = self.index.clone();
        let Some(record) = blocking(move || index.active()).await? else {
            return Ok(());
        };
        info!(hearing = %record.hearing_id, "resuming a hearing interrupted by a restart");
        let index = self.index.clone();
        let (record, ends) = blocking(move || {
            let mut record = record;
            let sources: Vec<String> = record.sources.iter().map(|s| s.id.clone()).collect();
            for s in sources {
                index.recover_source(&mut record, &s)?;
            }
            let ends = index.ends_ns(&record)?;
            index.write_manifest(&record)?;
            Ok((record, ends))
        })
        .await?;
        let input = Input::Start {
            hearing_id: record.hearing_id.clone(),
            sources: record.sources.iter().map(|s| s.id.clone()).collect(),
            resume: Some(Resume {
                started: record.started,
                ends_ns: ends,
            }),
        };
        self.record = Some(record);
        self.input(input).await;
        Ok(())
    }

    async fn request(&mut self, request: Request) {
        match request {
            Request::Start {
                hearing_id,
                reason,
                by,
                reply,
            } => {
                let _ = reply.send(self.start(hearing_id, reason, by).await);
            }
            Request::Stop { hearing_id, reply } => {
                let result = if self.core.hearing_id() != Some(hearing_id.as_str()) {
                    Err(RecordError::NotRecording(hearing_id))
                } else {
                    self.input(Input::Stop).await;
                    Ok(self.core.state())
                };
                let _ = reply.send(result);
            }
            Request::State { reply } => {
                let _ = reply.send((self.core.hearing_id().map(str::to_owned), self.core.state()));
            }
        }
    }

    async fn start(
        &mut self,
        hearing_id: String,
        reason: Option<String>,
        by: Option<String>,
    ) -> Result<RecordingState, RecordError> {
        gavel_protocol::check_hearing_id(&hearing_id)
            .map_err(|e| RecordError::BadHearingId(format!("{hearing_id:?}: {}", e.reason)))?;
        if self.shutting_down {
            return Err(RecordError::Closed);
        }
        if let Some(current) = self.core.hearing_id() {
            if current == hearing_id {
                return Ok(self.core.state());
            }
            return Err(RecordError::HearingInProgress(current.to_owned()));
        }
        let index = self.index.clone();
        let id = hearing_id.clone();
        if let Some(old) = blocking(move || index.load(&id)).await?
            && old.ended.is_some()
        {
            return Err(RecordError::HearingEnded(hearing_id));
        }
        let now = now();
        let record = HearingRecord {
            hearing_id: hearing_id.clone(),
            device_id: self.settings.device_id.clone(),
            started: now.wall,
            ended: None,
            sources: self
                .settings
                .sources
                .iter()
                .map(|s| ManifestSource {
                    id: s.id.clone(),
                    kind: s.kind().into(),
                    uri: s.public_uri(),
                })
                .collect(),
            gaps: vec![],
            open: BTreeMap::new(),
            reason,
            by,
        };
        let index = self.index.clone();
        let saved = record.clone();
        blocking(move || {
            index.save(&saved)?;
            index.write_manifest(&saved).map(|_| ())
        })
        .await?;
        self.record = Some(record);
        let input = Input::Start {
            hearing_id,
            sources: self.settings.sources.iter().map(|s| s.id.clone()).collect(),
            resume: None,
        };
        self.input(input).await;
        Ok(self.core.state())
    }

    /// Feeds the core and carries out what it asks.
    async fn input(&mut self, input: Input) {
        let outputs = match self.core.handle(now(), input) {
            Ok(o) => o,
            Err(e) => {
                debug!(error = %e, "input refused by the core");
                return;
            }
        };
        for output in outputs {
            self.output(output).await;
        }
    }

    async fn output(&mut self, output: Output) {
        match output {
            Output::StartPipeline { source } => {
                let Some(record) = &self.record else { return };
                let Some(cfg) = self.settings.sources.iter().find(|s| s.id == source) else {
                    return;
                };
                let dir = self.index.hearing_dir(&record.hearing_id).join(&source);
                // Past the chain's names too: evicted segments' files are gone from disk.
                let first = self
                    .index
                    .next_file_number(&record.hearing_id, &source)
                    .unwrap_or_else(|e| {
                        warn!(%source, error = %e, "reading the chain for the next file number");
                        crate::index::next_file_number(&dir)
                    });
                self.generation += 1;
                let started = SourcePipeline::start(
                    cfg,
                    &dir,
                    first,
                    self.settings.segment,
                    self.generation,
                    self.events_tx.clone(),
                    self.settings.meter.as_ref(),
                    self.settings
                        .tap
                        .as_ref()
                        .map(|t| (t, record.hearing_id.as_str())),
                );
                match started {
                    Ok(p) => {
                        info!(%source, "pipeline started");
                        self.pipelines.insert(source, p);
                    }
                    Err(e) => {
                        warn!(%source, error = %e, "pipeline did not start");
                        Box::pin(self.input(Input::Failed {
                            source,
                            error: e.to_string(),
                        }))
                        .await;
                    }
                }
            }
            Output::StopPipeline { source, drain } => {
                if drain {
                    if let Some(p) = self.pipelines.get(&source) {
                        p.drain();
                    }
                } else if let Some(p) = self.pipelines.remove(&source) {
                    // Design: wait until the pipeline has stopped writing before hashing
                    // what it left, or the chained hash would not match the file.
                    let stopped = tokio::time::timeout(
                        Duration::from_secs(5),
                        tokio::task::spawn_blocking(move || p.stop_blocking()),
                    )
                    .await;
                    if stopped.is_ok() {
                        self.recover(&source).await;
                    } else {
                        warn!(%source, "pipeline did not stop in 5 s; its last segment is chained later");
                    }
                }
            }
            Output::Event { id, phase, body } => self.emit(id, phase, body).await,
            Output::Gap(gap) => {
                info!(source = %gap.source, from_ns = gap.from_ns, to_ns = ?gap.to_ns, reason = %gap.reason, "gap");
                if let Some(record) = self.record.as_mut() {
                    record.put_gap(gap);
                    self.persist().await;
                }
            }
            Output::Finished { hearing_id, ended } => {
                // Segments of pipelines torn down after the drain timeout.
                let sources: Vec<String> = self
                    .record
                    .as_ref()
                    .map(|r| r.sources.iter().map(|s| s.id.clone()).collect())
                    .unwrap_or_default();
                for s in sources {
                    if let Some(p) = self.pipelines.remove(&s) {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(5),
                            tokio::task::spawn_blocking(move || p.stop_blocking()),
                        )
                        .await;
                    }
                    self.recover(&s).await;
                }
                let Some(mut record) = self.record.take() else {
                    return;
                };
                // On shutdown the hearing stays active (it resumes at the next start):
                // the manifest is written but not sealed.
                let finished = !self.shutting_down;
                if finished {
                    record.ended = Some(ended);
                }
                let index = self.index.clone();
                match blocking(move || {
                    index.save(&record)?;
                    index.seal(&record)
                })
                .await
                {
                    Ok(sealed) => {
                        let m = &sealed.manifest;
                        info!(
                            hearing = %hearing_id,
                            segments = m.segments.len(),
                            gaps = m.gaps.len(),
                            ended = m.ended.is_some(),
                            "recording finished; manifest signed"
                        );
                        // The seal follows the last segment event through the same
                        // ordered outbox, so the controller has every entry it covers.
                        if !finished {
                            return;
                        }
                        self.emit(
                            format!("seal-{hearing_id}"),
                            Phase::End,
                            EventBody::Sealed {
                                hearing_id: hearing_id.clone(),
                                segments: sealed.seal.segments,
                                chain_head: sealed.seal.chain_head,
                                manifest_sha256: sealed.seal.manifest_sha256,
                                public_key: sealed.public_key,
                                signature: sealed.signature,
                            },
                        )
                        .await;
                    }
                    Err(e) => {
                        error!(hearing = %hearing_id, error = %e, "writing the final manifest failed")
                    }
                }
            }
        }
    }

    async fn pipeline_event(&mut self, event: PipelineEvent) {
        let current = |s: &Self, source: &str, generation: u64| {
            s.pipelines
                .get(source)
                .is_some_and(|p| p.generation == generation)
        };
        match event {
            PipelineEvent::Opened {
                source,
                generation,
                location,
                running_ns,
                wall,
            } => {
                if !current(self, &source, generation) {
                    return;
                }
                let Some(record) = self.record.as_mut() else {
                    return;
                };
                let file = relative(&location, &source);
                debug!(%source, %file, "segment opened");
                record.open.insert(
                    source,
                    OpenSegment {
                        file,
                        wall_start: wall,
                        stream_start_ns: running_ns,
                    },
                );
                self.persist().await;
            }
            PipelineEvent::Closed {
                source,
                location,
                running_ns,
                ..
            } => {
                let Some(record) = self.record.as_mut() else {
                    return;
                };
                let file = relative(&location, &source);
                let Some(open) = record.open.remove(&source).filter(|o| o.file == file) else {
                    warn!(%source, %file, "closed a segment that was not open");
                    return;
                };
                let segment = NewSegment {
                    source,
                    file,
                    wall_start: open.wall_start,
                    stream_start_ns: open.stream_start_ns,
                    duration_ns: running_ns.saturating_sub(open.stream_start_ns),
                    recovered: false,
                };
                let index = self.index.clone();
                let record = record.clone();
                match blocking(move || index.append(&record, segment)).await {
                    Ok(entry) => self.segment_event(entry).await,
                    Err(e) => error!(error = %e, "chaining a closed segment failed"),
                }
            }
            PipelineEvent::Error {
                source,
                generation,
                message,
            } => {
                if current(self, &source, generation) {
                    warn!(%source, error = %message, "pipeline failed");
                    self.input(Input::Failed {
                        source,
                        error: message,
                    })
                    .await;
                }
            }
            PipelineEvent::Eos { source, generation } => {
                if !current(self, &source, generation) {
                    return;
                }
                if self.core.state() == RecordingState::Stopping {
                    if let Some(p) = self.pipelines.remove(&source) {
                        let _ = tokio::task::spawn_blocking(move || p.stop_blocking()).await;
                    }
                    self.input(Input::Drained { source }).await;
                } else {
                    self.input(Input::Failed {
                        source,
                        error: "the camera ended the stream".into(),
                    })
                    .await;
                }
            }
        }
    }

    /// Chains what a torn-down pipeline left unclosed.
    async fn recover(&mut self, source: &str) {
        let Some(record) = self.record.take() else {
            return;
        };
        let index = self.index.clone();
        let s = source.to_owned();
        let result = blocking(move || {
            let mut record = record;
            let entries = index.recover_source(&mut record, &s);
            Ok((record, entries))
        })
        .await;
        match result {
            Ok((record, entries)) => {
                self.record = Some(record);
                match entries {
                    Ok(entries) => {
                        for e in entries {
                            self.segment_event(e).await;
                        }
                    }
                    Err(e) => error!(%source, error = %e, "recovering segments failed"),
                }
            }
            Err(e) => error!(%source, error = %e, "recovery task failed"),
        }
    }

    async fn segment_event(&self, e: gavel_evidence::SegmentEntry) {
        let Some(record) = &self.record else { return };
        info!(source = %e.source, file = %e.file, index = e.index, duration_ms = e.duration_ns / 1_000_000, recovered = e.recovered, "segment chained");
        let body = EventBody::Segment {
            hearing_id: record.hearing_id.clone(),
            source: e.source,
            index: e.index,
            file: e.file,
            sha256: e.sha256,
            bytes: e.bytes,
            offset_ns: e.offset_ns,
            duration_ns: e.duration_ns,
            wall_start: e.wall_start,
            chain: e.chain,
            stream_start_ns: Some(e.stream_start_ns),
            recovered: e.recovered,
        };
        self.emit(
            format!("seg-{}-{}", record.hearing_id, e.index),
            Phase::End,
            body,
        )
        .await;
    }

    async fn emit(&self, id: String, phase: Phase, body: EventBody) {
        if let Err(e) = self.outbox.emit(id, phase, body).await {
            error!(error = %e, "storing a recording event failed");
        }
    }

    async fn persist(&self) {
        let Some(record) = self.record.clone() else {
            return;
        };
        let index = self.index.clone();
        if let Err(e) = blocking(move || index.save(&record)).await {
            error!(error = %e, "saving the hearing record failed");
        }
    }

    /// fsyncs the open segment files, so a power cut loses no more than a SIGKILL.
    async fn sync_open_segments(&self) {
        let Some(record) = &self.record else { return };
        let dir = self.index.hearing_dir(&record.hearing_id);
        let files: Vec<PathBuf> = record.open.values().map(|o| dir.join(&o.file)).collect();
        if files.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for f in files {
                if let Ok(file) = std::fs::File::open(&f) {
                    let _ = file.sync_data();
                }
            }
        })
        .await;
    }
}

/// `location` relative to the hearing folder: `<source>/<file name>`.
fn relative(location: &std::path::Path, source: &str) -> String {
    let name = location
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{source}/{name}")
}
