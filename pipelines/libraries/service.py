"""The build service: one warm Spark driver per lake that ``govlake build`` hands its builds to.

Why: a build in a fresh process spends a quarter of its time warming the JVM
(starting it, loading classes, compiling the hot code, generating Spark's
query classes). Day 4's build at scale 1.0 took 170 s as the first build of a
process and 125 s as the second (docs/benchmarks.md). Like Trino, the service
is a local process the project starts (``govlake builder up``), one per lake,
and ``govlake build`` builds through it when it is up, in its own process when
it is not (or with ``--in-process``). Spark Connect's server would be the
off-the-shelf driver, but the build uses what it does not offer (the
SparkContext's checkpoints, ``newSession``, Delta's merge builder, the JVM
gateway), so the service runs the same ``build_ready`` a process runs.

The contract:

- It listens on a Unix socket under the lake's state folder, usable by its
  owner only (a 0600 socket in a 0700 folder). The client's user is read
  from the socket (``SO_PEERCRED``), never from the request, and is the one
  recorded (the service log; ``--accept-code-change`` without ``--by``).
- One build at a time, in the order asked; status answers while one runs.
  Each build gets Spark sessions of its own (``newSession``), so what one
  build sets (its commit metadata) never reaches the next.
- It builds only for a client whose fingerprint equals its own: the build
  code, specs, contracts and suites on disk, the installed distributions and
  the settings, taken when it started. A service that would run other code
  or settings says so, takes no more builds and ends once those it has are
  done; the client then starts a new one (``build_through_service``).
- A client that goes away (Ctrl-C) cancels its build: its Spark jobs are
  cancelled until it has ended, so the libraries being built fail and no
  other starts; what was committed stays (``_cancel``). ``govlake builder
  down`` stops the service and its JVM, a running build with them.
- Before each build Delta's cached table snapshots are dropped (other
  processes write the lake between builds); after it, the build's cached
  and checkpointed data are let go, and an idle service's heap is given
  back within minutes (``_let_go``, ``IDLE_GC``).

The wire protocol is one JSON object per line. A request is
``{"op": "status"}`` or ``{"op": "build", "fingerprint", "libraries",
"full", "accept_code"}``; the service answers a build with ``{"log": ...}``
lines, then one of ``{"done": {"results", "skipped"}}``,
``{"refused": ...}``, ``{"error", "traceback"}`` or ``{"stale": ...}``.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import logging
import os
import queue
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.processes import alive, running_pid, service_environment, stop_process_group
from pipelines.settings import PROJECT_ROOT, Settings, get_settings, settings_environment, utc_now

log = logging.getLogger(__name__)

# Environment that changes the driver without being a setting.
_DRIVER_ENVIRONMENT = ("JAVA_HOME", "SPARK_HOME", "PYSPARK_PYTHON", "PYSPARK_SUBMIT_ARGS")
# An idle service's JVM gets a full collection after every minute without one (G1's periodic
# collection, JEP 346; the concurrent kind reclaims nothing in a JVM that allocates nothing), and G1
# gives back the heap it does not use. The collection right after a build finds its checkpoints
# still held: Spark's cleaner removes them only once a collection has found them unreachable.
# Measured after day 4's build at scale 1.0: the JVM at 8.2 GB RSS after two collections two
# seconds apart (6.8 GB of heap committed, 2.3 GB in use), 7.4 GB three minutes later with periodic
# concurrent cycles; with periodic full collections 1.1 GB after two and a half minutes (0.4 GB
# committed, 0.1 GB live). During a build collections are frequent, so none of these run.
# glibc gives each thread that allocates its own arena (up to 8 per core), and
# a JVM's many threads each keep theirs: off-heap RSS that grows with every
# build. Two arenas is the usual setting for long-lived JVMs; an environment
# that sets MALLOC_ARENA_MAX itself wins (service_environment keeps it).
SERVICE_MALLOC = {"MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
IDLE_GC = ("-XX:G1PeriodicGCInterval=60000", "-XX:-G1PeriodicGCInvokesConcurrent")
# Sockets' paths are limited to 107 bytes (sun_path); a deeper lake's socket goes to a private temp folder.
_SOCKET_PATH_LIMIT = 100


class ServiceError(RuntimeError):
    """The build service could not be started or reached, or its build failed (the message says which)."""


@dataclass(frozen=True)
class ServicePaths:
    folder: Path        # <lake>/state/build-service: pid file and log
    socket: Path
    pid_file: Path
    log_file: Path


def service_paths(settings: Settings) -> ServicePaths:
    """Where a lake's build service keeps its pid, log and socket (local lakes only)."""
    folder = settings.local_lake_path("state", "build-service")
    sock = folder / "socket"
    if len(str(sock)) > _SOCKET_PATH_LIMIT:
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
        sock = Path(tempfile.gettempdir()) / f"govlake-{os.getuid()}" / f"build-{digest}.sock"
    return ServicePaths(folder, sock, folder / "pid", folder / "service.log")


