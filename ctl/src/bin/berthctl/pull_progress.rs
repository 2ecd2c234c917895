//! A pull's progress while berthd pulls: each layer's download and unpack, polled from the
//! content store's statuses in the CRI's namespace (`layer-<digest>`, `unpack-<digest>`; what
//! `ctr` watches), drawn as a bar per step in a terminal, or a line per finished step when the
//! output is not one; then a summary: the bytes the pull fetched, its time, its rate.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_proto::containerd::services::content::v1::content_client::ContentClient;
use berth_proto::containerd::services::content::v1::{ListContentRequest, ListStatusesRequest};
use berth_proto::runtime::v1 as cri;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tonic::transport::Channel;

use crate::table;

/// The namespace the CRI pulls into.
const CRI_NAMESPACE: &str = "k8s.io";
/// How often the statuses are polled.
const POLL: Duration = Duration::from_millis(150);

/// A layer's two steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Download,
    Unpack,
}

impl Kind {
    fn of(reference: &str) -> Option<(Kind, &str)> {
        if let Some(digest) = reference.strip_prefix("layer-") {
            Some((Kind::Download, digest))
        } else {
            reference.strip_prefix("unpack-").map(|digest| (Kind::Unpack, digest))
        }
    }

    fn doing(self) -> &'static str {
        match self {
            Kind::Download => "downloading",
            Kind::Unpack => "unpacking",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Kind::Download => "downloaded",
            Kind::Unpack => "unpacked",
        }
    }
}

/// One step as the statuses last showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: Kind,
    pub digest: String,
    pub done: u64,
    pub total: u64,
    pub finished: bool,
}

/// What the polls have shown of a pull's steps, in the order they appeared.
#[derive(Debug, Default)]
pub struct Watch {
    steps: Vec<Step>,
}

impl Watch {
    /// Takes one poll's statuses, `(ref, offset, total)`; returns the indexes of the steps that
    /// finished since the last poll. A step is finished when it has all its bytes, or when it is
    /// no longer shown (its pull ended).
    pub fn update(&mut self, statuses: &[(String, u64, u64)]) -> Vec<usize> {
        let mut seen = HashSet::new();
        for (reference, offset, total) in statuses {
            let Some((kind, digest)) = Kind::of(reference) else { continue };
            seen.insert((kind, digest.to_string()));
            match self.steps.iter_mut().find(|s| s.kind == kind && s.digest == digest) {
                Some(step) => step.done = step.done.max(*offset),
                None => self.steps.push(Step {
                    kind,
                    digest: digest.to_string(),
                    done: *offset,
                    total: *total,
                    finished: false,
                }),
            }
        }
        let mut finished = Vec::new();
        for (i, step) in self.steps.iter_mut().enumerate() {
            let gone = !seen.contains(&(step.kind, step.digest.clone()));
            if !step.finished && (gone || (step.total > 0 && step.done >= step.total)) {
                step.finished = true;
                step.done = step.total;
                finished.push(i);
            }
        }
        finished
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

/// The line a finished step gets when the output is not a terminal.
pub fn step_line(step: &Step) -> String {
    format!("{} {} {}", short_digest(&step.digest), step.kind.done(), table::decimal_size(step.total))
}

/// `sha256:` and the first 12 hex digits, as the layer's name on screen.
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", hex.chars().take(12).collect::<String>()),
        None => digest.chars().take(19).collect(),
    }
}

/// The last line: what the pull fetched (content new to the namespace), in how long, how fast.
pub fn summary(image: &str, fetched: Option<u64>, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    match fetched {
        Some(0) => format!("pulled {image}: nothing to fetch, {seconds:.1}s"),
        Some(bytes) => {
            let rate = (bytes as f64 / seconds.max(1e-3)) as u64;
            format!(
                "pulled {image}: {} in {seconds:.1}s ({}/s)",
                table::decimal_size(bytes),
                table::decimal_size(rate)
            )
        }
        None => format!("pulled {image} in {seconds:.1}s"),
    }
}

fn in_cri_namespace<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("containerd-namespace", tonic::metadata::MetadataValue::from_static(CRI_NAMESPACE));
    request
}

/// The digests and sizes of the content the CRI's namespace holds; `None` when berthd will not
/// say (the summary then leaves the size out).
async fn content(client: &mut ContentClient<Channel>) -> Option<Vec<(String, u64)>> {
    let mut stream = client.list(in_cri_namespace(ListContentRequest::default())).await.ok()?.into_inner();
    let mut all = Vec::new();
    while let Some(batch) = stream.message().await.ok()? {
        all.extend(batch.info.into_iter().map(|info| (info.digest, u64::try_from(info.size).unwrap_or(0))));
    }
    Some(all)
}

