"""Hard interventions (``do``) as switches, and the parsing of ``--do SITE=VALUE``.

``switch_do`` has the semantics of ``numpyro.handlers.do``: the site is still
sampled (so it consumes exactly the random key it consumes in the factual
world, and every later site gets its factual key), and its children see the
intervened value instead. Unlike ``handlers.do`` it can be switched off by a
traced flag, so one compiled sampler, always run under it, serves the factual
world (every switch off) and every intervention: intervened values are
arguments, never constants, and non-descendants of an intervention are the
very same computation, bit for bit. ``tests/test_interventions.py`` checks it
against ``handlers.do``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from numpyro.primitives import Messenger

from causalsynth.config import yamltext
from causalsynth.errors import ConfigError


class switch_do(Messenger):
    """``do`` on the sample sites in ``data``: ``{site: (active, value)}``.

    Registered outermost (enter it around ``trace``), its postprocessing runs
    before any other handler's, so the trace, and the model, see the value
    after the switch. The site's own key was already drawn: key order is the
    factual one.
    """

    def __init__(self, fn=None, data: Mapping[str, tuple] | None = None):
        self.data = dict(data or {})
        super().__init__(fn)

    def postprocess_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in self.data:
            active, value = self.data[msg["name"]]
            natural = msg["value"]
            msg["value"] = jnp.where(active, jnp.asarray(value).astype(natural.dtype), natural)


@dataclass(frozen=True)
class Intervention:
    """What a variant changes: hard ``do`` assignments and soft prior overrides.

    ``do`` maps a site to the value as the user wrote it (a level name, a
    boolean or a number); ``set`` maps a config path to its new value.
    """

    name: str = "factual"
    description: str = ""
    do: dict[str, object] = field(default_factory=dict)
    set: dict[str, object] = field(default_factory=dict)

    @property
    def is_factual(self) -> bool:
        return not self.do and not self.set

    def merged(self, other: Intervention) -> Intervention:
        """``other`` applied on top of this one (its assignments win)."""
        return Intervention(
            name=other.name if self.is_factual else f"{self.name}+{other.name}",
            description=other.description or self.description,
            do=self.do | other.do, set=self.set | other.set)

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description, "do": self.do, "set": self.set}


TRUE = ("true", "yes", "1")
FALSE = ("false", "no", "0")


def parse_assignments(items: Iterable[str], option: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}``, with a clear error for malformed items.

    A site given twice must be given the same value both times.
    """
    out: dict[str, str] = {}
    for item in items:
        site, sep, value = item.partition("=")
        site, value = site.strip(), value.strip()
        if not sep or not site or not value:
            raise ConfigError(f"{option} {item!r}: expected SITE=VALUE, e.g. has_performance_regression=false")
        if site in out and out[site] != value:
            raise ConfigError(f"{option} {site}: given twice, as {out[site]} and as {value}; "
                              f"a site can be set to one value")
        out[site] = value
    return out


@dataclass(frozen=True)
class Support:
    """The values a sample site may be set to."""

    kind: str  # "bool", "category", "unit_interval", "positive", "real"
    levels: tuple[str, ...] = ()

    def describe(self) -> str:
        return {
            "bool": "true or false",
            "category": "one of " + ", ".join(self.levels),
            "unit_interval": "a number in [0, 1]",
            "positive": "a number > 0",
            "real": "any finite number",
        }[self.kind]

    def encode(self, raw: object) -> float | None:
        """The number the sampler uses for ``raw``, or None when outside the support."""
        text = str(raw).strip()
        if self.kind == "bool":
            low = text.lower()
            return 1.0 if low in TRUE else 0.0 if low in FALSE else None
        if self.kind == "category":
            return float(self.levels.index(text)) if text in self.levels else None
        try:
            number = float(text)
        except ValueError:
            return None
        if not np.isfinite(number):
            return None
        if self.kind == "unit_interval" and not 0.0 <= number <= 1.0:
            return None
        if self.kind == "positive" and not number > 0.0:
            return None
        return number


VARIANT_KEYS = ("description", "do", "set")
# Sections that are a dataset's identity or shape: a variant of it cannot change them.
FIXED_SECTIONS = ("version", "model", "sampling", "shape")


