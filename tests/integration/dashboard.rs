//! The dashboard at `/` of a real `perfvisor run` (a managed daemon `web`, restarted once
//! through the API, and an attached daemon `alpha`), loaded in a real headless Chromium
//! (Debian package `chromium`) at 1400×1000 from the deep link `/#daemon=web&range=1h`.
//!
//! The page writes what it shows into the DOM for this: `data-selected`, `data-range`,
//! `data-charts-drawn` and `data-host-charts-drawn` on `<body>`, and on every chart canvas and
//! daemon row its `data-top`/`data-bottom` on the page. The test reads the DOM once
//! (`--dump-dom` after a virtual-time budget) and takes a screenshot at the same size once,
//! saved to `dashboard-screenshot.png` in the target directory for CI to keep as an artifact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, ChildGuard, Instance};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Chromium is killed by pid if a run takes longer than this.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);
/// The viewport the layout promise is about: charts first, without scrolling.
const VIEWPORT: (u32, u32) = (1400, 1000);
const DAEMON: &str = "web";
const OTHER: &str = "alpha";
const TOKEN: &str = support::TOKEN;

/// Runs headless Chromium on `url` at [`VIEWPORT`] with `extra` flags in a fresh profile;
/// returns what it wrote on stdout. Panics (after killing it by pid) if it outlives
/// [`CHROMIUM_TIMEOUT`] or fails.
fn chromium(url: &str, extra: &[String]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let child = chromium_command(&dir.path().join("profile"))
        .arg("--virtual-time-budget=8000")
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        // Files, not pipes: Chromium's helper processes inherit them and may outlive it.
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("start chromium");
    let mut guard = ChildGuard(child);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            guard.kill();
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            panic!(
                "chromium (pid {}) still running after {CHROMIUM_TIMEOUT:?}; killed. stderr:\n{}",
                guard.pid(),
                tail(&err, 3000)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "chromium exited with {status}; stderr:\n{}",
        tail(&err, 3000)
    );
    out
}

/// Headless Chromium at [`VIEWPORT`] with a fresh profile in `profile`.
fn chromium_command(profile: &Path) -> Command {
    let mut command = Command::new(CHROMIUM);
    command
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1));
    command
}

/// Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: it reads
/// commands on fd 3 and writes answers and events on fd 4, each a JSON text ended by NUL),
/// attached to its one page. Killed by pid when dropped.
struct Devtools {
    _child: ChildGuard,
    _profile: tempfile::TempDir,
    commands: std::io::PipeWriter,
    messages: std::sync::mpsc::Receiver<serde_json::Value>,
    next_id: u64,
    session: Option<String>,
}

impl Devtools {
    fn start() -> Devtools {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let profile = tempfile::tempdir().expect("temp dir");
        let (command_read, commands) = std::io::pipe().expect("pipe");
        let (mut answers, answer_write) = std::io::pipe().expect("pipe");
        let (fd3, fd4) = (command_read.as_raw_fd(), answer_write.as_raw_fd());
        let mut command = chromium_command(profile.path());
        command
            .arg("--remote-debugging-pipe")
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only fcntl, dup2 and close between fork and exec. Both ends are first
        // moved above 10, so placing one at 3 cannot overwrite the other.
        unsafe {
            command.pre_exec(move || {
                let (a, b) = (
                    libc::fcntl(fd3, libc::F_DUPFD, 10),
                    libc::fcntl(fd4, libc::F_DUPFD, 10),
                );
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(a);
                libc::close(b);
                Ok(())
            })
        };
        let child = ChildGuard(command.spawn().expect("start chromium"));
        // Chromium holds the other ends now: an exit shows as the end of its answers.
        drop((command_read, answer_write));
        let (tx, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut reader = std::io::BufReader::new(&mut answers);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop_if(|b| *b == 0);
                if let Ok(v) = serde_json::from_slice(&message) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                message.clear();
            }
        });
        let mut devtools = Devtools {
            _child: child,
            _profile: profile,
            commands,
            messages,
            next_id: 0,
            session: None,
        };
        let targets = devtools.call("Target.getTargets", serde_json::json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["targetId"].as_str())
            .unwrap_or_else(|| panic!("no page target: {targets}"))
            .to_string();
        let attached = devtools.call(
            "Target.attachToTarget",
            serde_json::json!({"targetId": page, "flatten": true}),
        );
        devtools.session = attached["sessionId"].as_str().map(str::to_string);
        assert!(devtools.session.is_some(), "not attached: {attached}");
        devtools
    }

    /// Sends one command (to the page once attached) and returns its result.
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        use std::io::Write;
        self.next_id += 1;
        let id = self.next_id;
        let mut message = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = session.clone().into();
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .expect("command to chromium");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer to {method} within 20 s: {e}"));
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> serde_json::Value {
        let result = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expression, "returnByValue": true}),
        );
        result["result"]["value"].clone()
    }

    /// Polls `condition` (a JavaScript expression) until it is `true`, for at most 15 s;
    /// the panic shows `state` (another expression) as it last was.
    fn wait_for(&mut self, what: &str, condition: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.eval(condition) != serde_json::Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {}",
                self.eval(state)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// One start tag of the serialised DOM: its offset, name and attributes.
#[derive(Debug)]
struct Tag {
    at: usize,
    name: String,
    attrs: BTreeMap<String, String>,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }
    fn num(&self, name: &str) -> Option<i64> {
        self.attr(name)?.parse().ok()
    }
    fn has_class(&self, class: &str) -> bool {
        self.attr("class")
            .is_some_and(|c| c.split_whitespace().any(|c| c == class))
    }
}