def _private_folder(folder: Path) -> None:
    """``folder`` made if missing, owned by this user and closed to others (0700); refused otherwise:
    a folder someone else made could hold their socket in place of ours."""
    folder.mkdir(parents=True, exist_ok=True)
    info = folder.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ServiceError(f"{folder} is not a folder (a link, or a file): the build service's socket is not put there")
    if info.st_uid != os.getuid():
        raise ServiceError(f"{folder} belongs to uid {info.st_uid}, not to this user: the build service's "
                           "socket is not put where another user could replace it")
    os.chmod(folder, 0o700)


# ---------------------------------------------------------------------- fingerprint
def _tree_digest(digest, root: Path, pattern: str) -> None:
    if not root.exists():
        return
    for path in sorted(root.rglob(pattern)):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")


def fingerprint(settings: Settings) -> dict[str, str]:
    """What a build's outcome depends on besides the lake, as a digest per
    part: the package's code, the specs, contracts and suites on disk, the
    installed distributions and interpreter, the settings and the driver's
    environment. Equal fingerprints: a build through the service computes
    what a build in the client's own process would. (The catalog folder is
    left out: builds do not read it, and approving a grant writes to it.)"""
    from importlib.metadata import distributions

    def digest_of(fill) -> str:
        digest = hashlib.sha256()
        fill(digest)
        return digest.hexdigest()[:20]

    def declarations(digest) -> None:
        for folder in (settings.schemas_dir, settings.quality_dir):
            digest.update(str(folder).encode())
            _tree_digest(digest, Path(folder), "*")

    # the interpreter's own paths: the working folder ("" first on sys.path) is not an installation
    paths = [entry for entry in sys.path if entry and Path(entry).resolve() != Path.cwd().resolve()]
    installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in distributions(path=paths))
    return {
        "code": digest_of(lambda d: _tree_digest(d, PROJECT_ROOT / "pipelines", "*.py")),
        "specs, contracts and suites": digest_of(declarations),
        "installed packages": digest_of(lambda d: d.update(
            "\n".join([sys.executable, sys.version, *installed]).encode())),
        "settings": digest_of(lambda d: d.update(
            json.dumps(dataclasses.asdict(settings), sort_keys=True, default=str).encode())),
        "environment": digest_of(lambda d: d.update(
            json.dumps({name: os.environ.get(name) for name in _DRIVER_ENVIRONMENT}, sort_keys=True).encode())),
    }


def differences(ours: dict[str, str], theirs: object) -> list[str]:
    """The parts of two fingerprints that differ (all, for a malformed one)."""
    if not isinstance(theirs, dict):
        return list(ours)
    return [part for part, value in ours.items() if theirs.get(part) != value]


