"""Every protection segue ships, in one registry: what it stops, how visible it is, what it costs.

Two kinds sit behind one name space, so the CLI (``segue protect --protection NAME``, ``segue serve
--protection NAME``), the API (``segue.protect_images(..., weights=NAME)``) and ``segue list
protections`` speak of the same things:

* ``generator`` - a shipped Segue generator (:mod:`segue.shipped`, ``--weights NAME``): one forward
  pass a photo; it stops a network trained from scratch on the protected photos of the people it
  was trained on - not people it never saw, and not a pretrained face recogniser.
* ``cloak`` - a cloak strength (:mod:`segue.protect.presets`, ``--strength NAME``): per-photo PGD
  on FaceNet, about a second a face; it works against pretrained recognisers, not against a
  network trained from scratch.

Each card has the same fields: ``kind``, ``visibility`` (``invisible``: the default generator's
look; ``faint``: held to the same budget, yet the eye finds shading at 2x on some faces;
``visible``), the per-file medians ``haarpsi_median`` and ``delta_e_p95_median``,
``seconds_per_photo`` (2 CPU cores, 112-px face), ``stops``, ``does_not_stop`` and ``results`` (the committed measurements).

    >>> list_protections()
    ['default', 'high', 'low', 'medium', 'robust', 'robust_rem', 'visible']
    >>> protection_card("low")["kind"], protection_card("default")["kind"]
    ('cloak', 'generator')
"""

from __future__ import annotations

from typing import Any

import torch

from segue.protect.presets import STRENGTHS, create_cloaker
from segue.registry import Registry
from segue.shipped import WEIGHTS

PROTECTIONS: Registry = Registry("protection", "protections")
#: Seconds a photo for a generator: the end-to-end JPEG -> JPEG throughput of the default generator,
#: 173.4 photos/s on 2 CPU cores (benchmarks/results/throughput.md).
GENERATOR_SECONDS = round(1 / 173.4, 4)
#: What no cloak stops (docs/attacks.md): the cloak moves the embedding of a pretrained recogniser.
CLOAK_DOES_NOT_STOP = ("a network trained from scratch on the protected photos; the numbers are for 6 protected photos a "
                       "person, and with about 19 dlib recognises more (low 88 %, medium 41 %, high 17 %; docs/attacks.md)")


def _generator(name: str) -> None:
    tags = WEIGHTS.tags(name)

    def build(device: str | torch.device = "cpu", seed: int = 0):
        from segue.checkpoint import load_generator

        return load_generator(name, device)[0]

    build.__doc__ = WEIGHTS.summary(name)
    PROTECTIONS.register(name, kind="generator", visibility=tags["visibility"],
                         haarpsi_median=tags["haarpsi_median"], delta_e_p95_median=tags["delta_e_p95_median"],
                         seconds_per_photo=GENERATOR_SECONDS,
                         stops=f"a network trained from scratch on the protected photos of {tags['trained_on']}: "
                               f"{tags['from_scratch_peak_pct']} % peak; survives {tags['survives']}",
                         does_not_stop=f"people it was not trained on ({tags['unseen_people']}); {tags['fails']}",
                         results=tags["results"])(build)


def _cloak(name: str) -> None:
    tags = STRENGTHS.tags(name)

    def build(device: str | torch.device = "cpu", seed: int = 0):
        return create_cloaker(name, device, seed)

    build.__doc__ = STRENGTHS.summary(name)
    PROTECTIONS.register(name, kind="cloak", visibility=tags["visibility"], haarpsi_median=tags["haarpsi_median"],
                         delta_e_p95_median=tags["delta_e_p95_median"], seconds_per_photo=tags["seconds_per_photo"],
                         stops=f"pretrained recognisers, in part: {tags['measured']}", does_not_stop=CLOAK_DOES_NOT_STOP,
                         results=tags["results"])(build)


for _name in WEIGHTS.list():
    _generator(_name)
for _name in STRENGTHS.list():
    if _name in PROTECTIONS:
        raise ValueError(f"{_name!r} names both a generator and a cloak strength")
    _cloak(_name)


def list_protections(pattern: str | None = None, kind: str | None = None) -> list[str]:
    """Registered protections (``kind``: ``generator`` or ``cloak`` only)."""
    return [n for n in PROTECTIONS.list(pattern) if kind is None or PROTECTIONS.tags(n)["kind"] == kind]


def protection_card(name: str) -> dict[str, Any]:
    """The card of a protection (see the module docstring for its fields)."""
    return PROTECTIONS.tags(name)


def create_protection(name: str, device: str | torch.device = "cpu", seed: int = 0):
    """The loaded protection, with a generator's call ``(x, side_labels) -> delta`` and its visibility
    budget attached: a :class:`segue.generator.Generator` or a :class:`segue.protect.cloaker.Cloaker`."""
    return PROTECTIONS.create(name, device=device, seed=seed)


def describe(name: str) -> list[str]:
    """The lines ``segue list protections`` prints under a protection's name."""
    c = protection_card(name)
    seen = c["visibility"].upper() if c["visibility"] == "visible" else c["visibility"]
    return [f"{c['kind']}, {seen}: HaarPSI {c['haarpsi_median']}, CIEDE2000 p95 {c['delta_e_p95_median']} "
            f"(median per file); {c['seconds_per_photo']} s a photo on 2 CPU cores",
            f"stops: {c['stops']}", f"does not stop: {c['does_not_stop']}  [{c['results']}]"]
