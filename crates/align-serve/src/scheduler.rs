//! The scheduler: one thread per served model owns the model and its
//! [`Engine`](align_generate::engine::Engine), and runs continuous batching.
//!
//! Each loop turn: take the jobs that arrived, drop the sequences whose client went away (its
//! event channel is closed) or whose text reached a stop string (its cancel flag), admit waiting
//! jobs while the batch has room (`max_batch` sequences; their prompts are prefilled together),
//! then run one decode step over every running sequence and send each token to its job. With
//! nothing to do the thread sleeps on its queue; woken, it may gather requests for `batch_wait`.

use align_generate::engine::{Engine, SeqId, SeqRequest, TokenEvent};
use align_models::Model;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// What a job's owner receives.
#[derive(Debug)]
pub enum JobEvent {
    /// A token of choice `choice`; `ev.finish` is set on the choice's last token.
    Token { choice: usize, ev: TokenEvent },
    /// The job failed (the engine's message); no more events follow.
    Error(String),
}

/// A request's sequences: choice `i` is `seqs[i]`.
pub struct Job {
    pub seqs: Vec<SeqRequest>,
    pub events: UnboundedSender<JobEvent>,
    /// Per choice: set by the owner to stop it early (a stop string was reached).
    pub cancel: Arc<Vec<AtomicBool>>,
}

/// Live counters of one model's scheduler (read by `/health` and the tests).
#[derive(Debug, Default)]
pub struct Stats {
    /// Sequences in the running batch.
    pub running: AtomicUsize,
    /// Jobs waiting for room in the batch.
    pub queued: AtomicUsize,
    /// Tokens generated since start.
    pub tokens: AtomicU64,
    /// Decode steps since start.
    pub steps: AtomicU64,
    /// Largest batch a step has run.
    pub max_batch_seen: AtomicUsize,
}

/// Handle to a model's scheduler thread; dropping every handle stops the thread.
pub struct Scheduler {
    tx: mpsc::Sender<Job>,
    pub stats: Arc<Stats>,
}

impl Scheduler {
    /// Starts the thread, which owns `model` from now on.
    pub fn spawn(name: &str, model: Model, max_batch: usize, batch_wait: Duration) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        std::thread::Builder::new().name(format!("engine-{name}")).spawn(move || run(&model, rx, max_batch.max(1), batch_wait, &s))?;
        Ok(Scheduler { tx, stats })
    }

    /// Queues a job; `false` when the thread has stopped.
    pub fn submit(&self, job: Job) -> bool {
        self.tx.send(job).is_ok()
    }
}

struct JobState {
    job: Job,
    /// Choices still running.
    left: usize,
}

/// The thread's state besides the engine: which job and choice each sequence serves.
#[derive(Default)]
struct Book {
    jobs: HashMap<u64, JobState>,
    seqs: HashMap<SeqId, (u64, usize)>,
    next_job: u64,
    next_seq: SeqId,
}

impl Book {
    /// Forgets a sequence; its job is dropped (closing its channel) with its last sequence.
    fn forget(&mut self, seq: SeqId) {
        if let Some((jid, _)) = self.seqs.remove(&seq) {
            if let Some(j) = self.jobs.get_mut(&jid) {
                j.left -= 1;
                if j.left == 0 {
                    self.jobs.remove(&jid);
                }
            }
        }
    }

    /// Sends each token to its job.
    fn route(&mut self, events: Vec<TokenEvent>, stats: &Stats) {
        stats.tokens.fetch_add(events.len() as u64, Ordering::Relaxed);
        for ev in events {
            let Some(&(jid, choice)) = self.seqs.get(&ev.seq) else { continue };
            let (seq, done) = (ev.seq, ev.finish.is_some());
            if let Some(j) = self.jobs.get(&jid) {
                // A send fails when the client left; the next turn drops the sequence.
                let _ = j.job.events.send(JobEvent::Token { choice, ev });
            }
            if done {
                self.forget(seq);
            }
        }
    }