# ---------------------------------------------------------------------- the server
@dataclass
class _Job:
    connection: socket.socket
    request: dict
    user: str
    peer_pid: int
    asked_at: str = field(default_factory=lambda: utc_now().isoformat(timespec="seconds"))
    gone: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    on_gone: Callable[[], None] = lambda: None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: dict) -> None:
        """One line to the client. A client that went away, or that reads nothing for a minute (a
        stopped process), is gone: its build is cancelled, and no other client waits on it."""
        data = (json.dumps(message, default=str, ensure_ascii=False) + "\n").encode()
        with self._lock:
            if self.gone.is_set():
                return
            try:
                self.connection.sendall(data)
            except OSError:             # the socket's send timeout included
                self.gone.set()
                self.on_gone()

    def wait_until_gone(self) -> None:
        """Block until the client closes its end (it sends nothing after its request)."""
        while not self.gone.is_set():
            try:
                if not self.connection.recv(1):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        if not self.gone.is_set():
            self.gone.set()
            self.on_gone()


class _ForwardedLog(logging.Handler):
    """The build's log records (warnings and up, as the CLI shows them) sent to its client too."""

    def __init__(self, job: _Job) -> None:
        super().__init__(logging.WARNING)
        self.job = job

    def emit(self, record: logging.LogRecord) -> None:
        self.job.send({"log": self.format(record)})


