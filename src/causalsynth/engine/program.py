"""A model program seen by the engine: its tables, columns and compiled block sampler.

Everything here is derived from one abstract trace of the model (no sampling,
no compilation): each public site's plates choose its table, its name (after
an optional ``plate.`` qualifier) is its column, and its distribution's
support or ``infer`` metadata chooses the column's type.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import constraints

from causalsynth.config.loading import Config
from causalsynth.engine import cache
from causalsynth.engine.compiled import CachedJit
from causalsynth.engine.identity import signature
from causalsynth.engine.interventions import Support, switch_do
from causalsynth.errors import ConfigError
from causalsynth.spec.domains import Domain, domain_of
from causalsynth.spec.modeling import DAYS, LATENT, LEVELS, ROW_MASK, SUPPORT, TIMESTAMP, Ref, Table
from causalsynth.spec.params import Params

# NumPyro keeps its effect handlers on one stack per process, not per thread, so models traced in two
# threads at once (a Dask worker's threads) would each run under the other's handlers. Every trace of
# a model holds this lock; running a compiled sampler traces nothing.
TRACING = threading.RLock()

@dataclass(frozen=True)
class Column:
    """One table column and the site that fills it.

    ``kind`` is one of ``bool``, ``category`` (with ``levels``), ``timestamp``
    (seconds after ``sampling.start``), ``int`` or ``float``.
    """

    name: str
    site: str
    kind: str
    levels: tuple[str, ...] = ()
    since: str | None = None  # timestamps: the site this one is an offset from
    days: str | None = None   # timestamps: an integer site of whole days added
    latent: bool = False      # a hidden cause, a column because sampling.latents asked for it
    domain: Domain | None = None  # numbers: the interval its site's support states (None: unbounded)


@dataclass(frozen=True)
class TableLayout:
    """Where a table's rows live in a block's arrays.

    ``grid`` is the block's array shape for this plate nest over the model's
    plate dims (1 on dims outside the nest); rows are its cells in C order.
    """

    table: Table
    grid: tuple[int, ...]
    inner_size: int  # size of the innermost plate: children per parent row
    columns: tuple[Column, ...]
    mask_site: str | None
    parent: Table | None
    refs: tuple[tuple[Ref, int], ...] = ()  # each ``Table.refs`` entry and its target's rows per parent

    @property
    def cells_per_pr(self) -> int:
        n = 1
        for size in self.grid[1:]:
            n *= size
        return n


@dataclass(frozen=True)
class Site:
    name: str
    kind: str  # "sample" or "deterministic"
    plates: tuple[str, ...]
    is_public: bool
    support: Support | None  # sample sites whose support an intervention can name
    shape: tuple[int, ...] = ()  # its value's shape in a block (plates as broadcast: 1 where it is constant)
    dtype: str = "float32"

    @property
    def can_intervene(self) -> bool:
        return self.kind == "sample" and self.is_public and self.support is not None


def _support(site: dict, levels: tuple[str, ...]) -> Support | None:
    if site["type"] != "sample":
        return None
    if levels:
        return Support("category", levels)
    support = site["fn"].support
    for kind, constraint in (("bool", constraints.boolean), ("unit_interval", constraints.unit_interval),
                             ("positive", constraints.positive), ("real", constraints.real)):
        if support is constraint:
            return Support(kind)
    return None


def _column_kind(site: dict) -> tuple[str, tuple[str, ...], str | None, str | None]:
    """(kind, levels, since, days) of a site's column."""
    infer = site.get("infer") or {}
    if LEVELS in infer:
        return "category", tuple(infer[LEVELS]), None, None
    if infer.get(TIMESTAMP):
        since = infer[TIMESTAMP]
        return "timestamp", (), since if isinstance(since, str) else None, infer.get(DAYS)
    if site["type"] == "sample" and site["fn"].support is constraints.boolean:
        return "bool", (), None, None
    dtype = site["value"].dtype
    if dtype == jnp.bool_:
        return "bool", (), None, None
    if jnp.issubdtype(dtype, jnp.integer):
        return "int", (), None, None
    return "float", (), None, None