def variant_names() -> list[str]:
    folder = resources.files("causalsynth.configs").joinpath("variants")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_variant(name_or_path: str) -> Intervention:
    """A shipped variant by name (``configs/variants/NAME.yaml``) or a variant file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        name = path.stem
    else:
        entry = resources.files("causalsynth.configs").joinpath("variants", f"{name_or_path}.yaml")
        if not entry.is_file():
            raise ConfigError(f"--variant {name_or_path}: no such variant; shipped variants: "
                              f"{', '.join(variant_names())} (or give a path to a .yaml file)")
        path, name = Path(str(entry)), name_or_path
    data = yamltext.load_file(path, f"--variant {name_or_path}") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"--variant {name_or_path}: expected a mapping with keys {', '.join(VARIANT_KEYS)}, "
                          f"got {data!r}")
    errors = []
    for key in data:
        if key not in VARIANT_KEYS:
            hint = difflib.get_close_matches(str(key), VARIANT_KEYS, n=1)
            errors.append(f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    if errors:
        errors[-1] += f" (allowed: {', '.join(VARIANT_KEYS)})"
    for key in ("do", "set"):
        if not isinstance(data.get(key, {}) or {}, dict):
            errors.append(f"{key}: must be a mapping, got {data[key]!r}")
    if errors:
        raise ConfigError(f"--variant {name_or_path}: " + "; ".join(errors))
    return Intervention(name=name, description=str(data.get("description", "")).strip(),
                        do={str(k): v for k, v in (data.get("do") or {}).items()},
                        set={str(k): v for k, v in (data.get("set") or {}).items()})


def encode_do(program, do: Mapping[str, object], option: str = "--do") -> dict[str, float]:
    """Check each ``do`` assignment against the model's sites and supports; encode its value.

    ``option`` names where the assignments came from in error messages.
    """
    valid = sorted(n for n, s in program.sites.items() if s.can_intervene)
    encoded, errors = {}, []
    for name, raw in do.items():
        site = program.sites.get(name)
        if site is None:
            hint = difflib.get_close_matches(name, valid, n=1)
            errors.append(f"{option} {name}: no such site" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f"; sites that can be intervened on: {', '.join(valid)}")
        elif site.kind != "sample":
            errors.append(f"{option} {name}: is derived from its parents (a deterministic site) and cannot be "
                          f"intervened on; intervene on a sample site upstream of it")
        elif not site.is_public:
            errors.append(f"{option} {name}: is latent noise, not a variable of the model's tables")
        elif site.support is None:
            errors.append(f"{option} {name}: its support cannot be named in a --do value")
        else:
            value = site.support.encode(raw)
            if value is None:
                errors.append(f"{option} {name}={raw}: value outside the site's support; allowed: "
                              f"{site.support.describe()}")
            else:
                encoded[name] = value
    if errors:
        raise ConfigError("; ".join(errors))
    return encoded


def shifted_config(config, intervention: Intervention):
    """The config a world is sampled under: ``config`` with the intervention's priors set. What reads a
    sampled world's numbers (its tick length, an identity's constant) reads them here, not in the
    factual config."""
    return config.with_overrides(soft_overrides(config, intervention), source=f"variant {intervention.name}: set")


def soft_overrides(config, intervention: Intervention) -> list[str]:
    """A variant's ``set`` as ``--set`` items, refusing what is not a prior of the mechanisms."""
    targets = {c.target for c in config.model.CALIBRATION}
    errors, items = [], []
    for path, value in intervention.set.items():
        if path.split(".")[0] in FIXED_SECTIONS:
            errors.append(f"variant {intervention.name}: set {path}: {path.split('.')[0]} is part of the "
                          f"dataset's identity, not a prior; sample a new factual dataset instead")
        elif path in targets:
            errors.append(f"variant {intervention.name}: set {path}: is a calibrated marginal of the factual "
                          f"world; a variant shifts mechanisms (priors, coefficients), not targets")
        elif not isinstance(value, float | int) or isinstance(value, bool):
            errors.append(f"variant {intervention.name}: set {path}: a variant may shift numeric priors "
                          f"only, got {value!r}")
        else:
            items.append(f"{path}={json.dumps(value)}")
    if errors:
        raise ConfigError("; ".join(errors))
    return items