def _peer(connection: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end, from the kernel."""
    pid, uid, _gid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
    return pid, uid


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


class _Cancelled(Exception):
    """The build's client went away, or the service is stopping."""


class BuildService:
    """The serving process (``serve``): an acceptor thread per connection
    answers status and queues builds; the main thread runs them, one at a
    time."""

    def __init__(self, settings: Settings, spark, taken: dict[str, str]) -> None:
        self.settings = settings
        self.spark = spark
        self.fingerprint = taken
        self.started_at = utc_now().isoformat(timespec="seconds")
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.running: _Job | None = None
        self.lock = threading.Lock()
        self.retiring: str | None = None    # why no more builds are taken
        self.stopping = False
        self.builds = 0

    # the acceptor's side
    def status(self) -> dict:
        running = self.running
        return {"pid": os.getpid(), "started_at": self.started_at, "builds": self.builds,
                "lake": self.settings.home, "queued": self.jobs.qsize(), "retiring": self.retiring,
                "building": None if running is None else {"user": running.user, "since": running.asked_at,
                                                          "libraries": running.request.get("libraries")}}

    def accept(self, listener: socket.socket) -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError as exc:
                if listener.fileno() == -1:     # the listener was closed: the service ends
                    return
                log.warning("accepting a connection failed (%s); going on", exc)
                time.sleep(0.5)
                continue
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _client_gone(self, job: _Job) -> None:
        """A client went away: its running build is cancelled."""
        if self.running is job:
            log.info("the client of the running build went away: cancelling it")
            self._cancel(job)

    def _cancel(self, job: _Job) -> None:
        """Cancel ``job``'s build: its Spark jobs, and every job it starts after, until it has ended.
        Each library being built then fails at its next Spark action, and no other starts (a failed
        library stops the run, as in ``run_by_dependencies``); what is committed stays, and a library
        cut off mid-way is built in full next time, as after a build process that was killed. Not an
        interrupt of the main thread: one that lands inside a py4j call leaves the gateway's
        connection broken, and the service with it (seen in a test run)."""
        job.cancelled = True

        def keep_cancelling() -> None:
            while self.running is job:
                try:
                    self.spark.sparkContext.cancelAllJobs()
                except Exception:       # noqa: BLE001 - the driver is gone: nothing runs any more
                    return
                time.sleep(0.5)

        threading.Thread(target=keep_cancelling, daemon=True, name="govlake-cancel").start()

    def _answer(self, connection: socket.socket) -> None:
        peer_pid, uid = _peer(connection)
        if uid != os.getuid() and uid != 0:
            # the socket's mode already keeps others out; a refusal is kept in the log all the same
            log.warning("refused a connection from uid %s (pid %s)", uid, peer_pid)
            connection.close()
            return
        connection.settimeout(30)
        try:
            request = json.loads(connection.makefile("rb").readline(1 << 20) or b"null")
        except Exception:               # noqa: BLE001 - garbage, too deep, too slow: no request
            connection.close()
            return
        connection.settimeout(60)       # sends to a client that reads nothing for a minute fail
        job = _Job(connection, request if isinstance(request, dict) else {}, _user_name(uid), peer_pid)
        job.on_gone = lambda: self._client_gone(job)
        op = job.request.get("op")
        if op == "status":
            job.send({"status": self.status()})
            connection.close()
            return
        if op != "build" or not isinstance(job.request.get("fingerprint"), dict):
            job.send({"error": f"not a request: {op!r} (status, or build with a fingerprint)"})
            connection.close()
            return
        with self.lock:             # no retirement between the check and the queueing (serve_forever)
            differ = differences(self.fingerprint, job.request["fingerprint"])
            if self.retiring is None and differ:
                self.retiring = f"a client's {', '.join(differ)} differ from those it was started with"
                log.info("retiring: a client (%s, pid %s) has other %s", job.user, peer_pid, ", ".join(differ))
            stale = self.retiring
            if stale is None:
                self.jobs.put(job)
        if stale is not None:
            job.send({"stale": stale})
            connection.close()
            return
        log.info("build asked by %s (pid %s): libraries %s, full %s", job.user, peer_pid,
                 job.request.get("libraries") or "all", bool(job.request.get("full")))
        running = self.running
        if running is not None and running is not job:
            job.send({"log": f"waiting for the build service: it is building for {running.user} "
                             f"(asked at {running.asked_at} UTC)"})
        job.wait_until_gone()

    # the main thread's side
    def serve_forever(self) -> None:
        while not self.stopping:
            with self.lock:
                if self.retiring is not None and self.running is None and self.jobs.empty():
                    log.info("retired: %s", self.retiring)
                    return
            try:
                job = self.jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                if not job.gone.is_set():
                    self._build(job)
            finally:
                try:                            # ends the acceptor thread's wait for the client's end too
                    job.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                job.connection.close()

    def _build(self, job: _Job) -> None:
        self.running = job
        forwarded = _ForwardedLog(job)
        logging.getLogger("pipelines").addHandler(forwarded)
        started = time.monotonic()
        outcome = "failed"
        try:
            from pipelines.libraries.build import BuildRefused, build_ready

            self.spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
            request = job.request
            accept = request.get("accept_code")
            if job.gone.is_set() or self.stopping:     # left (or stopping) before the build began
                raise _Cancelled
            results, skipped = build_ready(
                self.spark.newSession, request.get("libraries") or None, self.settings,
                full=bool(request.get("full")),
                accept_code=(accept[0], accept[1] or job.user) if accept else None, user=job.user)
            if job.cancelled:
                raise _Cancelled
            job.send({"done": {"results": results, "skipped": [check.as_dict() for check in skipped]}})
            outcome = "done"
        except BuildRefused as exc:
            job.send({"refused": str(exc)})
            outcome = "refused"
        except _Cancelled:
            job.send({"error": "the build was cancelled" + (" (the service is stopping)" if self.stopping else "")})
            outcome = "cancelled"
        except Exception as exc:        # noqa: BLE001 - the client gets the error; the service goes on
            if job.cancelled:           # the cancelled jobs' errors, as the client wanted
                job.send({"error": "the build was cancelled"
                                   + (" (the service is stopping)" if self.stopping else "")})
                outcome = "cancelled"
                return
            notes = "".join(f"\n{note}" for note in getattr(exc, "__notes__", []))
            job.send({"error": f"{type(exc).__name__}: {exc}{notes}", "traceback": traceback.format_exc()})
            log.exception("the build asked by %s failed", job.user)
            if not self._driver_alive():
                self.retiring = "its Spark driver stopped"
                log.error("retiring: its Spark driver stopped")
        finally:
            logging.getLogger("pipelines").removeHandler(forwarded)
            self.running = None
            self.builds += 1
            log.info("build for %s %s in %.1f s", job.user, outcome, time.monotonic() - started)
            self._let_go()

    def _driver_alive(self) -> bool:
        try:
            return not self.spark.sparkContext._jsc.sc().isStopped()
        except Exception:               # noqa: BLE001 - no answer from the JVM: not alive
            return False

    def _let_go(self) -> None:
        """The build's cached data and Delta's table snapshots released, then a collection on both
        sides (Python's first: py4j then lets the JVM's objects go), which hands Spark's cleaner the
        build's unreachable checkpoints, broadcasts and shuffles. What they held is freed, and the
        heap given back, by G1's periodic collection of an idle JVM (``IDLE_GC``)."""
        try:
            self.spark.catalog.clearCache()
            self.spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
            gc.collect()
            self.spark._jvm.java.lang.System.gc()
        except Exception as exc:        # noqa: BLE001 - the next build still runs; the log says why
            log.warning("could not release the last build's data: %s", exc)
        _release_native_memory()

    def stop(self, *_signal) -> None:
        """SIGTERM: no more builds, and a running one cancelled (``_cancel``). (``govlake builder
        down`` signals the whole process group, so the Spark JVM is ending too.)"""
        self.stopping = True
        self.retiring = self.retiring or "it is stopping"
        running = self.running
        if running is not None:
            self._cancel(running)


def _release_native_memory() -> None:
    """Hand the memory this process's allocators keep for reuse back to the
    system: Arrow's pool (mimalloc in pyarrow's wheels keeps the pages of the
    tables a build read through delta-rs) and glibc's heap (``malloc_trim``).
    An idle service then holds what it uses, not its largest build's peak."""
    import ctypes
    import ctypes.util

    import pyarrow

    pyarrow.default_memory_pool().release_unused()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):     # not glibc: nothing to trim
        pass


