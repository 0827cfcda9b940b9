//! `cargo xtask package`: what a server without a Rust toolchain installs.
//! A Debian package, made by cargo-deb from `[package.metadata.deb]` in
//! watcher/Cargo.toml and checked by lintian, and a tarball with a static
//! (musl) binary for other distributions, laid out as a /usr/local tree.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

use crate::cmd::{apt_packages, output, run, step};

/// lintian checks the Debian package.
const PACKAGE_TOOLS: &[&str] = &["lintian"];
/// The cargo-deb that reads `[package.metadata.deb]`.
const CARGO_DEB_VERSION: &str = "3.8.0";
/// The tarball's target: musl, linked statically.
const MUSL: &str = "x86_64-unknown-linux-musl";
/// Where dist/watcher.service runs the binary from, which is where the
/// tarball puts it; the Debian package puts it in /usr/bin.
const LOCAL_EXEC: &str = "ExecStart=/usr/local/bin/watcher ";
const DEB_EXEC: &str = "ExecStart=/usr/bin/watcher ";
/// Where each shell looks for completions below /usr/local, by the
/// script's name in target/docs/completions/.
const LOCAL_COMPLETIONS: &[(&str, &str)] = &[
    ("watcher", "share/bash-completion/completions/watcher"),
    ("_watcher", "share/zsh/site-functions/_watcher"),
    (
        "watcher.fish",
        "share/fish/vendor_completions.d/watcher.fish",
    ),
];

/// Writes target/package/watcher_VERSION_amd64.deb and
/// target/package/watcher-VERSION-x86_64-linux-musl.tar.gz, and nothing
/// else there, from the release build and what `cargo xtask docs` wrote.
pub fn package(root: &Path) -> anyhow::Result<()> {
    apt_packages("packaging tools", PACKAGE_TOOLS)?;
    musl_target()?;
    cargo_deb()?;
    let version = version(root)?;
    let out = root.join("target/package");
    fresh_dir(&out)?;
    deb_unit(root)?;
    let deb = out.join(format!("watcher_{version}_amd64.deb"));
    build_deb(&deb, None)?;
    step("lintian", &deb.display().to_string());
    run(Command::new("lintian")
        .args(["--display-info", "--fail-on", "error,warning,info"])
        .arg(&deb))?;
    tarball(root, &version, &out)?;
    Ok(())
}

fn musl_target() -> anyhow::Result<()> {
    const WHAT: &str = "musl target";
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if installed.lines().any(|t| t == MUSL) {
        step(WHAT, &format!("{MUSL} already installed"));
        return Ok(());
    }
    step(WHAT, &format!("adding {MUSL}"));
    run(Command::new("rustup").args(["target", "add", MUSL]))
}

fn cargo_deb() -> anyhow::Result<()> {
    const WHAT: &str = "cargo-deb";
    let version = output(Command::new("cargo").args(["deb", "--version"])).unwrap_or_default();
    if version.trim() == format!("cargo-deb {CARGO_DEB_VERSION}") {
        step(WHAT, &format!("{CARGO_DEB_VERSION} already installed"));
        return Ok(());
    }
    step(
        WHAT,
        &format!("installing {CARGO_DEB_VERSION} (about a minute)"),
    );
    run(Command::new("cargo").args([
        "install",
        "cargo-deb",
        "--locked",
        "--force",
        "--version",
        CARGO_DEB_VERSION,
    ]))
}

/// The version of the release build, as `watcher --version` says it.
fn version(root: &Path) -> anyhow::Result<String> {
    let bin = root.join("target/release/watcher");
    let said = output(Command::new(&bin).arg("--version"))
        .with_context(|| format!("cannot run {} --version", bin.display()))?;
    said.trim()
        .strip_prefix("watcher ")
        .map(str::to_owned)
        .with_context(|| format!("{} --version said {said:?}", bin.display()))
}

