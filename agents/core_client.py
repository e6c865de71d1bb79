"""The worker's side of the stream core: the same requests, in a child process or here.

:class:`CoreClient` gives the agent (``agents/process.py``) one asynchronous
interface to the :class:`~pipeline.streaming.StreamHandler`, wherever it runs:

* ``worker.core_process: true`` (the default): in a child process
  (``python -m agents.core_child``), so decoding, applying, encoding and
  sending a batch overlaps Faust's work for the next one on a second core;
* ``false``: in the worker's own process (one core, or debugging).

Records are buffered by :meth:`CoreClient.handle` and sent as one request by
:meth:`CoreClient.drain`, which returns a future of the batch's
:class:`~pipeline.core_process.BatchResult`. The client keeps its own copy of
each partition's applied offset, moved as records are handed over, so that
holes in the offsets are found before a record is sent, without a round trip.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import deque
from collections.abc import Iterable
from typing import Any

from pipeline.core_process import BatchResult, CoreFailure, CoreServer, encode_frame, read_frame
from pipeline.settings import Settings
from pipeline.streaming import RawRecord, is_redelivery, offsets_missing_before

log = logging.getLogger(__name__)

#: An input record as a batch request carries it (see pipeline/core_process.py).
RecordFields = tuple[Any, ...]


class CoreProcessFailed(RuntimeError):
    """The stream core process failed or exited; the worker must stop."""


def record_fields(record: RawRecord) -> RecordFields:
    """A :class:`RawRecord` of the input topic as the tuple a batch request carries."""
    return (
        record.partition,
        record.offset,
        record.key,
        record.value,
        record.timestamp_ms,
        tuple(record.headers),
    )


class CoreClient:
    """Sends records to the stream core and hands back what it produced, in order."""

    def __init__(self, settings: Settings, *, separate_process: bool) -> None:
        self._settings = settings
        self.separate_process = separate_process
        #: partition -> offset of the last record handed over (the state's
        #: position once everything handed over is drained and flushed).
        self.applied_offsets: dict[int, int] = {}
        #: partition -> checksum of the record at the restored position.
        self.applied_crcs: dict[int, int] = {}
        #: The core the handler runs on (``compiled``/``interpreted``), once started.
        self.core_mode: str | None = None
        self._loaded: set[int] = set()
        self._buffer: list[RecordFields] = []
        self._server: CoreServer | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._replies: deque[asyncio.Future[Any]] = deque()
        self._failure: CoreProcessFailed | None = None
        self._start_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self, producer_config: dict[str, Any], changelog_topic: str) -> None:
        """Start the handler (once); in a child process, wait until it is ready.

        The child sends each batch's records itself, with a producer made from
        ``producer_config`` (aiokafka's keywords, as Faust's producer), the
        state to ``changelog_topic``.
        """
        async with self._start_lock:
            if self.core_mode is not None:
                return
            if not self.separate_process:
                from pipeline.core import core_mode

                self._server = CoreServer(self._settings)
                self.core_mode = core_mode()
                return
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "agents.core_child",
                str(os.getpid()),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            self._reader = asyncio.create_task(self._read_replies())
            self.core_mode = str(
                await self._request(("init", self._settings, producer_config, changelog_topic))
            )
            log.info(
                "stream core process started: pid %s, core=%s", self._process.pid, self.core_mode
            )

    async def close(self) -> None:
        """Stop the child process (it exits when its input ends)."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    @property
    def started(self) -> bool:
        return self.core_mode is not None

    def pid(self) -> int | None:
        """The child process's id, while one runs."""
        return self._process.pid if self._process is not None else None

    # -- partitions --------------------------------------------------------------

    def has_partition(self, partition: int) -> bool:
        return partition in self._loaded

    async def load(self, partition: int, items: list[tuple[str, bytes]]) -> int:
        """Build ``partition``'s processor from its state-table entries; customers restored."""
        restored, offset, crc = await self._request(("load", partition, items))
        self._loaded.add(partition)
        _put(self.applied_offsets, partition, offset)
        _put(self.applied_crcs, partition, crc)
        return int(restored)

    async def drop(self, partition: int) -> None:
        await self._request(("drop", partition))
        self._loaded.discard(partition)
        self._clear_position(partition)

    async def forget_position(self, partition: int) -> None:
        """Stop skipping by offset on ``partition`` (its input log was recreated)."""
        await self._request(("forget", partition))
        self._clear_position(partition)

    def _clear_position(self, partition: int) -> None:
        self.applied_offsets.pop(partition, None)
        self.applied_crcs.pop(partition, None)

    def missing_before(self, partition: int, offset: int) -> tuple[int, int] | None:
        """The offsets between the last record handed over and ``offset`` (see streaming)."""
        return offsets_missing_before(self.applied_offsets, partition, offset)

    # -- records -----------------------------------------------------------------

    def handle(self, fields: RecordFields) -> None:
        """Buffer one input record for the next :meth:`drain`."""
        partition, offset = fields[0], fields[1]
        # The handler skips a redelivery by the same rule; only a new record moves it.
        if not is_redelivery(self.applied_offsets, partition, offset):
            self.applied_offsets[partition] = offset
        self._buffer.append(fields)

    def drain(self, tick_partitions: Iterable[int] | None = None) -> asyncio.Future[BatchResult]:
        """Send the buffered records (then advance ``tick_partitions`` to the wall clock).

        The future completes with the batch's outputs and state; results come
        back in the order the batches were sent.
        """
        records, self._buffer = self._buffer, []
        ticks = sorted(tick_partitions) if tick_partitions is not None else None
        return self._request(("batch", records, ticks))

    # -- transport ---------------------------------------------------------------

    def _request(self, request: tuple[Any, ...]) -> asyncio.Future[Any]:
        if self._failure is not None:
            raise self._failure
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._server is not None:
            try:
                future.set_result(self._server.serve(request))
            except Exception as exc:
                future.set_exception(exc)
            return future
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            if process is not None and process.returncode is not None:
                raise CoreProcessFailed(
                    f"the stream core process exited with code {process.returncode}"
                )
            raise CoreProcessFailed("the stream core process is not running")
        process.stdin.write(encode_frame(request))
        self._replies.append(future)
        return future

    async def _read_replies(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        stdout = process.stdout
        try:
            while True:
                reply = await read_frame(stdout)
                future = self._replies.popleft()
                if isinstance(reply, CoreFailure):
                    failure = CoreProcessFailed(
                        f"the stream core process failed on a {reply.request} request:\n"
                        f"{reply.traceback}"
                    )
                    future.set_exception(failure)
                    self._fail(failure)
                    return
                if not future.done():
                    future.set_result(reply)
        except asyncio.IncompleteReadError:
            code = await process.wait()
            if self._process is not None:  # not a close() we asked for
                self._fail(CoreProcessFailed(f"the stream core process exited with code {code}"))
        except Exception as exc:  # a reply that does not decode: the stream is lost
            self._fail(CoreProcessFailed(f"reading the stream core's replies failed: {exc!r}"))

    def _fail(self, failure: CoreProcessFailed) -> None:
        self._failure = failure
        log.critical("%s", failure)
        while self._replies:
            future = self._replies.popleft()
            if not future.done():
                future.set_exception(failure)


def _put(mapping: dict[int, int], partition: int, value: int | None) -> None:
    if value is None:
        mapping.pop(partition, None)
    else:
        mapping[partition] = value
