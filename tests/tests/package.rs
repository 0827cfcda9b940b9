//! The packages `cargo xtask package` builds, as a server gets them: the
//! Debian package installed, upgraded, removed and purged in a Debian root
//! made for the test, running from the installed files; the tarball's
//! static binary checking the machine and tracing a write.

use std::{
    collections::BTreeSet,
    ffi::CString,
    fs, io,
    os::unix::{ffi::OsStrExt as _, fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use watcher_tests::{Tree, Watcher, require_root, spawn, watcher_bin};

/// The file environment variable `var` names; `cargo xtask test` sets it.
fn artifact(var: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{var} is not set: run the package tests with `cargo xtask test`, which builds the \
             packages (`cargo xtask package`) and a Debian root to install them into"
        )
    });
    assert!(
        path.exists(),
        "{var}: {} is missing: run `cargo xtask package`",
        path.display()
    );
    path
}

/// What a command said on stdout, after checking that it succeeded.
fn stdout(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// A Debian root unpacked from `WATCHER_DEBIAN_ROOT` (debootstrap's
/// minbase of this machine's release) into a fresh tree.
struct DebianRoot {
    tree: Tree,
}

impl DebianRoot {
    fn new() -> Self {
        let tree = Tree::new("debian-root");
        let (_, out) = spawn(
            Command::new("tar")
                .args(["--extract", "--numeric-owner", "--file"])
                .arg(artifact("WATCHER_DEBIAN_ROOT"))
                .arg("--directory")
                .arg(&tree.root),
        );
        stdout("unpacking the Debian root", out);
        Self { tree }
    }

    /// `path` (absolute inside the root) as seen from outside.
    fn path(&self, path: &str) -> PathBuf {
        self.tree.root.join(path.trim_start_matches('/'))
    }

    /// Runs `program ARGS...` chrooted in the root, in a mount namespace of
    /// its own with the machine's /proc, /sys and /dev and tracefs: mounts
    /// that go with the command. Not /run: the package's scripts must not
    /// find and drive the machine's systemd.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let c = |path: &Path| CString::new(path.as_os_str().as_bytes()).expect("no NUL");
        let root = c(&self.tree.root);
        let binds: Vec<(CString, CString)> = ["proc", "sys", "dev"]
            .iter()
            .map(|d| (c(&Path::new("/").join(d)), c(&self.tree.root.join(d))))
            .collect();
        let tracefs = c(&self.tree.root.join("sys/kernel/tracing"));
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C");
        let ok = |rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // SAFETY: between fork and exec the closure makes only syscalls,
        // on strings made before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let none = std::ptr::null();
                ok(libc::unshare(libc::CLONE_NEWNS))?;
                ok(libc::mount(
                    none,
                    c"/".as_ptr(),
                    none,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                for (from, to) in &binds {
                    ok(libc::mount(
                        from.as_ptr(),
                        to.as_ptr(),
                        none,
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ))?;
                }
                // EBUSY: the machine's tracefs is mounted there, and came
                // with /sys.
                match ok(libc::mount(
                    c"tracefs".as_ptr(),
                    tracefs.as_ptr(),
                    c"tracefs".as_ptr(),
                    0,
                    std::ptr::null(),
                )) {
                    Err(e) if e.raw_os_error() != Some(libc::EBUSY) => return Err(e),
                    _ => {}
                }
                ok(libc::chroot(root.as_ptr()))?;
                ok(libc::chdir(c"/".as_ptr()))
            })
        };
        spawn(&mut cmd).1
    }

    /// Runs `program ARGS...` in the root, checks that it succeeded
    /// without a word on stderr (dpkg's warnings, a maintainer script's
    /// errors) and returns its stdout.
    fn ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args);
        let what = format!("{program} {args:?}");
        assert!(
            out.stderr.is_empty(),
            "{what} said on stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&what, out)
    }

    /// Every path in the root (not below /proc, /sys and /dev, where the
    /// machine's are mounted while a command runs).
    fn files(&self) -> BTreeSet<PathBuf> {
        fn walk(dir: &Path, root: &Path, into: &mut BTreeSet<PathBuf>) {
            for entry in fs::read_dir(dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                let rel = Path::new("/").join(path.strip_prefix(root).expect("below"));
                into.insert(rel.clone());
                let skip = ["/proc", "/sys", "/dev"]
                    .iter()
                    .any(|d| rel == Path::new(d));
                if !skip && fs::symlink_metadata(&path).expect("stat").is_dir() {
                    walk(&path, root, into);
                }
            }
        }
        let mut files = BTreeSet::new();
        walk(&self.tree.root, &self.tree.root, &mut files);
        files
    }

    /// `dpkg-query --show --showformat FORMAT watcher`.
    fn query(&self, format: &str) -> String {
        self.ok("dpkg-query", &["--show", "--showformat", format, "watcher"])
    }
}

