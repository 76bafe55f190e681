"""Shared Click options that build the breaker once and hand it to commands."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

import click

from tnm.circuit import CircuitBreaker, CircuitError, ServicePolicy

__all__ = ["BreakerConfig", "breaker_options", "pass_breaker"]

F = TypeVar("F", bound=Callable[..., Any])

ENV_BACKEND = "TNM_CIRCUIT_BACKEND"
ENV_REDIS_URL = "TNM_CIRCUIT_REDIS_URL"
ENV_NAMESPACE = "TNM_CIRCUIT_NAMESPACE"


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
    ``TNM_CIRCUIT_REDIS_URL``, ``TNM_CIRCUIT_NAMESPACE``). The options end up in a
    ``BreakerConfig`` in ``ctx.obj``; ``pass_breaker`` gives the command the breaker,
    built once and closed when the command ends. Use bare (``@breaker_options``) or
    with policies (``@breaker_options(default_policy=...)``).
    """

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def with_config(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            ctx.obj = BreakerConfig(
                kwargs.pop("backend"),
                kwargs.pop("redis_url"),
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
                help="Where circuit state lives.",
            ),
            click.option(
                "--redis-url",
                envvar=ENV_REDIS_URL,
                show_envvar=True,
                help="redis://[user:password@]host:port/db (with --backend redis).",
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
