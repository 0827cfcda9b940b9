//! `cargo xtask package`: what a server without a Rust toolchain installs.
//! A Debian package, made by cargo-deb from `[package.metadata.deb]` in
//! watcher/Cargo.toml and checked by lintian, and a tarball with a static
//! (musl) binary for other distributions, laid out as a /usr/local tree.
//! For the tests, also a newer build of the Debian package and a Debian
//! root to install both into.

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
/// debootstrap makes the Debian root the package tests install into.
const TEST_TOOLS: &[&str] = &["debootstrap"];
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

/// The packages `package` wrote.
pub struct Packages {
    pub deb: PathBuf,
    pub tarball: PathBuf,
}

/// Writes target/package/watcher_VERSION_amd64.deb and
/// target/package/watcher-VERSION-x86_64-linux-musl.tar.gz, and nothing
/// else there, from the release build and what `cargo xtask docs` wrote.
pub fn package(root: &Path) -> anyhow::Result<Packages> {
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
    let tarball = tarball(root, &version, &out)?;
    Ok(Packages { deb, tarball })
}

/// For the upgrade test: the package `package` built, as version
/// VERSION+upgrade, in target/package-test/.
pub fn upgrade_deb(root: &Path) -> anyhow::Result<PathBuf> {
    let version = format!("{}+upgrade", version(root)?);
    let deb = root.join(format!("target/package-test/watcher_{version}_amd64.deb"));
    build_deb(&deb, Some(&version))?;
    Ok(deb)
}

/// A minimal Debian root (debootstrap's minbase) of this machine's
/// release, from its mirror, for the package tests: a tarball in
/// target/package-test/, made once and reused.
pub fn debian_root(root: &Path) -> anyhow::Result<PathBuf> {
    let codename = codename()?;
    let tarball = root.join(format!("target/package-test/debian-{codename}-minbase.tar"));
    if tarball.exists() {
        step(
            "debian root",
            &format!("{} (made before)", tarball.display()),
        );
        return Ok(tarball);
    }
    apt_packages("debootstrap", TEST_TOOLS)?;
    let mirror = mirror(&codename)?;
    let dir = tarball.with_extension("");
    fresh_dir(&dir)?;
    step(
        "debian root",
        &format!("debootstrap --variant=minbase {codename} (a few minutes)"),
    );
    // In a mount namespace of its own, so that the /proc and /sys it
    // mounts in the root go with it, even when it fails.
    run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "debootstrap"])
        .args(["--variant=minbase", &codename])
        .arg(&dir)
        .arg(&mirror))?;
    let partial = tarball.with_extension("partial");
    run(Command::new("tar")
        .args(["--create", "--numeric-owner", "--file"])
        .arg(&partial)
        .arg("--directory")
        .arg(&dir)
        .arg("."))?;
    fs::remove_dir_all(&dir)?;
    fs::rename(&partial, &tarball)?;
    Ok(tarball)
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

/// This machine's Debian release (`VERSION_CODENAME` in /etc/os-release).
fn codename() -> anyhow::Result<String> {
    let release = fs::read_to_string("/etc/os-release").context("cannot read /etc/os-release")?;
    release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_owned())
        .filter(|c| !c.is_empty())
        .context("/etc/os-release names no VERSION_CODENAME")
}

/// The mirror this machine's apt takes `codename` from: the first URI of
/// a `deb` entry for that suite, in /etc/apt/sources.list.d/*.sources
/// (deb822) or /etc/apt/sources.list (one line each).
fn mirror(codename: &str) -> anyhow::Result<String> {
    let mut sources: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sources"))
        .collect();
    sources.sort();
    for path in &sources {
        let text = fs::read_to_string(path)?;
        if let Some(uri) = deb822_mirror(&text, codename) {
            return Ok(uri);
        }
    }
    if let Some(uri) = fs::read_to_string("/etc/apt/sources.list")
        .ok()
        .and_then(|text| one_line_mirror(&text, codename))
    {
        return Ok(uri);
    }
    bail!(
        "no `deb` source for {codename} in /etc/apt/sources.list.d/*.sources or \
         /etc/apt/sources.list: debootstrap needs a mirror"
    )
}

fn deb822_mirror(text: &str, codename: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.split_whitespace().collect::<Vec<_>>())
            })
        };
        let deb = field("Types")?.contains(&"deb");
        let suite = field("Suites")?.contains(&codename);
        let enabled = field("Enabled").is_none_or(|e| e != ["no"]);
        (deb && suite && enabled)
            .then(|| field("URIs")?.first().map(|u| (*u).to_owned()))
            .flatten()
    })
}

fn one_line_mirror(text: &str, codename: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next()?;
        let rest = line.trim().strip_prefix("deb ")?;
        // Options come first, in brackets: `deb [arch=amd64] URI SUITE ...`.
        let rest = match rest.trim_start().strip_prefix('[') {
            Some(options) => options.split_once(']')?.1,
            None => rest,
        };
        let mut words = rest.split_whitespace();
        let uri = words.next()?;
        (words.next()? == codename).then(|| uri.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_of_the_suite_from_deb822() {
        let text = "Types: deb\nURIs: http://security.example/debian-security\n\
                    Suites: bookworm-security\nComponents: main\n\n\
                    Types: deb deb-src\nURIs: http://mirror.example/debian\n\
                    Suites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            deb822_mirror(text, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(deb822_mirror(text, "trixie"), None);
        let off = "Enabled: no\nTypes: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n";
        assert_eq!(deb822_mirror(off, "bookworm"), None);
    }

    #[test]
    fn mirror_of_the_suite_from_one_line_entries() {
        let text = "# deb http://old.example/debian bookworm main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            one_line_mirror(text, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(one_line_mirror(text, "trixie"), None);
    }
}
