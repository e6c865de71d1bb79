"""The one place that turns :class:`~pipeline.settings.KafkaSettings` into client options.

Every Kafka client cxstream opens takes its connection and security options from
here, so ``kafka.security_protocol`` and the SASL/TLS settings reach all of them:

- :func:`kafka_python_options`: keywords for kafka-python's ``KafkaProducer``,
  ``KafkaConsumer`` and ``KafkaAdminClient`` (producer library, topics, DLQ writer,
  control records, CLI tools);
- :func:`aiokafka_options`: keywords for aiokafka's clients (the stream core's
  producer in its child process, the refetch consumer), with an ``ssl_context``;
- :func:`faust_broker_credentials`: the ``broker_credentials`` of the Faust apps.

A unit test (``tests/unit/test_kafka_clients.py``) fails when a module constructs
a client without these options. :func:`check_login` and :func:`auth_error` turn a
refused login into :class:`~pipeline.errors.KafkaAuthError` with a message an
operator can act on. Nothing here imports a Kafka client at module level.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, KafkaAuthError
from pipeline.settings import KafkaSettings

_TLS_PROTOCOLS = ("SSL", "SASL_SSL")
_SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")


def uses_tls(kafka: KafkaSettings) -> bool:
    return kafka.security_protocol in _TLS_PROTOCOLS


def uses_sasl(kafka: KafkaSettings) -> bool:
    return kafka.security_protocol in _SASL_PROTOCOLS


def sasl_password(kafka: KafkaSettings) -> str | None:
    """The SASL password: ``sasl_password_file``'s first line when set, else ``sasl_password``.

    Raises:
        ConfigError: the password file cannot be read.
    """
    if kafka.sasl_password_file:
        path = Path(kafka.sasl_password_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"kafka.sasl_password_file {path} cannot be read: {exc.strerror or exc}"
            ) from exc
        # Editors and `echo` add a newline; it is never part of the password.
        return text.splitlines()[0] if text else ""
    return kafka.sasl_password


def _bootstrap_list(kafka: KafkaSettings) -> list[str]:
    return [server.strip() for server in kafka.bootstrap.split(",") if server.strip()]


def _sasl_options(kafka: KafkaSettings) -> dict[str, Any]:
    if not uses_sasl(kafka):
        return {}
    return {
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": kafka.sasl_username,
        "sasl_plain_password": sasl_password(kafka),
    }


def kafka_python_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection and security keywords for kafka-python clients.

    Only the options the protocol uses are present, so a PLAINTEXT client gets
    exactly what it got before security existed.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": _bootstrap_list(kafka),
        "security_protocol": kafka.security_protocol,
        **_sasl_options(kafka),
    }
    if uses_tls(kafka):
        files = {
            "ssl_cafile": kafka.ssl_cafile,
            "ssl_certfile": kafka.ssl_certfile,
            "ssl_keyfile": kafka.ssl_keyfile,
        }
        options.update({key: value for key, value in files.items() if value})
        options["ssl_check_hostname"] = kafka.ssl_check_hostname
    return options


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of the SSL and SASL_SSL protocols (``None`` otherwise).

    It verifies the broker's chain against ``ssl_cafile`` (the system's CAs when
    unset) and, unless ``ssl_check_hostname`` is off, its name; it presents the
    client certificate when one is configured.
    """
    if not uses_tls(kafka):
        return None
    from aiokafka.helpers import create_ssl_context

    try:
        context = create_ssl_context(
            cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile, keyfile=kafka.ssl_keyfile
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"the TLS files of kafka.ssl_cafile/ssl_certfile/ssl_keyfile cannot be loaded: {exc}"
        ) from exc
    if not kafka.ssl_cafile:
        context.load_default_certs()
    context.check_hostname = kafka.ssl_check_hostname
    return context