/// Every start tag in `dom` (Chromium's serialisation: attributes as `name="value"`).
fn tags(dom: &str) -> Vec<Tag> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(rel) = dom[pos..].find('<') {
        let at = pos + rel;
        let Some(end) = dom[at..].find('>') else {
            break;
        };
        let inner = &dom[at + 1..at + end];
        pos = at + end + 1;
        if inner.starts_with('/') || inner.starts_with('!') {
            continue;
        }
        let name_end = inner.find(char::is_whitespace).unwrap_or(inner.len());
        let mut attrs = BTreeMap::new();
        let mut rest = &inner[name_end..];
        while let Some(eq) = rest.find("=\"") {
            let key = rest[..eq].trim().to_string();
            let value_start = eq + 2;
            let Some(close) = rest[value_start..].find('"') else {
                break;
            };
            attrs.insert(
                key,
                rest[value_start..value_start + close].replace("&amp;", "&"),
            );
            rest = &rest[value_start + close + 1..];
        }
        out.push(Tag {
            at,
            name: inner[..name_end].to_ascii_lowercase(),
            attrs,
        });
    }
    out
}

/// The text of the element with `id` up to its first child tag.
fn text_of<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let rest = &dom[at..];
    let rest = &rest[rest.find('>')? + 1..];
    Some(rest[..rest.find('<')?].trim())
}

/// The text inside the cell `data-col="col"` of the row starting at `row_at` (markup inside
/// the cell skipped).
fn cell_text(dom: &str, row_at: usize, col: &str) -> Option<String> {
    let row = &dom[row_at..row_at + dom[row_at..].find("</tr>")?];
    let at = row.find(&format!("data-col=\"{col}\""))?;
    let rest = &row[at..];
    let rest = &rest[rest.find('>')? + 1..];
    let cell = &rest[..rest.find("</td>")?];
    let mut text = String::new();
    let mut in_tag = false;
    for c in cell.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    Some(text.trim().to_string())
}

fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    let (code, body) = support::http_get(port, path).ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// Polls `cond` every 100 ms until it returns `Some` or `timeout` passes.
fn poll<T>(timeout: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Number of samples stored for `selector` (`daemon=…` or `source=host`) and `metric`.
fn stored(port: u16, selector: &str, metric: &str) -> usize {
    get_json(
        port,
        &format!("/api/v1/query?{selector}&metric={metric}&from=0&to=9999999999999"),
    )
    .and_then(|v| {
        v.as_array().map(|a| {
            a.iter()
                .map(|s| s["samples"].as_array().map_or(0, Vec::len))
                .sum()
        })
    })
    .unwrap_or(0)
}

/// Acceptance (issue 14): `/#daemon=web&range=1h` on a real `perfvisor run` selects `web`
/// (not the first daemon of the list) and the 1 h range; its state, uptime and the restart
/// count the API gives (`process_restarts`, equal to `/api/v1/managed`'s `restarts`) are
/// shown in the list and the summary; its process charts and the five host charts have
/// points, and they and its row lie within the first 1000 pixels of a 1400×1000 viewport;
/// `#daemon=alpha&range=7d` selects the other daemon over 7 d; and in a live page an edited
/// address, back and forward select again while clicks rewrite the address in place; and
/// once stopped, `web` stays in the list as `stopped` with the same restart count.
#[test]
fn dashboard_deep_link_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() {
        return support::skip(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    let started = Instant::now();
    let loadgen = env!("CARGO_BIN_EXE_perfvisor-loadgen");
    let attached = support::loadgen(&["--cpu", "0"]);
    let run = Instance::run(
        "probe_interval = \"200ms\"\nhost_interval = \"250ms\"",
        &format!(
            r#"
[api]
# This test reads without the token.
anonymous_loopback_reads = true

[[daemon]]
name = "{DAEMON}"
command = ["{loadgen}", "--cpu", "0.2"]
stop_timeout = "2s"

[[attach]]
name = "{OTHER}"
pid = {pid}
"#,
            pid = attached.pid()
        ),
    );
    let port = run.port;

    let watched = |daemon: &str| {
        get_json(port, "/api/v1/daemons").and_then(|v| {
            v.as_array()?
                .iter()
                .find(|d| d["daemon"] == daemon && d["probes"].as_u64() > Some(1))
                .cloned()
        })
    };
    let first = poll(Duration::from_secs(30), "web and alpha watched", || {
        watched(OTHER)?;
        watched(DAEMON)
    });
    // One restart performed by perfvisor, so the count the page shows is not just a zero.
    let (code, body) = support::http_post(
        port,
        &format!("/api/v1/managed/{DAEMON}/restart"),
        TOKEN,
        "",
    )
    .expect("restart call");
    assert_eq!(code, 200, "{body}");
    let line = poll(Duration::from_secs(30), "web running again", || {
        watched(DAEMON).filter(|d| d["pid"] != first["pid"] && d["managed_state"] == "running")
    });
    assert_eq!(line["process_restarts"], 1, "{line}");
    assert!(line["uptime_seconds"].as_f64().is_some(), "{line}");
    let managed = get_json(port, "/api/v1/managed").expect("managed list");
    let managed_restarts = managed
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == DAEMON))
        .map(|d| d["restarts"].clone())
        .expect("web in /api/v1/managed");
    assert_eq!(
        line["process_restarts"], managed_restarts,
        "one source of truth"
    );
    poll(Duration::from_secs(20), "history to chart", || {
        (stored(
            port,
            &format!("daemon={DAEMON}"),
            "process.cpu.utilization_ratio",
        ) >= 2
            && stored(port, "source=host", "system.cpu.utilization_ratio") >= 2
            && stored(port, "source=host", "system.network.receive_bytes") >= 4
            && stored(port, "source=host", "system.disk.read_bytes") >= 2)
            .then_some(())
    });

    let url = format!("http://127.0.0.1:{port}/#daemon={DAEMON}&range=1h");
    let dom = chromium(&url, &["--dump-dom".to_string()]);
    let shown = tail(&dom, 6000);
    let all = tags(&dom);
    let body = all
        .iter()
        .find(|t| t.name == "body")
        .unwrap_or_else(|| panic!("no body:\n{shown}"));
    assert_eq!(body.attr("data-selected"), Some(DAEMON), "{body:?}");
    assert_eq!(body.attr("data-range"), Some("1h"), "{body:?}");
    // Layout depends on the width only (no viewport-height units): positions on the page
    // are what a 1400-pixel-wide screenshot shows from its top.
    assert!(
        body.attr("data-viewport")
            .is_some_and(|v| v.starts_with(&format!("{}x", VIEWPORT.0))),
        "{body:?}"
    );
    assert!(
        dom.contains("data-range=\"1h\" aria-pressed=\"true\""),
        "the 1 h button is not pressed:\n{shown}"
    );

    // The list: alpha sorts first, so web being selected is the deep link's doing.
    let row = |name: &str| {
        all.iter()
            .find(|t| t.name == "tr" && t.attr("data-daemon") == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{shown}"))
    };
    let (web, alpha) = (row(DAEMON), row(OTHER));
    assert!(alpha.at < web.at, "rows sorted by name");
    assert_eq!(web.attr("aria-selected"), Some("true"), "{web:?}");
    assert_eq!(alpha.attr("aria-selected"), Some("false"), "{alpha:?}");
    assert!(
        web.num("data-bottom")
            .is_some_and(|b| b <= i64::from(VIEWPORT.1)),
        "web's row below the fold: {web:?}"
    );
    let restarts = managed_restarts.to_string();
    let state_of = |row: &Tag| {
        all.iter()
            .find(|t| t.at > row.at && t.attr("data-col") == Some("state"))
            .and_then(|t| t.attr("data-state"))
    };
    assert_eq!(state_of(web), Some("running"));
    assert_eq!(state_of(alpha), Some("watched"));
    let web_state = cell_text(&dom, web.at, "state").unwrap_or_default();
    assert!(web_state.starts_with("running · up "), "{web_state:?}");
    assert_eq!(cell_text(&dom, web.at, "restarts"), Some(restarts.clone()));
    assert_eq!(cell_text(&dom, alpha.at, "restarts").as_deref(), Some("–"));
    let cpu = cell_text(&dom, web.at, "cpu").unwrap_or_default();
    assert!(
        cpu.strip_suffix('%')
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|v| (0.0..=200.0).contains(&v)),
        "CPU cell {cpu:?}"
    );
    let mem = cell_text(&dom, web.at, "memory").unwrap_or_default();
    // "charged" follows a figure read from the daemon's own cgroup (as root on Linux).
    let figure = mem.strip_suffix(" charged").unwrap_or(&mem);
    assert!(
        ["KiB", "MiB", "GiB"].iter().any(|u| figure.ends_with(u)),
        "memory cell {mem:?}"
    );

    // The summary above the charts: state, uptime, the same restart count.
    assert_eq!(text_of(&dom, "detail-title"), Some(DAEMON));
    assert!(
        dom.contains("id=\"state\" data-state=\"running\"")
            || dom.contains("data-state=\"running\" id=\"state\""),
        "no running state in the summary:\n{shown}"
    );
    let uptime = text_of(&dom, "uptime").unwrap_or_default();
    assert!(
        uptime
            .strip_prefix("up ")
            .and_then(|u| u.split(' ').next())
            .is_some_and(|n| n.parse::<u64>().is_ok()),
        "uptime {uptime:?}"
    );
    assert_eq!(text_of(&dom, "process-restarts"), Some(restarts.as_str()));
    for id in [
        "alerts",
        "recommendations",
        "bottlenecks",
        "restarts",
        "score",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no #{id}:\n{shown}");
    }

    // The charts: drawn, and within the first 1000 pixels.
    let charts: Vec<&Tag> = all.iter().filter(|t| t.has_class("chart")).collect();
    let chart = |group: &str, metric: &str| {
        charts
            .iter()
            .find(|t| t.attr("data-group") == Some(group) && t.attr("data-metric") == Some(metric))
            .unwrap_or_else(|| panic!("no {group} chart {metric}: {charts:#?}"))
    };
    let expected = [
        ("process", "process.cpu.utilization_ratio"),
        ("process", "process.memory.usage_bytes"),
        (
            "process",
            "process.disk.read_bytes_per_second,process.disk.write_bytes_per_second",
        ),
        ("host", "system.cpu.utilization_ratio"),
        (
            "host",
            "system.memory.usage_bytes,system.memory.limit_bytes",
        ),
        (
            "host",
            "system.cpu.load_average.1m,system.cpu.load_average.5m,system.cpu.load_average.15m",
        ),
        ("host", "system.disk.read_bytes,system.disk.write_bytes"),
        (
            "host",
            "system.network.receive_bytes,system.network.transmit_bytes",
        ),
    ];
    for (group, metric) in expected {
        let c = chart(group, metric);
        assert!(
            c.num("data-points").is_some_and(|p| p >= 1),
            "not drawn: {c:?}"
        );
        assert!(
            c.num("data-bottom")
                .is_some_and(|b| b <= i64::from(VIEWPORT.1)),
            "below the fold: {c:?}"
        );
    }
    assert_eq!(body.attr("data-host-charts-drawn"), Some("5"), "{body:?}");
    assert!(
        body.num("data-charts-drawn").is_some_and(|n| n >= 8),
        "{body:?}"
    );
    assert_eq!(body.attr("data-tiers"), Some("raw"), "{body:?}");
    assert!(dom.contains("from raw samples"), "no tier note:\n{shown}");
    eprintln!(
        "dashboard DOM checked after {:?}: {} charts",
        started.elapsed(),
        charts.len()
    );

    // Another daemon and the 7 d range by address: 1 h steps, which the planner answers from
    // hourly rollups where they cover the range — here, with an hour-old history at most,
    // from raw samples; either way the charts are drawn.
    let week = format!("http://127.0.0.1:{port}/#daemon={OTHER}&range=7d");
    let dom7 = chromium(&week, &["--dump-dom".to_string()]);
    let all7 = tags(&dom7);
    let body7 = all7
        .iter()
        .find(|t| t.name == "body")
        .unwrap_or_else(|| panic!("no body:\n{}", tail(&dom7, 6000)));
    assert_eq!(body7.attr("data-selected"), Some(OTHER), "{body7:?}");
    assert_eq!(body7.attr("data-range"), Some("7d"), "{body7:?}");
    assert_eq!(body7.attr("data-host-charts-drawn"), Some("5"), "{body7:?}");
    assert!(
        all7.iter().any(|t| t.has_class("chart")
            && t.attr("data-metric") == Some("process.cpu.utilization_ratio")
            && t.num("data-points") >= Some(1)),
        "alpha's CPU not drawn over 7 d"
    );
    assert!(
        dom7.contains(&format!("data-daemon=\"{OTHER}\""))
            && text_of(&dom7, "detail-title") == Some(OTHER),
        "alpha not selected"
    );

    // The screenshot CI keeps, at the same viewport.
    // Into the target directory in use (CI builds a clone with its target directory set).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let shot = target.join("dashboard-screenshot.png");
    std::fs::create_dir_all(&target).expect("target dir");
    let _ = std::fs::remove_file(&shot);
    chromium(&url, &[format!("--screenshot={}", shot.display())]);
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        shot.display()
    );
    let size = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    assert_eq!((size(16), size(20)), VIEWPORT, "screenshot size");
    assert!(png.len() > 10_000, "screenshot of {} bytes only", png.len());
    eprintln!(
        "screenshot saved to {} ({} bytes) after {:?}",
        shot.display(),
        png.len(),
        started.elapsed()
    );

    // After load: an edited address, back and forward select again; choosing a daemon or a
    // range in the page rewrites the address without adding history entries.
    let mut page = Devtools::start();
    let state = "JSON.stringify({selected: document.body.dataset.selected, \
                 range: document.body.dataset.range, hash: location.hash, \
                 entries: history.length, drawn: document.body.dataset.chartsDrawn})";
    let shows = |daemon: &str, range: &str| {
        format!(
            "document.body.dataset.selected === '{daemon}' \
             && document.body.dataset.range === '{range}' \
             && document.getElementById('detail-title').textContent === '{daemon}' \
             && document.querySelector('tr[data-daemon=\"{daemon}\"]')\
                ?.getAttribute('aria-selected') === 'true' \
             && document.querySelector('#ranges [data-range=\"{range}\"]')\
                .getAttribute('aria-pressed') === 'true'"
        )
    };
    page.call("Page.navigate", serde_json::json!({ "url": url }));
    page.wait_for("the deep link", &shows(DAEMON, "1h"), state);
    page.eval(&format!("location.hash = '#daemon={OTHER}&range=10m'"));
    page.wait_for("an edited address", &shows(OTHER, "10m"), state);
    page.eval("history.back()");
    page.wait_for("back", &shows(DAEMON, "1h"), state);
    page.eval("history.forward()");
    page.wait_for("forward", &shows(OTHER, "10m"), state);
    let entries = page.eval("history.length");
    page.eval(&format!(
        "document.querySelector('tr[data-daemon=\"{DAEMON}\"]').click()"
    ));
    page.wait_for(
        "a click on web's row",
        &format!(
            "{} && location.hash === '#daemon={DAEMON}&range=10m'",
            shows(DAEMON, "10m")
        ),
        state,
    );
    page.eval("document.querySelector('#ranges [data-range=\"6h\"]').click()");
    page.wait_for(
        "a click on 6 h",
        &format!(
            "{} && location.hash === '#daemon={DAEMON}&range=6h' \
             && Number(document.body.dataset.chartsDrawn) >= 8",
            shows(DAEMON, "6h")
        ),
        state,
    );
    assert_eq!(
        page.eval("history.length"),
        entries,
        "choosing in the page adds no history entry"
    );
    // A stopped managed daemon has no watcher any more; the list still shows it, with its
    // state and the manager's restart count.
    let (code, body) =
        support::http_post(port, &format!("/api/v1/managed/{DAEMON}/stop"), TOKEN, "")
            .expect("stop call");
    assert_eq!(code, 200, "{body}");
    page.wait_for(
        "web shown stopped",
        &format!(
            "(() => {{ const row = document.querySelector('tr[data-daemon=\"{DAEMON}\"]'); \
             return !!row && row.querySelector('[data-col=state]').dataset.state === 'stopped' \
             && row.querySelector('[data-col=restarts]').textContent === '{restarts}' \
             && document.getElementById('process-restarts').textContent === '{restarts}'; }})()"
        ),
        "document.getElementById('daemons').outerHTML",
    );
    drop(page);
    eprintln!("address handling checked after {:?}", started.elapsed());
    drop(run);
    drop(attached);
}