/// Where the package puts what, and with which mode.
const DEB_FILES: &[(&str, u32)] = &[
    ("/usr/bin/watcher", 0o755),
    ("/usr/share/man/man1/watcher.1.gz", 0o644),
    ("/usr/share/man/man1/watcher-serve.1.gz", 0o644),
    ("/usr/share/man/man1/watcher-check.1.gz", 0o644),
    ("/usr/share/man/man5/watcher.toml.5.gz", 0o644),
    ("/usr/share/bash-completion/completions/watcher", 0o644),
    ("/usr/share/zsh/vendor-completions/_watcher", 0o644),
    ("/usr/share/fish/vendor_completions.d/watcher.fish", 0o644),
    ("/usr/lib/systemd/system/watcher.service", 0o644),
    ("/etc/watcher/watcher.toml", 0o644),
    ("/usr/share/doc/watcher/copyright", 0o644),
];
const CONFIG: &str = "/etc/watcher/watcher.toml";
/// The symlink `systemctl enable watcher` makes.
const ENABLED: &str = "/etc/systemd/system/multi-user.target.wants/watcher.service";

#[test]
fn debian_package_installs_upgrades_and_purges_cleanly() {
    require_root();
    let (deb, upgrade) = (artifact("WATCHER_DEB"), artifact("WATCHER_DEB_UPGRADE"));
    let debian = DebianRoot::new();
    let before = debian.files();
    fs::copy(&deb, debian.path("/tmp/watcher.deb")).unwrap();
    fs::copy(&upgrade, debian.path("/tmp/watcher-upgrade.deb")).unwrap();

    debian.ok("dpkg", &["--install", "/tmp/watcher.deb"]);
    let version = debian.query("${Version}");
    let built = stdout(
        "watcher --version",
        spawn(Command::new(watcher_bin()).arg("--version")).1,
    );
    assert_eq!(debian.ok("/usr/bin/watcher", &["--version"]), built);
    let check = debian.run("/usr/bin/watcher", &["check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "watcher check:\n{report}");
    assert!(report.contains("ok    programs"), "{report}");

    let listed: BTreeSet<String> = debian
        .ok("dpkg-query", &["--listfiles", "watcher"])
        .lines()
        .map(str::to_owned)
        .collect();
    for (path, mode) in DEB_FILES {
        assert!(
            listed.contains(*path),
            "{path} not in the package: {listed:#?}"
        );
        let meta = fs::metadata(debian.path(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o7777, *mode, "mode of {path}");
    }
    let unit = fs::read_to_string(debian.path("/usr/lib/systemd/system/watcher.service")).unwrap();
    assert!(
        unit.lines()
            .any(|l| l == format!("ExecStart=/usr/bin/watcher serve --config {CONFIG}")),
        "{unit}"
    );
    assert_eq!(
        debian.query("${Conffiles}").split_whitespace().next(),
        Some(CONFIG)
    );
    assert!(
        fs::symlink_metadata(debian.path(ENABLED)).is_err(),
        "installing enabled the service"
    );

    // An upgrade keeps the admin's edit of the configuration.
    let edited = format!(
        "{}\n# edited by the admin\n",
        fs::read_to_string(debian.path(CONFIG)).unwrap()
    );
    fs::write(debian.path(CONFIG), &edited).unwrap();
    debian.ok("dpkg", &["--install", "/tmp/watcher-upgrade.deb"]);
    let upgraded = debian.query("${Version}");
    assert_ne!(upgraded, version);
    assert_eq!(
        upgraded,
        debian
            .ok(
                "dpkg-deb",
                &["--field", "/tmp/watcher-upgrade.deb", "Version"]
            )
            .trim()
    );
    assert_eq!(fs::read_to_string(debian.path(CONFIG)).unwrap(), edited);
    assert!(
        fs::symlink_metadata(debian.path(ENABLED)).is_err(),
        "upgrading enabled the service"
    );
    debian.ok("/usr/bin/watcher", &["--version"]);

    // Removing leaves the configuration; purging takes it too.
    debian.ok("dpkg", &["--remove", "watcher"]);
    assert_eq!(debian.query("${db:Status-Abbrev}"), "rc ");
    assert!(!debian.path("/usr/bin/watcher").exists());
    assert_eq!(fs::read_to_string(debian.path(CONFIG)).unwrap(), edited);
    debian.ok("dpkg", &["--purge", "watcher"]);
    assert!(!debian.path("/etc/watcher").exists());

    fs::remove_file(debian.path("/tmp/watcher.deb")).unwrap();
    fs::remove_file(debian.path("/tmp/watcher-upgrade.deb")).unwrap();
    let after = debian.files();
    let left: Vec<&PathBuf> = after.difference(&before).collect();
    let lost: Vec<&PathBuf> = before.difference(&after).collect();
    assert!(
        left.is_empty() && lost.is_empty(),
        "left: {left:#?}\nlost: {lost:#?}"
    );
}

/// Whether the ELF file at `path` names a program interpreter (the dynamic
/// loader): a statically linked binary has none.
fn has_interpreter(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let elf = fs::read(path).unwrap();
    assert!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "{} is no 64-bit LSB ELF",
        path.display()
    );
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == PT_INTERP
    })
}

