"""What a launch starts, decided with the user's own spawner (both backends).

:func:`plan_launch` resolves the identifier for what the user may start (their cohort's
environments), picks the environment (the one named, else the first that mounts the
dataset), and validates the spawner options with :func:`~oggmhub.choice.resolve_choice`
exactly as the spawner's ``apply_user_options`` will: a launch can start nothing a spawn
request could not.
"""

from __future__ import annotations

from dataclasses import dataclass

from oggmhub.catalog import cached_catalog
from oggmhub.choice import ChoiceError, resolve_choice
from oggmhub.launch.resolution import LaunchError, on_demand_resolver, resolve


@dataclass
class LaunchContext:
    """Who asks and what they may start."""

    catalog: object
    policy: object = None  # cohorts.MemberPolicy, None for a non-member or a visitor
    allowed: object = None  # environment name -> sizes (None: all), or None for all
    max_gpus: int | None = None
    on_demand: object = None  # resolve_choice's on_demand
    allowed_sources: tuple = ()

    @classmethod
    def for_spawner(cls, spawner, allowed_sources=()):
        """A user's context, from their spawner (a CatalogPickerMixin): the same rules as their spawns."""
        return cls(catalog=spawner.catalog, policy=spawner.cohort_policy(), allowed=spawner.allowed_environments(),
                   max_gpus=spawner.max_gpus(), on_demand=spawner.on_demand_datasets(),
                   allowed_sources=tuple(allowed_sources))

    @classmethod
    def for_visitor(cls, catalog_path, allowed_sources=()):
        """A logged-out visitor's: the whole catalog (what they may start is decided after login)."""
        return cls(catalog=cached_catalog(catalog_path), on_demand=on_demand_resolver(allowed_sources),
                   allowed_sources=tuple(allowed_sources))

    def choice(self, options):
        return resolve_choice(self.catalog, options, self.allowed, self.max_gpus, on_demand=self.on_demand)


@dataclass(frozen=True)
class LaunchPlan:
    resolution: object
    environment: object
    options: dict  # the spawner options: {"profile": ..., "size": ..., "datasets": [...]}
    choice: object  # the validated SpawnChoice


def plan_launch(ctx, request):
    """The :class:`LaunchPlan` for ``request`` (a LaunchRequest); :class:`LaunchError` if refused."""
    if ctx.policy is not None and ctx.policy.refusal:
        raise LaunchError(403, "cohort", ctx.policy.refusal)
    resolution = resolve(ctx.catalog, request.dataset, ctx.allowed, ctx.allowed_sources)
    names = resolution.environments
    if request.env is not None:
        if request.env not in names:
            known = request.env in ctx.catalog.environments and (ctx.allowed is None or request.env in ctx.allowed)
            why = "cannot mount" if known else "is not an environment you may start, to mount"
            raise LaunchError(400, "env", f"environment {request.env!r} {why} dataset {resolution.dataset.name!r}; "
                              f"choose one of: {', '.join(names)}", names)
        env_name = request.env
    elif resolution.default_environments:
        env_name = resolution.default_environments[0]
    else:
        default = ctx.catalog.default_environment.name
        env_name = default if default in names else names[0]
    environment = ctx.catalog.environments[env_name]
    options = request.options(resolution, environment)
    try:
        choice = ctx.choice(options)
    except ChoiceError as e:
        allowed = list(environment.sizes) if e.field == "size" else []
        raise LaunchError(400, e.field, e.message, allowed) from None
    return LaunchPlan(resolution, environment, options, choice)


def running_choice(ctx, user_options):
    """The choice a running server was started with (its ``user_options``), or None."""
    try:
        return resolve_choice(ctx.catalog, user_options or {}, on_demand=ctx.on_demand)
    except ChoiceError:
        return None


def has_everything(current, plan, request):
    """Whether a server running ``current`` (a SpawnChoice) has what ``request`` asks for."""
    if current is None or plan.resolution.dataset.name not in [d.name for d in current.datasets]:
        return False
    if request.env and current.environment.name != request.env:
        return False
    return not (request.size and current.size.name != request.size)
