"""Launcher for a real single-node Apache Kafka broker (KRaft), without Docker.

The broker is the Apache Kafka server itself: its jars come from Maven Central
through ``deploy/kafka/pom.xml`` (fetched once into a cache directory), and it runs
as ``java kafka.Kafka server.properties`` in combined broker+controller mode. It is
the default broker of the demo and of every integration test. Both JVMs (the
storage formatter and the broker) reuse class-data-sharing archives kept next to
the jars, so a start after the first takes a few seconds.

The broker process is tied to its launcher: it gets ``SIGTERM`` when the launching
thread dies (Linux ``PR_SET_PDEATHSIG``), and an ``atexit`` hook stops it when the
interpreter exits normally, so no test run or demo leaves a JVM behind.

``LocalKafka(..., secure=True)`` adds two listeners for testing the clients'
security settings: ``SASL_SSL`` with SCRAM-SHA-512 and ``SSL`` requiring a client
certificate. Their throw-away CA and certificates are made with ``openssl`` in the
data dir at every start, the SCRAM users are written into the metadata log when
it is formatted (``--add-scram``). The default start makes none of this.

The files the broker needs before it starts (jars, ``server.properties``,
certificates, SCRAM arguments) are made by :mod:`pipeline.tools.broker_files`;
this module runs the processes.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from pipeline.errors import BrokerError
from pipeline.tools.broker_files import (
    KAFKA_VERSION,
    LOG_CONFIG,
    LOG_TAIL_LINES,
    SCRAM_MECHANISM,
    SecureListeners,
    TlsFiles,
    default_cache_dir,
    fetch_kafka,
    make_tls_files,
    output_tail,
    random_cluster_id,
    scram_arguments,
    server_properties,
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _another_port(taken: set[int]) -> int:
    while (port := free_port()) in taken:
        pass
    return port


def _file_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return output_tail(path.read_text(encoding="utf-8", errors="replace"), lines)
    except OSError:
        return f"(no log at {path})"


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _die_with_parent(parent_pid: int) -> None:
    """``preexec_fn``: ask Linux to SIGTERM the broker when its launcher dies.

    The signal fires when the *thread* that forked exits, so start brokers from a
    thread that lives as long as the broker should (the main thread, normally).
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    # The launcher may have died between fork and prctl; then nobody would signal us.
    if os.getppid() != parent_pid:
        os._exit(1)


def _java_key() -> str:
    """Identifies the installed JVM: a class archive only fits the JVM that wrote it."""
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java is not on PATH; the Kafka broker needs Java 17 or newer")
    real = os.path.realpath(java)
    stamp = f"{real}:{os.stat(real).st_mtime_ns}"
    return hashlib.sha1(stamp.encode(), usedforsecurity=False).hexdigest()[:10]


class _ClassArchive:
    """A JVM class-data-sharing archive of the classes one Kafka tool loads.

    The first run records the loaded classes at JVM exit (``ArchiveClassesAtExit``,
    into a temporary name that :meth:`keep` renames only after a clean exit); later
    runs map that archive instead of parsing the jars again, which cuts the JVM's
    start on a small machine by a third or more. A stale or mismatched archive is
    ignored by the JVM (``-Xshare:auto``), never fatal.
    """

    def __init__(self, libs: Path, tool: str) -> None:
        folder = libs.parent / "cds"
        folder.mkdir(exist_ok=True)
        self.path = folder / f"{tool}-{_java_key()}.jsa"
        self._recording: Path | None = None
        for orphan in folder.glob(f"{tool}-*.tmp"):
            # Left by a launcher that died while its JVM was writing the archive.
            tag = orphan.suffixes[-2] if len(orphan.suffixes) > 1 else ""
            launcher = tag.lstrip(".").split("-")[0]
            if not (launcher.isdigit() and _pid_alive(int(launcher))):
                orphan.unlink(missing_ok=True)

    def flags(self) -> list[str]:
        if self.path.exists():
            return [f"-XX:SharedArchiveFile={self.path}"]
        # Launcher pid (to spot orphans) plus a nonce: two brokers may record at once.
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._recording = self.path.with_name(f"{self.path.stem}.{tag}.tmp")
        return [f"-XX:ArchiveClassesAtExit={self._recording}"]

    def keep(self, clean_exit: bool) -> None:
        """Publish the archive recorded by a JVM that exited cleanly; drop it otherwise."""
        recording, self._recording = self._recording, None
        if recording is None:
            return
        if clean_exit and recording.exists() and recording.stat().st_size > 0:
            os.replace(recording, self.path)
        else:
            recording.unlink(missing_ok=True)


