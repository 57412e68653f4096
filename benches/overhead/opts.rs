//! The harness's command line: which monitors, which sizes, how long, and the shapes of
//! the watched daemons.

use super::common::Flags;

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Perfvisor,
    /// Another perfvisor binary (`PERFVISOR_BASELINE_BIN`), e.g. a build of an earlier
    /// commit, measured side by side with this one in the same run.
    PerfvisorBaseline,
    Pidstat,
    ProcessExporter,
    Monit,
    Floor,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Perfvisor,
        Kind::Pidstat,
        Kind::ProcessExporter,
        Kind::Monit,
        Kind::Floor,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Perfvisor => "perfvisor",
            Kind::PerfvisorBaseline => "perfvisor-baseline",
            Kind::Pidstat => "pidstat",
            Kind::ProcessExporter => "process-exporter",
            Kind::Monit => "monit",
            Kind::Floor => "floor",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s).or(match s {
            "perfvisor-baseline" => Some(Kind::PerfvisorBaseline),
            "prometheus-process-exporter" | "exporter" => Some(Kind::ProcessExporter),
            _ => None,
        })
    }
}

pub(crate) struct Opts {
    /// `--soak MINUTES`: instead of the comparison, perfvisor alone for this long.
    pub(crate) soak_minutes: Option<u64>,
    /// `--push-series K`: in a soak, K synthetic series pushed over HTTP every second.
    pub(crate) push_series: usize,
    pub(crate) sizes: Vec<usize>,
    pub(crate) seconds: u64,
    pub(crate) warmup: u64,
    pub(crate) monitors: Vec<Kind>,
    /// `--shapes`: the shapes of the targets, one set of N targets per entry, in order.
    pub(crate) shapes: Vec<Shape>,
    pub(crate) require_external: bool,
}

/// What one watched daemon is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Shape {
    /// One `perfvisor-loadgen` process (the default).
    Single,
    /// A process tree of five: `sh` with the loadgen, a `sleep` and a second `sh` as
    /// children, and a `sleep` under that `sh` (parent, children, a grandchild).
    Tree,
    /// One loadgen in a cgroup of its own (`perfvisor-*`, made by the harness, which
    /// needs root), so perfvisor reads the cgroup's files besides the process.
    Cgroup,
    /// The tree of [`Shape::Tree`] in a cgroup of its own.
    CgroupTree,
}

impl Shape {
    const ALL: [Shape; 4] = [Shape::Single, Shape::Tree, Shape::Cgroup, Shape::CgroupTree];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Shape::Single => "single",
            Shape::Tree => "tree",
            Shape::Cgroup => "cgroup",
            Shape::CgroupTree => "cgroup-tree",
        }
    }

    pub(crate) fn in_cgroup(self) -> bool {
        matches!(self, Shape::Cgroup | Shape::CgroupTree)
    }

    pub(crate) fn is_tree(self) -> bool {
        matches!(self, Shape::Tree | Shape::CgroupTree)
    }
}

pub(crate) const USAGE: &str = "cargo bench --bench overhead -- [--n 10,100,1000] [--seconds 60] \
                     [--warmup 10] [--monitors perfvisor,pidstat,process-exporter,monit,floor]\n\
                     [--shapes single,tree,cgroup,cgroup-tree] (targets: one process, a tree \
                     of five, or either in a cgroup of its own, which needs root)\n\
                     (--monitors perfvisor,perfvisor-baseline with PERFVISOR_BASELINE_BIN=PATH \
                     compares two builds)\n\
                     cargo bench --bench overhead -- --soak MINUTES --n 1000 [--push-series 7000]";

pub(crate) fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        soak_minutes: None,
        push_series: 0,
        sizes: vec![100],
        seconds: 60,
        warmup: 10,
        monitors: Kind::ALL.to_vec(),
        shapes: vec![Shape::Single],
        require_external: std::env::var("PERFVISOR_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1"),
    };
    // `--key value` and `--key=value` alike.
    let mut flags = Flags::new(args);
    while let Some(key) = flags.next_key() {
        match key.as_str() {
            // cargo passes `--bench` to every bench binary.
            "--bench" => {}
            "--n" => {
                opts.sizes = flags
                    .value(&key)?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>().ok().filter(|n| *n >= 2))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("--n: expected a comma-separated list of whole numbers ≥ 2")?;
            }
            "--seconds" => {
                opts.seconds = flags
                    .value(&key)?
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s >= 2)
                    .ok_or("--seconds: expected a whole number ≥ 2")?;
            }
            "--warmup" => {
                opts.warmup = flags
                    .value(&key)?
                    .parse()
                    .map_err(|_| "--warmup: expected a whole number of seconds")?;
            }
            "--monitors" => {
                opts.monitors = flags
                    .value(&key)?
                    .split(',')
                    .map(|s| {
                        Kind::parse(s.trim()).ok_or_else(|| {
                            format!(
                                "--monitors: unknown monitor {s:?}; known: {}",
                                Kind::ALL.map(Kind::name).join(", ")
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            }
            "--shapes" => {
                opts.shapes = flags
                    .value(&key)?
                    .split(',')
                    .map(|s| {
                        Shape::ALL
                            .into_iter()
                            .find(|k| k.name() == s.trim())
                            .ok_or_else(|| {
                                format!(
                                    "--shapes: unknown shape {s:?}; known: {}",
                                    Shape::ALL.map(Shape::name).join(", ")
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            }
            "--soak" => {
                opts.soak_minutes = Some(
                    flags
                        .value(&key)?
                        .parse::<u64>()
                        .ok()
                        .filter(|m| *m >= 1)
                        .ok_or("--soak: expected a whole number of minutes ≥ 1")?,
                );
            }
            "--push-series" => {
                opts.push_series = flags
                    .value(&key)?
                    .parse::<usize>()
                    .map_err(|_| "--push-series: expected a whole number of series")?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}