#[test]
fn static_binary_checks_the_machine_and_traces_a_write() {
    require_root();
    let tarball = artifact("WATCHER_TARBALL");
    let tree = Tree::new("tarball");
    let (_, out) = spawn(
        Command::new("tar")
            .args(["--extract", "--file"])
            .arg(&tarball)
            .arg("--directory")
            .arg(&tree.root),
    );
    stdout("unpacking the tarball", out);
    let name = tarball.file_name().unwrap().to_str().unwrap();
    let top = tree
        .root
        .join(name.strip_suffix(".tar.gz").expect(".tar.gz"));

    // A /usr/local tree: each file where its tool looks below /usr/local.
    for (path, mode) in [
        ("bin/watcher", 0o755),
        ("lib/systemd/system/watcher.service", 0o644),
        ("share/man/man1/watcher.1", 0o644),
        ("share/man/man1/watcher-serve.1", 0o644),
        ("share/man/man5/watcher.toml.5", 0o644),
        ("share/bash-completion/completions/watcher", 0o644),
        ("share/zsh/site-functions/_watcher", 0o644),
        ("share/fish/vendor_completions.d/watcher.fish", 0o644),
        ("share/doc/watcher/examples/watcher.toml", 0o644),
    ] {
        let meta = fs::metadata(top.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "mode of {path}");
    }
    let unit = fs::read_to_string(top.join("lib/systemd/system/watcher.service")).unwrap();
    assert!(
        unit.lines()
            .any(|l| l.starts_with("ExecStart=/usr/local/bin/watcher ")),
        "the unit runs the binary from where the tarball puts it: {unit}"
    );

    let bin = top.join("bin/watcher");
    assert!(
        has_interpreter(&watcher_bin()),
        "the glibc build has a loader"
    );
    assert!(!has_interpreter(&bin), "{} is not static", bin.display());
    let (_, check) = spawn(Command::new(&bin).arg("check"));
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "watcher check:\n{report}");

    let dir = tree.dir("watched");
    let w = Watcher::start_command(
        Command::new(&bin)
            .args(["trace", "--format", "json", "--events", "write"])
            .arg(&dir),
    );
    let file = dir.join("written");
    fs::write(&file, b"x").unwrap();
    let events = w.events_until_marker(&dir);
    assert!(
        events.iter().any(|ev| ev["path"] == file.to_str().unwrap()),
        "{events:#?}"
    );
    let stopped = w.stop();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
}