def serve(settings: Settings | None = None) -> None:
    """Run the build service of ``settings``' lake in this process until
    SIGTERM, or until it retires (a client with other code or settings)."""
    from pipelines.spark import build_spark_session

    settings = settings or get_settings()
    paths = service_paths(settings)
    _private_folder(paths.folder)
    _private_folder(paths.socket.parent)
    taken = fingerprint(settings)       # before the session: what the client sees, not what starting Spark sets
    spark = build_spark_session(settings, app_name="govlake-build-service", java_options=IDLE_GC)
    service = BuildService(settings, spark, taken)
    paths.socket.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)
    try:
        listener.bind(str(paths.socket))
    finally:
        os.umask(old_mask)
    os.chmod(paths.socket, 0o600)
    listener.listen(16)
    signal.signal(signal.SIGTERM, service.stop)
    threading.Thread(target=service.accept, args=(listener,), daemon=True, name="govlake-accept").start()
    log.info("build service for %s listening on %s (pid %s)", settings.home, paths.socket, os.getpid())
    try:
        service.serve_forever()
    finally:
        listener.close()
        paths.socket.unlink(missing_ok=True)
        if running_pid(paths.pid_file) == os.getpid():
            paths.pid_file.unlink(missing_ok=True)
        spark.stop()


# ---------------------------------------------------------------------- the client
class ServiceUnavailable(ServiceError):
    """No build service could be had for this build (it would not start, or one that runs does not
    answer or does not end): the caller builds in its own process."""


def _is_service(pid: int) -> bool:
    """Whether ``pid`` is a build service's process (not another that got a stale pid file's number)."""
    try:
        return b"pipelines.libraries.service" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _service_pid(settings: Settings) -> int | None:
    """The pid of the lake's running build service, or None: none runs, its pid file names another
    process, or the lake's service folder is another user's (they build in their own process)."""
    if not settings.lake_is_local:
        return None
    try:
        pid = running_pid(service_paths(settings).pid_file)
    except (PermissionError, ValueError):
        return None
    return pid if pid is not None and _is_service(pid) else None


