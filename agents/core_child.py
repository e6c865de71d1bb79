"""The stream core's child process: requests from the worker in, records to Kafka out.

``python -m agents.core_child``, started by :class:`agents.core_client.CoreClient`.
It answers the requests of ``pipeline/core_process.py`` with a
:class:`~pipeline.core_process.CoreServer` and, for each batch, sends the
outputs and the state to Kafka itself (:func:`agents.batch_send.send_result`:
outputs, their acks, then the state) with its own producer, configured like
Faust's. The reply then carries the state for the worker's table (its copy of
the changelog, read when a partition is loaded) but no records to send: the
bytes of every output and state record stay in this process.

A batch's reply is written only after its outputs were acknowledged and its
state was handed to the producer, so when the worker counts a batch as
flushed its effects are on their way exactly as if the worker had sent them.
The child dies with the worker (``PR_SET_PDEATHSIG``): a worker killed with
SIGKILL must not leave a child writing state behind the back of its successor.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
import traceback
from typing import Any

from aiokafka import AIOKafkaProducer

from agents.batch_send import BatchSender, send_result
from agents.log_limits import install_repeat_filter
from pipeline.core_process import BatchResult, CoreFailure, CoreServer, encode_frame, read_frame
from pipeline.kafka_clients import aiokafka_options
from pipeline.runtime import tune_garbage_collector

log = logging.getLogger("cxstream.core_child")

#: prctl(2) option: the signal this process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when the worker that started it dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the worker died before the line above
        os._exit(0)


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """Answer requests until the worker closes its end; 1 after a failed request."""
    try:
        kind, settings, producer_config, changelog = await read_frame(reader)
    except asyncio.IncompleteReadError:
        return 0
    if kind != "init":
        raise ValueError(f"the first request must be init, not {kind!r}")
    from pipeline.core import core_mode

    server = CoreServer(settings)
    # Connection and security from the settings (an SSL context does not pickle);
    # ``producer_config`` may still name other servers (tests do).
    producer = AIOKafkaProducer(**{**aiokafka_options(settings.kafka), **producer_config})
    await producer.start()
    sender = BatchSender(producer)
    try:
        writer.write(encode_frame(core_mode()))
        while True:
            try:
                request = await read_frame(reader)
            except asyncio.IncompleteReadError:
                return 0  # the worker stopped: the producer is flushed below
            try:
                reply = server.serve(request)
                if isinstance(reply, BatchResult):
                    await send_result(sender, reply, changelog)
                    reply.outgoing = []
                    reply.sent = True
            except Exception:
                writer.write(encode_frame(CoreFailure(str(request[0]), traceback.format_exc())))
                await writer.drain()
                return 1
            writer.write(encode_frame(reply))
            await writer.drain()
    finally:
        await producer.stop()


async def _main(requests: Any, replies: Any) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), requests)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, replies)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    try:
        return await serve(reader, writer)
    finally:
        transport.close()


def main() -> int:
    parent = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
    die_with_parent(parent)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    # Anything printed by accident must not corrupt the reply frames.
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, format="core process: %(levelname)s %(message)s")
    install_repeat_filter()  # its producer's connection errors, as in the worker
    tune_garbage_collector()
    try:
        return asyncio.run(_main(requests, replies))
    except BrokenPipeError:
        return 0  # the worker is gone


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: replies must
    # pickle under importable names.
    from agents import core_child

    raise SystemExit(core_child.main())