class LocalKafka:
    """One single-node KRaft Kafka broker, owned by this process.

    Use as a context manager (``with LocalKafka(tmp) as kafka: kafka.bootstrap_servers``)
    or call :meth:`start` and :meth:`stop`. ``data_dir`` receives ``server.properties``,
    ``broker.log`` (the broker's log4j output), ``broker.out`` (JVM stdout/stderr) and
    the Kafka log dir ``kraft/``, which every start wipes and formats afresh.

    ``quick_jit`` runs the broker with the C1 compiler only, which nearly halves its
    start on a two-core machine; its throughput stays far above what Python clients
    produce. Pass ``False`` for a broker that should be measured on its own.

    ``secure=True`` adds a ``SASL_SSL`` listener (SCRAM-SHA-512, users
    ``scram_users``, by default one ``cxstream`` user with a random password) and
    an ``SSL`` listener that requires a client certificate, on free ports, beside
    the PLAINTEXT one; :meth:`client_config` gives a client's ``kafka`` settings
    for either. The CA and certificates are made under ``data_dir/tls`` at start.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        cache_dir: Path | None = None,
        heap: str = "512m",
        quick_jit: bool = True,
        secure: bool = False,
        scram_users: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port if port else free_port()
        taken = {self.port}
        self.controller_port = controller_port if controller_port else _another_port(taken)
        taken.add(self.controller_port)
        self.secure = secure
        self.sasl_ssl_port = _another_port(taken) if secure else None
        self.ssl_port = _another_port(taken | {self.sasl_ssl_port or 0}) if secure else None
        if scram_users is None:
            scram_users = {"cxstream": secrets.token_hex(16)} if secure else {}
        #: SCRAM-SHA-512 user name -> password, known to the SASL_SSL listener.
        self.scram_users = dict(scram_users)
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        self.heap = heap
        self.quick_jit = quick_jit
        self._process: subprocess.Popen[bytes] | None = None
        self._archive: _ClassArchive | None = None
        self._tls: TlsFiles | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:<port>"``, valid once :meth:`start` returned."""
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """``"127.0.0.1:<port>"`` of the SASL_SSL (SCRAM-SHA-512) listener."""
        return f"127.0.0.1:{self._secure_port(self.sasl_ssl_port)}"

    @property
    def ssl_bootstrap(self) -> str:
        """``"127.0.0.1:<port>"`` of the SSL listener (client certificate required)."""
        return f"127.0.0.1:{self._secure_port(self.ssl_port)}"

    @property
    def tls(self) -> TlsFiles:
        """The CA and certificates of the secured listeners, once :meth:`start` made them."""
        if self._tls is None:
            raise BrokerError("the broker has no TLS files: start it with secure=True first")
        return self._tls

    def client_config(
        self, user: str | None = None, *, protocol: str = "SASL_SSL", password: str | None = None
    ) -> dict[str, Any]:
        """The ``kafka`` settings of a client of a secured listener.

        ``SASL_SSL`` logs in as ``user`` (default: the first SCRAM user) with its
        password, or with ``password`` to try a wrong one; ``SSL`` presents the
        client certificate. Both trust only the throw-away CA.
        """
        tls = self.tls
        if protocol == "SSL":
            return {
                "bootstrap": self.ssl_bootstrap,
                "security_protocol": "SSL",
                "ssl_cafile": str(tls.ca_file),
                "ssl_certfile": str(tls.client_cert),
                "ssl_keyfile": str(tls.client_key),
            }
        if protocol != "SASL_SSL":
            raise ValueError(f"the test broker secures SASL_SSL and SSL, not {protocol}")
        name = user if user is not None else next(iter(self.scram_users))
        return {
            "bootstrap": self.sasl_ssl_bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": SCRAM_MECHANISM,
            "sasl_username": name,
            "sasl_password": password if password is not None else self.scram_users[name],
            "ssl_cafile": str(tls.ca_file),
        }

    def _secure_port(self, port: int | None) -> int:
        if port is None:
            raise BrokerError("this broker has no secured listeners (LocalKafka(secure=True))")
        return port

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs (``None`` before start / after stop)."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the JVM started by :meth:`start` has not exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_file(self) -> Path:
        """The broker's own log (log4j), written into the data dir."""
        return self.data_dir / "broker.log"

    @property
    def _out_file(self) -> Path:
        return self.data_dir / "broker.out"

    @property
    def _pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    def start(self, timeout: float = 90) -> str:
        """Format a fresh log dir, start the broker and wait until it serves metadata.

        Returns the bootstrap servers string; on a broker that already runs it only
        returns that string. Raises :class:`BrokerError` (with the
        tail of the broker log) when the jars cannot be fetched, formatting fails, the
        JVM exits early, or the broker is not ready within ``timeout`` seconds; the
        JVM is stopped before the error propagates.
        """
        if self.running:
            return self.bootstrap_servers
        self.stop()  # reap a JVM that died on its own before starting a new one
        libs = fetch_kafka(self.cache_dir)
        self._claim_data_dir()
        log_dir = self.data_dir / "kraft"
        shutil.rmtree(log_dir, ignore_errors=True)
        secure = None
        if self.secure:
            tls_dir = self.data_dir / "tls"
            shutil.rmtree(tls_dir, ignore_errors=True)
            self._tls = make_tls_files(tls_dir)
            assert self.sasl_ssl_port is not None and self.ssl_port is not None
            secure = SecureListeners(self.sasl_ssl_port, self.ssl_port, self._tls)
        properties = self.data_dir / "server.properties"
        properties.write_text(
            server_properties(
                port=self.port,
                controller_port=self.controller_port,
                log_dir=log_dir,
                secure=secure,
            ),
            encoding="utf-8",
        )
        for stale in (self.log_file, self._out_file):
            stale.unlink(missing_ok=True)
        classpath = f"{libs}/*"
        self._format(libs, properties)
        self._archive = _ClassArchive(libs, "broker")
        command = [
            "java",
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            *self._archive.flags(),
            *(["-XX:TieredStopAtLevel=1"] if self.quick_jit else []),
            # The broker only needs headless networking and disk; keep it off any display.
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG_CONFIG}",
            f"-Dcxstream.kafka.log={self.log_file}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(properties),
        ]
        launcher_pid = os.getpid()
        with self._out_file.open("wb") as out:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # A Ctrl-C in the terminal must reach us, not the JVM: we stop it in order.
                start_new_session=True,
                preexec_fn=lambda: _die_with_parent(launcher_pid),
            )
        self._pid_file.write_text(f"{self._process.pid}\n", encoding="ascii")
        atexit.register(self.stop)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap_servers

    def stop(self, timeout: float = 20) -> None:
        """Stop the broker: SIGTERM (clean shutdown), then SIGKILL after ``timeout``.

        Idempotent; safe to call when the broker never started or already died.
        """
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self._pid_file.unlink(missing_ok=True)
        if self._archive is not None:
            # 143 = the JVM's own exit after handling SIGTERM: shutdown ran to the end.
            self._archive.keep(clean_exit=process.returncode in (0, 143))
            self._archive = None

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _claim_data_dir(self) -> None:
        """Refuse to wipe a data dir whose broker still runs (its pid file says so)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError, ValueError):
            other = int(self._pid_file.read_text(encoding="ascii").strip())
            if _pid_alive(other):
                raise BrokerError(f"{self.data_dir} belongs to a running broker (pid {other})")

    def _format(self, libs: Path, properties: Path) -> None:
        archive = _ClassArchive(libs, "format")
        command = [
            "java",
            *archive.flags(),
            # A short-lived tool: the optimising compiler would only cost start time.
            "-XX:TieredStopAtLevel=1",
            "-cp",
            f"{libs}/*",
            f"-Dlog4j2.configurationFile={LOG_CONFIG}",
            f"-Dcxstream.kafka.log={self.log_file}",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            random_cluster_id(),
            "-c",
            str(properties),
            *scram_arguments(self.scram_users),
        ]
        # No --standalone: the quorum is the static controller.quorum.voters above.
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired as exc:
            archive.keep(clean_exit=False)
            raise BrokerError("formatting the Kafka log dir took over 60 s") from exc
        archive.keep(clean_exit=done.returncode == 0)
        if done.returncode != 0:
            raise BrokerError(
                f"kafka StorageTool format failed:\n{output_tail(done.stdout + done.stderr)}"
            )

    def _wait_ready(self, timeout: float) -> None:
        """Block until the broker answers a metadata request listing itself."""
        from kafka.errors import KafkaError

        assert self._process is not None
        deadline = time.monotonic() + timeout
        last_error = "no attempt yet"
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise BrokerError(
                    f"Kafka exited with code {code} during startup; "
                    f"log {self.log_file}:\n{self._log_tails()}"
                )
            # A plain connect first: it fails fast and quietly while the JVM boots.
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
            except OSError as exc:
                last_error = str(exc)
                time.sleep(0.2)
                continue
            try:
                if self._broker_registered():
                    return
                last_error = "broker not yet in cluster metadata"
            except (KafkaError, OSError) as exc:  # expected while the broker boots
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise BrokerError(
            f"Kafka was not ready after {timeout:.0f}s ({last_error}); "
            f"log {self.log_file}:\n{self._log_tails()}"
        )

    def _broker_registered(self) -> bool:
        # Imported here so `cxstream broker --fetch-only` works without the client.
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers,
            client_id="cxstream-broker-probe",
            request_timeout_ms=5000,
            bootstrap_timeout_ms=5000,
        )
        try:
            # An unfenced broker appears in its own metadata; before that, topic
            # creation fails with "no brokers available".
            cluster = admin.describe_cluster()
            return any(broker.get("broker_id") == 1 for broker in cluster["brokers"])
        finally:
            admin.close()

    def _log_tails(self) -> str:
        return f"{_file_tail(self.log_file)}\n--- JVM output ---\n{_file_tail(self._out_file)}"


def broker_command(data_dir: Path | None, port: int | None, fetch_only: bool) -> int:
    """``cxstream broker``: run a local broker until SIGINT/SIGTERM; the exit code.

    ``port`` ``None`` means a free port. ``data_dir`` ``None`` means a fresh temporary
    folder, kept after exit so the broker log can still be read. ``fetch_only`` fetches
    the jars, prints their folder and returns. Prints exactly one line when ready::

        kafka ready bootstrap=127.0.0.1:9092 pid=1234 log=.../broker.log

    Returns 0 after a clean stop, 1 when the broker failed or died on its own.
    """
    cache_dir = default_cache_dir()
    try:
        libs = fetch_kafka(cache_dir)
    except BrokerError as exc:
        print(f"kafka fetch failed: {exc}", file=sys.stderr)
        return 1
    if fetch_only:
        print(f"kafka {KAFKA_VERSION} jars in {libs}")
        return 0
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="cxstream-kafka-"))
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    kafka = LocalKafka(data_dir, port=port, cache_dir=cache_dir)
    try:
        kafka.start()
        print(
            f"kafka ready bootstrap={kafka.bootstrap_servers} pid={kafka.pid} log={kafka.log_file}",
            flush=True,
        )
        while not stop_requested.wait(0.5):
            if not kafka.running:
                print(f"kafka exited on its own; see {kafka.log_file}", file=sys.stderr)
                return 1
        return 0
    except BrokerError as exc:
        print(f"kafka failed: {exc}", file=sys.stderr)
        return 1
    finally:
        kafka.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