def _connect(settings: Settings, timeout: float | None) -> socket.socket | None:
    """A connection to the lake's build service, checked to be the process its pid file names and
    to run as the folder's owner; None otherwise."""
    pid = _service_pid(settings)
    if pid is None:
        return None
    paths = service_paths(settings)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(timeout)
    try:
        connection.connect(str(paths.socket))
        peer_pid, peer_uid = _peer(connection)
        owner = paths.folder.stat().st_uid
    except OSError:
        connection.close()
        return None
    if (peer_pid, peer_uid) != (pid, owner):
        log.warning("%s is served by pid %s (uid %s), not by the build service (pid %s, uid %s): not used",
                    paths.socket, peer_pid, peer_uid, pid, owner)
        connection.close()
        return None
    return connection


def _ask_status(settings: Settings, timeout: float = 10) -> dict | None:
    connection = _connect(settings, timeout)
    if connection is None:
        return None
    with connection:
        try:
            connection.sendall(b'{"op": "status"}\n')
            line = connection.makefile("rb").readline()
            return json.loads(line).get("status") if line else None
        except (OSError, ValueError):
            return None


def service_status(settings: Settings | None = None) -> dict:
    """Whether ``settings``' lake has a build service running and answering, and what it is doing."""
    settings = settings or get_settings()
    if not settings.lake_is_local:
        return {"running": False, "answering": False, "pid": None, "lake": settings.home, "socket": None,
                "log": None}
    paths = service_paths(settings)
    pid = _service_pid(settings)
    answer = _ask_status(settings) if pid is not None else None
    return {"running": pid is not None, "answering": answer is not None, "pid": pid, "lake": settings.home,
            "socket": str(paths.socket), "log": str(paths.log_file)} | (answer or {})


def start_service(settings: Settings | None = None, wait_seconds: float = 300,
                  retiring_wait_seconds: float = 3600) -> dict:
    """Start the lake's build service (idempotent) and return its status once it answers. A service
    that is retiring is waited for (it finishes the builds it took, another user's maybe) up to
    ``retiring_wait_seconds``; one that runs without answering is left alone. Neither is ever
    stopped here: ``ServiceUnavailable`` says why instead."""
    from pipelines.lake.paths import state_lock

    settings = settings or get_settings()
    if not settings.lake_is_local:
        raise ServiceError(f"the build service needs a local lake; {settings.home} is not one")
    if not settings.local_lake_path().is_dir():
        raise ServiceError(f"there is no lake at {settings.home} to build: ingest a delivery first "
                           "(or set GOVLAKE_HOME)")
    paths = service_paths(settings)
    with state_lock("build-service", settings):
        status = service_status(settings)
        if status["answering"] and not status.get("retiring"):
            return status
        if status["running"]:
            if not _wait_for_end(status["pid"], retiring_wait_seconds if status["answering"] else 30):
                raise ServiceUnavailable(
                    f"the build service (pid {status['pid']}) " + (
                        f"is still finishing its builds before it retires ({status.get('retiring')})"
                        if status["answering"] else "runs but does not answer")
                    + f"; `govlake builder down` stops it (log: {paths.log_file})")
        _private_folder(paths.folder)
        offset = paths.log_file.stat().st_size if paths.log_file.exists() else 0
        with paths.log_file.open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "pipelines.libraries.service"], cwd=PROJECT_ROOT,
                env=service_environment({**SERVICE_MALLOC, **settings_environment(settings)}),
                stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        written = paths.pid_file.with_name("pid.new")
        written.write_text(str(process.pid))
        written.replace(paths.pid_file)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                paths.pid_file.unlink(missing_ok=True)
                tail = paths.log_file.read_bytes()[offset:].decode(errors="replace")[-3000:]
                raise ServiceUnavailable(f"the build service exited with {process.returncode} while starting; "
                                         f"its log ({paths.log_file}) ends:\n{tail}")
            status = service_status(settings)
            if status["answering"]:
                return status
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGKILL)      # the one this call started, and only it
        process.wait()
        paths.pid_file.unlink(missing_ok=True)
        raise ServiceUnavailable(f"the build service did not answer within {wait_seconds:.0f} s "
                                 f"(log: {paths.log_file})")