async fn statuses(client: &mut ContentClient<Channel>) -> Vec<(String, u64, u64)> {
    let Ok(response) = client.list_statuses(in_cri_namespace(ListStatusesRequest::default())).await else {
        return Vec::new();
    };
    let number = |n: i64| u64::try_from(n).unwrap_or(0);
    response.into_inner().statuses.into_iter().map(|s| (s.r#ref, number(s.offset), number(s.total))).collect()
}

/// How the steps are shown.
enum Screen {
    /// A bar per step, on stderr, a terminal.
    Bars { bars: MultiProgress, shown: Vec<ProgressBar>, style: ProgressStyle },
    /// A line per finished step, on stderr.
    Lines,
}

impl Screen {
    fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return Screen::Lines;
        }
        let style = ProgressStyle::with_template(
            "{prefix} {msg:<11} [{bar:30}] {decimal_bytes:>9}/{decimal_total_bytes:<9} {decimal_bytes_per_sec}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        Screen::Bars { bars, shown: Vec::new(), style }
    }

    /// Draws the steps as they are now; `finished` are the ones that just finished.
    fn show(&mut self, watch: &Watch, finished: &[usize]) {
        match self {
            Screen::Bars { bars, shown, style } => {
                for step in &watch.steps()[shown.len()..] {
                    let bar = ProgressBar::new(step.total)
                        .with_style(style.clone())
                        .with_prefix(short_digest(&step.digest))
                        .with_message(step.kind.doing());
                    shown.push(bars.add(bar));
                }
                for (step, bar) in watch.steps().iter().zip(shown.iter()) {
                    bar.set_position(step.done);
                }
                for &i in finished {
                    if let (Some(bar), Some(step)) = (shown.get(i), watch.steps().get(i)) {
                        bar.finish_with_message(step.kind.done());
                    }
                }
            }
            Screen::Lines => {
                for &i in finished {
                    if let Some(step) = watch.steps().get(i) {
                        eprintln!("{}", step_line(step));
                    }
                }
            }
        }
    }
}

/// Waits for `pull` (of `image`), showing its progress unless `quiet`, then a summary.
pub async fn show_pull_progress(
    channel: Channel,
    image: &str,
    pull: tokio::task::JoinHandle<Result<tonic::Response<cri::PullImageResponse>, tonic::Status>>,
    quiet: bool,
) -> anyhow::Result<tonic::Response<cri::PullImageResponse>> {
    let mut pull = pull;
    if quiet {
        return Ok((&mut pull).await.context("pull task")??);
    }
    let started = Instant::now();
    let mut client = ContentClient::new(channel);
    let before = content(&mut client).await;
    let mut watch = Watch::default();
    let mut screen = Screen::new();
    let response = loop {
        let finished = watch.update(&statuses(&mut client).await);
        screen.show(&watch, &finished);
        tokio::select! {
            result = &mut pull => break result.context("pull task")?,
            _ = tokio::time::sleep(POLL) => {}
        }
    };
    // The pull is over, and so are its steps.
    let finished = watch.update(&[]);
    screen.show(&watch, &finished);
    let response = response?;
    let fetched = match (before, content(&mut client).await) {
        (Some(before), Some(after)) => {
            let known: HashSet<String> = before.into_iter().map(|(digest, _)| digest).collect();
            Some(after.iter().filter(|(digest, _)| !known.contains(digest)).map(|(_, size)| size).sum())
        }
        _ => None,
    };
    eprintln!("{}", summary(image, fetched, started.elapsed()));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(statuses: &[(&str, u64, u64)]) -> Vec<(String, u64, u64)> {
        statuses.iter().map(|(r, o, t)| (r.to_string(), *o, *t)).collect()
    }

    #[test]
    fn steps_finish_when_complete_or_gone_once_each() {
        let (a, b) = ("sha256:aaaaaaaaaaaaaaaa", "sha256:bbbbbbbbbbbbbbbb");
        let mut watch = Watch::default();
        // Unrelated ingests are not steps.
        let first = poll(&[
            ("layer-sha256:aaaaaaaaaaaaaaaa", 0, 100),
            ("unpack-sha256:aaaaaaaaaaaaaaaa", 0, 100),
            ("upload-x", 1, 2),
        ]);
        assert!(watch.update(&first).is_empty());
        assert_eq!(watch.steps().len(), 2);
        let second = poll(&[
            ("layer-sha256:aaaaaaaaaaaaaaaa", 100, 100),
            ("unpack-sha256:aaaaaaaaaaaaaaaa", 40, 100),
            ("layer-sha256:bbbbbbbbbbbbbbbb", 10, 50),
        ]);
        assert_eq!(watch.update(&second), [0], "the download has all its bytes");
        assert_eq!(watch.update(&second), Vec::<usize>::new(), "a step finishes once");
        assert_eq!(watch.steps()[1].done, 40);
        // An offset that goes back (a streamed unpack restarting) keeps the furthest seen.
        let third =
            poll(&[("unpack-sha256:aaaaaaaaaaaaaaaa", 0, 100), ("layer-sha256:bbbbbbbbbbbbbbbb", 20, 50)]);
        assert_eq!(watch.update(&third), Vec::<usize>::new());
        assert_eq!(watch.steps()[1].done, 40);
        // The pull ends: whatever is left finished with it.
        assert_eq!(watch.update(&[]), [1, 2]);
        let steps: Vec<(Kind, &str, u64, bool)> =
            watch.steps().iter().map(|s| (s.kind, s.digest.as_str(), s.done, s.finished)).collect();
        assert_eq!(
            steps,
            [(Kind::Download, a, 100, true), (Kind::Unpack, a, 100, true), (Kind::Download, b, 50, true)]
        );
        assert_eq!(step_line(&watch.steps()[2]), "sha256:bbbbbbbbbbbb downloaded 50B");
    }

    #[test]
    fn summaries_say_size_time_and_rate() {
        let image = "r.io/app:1";
        assert_eq!(
            summary(image, Some(96_000_000), Duration::from_secs(4)),
            "pulled r.io/app:1: 96.0MB in 4.0s (24.0MB/s)"
        );
        assert_eq!(
            summary(image, Some(0), Duration::from_millis(120)),
            "pulled r.io/app:1: nothing to fetch, 0.1s"
        );
        assert_eq!(summary(image, None, Duration::from_millis(2500)), "pulled r.io/app:1 in 2.5s");
    }
}
