#!/usr/bin/env python3
"""Runs client drivers' own test suites (psycopg 3, asyncpg) twice, straight against a
throwaway PostgreSQL and through pgshroud, and reports the tests that fail only through the
proxy. Exit status: 0 when there is none, 1 when there is any, 2 when the run itself broke.

Started by scripts/driver-suites.sh (which builds target/debug/pgshroud first). Standard
library only: it makes its own venv (target/suites/venv) with the pinned packages of
integration-tests/suites/requirements.txt and installs psycopg from the snapshot.

The snapshots (unmodified upstream test suites, see their README.md) are read-only in CI, so
each run copies the one it needs to target/suites/src/ and runs pytest there.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import fnmatch
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "target" / "suites"
REQUIREMENTS = REPO / "integration-tests" / "suites" / "requirements.txt"
EXPECTED = REPO / "integration-tests" / "suites" / "expected-differences.txt"
SUPERUSER = "postgres"
PASSWORD = "suites-secret"


@dataclass(frozen=True)
class Part:
    """One pytest invocation of one suite: a name for reports and the paths it runs."""

    suite: str
    name: str
    paths: tuple[str, ...]
    # psycopg's markers to leave out. `slow` (leak checks: ~15 minutes in the cursor files
    # alone) and `timing` (meant to fail on loaded machines) prove little about the protocol
    # that the rest does not; notifications are mostly `slow`, so that part keeps them.
    exclude: str = "not mypy and not slow and not timing"


# The parts that exercise the wire protocol (connection start-up, simple and extended query,
# pipelines, COPY, LISTEN/NOTIFY, prepared statements, pools, cancellation); CI runs these.
PROTOCOL_PARTS = [
    Part("psycopg", "connection", ("tests/test_connection.py", "tests/test_connection_async.py")),
    Part("psycopg", "cursor", ("tests/test_cursor.py", "tests/test_cursor_async.py",
                               "tests/test_cursor_common.py", "tests/test_cursor_common_async.py",
                               "tests/test_cursor_client.py", "tests/test_cursor_client_async.py",
                               "tests/test_cursor_server.py", "tests/test_cursor_server_async.py",
                               "tests/test_cursor_raw.py", "tests/test_cursor_raw_async.py")),
    Part("psycopg", "copy", ("tests/test_copy.py", "tests/test_copy_async.py")),
    Part("psycopg", "pipeline", ("tests/test_pipeline.py", "tests/test_pipeline_async.py")),
    Part("psycopg", "notify", ("tests/test_notify.py", "tests/test_notify_async.py"),
         exclude="not mypy and not timing"),
    Part("psycopg", "prepared", ("tests/test_prepared.py", "tests/test_prepared_async.py")),
    Part("psycopg", "pool", ("tests/pool",)),
    Part("asyncpg", "connect", ("tests/test_connect.py",)),
    Part("asyncpg", "execute", ("tests/test_execute.py", "tests/test_prepare.py")),
    Part("asyncpg", "cursor", ("tests/test_cursor.py", "tests/test_transaction.py")),
    Part("asyncpg", "copy", ("tests/test_copy.py",)),
    Part("asyncpg", "codecs", ("tests/test_codecs.py",)),
    Part("asyncpg", "listeners", ("tests/test_listeners.py",)),
    Part("asyncpg", "pool", ("tests/test_pool.py",)),
    Part("asyncpg", "cancel", ("tests/test_cancellation.py", "tests/test_timeout.py")),
]
# Everything, for a run by hand (with --slow, psycopg's whole suite takes ~18 minutes on 2
# cores when nothing else runs).
ALL_PARTS = [
    Part("psycopg", "all", ("tests",)),
    Part("asyncpg", "all", ("tests",)),
]


def log(msg: str) -> None:
    print(f"driver-suites: {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {seconds}s")


# --------------------------------------------------------------------------------------------
# Environment: the venv and the copied snapshots.


def venv_python() -> Path:
    return TARGET / "venv" / "bin" / "python"


def ensure_venv(suites: Path) -> None:
    """Creates target/suites/venv and installs the pinned packages and the psycopg snapshot;
    does nothing when the stamp says the same requirements and sources are installed."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    for package in ("psycopg/psycopg", "psycopg/psycopg_pool"):
        for path in sorted((suites / package).rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(suites)).encode() + path.read_bytes())
    stamp = digest.hexdigest()
    stamp_file = TARGET / "venv" / ".installed"
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return
    log("creating target/suites/venv (pinned packages, psycopg from the snapshot)")
    shutil.rmtree(TARGET / "venv", ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(TARGET / "venv")], check=True)
    pip = [str(venv_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + ["-r", str(REQUIREMENTS)], check=True)
    psycopg_src = copy_snapshot(suites, "psycopg")
    subprocess.run(
        pip + ["--no-deps", str(psycopg_src / "psycopg"), str(psycopg_src / "psycopg_pool")],
        check=True,
    )
    stamp_file.write_text(stamp)


def copy_snapshot(suites: Path, suite: str) -> Path:
    """A writable copy of one snapshot under target/suites/src (pytest writes caches there)."""
    dest = TARGET / "src" / suite
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(suites / suite, dest)
    for root, dirs, files in os.walk(dest):
        for name in dirs + files:
            p = Path(root) / name
            p.chmod(p.stat().st_mode | 0o200)
    dest.chmod(dest.stat().st_mode | 0o200)
    return dest


# --------------------------------------------------------------------------------------------
# PostgreSQL and pgshroud.


class Cluster:
    """A throwaway PostgreSQL on a free loopback port, run as the `postgres` system user when
    we are root (PostgreSQL refuses to run as root), like integration-tests/src/cluster.rs."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.sock = root / "sock"
        self.log_path = root / "postgres.log"
        self.port = free_port()
        self.bin = find_pg_bin()
        self.as_postgres = os.geteuid() == 0

    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("check", True)
        kw.setdefault("capture_output", True)
        if self.as_postgres:
            pw = pwd.getpwnam(SUPERUSER)
            kw["user"], kw["group"] = pw.pw_uid, pw.pw_gid
            kw["cwd"] = self.root
        return subprocess.run(args, **kw)

    def start(self) -> None:
        self.root.mkdir()
        self.sock.mkdir()
        if self.as_postgres:
            pw = pwd.getpwnam(SUPERUSER)
            for p in (self.root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                   "-E", "UTF8", "--no-locale", "--no-sync"])
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.sock}'",
            "max_connections": "300",
            "max_prepared_transactions": "10",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "jit": "off",
        }
        with open(self.data / "postgresql.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host replication all 127.0.0.1/32 scram-sha-256\n"
        )
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path),
                   "-w", "-t", "60", "start"])
        self.psql("postgres", f"ALTER ROLE {SUPERUSER} PASSWORD '{PASSWORD}'")

    def psql(self, db: str, sql: str) -> None:
        psql = self.bin / "psql" if (self.bin / "psql").exists() else Path("psql")
        self._run([str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.sock),
                   "-p", str(self.port), "-U", SUPERUSER, "-d", db, "-c", sql])

    def create_database(self, name: str) -> None:
        self.psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.psql("postgres", f"CREATE DATABASE {name}")

    def stop(self) -> None:
        if self.data.exists():
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                      check=False)


def find_pg_bin() -> Path:
    """Same order as integration-tests/src/cluster.rs: $PGSHROUD_PG_BIN_DIR, PATH,
    /usr/lib/postgresql/*/bin (newest first)."""
    def ok(d: Path) -> bool:
        return all((d / p).exists() for p in ("initdb", "pg_ctl", "postgres"))

    if os.environ.get("PGSHROUD_PG_BIN_DIR"):
        return Path(os.environ["PGSHROUD_PG_BIN_DIR"])
    initdb = shutil.which("initdb")
    if initdb:
        for d in (Path(initdb).resolve().parent, Path(initdb).parent):
            if ok(d):
                return d
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()],
                      reverse=True)
    for d in versions:
        if ok(d):
            return d
    raise RuntimeError("no initdb/pg_ctl/postgres: run scripts/install-test-deps.sh")


# The proxy runs with rules and a key, so every statement goes through the analyser's
# pre-filter, but the one protected table is one the suites never touch: everything they send
# must pass through unchanged.
CANARY_RULES = """\
[[tables]]
name = "public.pgshroud_suites_canary"
  [[tables.columns]]
  name = "secret"
  type = "text"
"""


class Proxy:
    def __init__(self, root: Path, binary: Path, upstream_port: int):
        self.port = free_port()
        self.log_path = root / "pgshroud.log"
        rules = root / "rules.toml"
        rules.write_text(CANARY_RULES)
        key = root / "master.key"
        key.write_text(base64.b64encode(os.urandom(32)).decode())
        key.chmod(0o600)
        self.args = [str(binary), "serve", "--listen", f"127.0.0.1:{self.port}",
                     "--upstream", f"postgres://127.0.0.1:{upstream_port}?sslmode=disable",
                     "--admin-listen", "off", "--rules", str(rules), "--master-key-file",
                     str(key), "--max-client-connections", "1000"]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log_file, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, "pgshroud")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --------------------------------------------------------------------------------------------
# Running a part and reading its results.


# The pytest processes running now, ended on the way out of an interrupted run.
RUNNING: set[subprocess.Popen] = set()


def stop_running_pytests() -> None:
    for proc in list(RUNNING):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class Outcome:
    ids: set[str] = field(default_factory=set)  # every test id that ran
    passed: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # test id -> first line of the error
    seconds: float = 0.0
    exit_code: int = 0


def run_pytest(part: Part, mode: str, port: int, db: str, src: Path, out_dir: Path,
               timeout: int) -> Outcome:
    junit = out_dir / f"{part.suite}-{part.name}-{mode}.xml"
    log_path = out_dir / f"{part.suite}-{part.name}-{mode}.log"
    env = dict(os.environ)
    # Each run its own cache dir: direct and proxy runs share the source copy at the same time.
    args = [str(venv_python()), "-m", "pytest", "-p", "no:randomly", f"--timeout={timeout}",
            "-rN", "-q", f"--junitxml={junit}", "-o", "junit_family=xunit1",
            "-o", f"cache_dir={out_dir / ('cache-' + mode)}", *part.paths]
    if part.suite == "psycopg":
        env["PSYCOPG_IMPL"] = "python"
        args += ["-m", part.exclude,
                 "--test-dsn", f"host=127.0.0.1 port={port} user={SUPERUSER} "
                 f"password={PASSWORD} dbname={db} sslmode=disable"]
    else:
        args += ["--ignore=tests/test__sourcecode.py"]
        env.update(PGHOST="127.0.0.1", PGPORT=str(port), PGUSER=SUPERUSER,
                   PGPASSWORD=PASSWORD, PGDATABASE=db, PGSSLMODE="disable")
    started = time.monotonic()
    with open(log_path, "wb") as out:
        # Its own process group, so that an interrupted run can end pytest and its children.
        proc = subprocess.Popen(args, cwd=src, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        RUNNING.add(proc)
        try:
            proc.wait()
        finally:
            RUNNING.discard(proc)
    outcome = read_junit(junit)
    outcome.seconds = time.monotonic() - started
    outcome.exit_code = proc.returncode
    return outcome


def read_junit(path: Path) -> Outcome:
    outcome = Outcome()
    if not path.exists():
        return outcome
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        outcome.ids.add(test_id)
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            message = (bad.get("message") or bad.text or "").strip().splitlines()
            outcome.failed[test_id] = message[0][:200] if message else ""
        elif case.find("skipped") is not None:
            outcome.skipped += 1
        else:
            outcome.passed += 1
    return outcome


PROGRESS_SECONDS = 30


PROGRESS_LINE = re.compile(r"^([.FEsxX]+)\s*(\[\s*(\d+)%\])?$")


def progress(out_dir: Path, part: Part, mode: str) -> str:
    """How far a running pytest -q is: tests done (its progress characters) and percent."""
    try:
        text = (out_dir / f"{part.suite}-{part.name}-{mode}.log").read_text(errors="replace")
    except OSError:
        return "starting"
    done, percent = 0, ""
    for line in text.splitlines():
        if m := PROGRESS_LINE.match(line.strip()):
            done += len(m.group(1))
            percent = f" ({m.group(3)}%)" if m.group(3) else percent
    return f"{done} tests{percent}"


@dataclass
class Expected:
    """A proxy-only failure accepted for a stated reason (see EXPECTED's header)."""

    kind: str  # "gap", "hop" or "flaky"
    pattern: str  # suite:test-id glob
    error: str  # text the failure's message must contain
    why: str
    seen: int = 0

    def matches(self, key: str, error: str) -> bool:
        return fnmatch.fnmatchcase(key, self.pattern) and self.error in error


def read_expected() -> list[Expected]:
    entries = []
    for number, line in enumerate(EXPECTED.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 4 or fields[0] not in ("gap", "hop", "flaky"):
            raise SystemExit(
                f"{EXPECTED}:{number}: want `gap|hop|flaky | suite:glob | error | why`")
        entries.append(Expected(*fields))
    return entries


def summary(o: Outcome) -> str:
    return f"{o.passed} passed, {len(o.failed)} failed, {o.skipped} skipped in {o.seconds:.0f}s"


def main() -> int:
    known = " ".join(f"{p.suite}:{p.name}" for p in PROTOCOL_PARTS + ALL_PARTS)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=f"parts: {known}")
    parser.add_argument("--suites", type=Path, default=REPO.parent / "shared/testdata/suites",
                        help="folder of the suite snapshots (default: ../shared/testdata/suites)")
    # Where scripts/driver-suites.sh's `cargo build` put it (CARGO_TARGET_DIR, as cargo reads it).
    cargo_target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    parser.add_argument("--pgshroud", type=Path, default=cargo_target / "debug/pgshroud")
    parser.add_argument("--all", action="store_true", help="whole suites, not the protocol parts")
    parser.add_argument("--slow", action="store_true",
                        help="psycopg's slow and timing tests too (leak checks: far longer)")
    parser.add_argument("--timeout", type=int, default=60, help="per-test timeout, seconds")
    parser.add_argument("parts", nargs="*", help="parts to run, e.g. psycopg:copy asyncpg:pool")
    opts = parser.parse_args()

    parts = ALL_PARTS if opts.all else PROTOCOL_PARTS
    if opts.parts:
        parts = [p for p in PROTOCOL_PARTS + ALL_PARTS if f"{p.suite}:{p.name}" in opts.parts]
        if not parts:
            parser.error(f"no such part; known: {known}")
    if opts.slow:
        parts = [dataclasses.replace(p, exclude="not mypy") for p in parts]
    if not (opts.suites / "README.md").exists():
        parser.error(f"{opts.suites} holds no suite snapshots (README.md missing)")
    if not opts.pgshroud.exists():
        parser.error(f"{opts.pgshroud} missing: cargo build -p pgshroud")

    TARGET.mkdir(parents=True, exist_ok=True)
    ensure_venv(opts.suites)
    sources = {s: copy_snapshot(opts.suites, s) for s in sorted({p.suite for p in parts})}
    root = Path(tempfile.mkdtemp(prefix="pgshroud-suites-"))
    root.chmod(0o711)  # the clusters' folders inside belong to the postgres user when we are root
    out_dir = TARGET / "results"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    # One cluster per side: some tests create databases or roles of fixed names, and the two
    # sides run at the same time.
    clusters = {"direct": Cluster(root / "direct"), "proxy": Cluster(root / "proxy")}
    proxy = Proxy(root, opts.pgshroud, clusters["proxy"].port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(2))
    try:
        for cluster in clusters.values():
            cluster.start()
        proxy.start()
        log(f"PostgreSQL on {clusters['direct'].port} (direct) and {clusters['proxy'].port} "
            f"(behind pgshroud on {proxy.port}); logs in {root}, results in {out_dir}")
        return run_parts(parts, clusters, proxy, sources, out_dir, opts.timeout)
    finally:
        stop_running_pytests()
        proxy.stop()
        for cluster in clusters.values():
            cluster.stop()
        if os.environ.get("KEEP_SUITES_TMP"):
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def run_parts(parts, clusters, proxy, sources, out_dir, timeout) -> int:
    expected = read_expected()
    ran: set[str] = set()  # suite:test-id of every test run through the proxy
    proxy_only: list[tuple[str, str]] = []
    total_started = time.monotonic()
    for i, part in enumerate(parts, 1):
        label = f"[{i}/{len(parts)}] {part.suite}:{part.name}"
        log(f"{label}: running direct and through pgshroud at once ({' '.join(part.paths)})")
        results: dict[str, Outcome] = {}

        def one(mode: str, port: int) -> None:
            db = f"{part.suite}_{part.name}"
            clusters[mode].create_database(db)
            results[mode] = run_pytest(part, mode, port, db, sources[part.suite], out_dir,
                                       timeout)

        threads = [
            threading.Thread(target=one, args=("direct", clusters["direct"].port), daemon=True),
            threading.Thread(target=one, args=("proxy", proxy.port), daemon=True),
        ]
        for t in threads:
            t.start()
        started = time.monotonic()
        next_report = started + PROGRESS_SECONDS
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(max(0.0, next_report - time.monotonic()))
            next_report += PROGRESS_SECONDS
            if any(t.is_alive() for t in threads):
                done = ", ".join(f"{mode} {progress(out_dir, part, mode)}"
                                 for mode in ("direct", "proxy"))
                log(f"{label}: {done} ({time.monotonic() - started:.0f}s)")
        direct, via = results["direct"], results["proxy"]
        log(f"{label}: direct {summary(direct)}; proxy {summary(via)}")
        for mode, o in results.items():
            if o.passed + o.skipped + len(o.failed) == 0:
                log(f"{label}: {mode} ran no test (pytest exit {o.exit_code}): see "
                    f"{out_dir}/{part.suite}-{part.name}-{mode}.log")
                proxy_only.append((f"{part.suite}:{part.name}", f"{mode} ran no test"))
        ran.update(f"{part.suite}:{test_id}" for test_id in via.ids)
        for test_id, error in sorted(via.failed.items()):
            key = f"{part.suite}:{test_id}"
            if test_id in direct.failed:
                continue
            entry = next((e for e in expected if e.matches(key, error)), None)
            if entry:
                entry.seen += 1
                continue
            log(f"  PROXY-ONLY FAILURE {key}: {error}")
            proxy_only.append((key, error))
        for test_id in sorted(set(direct.failed) - set(via.failed)):
            log(f"  (fails only directly) {part.suite}:{test_id}")
        if not proxy.alive():
            log("pgshroud exited during the run: see its log")
            proxy_only.append(("pgshroud", "exited"))
            break
    for entry in expected:
        if entry.seen:
            log(f"expected difference ({entry.kind}), {entry.seen} test(s) {entry.pattern}: "
                f"{entry.why}")
        elif entry.kind == "gap" and any(fnmatch.fnmatchcase(k, entry.pattern) for k in ran):
            # A gap that no longer shows must leave the list, or it would hide the next one.
            log(f"expected difference no longer seen: remove `{entry.pattern}` from {EXPECTED}")
            proxy_only.append((entry.pattern, "listed as a gap but passes now"))
    log(f"done in {time.monotonic() - total_started:.0f}s: "
        f"{len(proxy_only)} unexpected proxy-only failure(s)")
    for key, error in proxy_only:
        print(f"  {key}: {error}")
    return 1 if proxy_only else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        log(f"{' '.join(map(str, e.cmd))} failed ({e.returncode}): {stderr or ''}")
        sys.exit(2)
    except RuntimeError as e:
        log(str(e))
        sys.exit(2)