def stop_service(settings: Settings | None = None) -> bool:
    """Stop the lake's build service (a running build is cancelled first). False if none ran; a
    pid file naming another process is removed, and that process left alone."""
    settings = settings or get_settings()
    if not settings.lake_is_local:
        return False
    paths = service_paths(settings)
    if _service_pid(settings) is None:
        if paths.pid_file.exists():
            paths.pid_file.unlink(missing_ok=True)
        return False
    return stop_process_group(paths.pid_file, grace_seconds=60)


def _wait_for_end(pid: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for process ``pid`` to end; whether it did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.5)
    return not alive(pid)


@dataclass
class ServiceBuild:
    results: list[dict]
    skipped: list        # Readiness
    pid: int


def build_through_service(settings: Settings | None, libraries: list[str] | None, full: bool,
                          accept_code: tuple[str, str | None] | None,
                          echo: Callable[[str], None] = lambda line: None) -> ServiceBuild | None:
    """``build_ready`` run by the lake's build service, or None when no
    service is up for the lake (the caller builds in its own process).
    A service running other code or settings retires and a new one is
    started for this build; when none can be had (it will not start, the
    old one does not end, the new one refuses the build too), None, with
    the reason on ``echo``. Raises ``BuildRefused`` as ``build_ready``
    does, ``ServiceError`` with the service's message when the build failed
    or the service ended without an answer (its build is not run again
    here); the service's warnings go to ``echo`` as they come. A
    KeyboardInterrupt here closes the connection, which cancels the build."""
    from pipelines.libraries.build import BuildRefused, Readiness

    settings = settings or get_settings()
    if _service_pid(settings) is None:
        return None
    request = {"op": "build", "fingerprint": fingerprint(settings), "libraries": libraries, "full": full,
               "accept_code": list(accept_code) if accept_code else None}
    stale = ""
    for attempt in range(2):
        connection = _connect(settings, timeout=10)
        if connection is None:
            return None
        pid = _peer(connection)[0]
        with connection:
            connection.sendall((json.dumps(request) + "\n").encode())
            connection.settimeout(None)
            reader = connection.makefile("rb")
            for line in reader:
                message = json.loads(line)
                if "log" in message:
                    echo(message["log"])
                elif "done" in message:
                    done = message["done"]
                    return ServiceBuild(done["results"],
                                        [Readiness(r["library"], r["missing_feeds"], r["missing_libraries"])
                                         for r in done["skipped"]], pid or 0)
                elif "refused" in message:
                    raise BuildRefused(message["refused"])
                elif "error" in message:
                    raise ServiceError(f"the build service's build failed: {message['error']}")
                elif "stale" in message:
                    stale = message["stale"]
                    break
            else:
                raise ServiceError(f"the build service (pid {pid}) ended without an answer; its log: "
                                   f"{service_paths(settings).log_file}")
        if attempt == 0:
            echo(f"the build service (pid {pid}) is retiring ({stale}): starting a new one")
            try:
                start_service(settings)
            except ServiceError as exc:
                echo(f"no build service for this build ({exc}): building in this process")
                return None
    echo(f"the build service started for this build refused it ({stale}): building in this process")
    return None


if __name__ == "__main__":
    # the service's own lines and the build's (as `govlake -v build` shows them); others' warnings
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("__main__", "pipelines"):
        logging.getLogger(name).setLevel(logging.INFO)
    serve()
