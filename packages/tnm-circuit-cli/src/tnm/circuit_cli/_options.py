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


_CONFIG_KEY = "tnm.circuit_cli.config"
"""Where the options keep their ``BreakerConfig``: ``ctx.meta``, which Click shares along the
whole chain of contexts and leaves ``ctx.obj`` to the application (as Click's docs advise
libraries)."""


class BreakerConfig:
    """What the options said, and the breaker built from it on first use.

    It lives in ``ctx.meta`` (never ``ctx.obj``, which stays the application's); a command
    gets it with ``BreakerConfig.of(ctx)``, or the breaker itself with ``pass_breaker``.
    """

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
        self._built: CircuitBreaker | None = None

    @staticmethod
    def of(ctx: click.Context) -> BreakerConfig | None:
        """The configuration ``breaker_options`` made for this command (or a parent group)."""
        given = ctx.meta.get(_CONFIG_KEY)
        return given.config() if isinstance(given, _Given) else None

    def build(self) -> CircuitBreaker:
        """The breaker, not yet initialized (no connection made yet), built once and closed when
        the command ends; configuration errors become one-line CLI errors naming the option."""
        if self._built is None:
            try:
                breaker = CircuitBreaker(
                    self.backend,
                    redis_url=self.redis_url,
                    namespace=self.namespace,
                    default_policy=self.default_policy,
                    service_policies=self.service_policies,
                )
            except InvalidConfigError as exc:
                if exc.field == "backend" and self.backend == "redis" and "redis-py" in exc.message:
                    # redis-py is missing: the operator gave a URL, and our own extra brings it.
                    given = OPTION_NAMES["redis_url" if self.redis_url is not None else "backend"]
                    raise click.ClickException(
                        f"{given}: the redis backend needs redis-py: pip install 'tnm-circuit-cli[redis]'"
                    ) from None
                raise config_error(exc) from None
            self._built = breaker
            ctx = click.get_current_context(silent=True)
            if ctx is not None:
                ctx.call_on_close(breaker.close)
        return self._built

    @property
    def breaker(self) -> CircuitBreaker:
        """The initialized breaker; configuration and connection errors become one-line CLI errors."""
        breaker = self.build()
        if not breaker.initialized:
            try:
                breaker.initialize()
            except InvalidConfigError as exc:
                raise config_error(exc) from None
            except CircuitError as exc:
                raise click.ClickException(str(exc)) from None
        return breaker


def _given(ctx: click.Context, name: str) -> bool:
    """True if the user gave ``name`` (on the command line or in the environment)."""
    return ctx.get_parameter_source(name) not in (
        None,
        click.core.ParameterSource.DEFAULT,
        click.core.ParameterSource.DEFAULT_MAP,
    )


class _Given:
    """The options as given along the chain of commands: a later command's given value wins,
    so ``tnm-circuit --redis-url URL status`` and ``tnm-circuit status --redis-url URL`` agree."""

    def __init__(self) -> None:
        self.backend = "local"
        self.backend_given = False
        self.redis_url: str | None = None
        self.namespace = "tnm:circuit"
        self.default_policy: ServicePolicy | None = None
        self.service_policies: Mapping[str, ServicePolicy] | None = None
        self._config: BreakerConfig | None = None

    def update(
        self,
        ctx: click.Context,
        values: dict[str, Any],
        first: bool,
        default_policy: ServicePolicy | None,
        service_policies: Mapping[str, ServicePolicy] | None,
    ) -> None:
        if first or _given(ctx, "backend"):
            self.backend = values["backend"]
            self.backend_given = self.backend_given or _given(ctx, "backend")
        if first or values["redis_url"] is not None:
            self.redis_url = values["redis_url"]
        if first or _given(ctx, "namespace"):
            self.namespace = values["namespace"]
        self.default_policy = default_policy or self.default_policy
        self.service_policies = service_policies or self.service_policies
        self._config = None

    def config(self) -> BreakerConfig:
        if self._config is None:
            self._config = BreakerConfig(
                choose_backend(self.backend, self.backend_given, self.redis_url),
                self.redis_url,
                self.namespace,
                self.default_policy,
                self.service_policies,
            )
        return self._config


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
    ``BreakerConfig`` in ``ctx.meta`` (``ctx.obj`` stays yours); ``pass_breaker`` gives
    the command the breaker, built once and closed when the command ends. Use bare
    (``@breaker_options``) or with policies (``@breaker_options(default_policy=...)``).

    Put on a group and on its commands, the options may be given before or after the
    command's name (``cli --redis-url URL status`` or ``cli status --redis-url URL``);
    the value given nearest the command wins.
    """

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def with_config(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            given = ctx.meta.get(_CONFIG_KEY)
            first = not isinstance(given, _Given)
            if not isinstance(given, _Given):
                given = ctx.meta[_CONFIG_KEY] = _Given()
            values = {name: kwargs.pop(name) for name in ("backend", "redis_url", "namespace")}
            given.update(ctx, values, first, default_policy, service_policies)
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
        config = BreakerConfig.of(click.get_current_context())
        if config is None:
            raise click.UsageError("pass_breaker needs @breaker_options on the command or a parent group")
        return command(config.breaker, *args, **kwargs)

    return with_breaker  # type: ignore[return-value]
