"""Shared Click options that build the breaker once and hand it to commands."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

import click

from tnm.circuit import CircuitBreaker, CircuitError, InvalidConfigError, ServicePolicy

__all__ = ["BreakerConfig", "breaker_options", "pass_breaker"]

F = TypeVar("F", bound=Callable[..., Any])

ENV_BACKEND = "TNM_CIRCUIT_BACKEND"
ENV_REDIS_URL = "TNM_CIRCUIT_REDIS_URL"
ENV_NAMESPACE = "TNM_CIRCUIT_NAMESPACE"

# What an operator typed, for errors about the breaker's arguments (never ``redis_url=``).
OPTION_NAMES = {
    "backend": f"--backend (or {ENV_BACKEND})",
    "redis_url": f"--redis-url (or {ENV_REDIS_URL})",
    "namespace": f"--namespace (or {ENV_NAMESPACE})",
}


def config_error(exc: InvalidConfigError) -> click.ClickException:
    """``exc`` as a one-line CLI error naming the option rather than the Python argument."""
    option = OPTION_NAMES.get(exc.field)
    return click.ClickException(str(exc) if option is None else f"{option}: {exc.message}")


def choose_backend(backend: str, backend_given: bool, redis_url: str | None) -> str:
    """A Redis URL selects the Redis backend; with an explicit local backend it is an error.

    Silently ignoring the URL would keep state in this process while the operator
    believes it is shared (and ``status --check`` would always pass).
    """
    if redis_url is not None and backend == "local":
        if backend_given:
            raise click.ClickException(
                f"{OPTION_NAMES['redis_url']} is set but {OPTION_NAMES['backend']} is 'local': "
                "use --backend redis, or unset the URL to keep state in this process"
            )
        return "redis"
    if backend == "redis" and redis_url is None:
        raise click.ClickException(f"--backend redis needs {OPTION_NAMES['redis_url']}")
    return backend


class BreakerConfig:
    """What the options said, and the breaker built from it on first use (in ``ctx.obj``)."""

    def __init__(
        self,
        backend: str,
        redis_url: str | None,
        namespace: str,
        default_policy: ServicePolicy | None = None,
        service_policies: Mapping[str, ServicePolicy] | None = None,
    ) -> None:
        self.backend = backend
        self.redis_url = redis_url
        self.namespace = namespace
        self.default_policy = default_policy
        self.service_policies = service_policies
        self._breaker: CircuitBreaker | None = None

    @property
    def breaker(self) -> CircuitBreaker:
        """The initialized breaker; configuration and connection errors become one-line CLI errors."""
        if self._breaker is None:
            try:
                breaker = CircuitBreaker(
                    self.backend,
                    redis_url=self.redis_url,
                    namespace=self.namespace,
                    default_policy=self.default_policy,
                    service_policies=self.service_policies,
                )
                breaker.initialize()
            except InvalidConfigError as exc:
                raise config_error(exc) from None
            except CircuitError as exc:
                raise click.ClickException(str(exc)) from None
            self._breaker = breaker
            ctx = click.get_current_context(silent=True)
            if ctx is not None:
                ctx.call_on_close(breaker.close)
        return self._breaker


@overload
def breaker_options(func: F) -> F: ...
@overload
def breaker_options(
    *,
    default_policy: ServicePolicy | None = None,
    service_policies: Mapping[str, ServicePolicy] | None = None,
    default_backend: str = "local",
) -> Callable[[F], F]: ...


def breaker_options(
    func: F | None = None,
    *,
    default_policy: ServicePolicy | None = None,
    service_policies: Mapping[str, ServicePolicy] | None = None,
    default_backend: str = "local",
) -> F | Callable[[F], F]:
    """Add ``--backend``, ``--redis-url`` and ``--namespace`` to a Click command or group.

    Each falls back to an environment variable (``TNM_CIRCUIT_BACKEND``,
    ``TNM_CIRCUIT_REDIS_URL``, ``TNM_CIRCUIT_NAMESPACE``). A Redis URL selects the
    Redis backend unless a backend is given; ``--backend local`` with a URL, or
    ``--backend redis`` without one, is a one-line error. The options end up in a
    ``BreakerConfig`` in ``ctx.obj``; ``pass_breaker`` gives the command the breaker,
    built once and closed when the command ends. Use bare (``@breaker_options``) or
    with policies (``@breaker_options(default_policy=...)``).
    """

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def with_config(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            redis_url = kwargs.pop("redis_url")
            source = ctx.get_parameter_source("backend")
            given = source not in (
                None,
                click.core.ParameterSource.DEFAULT,
                click.core.ParameterSource.DEFAULT_MAP,
            )
            ctx.obj = BreakerConfig(
                choose_backend(kwargs.pop("backend"), given, redis_url),
                redis_url,
                kwargs.pop("namespace"),
                default_policy,
                service_policies,
            )
            return command(*args, **kwargs)

        options = [
            click.option(
                "--backend",
                type=click.Choice(["local", "redis"]),
                default=default_backend,
                envvar=ENV_BACKEND,
                show_default=True,
                show_envvar=True,
                help="Where circuit state lives (redis when a Redis URL is given).",
            ),
            click.option(
                "--redis-url",
                envvar=ENV_REDIS_URL,
                show_envvar=True,
                help="redis://[user:password@]host:port/db; selects the redis backend.",
            ),
            click.option(
                "--namespace",
                default="tnm:circuit",
                envvar=ENV_NAMESPACE,
                show_default=True,
                show_envvar=True,
                help="Key prefix shared by the processes of one app.",
            ),
        ]
        wrapped: Any = with_config
        for option in reversed(options):
            wrapped = option(wrapped)
        return wrapped  # type: ignore[no-any-return]

    return decorate(func) if func is not None else decorate


def pass_breaker(command: F) -> F:
    """Pass the breaker built by ``breaker_options`` (on this command or a parent group)."""

    @functools.wraps(command)
    def with_breaker(*args: Any, **kwargs: Any) -> Any:
        config = click.get_current_context().find_object(BreakerConfig)
        if config is None:
            raise click.UsageError("pass_breaker needs @breaker_options on the command or a parent group")
        return command(config.breaker, *args, **kwargs)

    return with_breaker  # type: ignore[return-value]
