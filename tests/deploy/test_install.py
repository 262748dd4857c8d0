"""deploy/install.sh into a staging root: files, owners, modes, upgrade, uninstall, purge.

The install runs from a wheelhouse built by deploy/build-wheelhouse.sh, so it also shows
that the offline path works: pip is told --no-index and can only use the wheelhouse.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "install.sh"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    subprocess.run(
        ["bash", str(REPO / "deploy" / "build-wheelhouse.sh"), "-o", str(out)],
        check=True, capture_output=True, text=True,
    )
    assert any(out.glob("meterchain-*.whl")), "wheelhouse has no meterchain wheel"
    return out


def _seed_root(root: Path) -> None:
    """A staging root with the host's user database minus any meterchain entries."""
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        src = Path("/etc") / name
        if not src.exists():
            continue
        lines = [ln for ln in src.read_text().splitlines(keepends=True)
                 if not ln.startswith("meterchain")]
        (root / "etc" / name).write_text("".join(lines))
        os.chmod(root / "etc" / name, src.stat().st_mode & 0o777)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True)


def _entry(root: Path, db: str, name: str) -> list[str] | None:
    for line in (root / "etc" / db).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None


def _owner(root: Path, path: Path) -> tuple[str, str]:
    st = path.stat()
    users = {int(f[2]): f[0] for f in (ln.split(":") for ln in
             (root / "etc/passwd").read_text().splitlines())}
    groups = {int(f[2]): f[0] for f in (ln.split(":") for ln in
              (root / "etc/group").read_text().splitlines())}
    return users[st.st_uid], groups[st.st_gid]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Mode and owners of everything outside the virtual environment."""
    snap = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith("opt/meterchain/lib") or "__pycache__" in rel:
            continue
        st = p.lstat()
        snap[rel] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return snap


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A staging root whose parents the service user may traverse (pytest's own tmp
    directories are 0700 root), for running the first start as that user."""
    top = Path(tempfile.mkdtemp(prefix="mc-stage-"))
    top.chmod(0o755)
    try:
        yield top / "root"
    finally:
        shutil.rmtree(top)


def _files_naming(root: Path, needle: str) -> list[str]:
    """Every file (or symlink target) under ``root`` whose bytes contain ``needle``."""
    found = []
    raw = needle.encode()
    for p in root.rglob("*"):
        if p.is_symlink():
            if needle in os.readlink(p):
                found.append(str(p))
        elif p.is_file() and raw in p.read_bytes():
            found.append(str(p))
    return found


def _first_start(root: Path) -> subprocess.CompletedProcess[str]:
    """What the staged unit's first ExecStartPre does on the device, run as the service
    user against the staged tree: the image's /var/lib/meterchain is ROOT/var/lib/...."""
    unit = (root / "etc/systemd/system/meterchain-agent.service").read_text()
    first = re.findall(r"^ExecStartPre=(.*)$", unit, re.M)[0].split()
    assert first[:3] == ["/opt/meterchain/bin/meterchain", "key", "init"]
    cfg = root / "first-start.toml"
    cfg.write_text((root / "etc/meterchain/agent.toml").read_text()
                   .replace('"/var/lib/meterchain/', f'"{root}/var/lib/meterchain/'))
    cfg.chmod(0o644)
    user = _entry(root, "passwd", "meterchain")
    assert user is not None
    python, env = _interpreter_for_others(root)
    try:
        return subprocess.run(
            [python, "-m", "meterchain", "key", "init", "--config", str(cfg)],
            capture_output=True, text=True, cwd="/", user=int(user[2]), group=int(user[3]),
            extra_groups=[], env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **env})
    finally:
        cfg.unlink()


def _world_reachable(path: Path) -> bool:
    real = path.resolve()
    return all(p.stat().st_mode & 0o001 for p in real.parents) and os.access(real, os.X_OK)