/// Removes `dir` with everything in it, if it is there, and makes it anew.
fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", dir.display()));
        }
        _ => {}
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// The package's copy of dist/watcher.service, with the package's path to
/// the binary, in target/package-work/deb/ (its `maintainer-scripts`
/// directory, where cargo-deb finds the unit).
fn deb_unit(root: &Path) -> anyhow::Result<()> {
    let unit = fs::read_to_string(root.join("dist/watcher.service"))?;
    ensure!(
        unit.matches(LOCAL_EXEC).count() == 1,
        "dist/watcher.service has no one line starting {LOCAL_EXEC:?}"
    );
    let work = root.join("target/package-work/deb");
    fresh_dir(&work)?;
    fs::write(
        work.join("watcher.service"),
        unit.replace(LOCAL_EXEC, DEB_EXEC),
    )?;
    Ok(())
}

/// Runs cargo-deb on the release build, writing `deb`, with `version`
/// instead of watcher's own if given.
fn build_deb(deb: &Path, version: Option<&str>) -> anyhow::Result<()> {
    step("debian package", &deb.display().to_string());
    let mut cmd = Command::new("cargo");
    cmd.args(["deb", "--package", "watcher", "--no-build", "--output"])
        .arg(deb);
    if let Some(version) = version {
        cmd.args(["--deb-version", version]);
    }
    run(&mut cmd)
}

/// Builds the static binary and writes the tarball: one directory,
/// watcher-VERSION-x86_64-linux-musl, that unpacks into /usr/local.
fn tarball(root: &Path, version: &str, out: &Path) -> anyhow::Result<PathBuf> {
    step(
        "build",
        &format!("cargo build --release --target {MUSL} --package watcher"),
    );
    run(Command::new("cargo").args([
        "build",
        "--release",
        "--target",
        MUSL,
        "--package",
        "watcher",
    ]))?;
    let name = format!("watcher-{version}-x86_64-linux-musl");
    let work = root.join("target/package-work/tarball");
    fresh_dir(&work)?;
    let top = work.join(&name);
    let docs = root.join("target/docs");
    let mut files = vec![
        (
            root.join(format!("target/{MUSL}/release/watcher")),
            "bin/watcher".to_owned(),
            0o755,
        ),
        (
            root.join("dist/watcher.service"),
            "lib/systemd/system/watcher.service".to_owned(),
            0o644,
        ),
        (
            root.join("dist/watcher.toml"),
            "share/doc/watcher/examples/watcher.toml".to_owned(),
            0o644,
        ),
        (
            root.join("README.md"),
            "share/doc/watcher/README.md".to_owned(),
            0o644,
        ),
    ];
    for (script, dest) in LOCAL_COMPLETIONS {
        files.push((
            docs.join("completions").join(script),
            (*dest).to_owned(),
            0o644,
        ));
    }
    for page in fs::read_dir(docs.join("man"))? {
        let page = page?.path();
        let section = match page.extension().and_then(|e| e.to_str()) {
            Some(section @ ("1" | "5")) => section.to_owned(),
            _ => bail!("{} is no man page of section 1 or 5", page.display()),
        };
        let name = page
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        files.push((page, format!("share/man/man{section}/{name}"), 0o644));
    }
    for (from, to, mode) in &files {
        let to = top.join(to);
        fs::create_dir_all(to.parent().expect("below top"))?;
        fs::copy(from, &to).with_context(|| format!("cannot copy {}", from.display()))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(*mode))?;
    }
    // As cargo-deb does for the package: no symbols, a third less to ship.
    run(Command::new("strip").arg(top.join("bin/watcher")))?;
    let tarball = out.join(format!("{name}.tar.gz"));
    step("tarball", &tarball.display().to_string());
    run(Command::new("tar")
        .args([
            "--create",
            "--gzip",
            "--sort=name",
            "--owner=0",
            "--group=0",
        ])
        .arg("--numeric-owner")
        .arg("--file")
        .arg(&tarball)
        .arg("--directory")
        .arg(&work)
        .arg(&name))?;
    Ok(tarball)
}
