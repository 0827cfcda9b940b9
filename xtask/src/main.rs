//! `cargo xtask`: set-up, build, run, test, packages and benchmark for
//! watcher, so that a fresh Debian machine needs nothing but these commands.

mod cmd;
mod layers;
mod package;

use std::{
    env,
    ffi::OsString,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, ensure};
use clap::{Parser, Subcommand};
use cmd::{apt_packages, output, run, show, step};

/// Debian packages bpf-linker is built against.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
const BPF_LINKER_VERSION: &str = "0.13";
const BPF_LINKER_LLVM: &str = "libLLVM.so.22";
const NIGHTLY: &str = "nightly";
/// Every crate but the eBPF one (built by watcher's build.rs): the default
/// members leave out those that need this set-up or root.
const WORKSPACE: &[&str] = &["--workspace", "--exclude", "watcher-ebpf"];
/// rust-src for `-Z build-std`, rustfmt for the import grouping in rustfmt.toml.
const NIGHTLY_COMPONENTS: &[&str] = &["rust-src", "rustfmt"];
/// Debian packages the end-to-end tests drive: a Prometheus server that
/// scrapes `--metrics`, and journald and journalctl for the README's
/// journal example.
const TEST_PACKAGES: &[&str] = &["prometheus", "systemd"];
/// Debian packages with the tools the benchmark (bench/) measures watcher
/// beside, and the font its charts are drawn with.
const BENCH_PACKAGES: &[&str] = &["inotify-tools", "bpftrace", "auditd", "fonts-dejavu-core"];

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building watcher needs (idempotent).
    Setup,
    /// Set up, then build target/release/watcher.
    Build,
    /// Set up, build, then run watcher with the given arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Set up, then check the layering of modules, formatting and lints,
    /// build the packages, a newer build of the Debian package and a Debian
    /// root to install them into, and run every test, including those that
    /// load the eBPF programs (needs root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Set up, build, then write the man pages (target/docs/man/*.1 from
    /// watcher's command-line definitions, watcher.toml.5 from
    /// docs/config.md) and the shell completions (target/docs/completions/).
    Docs,
    /// Set up, build, write the docs, then the packages for servers in
    /// target/package/: a Debian package (checked by lintian) and a tarball
    /// with a static (musl) binary, each with the man pages, the shell
    /// completions, the systemd unit and the example configuration.
    Package,
    /// Check that each module imports only modules below it: declared
    /// before it in its parent, or its own children (no cycles, no upward
    /// imports). Needs nothing installed.
    Layers,
    /// Set up, build, then measure watcher beside the tools it replaces and
    /// write BENCHMARKS.md (needs root; installs the tools from Debian).
    Bench {
        /// Fewer sizes and runs (a few minutes).
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> std::process::ExitCode {
    match xtask(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn xtask(cli: Cli) -> anyhow::Result<()> {
    let root = workspace_root();
    env::set_current_dir(&root)?;
    // bpf-linker and rustup's proxies live here; aya-build finds them on PATH.
    let path = env::join_paths(
        std::iter::once(cargo_home().join("bin"))
            .chain(env::split_paths(&env::var_os("PATH").unwrap_or_default())),
    )?;
    // SAFETY: single-threaded at this point.
    unsafe { env::set_var("PATH", path) };

    // The layering check only reads sources.
    if !matches!(cli.command, Task::Layers) {
        setup()?;
    }
    match cli.command {
        Task::Setup => Ok(()),
        Task::Build => build(),
        Task::Run { args } => {
            build()?;
            let bin = root.join("target/release/watcher");
            step("running", &format!("{} {}", bin.display(), show(&args)));
            Err(Command::new(&bin).args(args).exec())
                .with_context(|| format!("cannot run {}", bin.display()))
        }
        Task::Docs => docs(&root),
        Task::Package => {
            docs(&root)?;
            package::package(&root).map(drop)
        }
        Task::Test { args } => test(&root, &args),
        Task::Layers => layers::layers(&root),
        Task::Bench { quick } => bench(&root, quick),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is one level down")
        .to_path_buf()
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}

fn setup() -> anyhow::Result<()> {
    apt_packages("LLVM 22 packages", APT_PACKAGES)?;
    nightly_components()?;
    bpf_linker()
}

fn nightly_components() -> anyhow::Result<()> {
    const WHAT: &str = "nightly toolchain";
    let wanted = NIGHTLY_COMPONENTS.join(" ");
    let Some(installed) = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ])) else {
        step(WHAT, &format!("installing with {wanted}"));
        return run(Command::new("rustup")
            .args(["toolchain", "install", NIGHTLY, "--profile", "minimal"])
            .args(NIGHTLY_COMPONENTS.iter().flat_map(|c| ["--component", c])));
    };
    let missing: Vec<&str> = NIGHTLY_COMPONENTS
        .iter()
        .copied()
        .filter(|c| !installed.lines().any(|l| l.starts_with(c)))
        .collect();
    if missing.is_empty() {
        step(WHAT, &format!("{wanted} already installed"));
        return Ok(());
    }
    step(WHAT, &format!("adding {}", missing.join(" ")));
    run(Command::new("rustup")
        .args(["component", "add", "--toolchain", NIGHTLY])
        .args(&missing))
}

fn bpf_linker() -> anyhow::Result<()> {
    const WHAT: &str = "bpf-linker";
    let bin = cargo_home().join("bin/bpf-linker");
    let version = output(Command::new(&bin).arg("--version")).unwrap_or_default();
    let right_version = version.trim().strip_prefix("bpf-linker ").is_some_and(|v| {
        v.strip_prefix(BPF_LINKER_VERSION)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    });
    // The linker must be the one built against LLVM 22, not Debian's 14.
    let right_llvm =
        output(Command::new("ldd").arg(&bin)).is_some_and(|libs| libs.contains(BPF_LINKER_LLVM));
    if right_version && right_llvm {
        step(
            WHAT,
            &format!("already installed ({}, {BPF_LINKER_LLVM})", version.trim()),
        );
        return Ok(());
    }
    step(
        WHAT,
        &format!("building {BPF_LINKER_VERSION} against LLVM 22 (about a minute)"),
    );
    let path = env::join_paths(
        std::iter::once(PathBuf::from(LLVM_BIN))
            .chain(env::split_paths(&env::var_os("PATH").unwrap_or_default())),
    )?;
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--force",
            "--version",
            &format!("~{BPF_LINKER_VERSION}"),
        ])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("PATH", path))
}