    /// Fails the jobs of `seqs` with `msg` and forgets all their sequences.
    fn fail(&mut self, seqs: &[SeqId], msg: &str) {
        let jids: Vec<u64> = seqs.iter().filter_map(|s| self.seqs.get(s).map(|x| x.0)).collect();
        for jid in jids {
            if let Some(j) = self.jobs.remove(&jid) {
                let _ = j.job.events.send(JobEvent::Error(msg.to_string()));
            }
        }
        self.seqs.retain(|_, (jid, _)| self.jobs.contains_key(jid));
    }

    /// Sequences whose client left or whose owner cancelled them.
    fn abandoned(&self) -> Vec<SeqId> {
        self.seqs
            .iter()
            .filter(|(_, (jid, c))| {
                self.jobs.get(jid).is_none_or(|j| j.job.events.is_closed() || j.job.cancel[*c].load(Ordering::Relaxed))
            })
            .map(|(&s, _)| s)
            .collect()
    }
}

fn run(model: &Model, rx: mpsc::Receiver<Job>, max_batch: usize, batch_wait: Duration, stats: &Stats) {
    let mut engine = Engine::new(model);
    let mut book = Book::default();
    let mut queue: VecDeque<Job> = VecDeque::new();
    loop {
        if engine.is_empty() && queue.is_empty() {
            match rx.recv() {
                Ok(j) => queue.push_back(j),
                Err(_) => return, // every handle dropped: the server stopped
            }
            // Idle until now: gather the requests of the next `batch_wait` (or a full batch).
            let deadline = Instant::now() + batch_wait;
            while queue.iter().map(|j| j.seqs.len()).sum::<usize>() < max_batch {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(j) => queue.push_back(j),
                    Err(_) => break, // the wait is over (or the server stopped: the next turn sees it)
                }
            }
        }
        queue.extend(rx.try_iter());

        // Clients that left, choices that reached a stop string.
        let gone = book.abandoned();
        if !gone.is_empty() {
            if let Err(e) = engine.remove(&gone) {
                let all = engine.running();
                book.fail(&all, &format!("the engine failed: {e}"));
                engine.clear();
            }
            gone.iter().for_each(|&s| book.forget(s));
        }
        queue.retain(|j| !j.events.is_closed());

        // Admit waiting jobs while there is room (a job larger than the batch runs alone).
        let mut batch: Vec<(SeqId, SeqRequest)> = vec![];
        while let Some(j) = queue.front() {
            let n = j.seqs.len();
            if engine.len() + batch.len() + n > max_batch && !(engine.is_empty() && batch.is_empty()) {
                break;
            }
            let job = queue.pop_front().expect("front exists");
            if let Err(e) = job.seqs.iter().try_for_each(|s| engine.check(s)) {
                let _ = job.events.send(JobEvent::Error(e.to_string()));
                continue;
            }
            let jid = book.next_job;
            book.next_job += 1;
            for (choice, s) in job.seqs.iter().enumerate() {
                let id = book.next_seq;
                book.next_seq += 1;
                book.seqs.insert(id, (jid, choice));
                batch.push((id, s.clone()));
            }
            book.jobs.insert(jid, JobState { job, left: n });
        }
        stats.queued.store(queue.len(), Ordering::Relaxed);
        if !batch.is_empty() {
            let ids: Vec<SeqId> = batch.iter().map(|b| b.0).collect();
            match engine.add(batch) {
                Ok(events) => book.route(events, stats),
                Err(e) => book.fail(&ids, &format!("prefill failed: {e}")),
            }
        }

        if !engine.is_empty() {
            let b = engine.len();
            match engine.step() {
                Ok(events) => book.route(events, stats),
                Err(e) => {
                    book.fail(&engine.running(), &format!("decode step failed: {e}"));
                    engine.clear();
                }
            }
            stats.steps.fetch_add(1, Ordering::Relaxed);
            stats.max_batch_seen.fetch_max(b, Ordering::Relaxed);
        }
        stats.running.store(engine.len(), Ordering::Relaxed);
    }
}