def aiokafka_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection and security keywords for aiokafka clients (with an ``ssl_context``).

    The context cannot be pickled: a child process builds its own from the settings.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": _bootstrap_list(kafka),
        "security_protocol": kafka.security_protocol,
        **_sasl_options(kafka),
    }
    context = ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    return options


def faust_broker_credentials(kafka: KafkaSettings) -> Any:
    """``broker_credentials`` for ``faust.App``: ``None`` for PLAINTEXT.

    Faust hands them to every aiokafka client it opens (consumer, producer, admin).
    """
    if kafka.security_protocol == "PLAINTEXT":
        return None
    import faust

    context = ssl_context(kafka)
    if not uses_sasl(kafka):
        return faust.SSLCredentials(context)
    # SASLCredentials picks SASL_SSL when given a context, SASL_PLAINTEXT without.
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=sasl_password(kafka),
        mechanism=kafka.sasl_mechanism,
        ssl_context=context,
    )


def auth_error(kafka: KafkaSettings, exc: BaseException) -> KafkaAuthError | None:
    """Our error for a refused login or TLS handshake; ``None`` for any other failure.

    Looks through the causes too: aiokafka reports a certificate the broker
    refused as a closed connection caused by the TLS alert.
    """
    import aiokafka.errors
    import kafka.errors as kafka_errors

    refused_login = (
        kafka_errors.SaslAuthenticationFailedError,
        aiokafka.errors.SaslAuthenticationFailed,
        aiokafka.errors.AuthenticationFailedError,
    )
    where = f"Kafka at {kafka.bootstrap}"
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, refused_login):
            return KafkaAuthError(
                f"{where} refused {kafka.security_protocol} {kafka.sasl_mechanism} login as "
                f"{kafka.sasl_username!r}: authentication failed "
                "(check kafka.sasl_username and the password)"
            )
        if isinstance(cause, ssl.SSLError):
            detail = getattr(cause, "verify_message", None) or cause.reason or str(cause)
            return KafkaAuthError(
                f"{where}: the {kafka.security_protocol} TLS handshake failed: {detail} "
                "(check kafka.ssl_cafile, ssl_certfile and ssl_keyfile)"
            )
        cause = cause.__cause__ or cause.__context__
    return None


def check_login(kafka: KafkaSettings, timeout: float = 15.0) -> None:
    """Log in to one bootstrap server once; raise :class:`KafkaAuthError` if refused.

    Why: kafka-python (3.0.12, the latest) does not report a refused SASL login
    over TLS. The broker sends the error and closes the connection; the client
    sees only "socket disconnected" and retries its bootstrap until
    ``bootstrap_timeout_ms`` (30 s), then raises "Unable to bootstrap"
    (upstream intent: dpkp/kafka-python#2994, which raises the SASL error on
    connect; over SSL the response is lost). aiokafka reads the error; its
    ``create_conn`` (exported in ``aiokafka.conn.__all__``) makes one connection
    with the same options. Callers of kafka-python run this first.

    PLAINTEXT needs no check. An unreachable broker is not an authentication
    failure: it returns quietly and the caller's client reports it as usual.
    """
    if kafka.security_protocol == "PLAINTEXT":
        return

    async def login() -> None:
        from aiokafka.conn import create_conn

        options = aiokafka_options(kafka)
        host, _, port = options.pop("bootstrap_servers")[0].rpartition(":")
        conn = await asyncio.wait_for(
            create_conn(
                host,
                int(port),
                client_id="cxstream-login-check",
                request_timeout_ms=int(timeout * 1000),
                **options,
            ),
            timeout,
        )
        # close() returns the future of the transport's end: awaited, the TLS
        # transport is gone before asyncio.run closes the loop.
        await asyncio.wait_for(conn.close(reason="login checked"), timeout)

    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(login())
        else:  # called from async code: log in on a loop of our own
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, login()).result()
    except Exception as exc:  # aiokafka, ssl and socket errors alike
        error = auth_error(kafka, exc)
        if error is not None:
            raise error from exc