fn build() -> anyhow::Result<()> {
    step("build", "cargo build --release");
    run(Command::new("cargo")
        .arg("build")
        .args(WORKSPACE)
        .arg("--release"))
}

/// Shells `watcher completions` writes scripts for, and each script's
/// file name.
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "watcher"),
    ("zsh", "_watcher"),
    ("fish", "watcher.fish"),
];

fn docs(root: &Path) -> anyhow::Result<()> {
    build()?;
    let bin = root.join("target/release/watcher");
    let out = root.join("target/docs");
    // Anew, so that the packages take no page of a command that is gone.
    match std::fs::remove_dir_all(&out) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", out.display()));
        }
        _ => {}
    }
    step("man pages", &out.join("man").display().to_string());
    run(Command::new(&bin).arg("man").arg(out.join("man")))?;
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    for (shell, file) in COMPLETIONS {
        step("completions", &completions.join(file).display().to_string());
        let script = Command::new(&bin)
            .args(["completions", shell])
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        ensure!(
            script.status.success(),
            "watcher completions {shell} failed"
        );
        std::fs::write(completions.join(file), script.stdout)?;
    }
    Ok(())
}

/// Installs the tools the benchmark measures watcher beside, builds
/// watcher and the benchmark (the watcher-bench crate, bench/), and runs it.
fn bench(root: &Path, quick: bool) -> anyhow::Result<()> {
    apt_packages("benchmark tools", BENCH_PACKAGES)?;
    build()?;
    step("build", "cargo build --release --package watcher-bench");
    run(Command::new("cargo").args(["build", "--release", "--package", "watcher-bench"]))?;
    let mut cmd = Command::new(root.join("target/release/watcher-bench"));
    cmd.arg("--watcher")
        .arg(root.join("target/release/watcher"))
        .arg("--work")
        .arg(root.join("target/bench"))
        .arg("--report")
        .arg(root.join("BENCHMARKS.md"));
    if quick {
        cmd.arg("--quick");
    }
    step("bench", "target/release/watcher-bench");
    run(&mut cmd)
}

fn test(root: &Path, args: &[OsString]) -> anyhow::Result<()> {
    apt_packages("test tools", TEST_PACKAGES)?;
    step("layers", "no upward import, no cycle (cargo xtask layers)");
    layers::layers(root)?;
    step("format", "cargo +nightly fmt --check");
    run(Command::new("cargo").args(["+nightly", "fmt", "--all", "--check"]))?;
    step("lints", "cargo clippy");
    run(Command::new("cargo").arg("clippy").args(WORKSPACE).args([
        "--release",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    docs(root)?;
    let packages = package::package(root)?;
    let upgrade = package::upgrade_deb(root)?;
    let debian = package::debian_root(root)?;
    step(
        "tests",
        "cargo test --release (as root: loads the eBPF programs)",
    );
    run(Command::new("cargo")
        .arg("test")
        .args(WORKSPACE)
        .arg("--release")
        .args(args)
        .env("WATCHER_BIN", root.join("target/release/watcher"))
        .env("WATCHER_DEB", &packages.deb)
        .env("WATCHER_DEB_UPGRADE", upgrade)
        .env("WATCHER_TARBALL", &packages.tarball)
        .env("WATCHER_DEBIAN_ROOT", debian))
}