def _interpreter_for_others(root: Path) -> tuple[str, dict[str, str]]:
    """The staged venv's python if the service user can run it; else (the venv's base
    interpreter lives in root's home, as with pyenv) the system python of the same
    version, given the staged site-packages."""
    staged = root / "opt/meterchain/bin/python"
    if _world_reachable(staged):
        return str(staged), {}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = Path("/usr/bin") / version
    assert _world_reachable(system), f"no {version} the service user can run"
    return str(system), {"PYTHONPATH": str(root / f"opt/meterchain/lib/{version}/site-packages")}


def test_install_upgrade_uninstall_purge(open_root: Path, wheelhouse: Path) -> None:
    root = open_root
    _seed_root(root)

    first = _run("--root", str(root), "--wheelhouse", str(wheelhouse))
    assert first.returncode == 0, first.stderr

    # the user, in dialout
    user = _entry(root, "passwd", "meterchain")
    assert user is not None and user[6] == "/usr/sbin/nologin"
    dialout = _entry(root, "group", "dialout")
    assert dialout is not None and "meterchain" in dialout[3].split(",")

    # the program, on PATH for technicians, naming /opt/meterchain and never the staging root
    link = root / "usr/local/bin/meterchain"
    assert link.is_symlink() and str(link.readlink()) == "/opt/meterchain/bin/meterchain"
    mc = root / "opt/meterchain/bin/meterchain"
    assert mc.read_text().splitlines()[0] == "#!/opt/meterchain/bin/python"
    assert _files_naming(root, str(root)) == []
    assert str(root) not in first.stdout + first.stderr
    version = subprocess.run([str(root / "opt/meterchain/bin/python"), "-m", "meterchain",
                              "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("meterchain ")
    # the config reference goes with the program, where `meterchain --help` says it is
    assert (root / "opt/meterchain/share/doc/meterchain/agent.md").is_file()
    helped = subprocess.run([str(root / "opt/meterchain/bin/python"), "-m", "meterchain",
                             "--help"], capture_output=True, text=True, check=True)
    assert f"Documentation: {root}/opt/meterchain/share/doc/meterchain" in " ".join(
        helped.stdout.split())

    # config: root-owned, readable by the service group, never world-readable
    cfg = root / "etc/meterchain/agent.toml"
    assert _owner(root, cfg) == ("root", "meterchain") and _mode(cfg) == 0o640
    assert cfg.read_text() == (REPO / "deploy/agent.example.toml").read_text()
    assert _mode(root / "etc/meterchain") == 0o750

    # state; no key in the image: every device makes its own at first start
    state = root / "var/lib/meterchain"
    assert _owner(root, state) == ("meterchain", "meterchain") and _mode(state) == 0o700
    key = state / "gateway.key"
    pub = state / "gateway.pub"
    assert not key.exists() and not pub.exists()
    assert "generated the gateway key" not in first.stdout
    assert "each device creates its own at first start" in first.stdout

    start = _first_start(root)
    assert start.returncode == 0, start.stderr
    assert _owner(root, key) == ("meterchain", "meterchain") and _mode(key) == 0o600
    pubhex = pub.read_text().strip()
    assert len(pubhex) == 64 and f"public key (enroll it at the utility's replica): {pubhex}" \
        in start.stdout
    assert key.read_text().splitlines()[1] not in start.stdout + start.stderr
    key_made = key.read_bytes()
    again_start = _first_start(root)  # every later start keeps the key
    assert again_start.returncode == 0 and key.read_bytes() == key_made
    assert f"public key {pubhex}" in again_start.stdout

    # the unit, enabled
    unit = root / "etc/systemd/system/meterchain-agent.service"
    assert unit.read_text() == (REPO / "systemd/meterchain-agent.service").read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/meterchain-agent.service"
    assert wants.is_symlink()

    # second run: an in-place upgrade that keeps config and key
    cfg.write_text(cfg.read_text() + "\n# edited by the installer\n")
    edited = cfg.read_text()
    key_before = key.read_bytes()
    before = _snapshot(root)
    second = _run("--root", str(root), "--wheelhouse", str(wheelhouse))
    assert second.returncode == 0, second.stderr
    assert cfg.read_text() == edited
    assert key.read_bytes() == key_before
    assert pubhex in second.stdout and "kept existing gateway key" in second.stdout
    assert _snapshot(root) == before

    # uninstall keeps data, keys and the user
    gone = _run("--root", str(root), "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert not (root / "opt/meterchain").exists() and not link.is_symlink()
    assert not unit.exists() and not wants.exists()
    assert cfg.read_text() == edited and key.read_bytes() == key_before
    assert _entry(root, "passwd", "meterchain") is not None

    # reinstall after uninstall finds the same key
    again = _run("--root", str(root), "--wheelhouse", str(wheelhouse))
    assert again.returncode == 0, again.stderr
    assert key.read_bytes() == key_before

    # purge removes everything of ours
    purge = _run("--root", str(root), "--uninstall", "--purge")
    assert purge.returncode == 0, purge.stderr
    for p in ("opt/meterchain", "etc/meterchain", "var/lib/meterchain",
              "etc/systemd/system/meterchain-agent.service"):
        assert not (root / p).exists(), p
    assert _entry(root, "passwd", "meterchain") is None
    dialout = _entry(root, "group", "dialout")
    assert dialout is not None and "meterchain" not in dialout[3].split(",")


@pytest.fixture(scope="module")
def replica_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse-replica")
    subprocess.run(
        ["bash", str(REPO / "deploy" / "build-wheelhouse.sh"), "-o", str(out), "--replica"],
        check=True, capture_output=True, text=True,
    )
    return out


def test_install_with_the_replica(tmp_path: Path, replica_wheelhouse: Path) -> None:
    """--replica: its own user, config readable by that user only, state, both units."""
    root = tmp_path / "root"
    _seed_root(root)
    proc = _run("--root", str(root), "--wheelhouse", str(replica_wheelhouse), "--replica")
    assert proc.returncode == 0, proc.stderr
    assert _entry(root, "passwd", "meterchain-replica") is not None
    etc = root / "etc/meterchain-replica"
    cfg = etc / "replica.toml"
    assert _owner(root, etc) == ("root", "meterchain-replica") and _mode(etc) == 0o750
    assert _owner(root, cfg) == ("root", "meterchain-replica") and _mode(cfg) == 0o640
    state = root / "var/lib/meterchain-replica"
    assert _owner(root, state) == ("meterchain-replica", "meterchain-replica")
    assert _mode(state) == 0o700
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "meterchain-agent.service").is_symlink()
    assert (wants / "meterchain-replica.service").is_symlink()
    unit = (root / "etc/systemd/system/meterchain-replica.service").read_text()
    assert "--config /etc/meterchain-replica/replica.toml" in unit
    # the installed program has the replica extra and reads the shipped example config
    check = subprocess.run(
        [str(root / "opt/meterchain/bin/python"), "-c",
         "import sys, fastapi, uvicorn; from replica.config import load_config; "
         "print(load_config(sys.argv[1]).port)", str(cfg)],
        capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip() == "8470", check.stderr
    purge = _run("--root", str(root), "--uninstall", "--purge")
    assert purge.returncode == 0, purge.stderr
    assert not etc.exists() and not state.exists()
    assert _entry(root, "passwd", "meterchain-replica") is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--purge"], "--purge goes with --uninstall"),
        (["--bogus"], "unknown option: --bogus"),
        (["--root", "/nonexistent/meterchain-root"], "is not a directory"),
    ],
)
def test_bad_arguments_fail_with_a_clear_line(args: list[str], message: str) -> None:
    proc = _run(*args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_staging_root_without_user_database_is_refused(tmp_path: Path) -> None:
    proc = _run("--root", str(tmp_path))
    assert proc.returncode == 2
    assert "no etc/passwd" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_wrong_wheelhouse_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _seed_root(root)
    empty = tmp_path / "empty-wheelhouse"
    empty.mkdir()
    proc = _run("--root", str(root), "--wheelhouse", str(empty))
    assert proc.returncode == 2
    assert "install from wheelhouse" in proc.stderr
    shutil.rmtree(root)