class Program:
    """A config's model, traced once: tables, sites and the jitted block sampler."""

    def __init__(self, config: Config):
        self.config = config
        self.model = config.model
        self.block_prs = int(config.sampling["block_prs"])
        self.tables, self.sites = self._derive()
        self._at_once: dict[int, CachedJit] = {}

    # --- structure ----------------------------------------------------------
    def initial_params(self) -> Params:
        """The config's params with every calibrated intercept at 0."""
        return self.config.params.with_leaves({f"intercepts.{c.name}": 0.0 for c in self.model.CALIBRATION})

    def _trace(self, key, params: Params, n_prs: int, do: dict | None = None):
        with TRACING, switch_do(data=do):
            return handlers.trace(handlers.seed(self.model.model, key)).get_trace(params, n_prs)

    def _abstract_sites(self) -> dict[str, dict[str, Any]]:
        """Each sample and deterministic site's plates, shape and column metadata, from an abstract trace.

        The trace depends on the model's code and the params' tree and types
        only (never on a float's value), so it is kept in the cache under those.
        """
        # Any threefry key of the right type: a wrapped one, since ``jax.random.key`` compiles in each process.
        args = (jax.random.wrap_key_data(np.zeros(2, np.uint32), impl="threefry2x32"), self.initial_params())
        identity = cache.model_identity(self.model) | {"block_prs": self.block_prs,
                                                        "signature": signature(args)}
        captured = cache.load_object("structure", identity)
        if captured is not None:
            return captured
        captured = {}

        def abstract(key, params):
            trace = self._trace(key, params, self.block_prs)
            for name, site in trace.items():
                if site["type"] not in ("sample", "deterministic"):
                    continue
                frames = sorted(site["cond_indep_stack"], key=lambda f: f.dim)
                captured[name] = dict(
                    type=site["type"],
                    frames=tuple((f.name, f.dim, f.size) for f in frames),
                    kind=_column_kind(site),
                    shape=tuple(site["value"].shape),
                    dtype=str(site["value"].dtype),
                    row_mask=bool((site.get("infer") or {}).get(ROW_MASK)),
                    latent=bool((site.get("infer") or {}).get(LATENT)),
                    support=_support(site, tuple((site.get("infer") or {}).get(LEVELS, ()))),
                    domain=domain_of(site["fn"].support if site["type"] == "sample"
                                     else (site.get("infer") or {}).get(SUPPORT)),
                )
            return 0

        jax.eval_shape(abstract, *args)
        cache.store_object("structure", identity, captured)
        return captured

    def _derive(self) -> tuple[tuple[TableLayout, ...], dict[str, Site]]:
        captured = self._abstract_sites()
        latents = bool(self.config.sampling["latents"])
        n_dims = max(-dim for site in captured.values() for _, dim, _ in site["frames"])
        by_plates = {t.plates: t for t in self.model.TABLES}
        layouts: dict[tuple[str, ...], dict[str, Any]] = {}
        sites: dict[str, Site] = {}
        for name, site in captured.items():
            plates = tuple(f[0] for f in site["frames"])
            public = not name.startswith("_")
            sites[name] = Site(name, site["type"], plates, public, site["support"], site["shape"], site["dtype"])
            if (not public and not site["row_mask"]) or (site["latent"] and not latents):
                continue
            table = by_plates.get(plates)
            if table is None:
                raise ConfigError(f"model {self.model.NAME}: site {name!r} sits in plates {plates}, "
                                  f"which no entry of TABLES declares")
            qualifier, _, column = name.rpartition(".")
            if qualifier and qualifier != plates[-1]:
                raise ConfigError(f"model {self.model.NAME}: site {name!r} is qualified by "
                                  f"{qualifier!r} but its innermost plate is {plates[-1]!r}")
            entry = layouts.setdefault(plates, {"columns": [], "mask": None, "frames": site["frames"]})
            if site["row_mask"]:
                entry["mask"] = name
                continue
            if len(site["shape"]) > n_dims:
                raise ConfigError(f"model {self.model.NAME}: site {name!r} has an event shape; "
                                  f"public sites must be one value per row (prefix it with _)")
            kind, levels, since, days = site["kind"]
            for base in (since, days):
                if base is not None and base not in captured:
                    raise ConfigError(f"model {self.model.NAME}: timestamp {name!r} counts from "
                                      f"{base!r}, which is not a site")
            domain = site["domain"] if kind in ("int", "float") else None
            entry["columns"].append(Column(column, name, kind, levels, since, days, site["latent"], domain))
        out = []
        for plates, entry in layouts.items():
            grid = [1] * n_dims
            for _, dim, size in entry["frames"]:
                grid[dim] = size
            table = by_plates[plates]
            names = [c.name for c in entry["columns"]]
            if len(set(names)) != len(names):
                raise ConfigError(f"model {self.model.NAME}: table {table.name} has a column twice")
            out.append(TableLayout(table=table, grid=tuple(grid), inner_size=entry["frames"][-1][2],
                                   columns=tuple(entry["columns"]),
                                   mask_site=entry["mask"], parent=by_plates.get(plates[:-1])))
        out = [self._with_refs(layout, out, captured) for layout in out]
        order = {t.name: i for i, t in enumerate(self.model.TABLES)}
        return tuple(sorted(out, key=lambda t: order[t.table.name])), sites

    def _with_refs(self, layout: TableLayout, layouts: list[TableLayout], captured: dict) -> TableLayout:
        """``layout`` with its table's ``refs`` resolved: each target's rows per parent."""
        resolved = []
        for ref in layout.table.refs:
            target = next((t for t in layouts if t.table.name == ref.table), None)
            if target is None or target.table.plates[:-1] != layout.table.plates[:-1]:
                raise ConfigError(f"model {self.model.NAME}: {layout.table.name}.{ref.column} refers to "
                                  f"{ref.table!r}, which is not a sampled table under the same parent")
            if ref.site not in captured:
                raise ConfigError(f"model {self.model.NAME}: {layout.table.name}.{ref.column} reads {ref.site!r}, "
                                  f"which is not a site")
            resolved.append((ref, target.inner_size))
        return dataclasses.replace(layout, refs=tuple(resolved))

    def layout_of(self, site: str) -> TableLayout:
        """The table layout a public site's column belongs to."""
        for layout in self.tables:
            if any(c.site == site for c in layout.columns):
                return layout
        raise KeyError(site)

    def table(self, name: str) -> TableLayout:
        for layout in self.tables:
            if layout.table.name == name:
                return layout
        raise KeyError(name)

    @cached_property
    def output_sites(self) -> tuple[str, ...]:
        """Sites a block returns: every column, every row mask, and the days of timestamps."""
        names = [c.site for t in self.tables for c in t.columns]
        names += [t.mask_site for t in self.tables if t.mask_site]
        names += [ref.site for t in self.tables for ref, _ in t.refs]
        names += [c.days for t in self.tables for c in t.columns if c.days]
        return tuple(dict.fromkeys(names))

    # --- sampling -------------------------------------------------------------
    def interventions(self, do: Mapping[str, float] | None = None) -> dict[str, tuple]:
        """Switches for every intervenable site: on, with its encoded value, for those in ``do``."""
        do = do or {}
        return {name: (np.bool_(name in do), np.float32(do.get(name, 0.0)))
                for name, site in self.sites.items() if site.can_intervene}

    @cached_property
    def sample_block(self):
        """``(key, params, switches) -> {site: array}``, jitted once for this config's shapes.

        ``switches`` comes from ``interventions()``: the factual world and every
        hard intervention run the same compiled function. Its executable is
        kept in the cache (``CachedJit``), so a later process loads it untraced.
        """
        return self.compiled(self._block, "sampler", block_prs=self.block_prs, outputs=self.output_sites)

    def sample_blocks_at_once(self, n: int):
        """``(keys, params, switches) -> {site: array}``: ``sample_block`` mapped over ``n`` keys in one
        call (a leading axis of ``n`` on every output), to fill an accelerator. On the CPU each block's
        values are those of ``sample_block`` to the bit (tests/test_determinism.py)."""
        if n not in self._at_once:  # two threads at once make two wrappers of one kept executable: harmless
            self._at_once[n] = self.compiled(jax.vmap(self._block, in_axes=(0, None, None)), "sampler",
                                             block_prs=self.block_prs, outputs=self.output_sites, blocks=n)
        return self._at_once[n]

    def _block(self, key, params, switches):
        trace = self._trace(key, params, self.block_prs, switches)
        return {name: trace[name]["value"] for name in self.output_sites}

    def compiled(self, fn, kind: str, **shape: Any) -> CachedJit:
        """``fn`` jitted, its executables kept as ``kind`` entries of this model's code and ``shape``
        (what else fixes its arrays' shapes): how any part of causalsynth compiles a function of the
        model, without knowing the caches."""
        return CachedJit(fn, kind, cache.model_identity(self.model) | shape)

    def kept(self, kind: str, derive, usable=lambda value: True):
        """``derive()``, a result of this program's config and model: computed once per config, model and
        package where the caches are on, and ``usable(value)`` decides whether a kept one still serves."""
        identity = cache.config_identity(self)
        found = cache.load_object(kind, identity)
        if found is not None and usable(found):
            return found
        value = derive()
        cache.store_object(kind, identity, value)
        return value
