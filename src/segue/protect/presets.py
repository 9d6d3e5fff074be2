"""Cloak strengths (``segue protect --cloak --strength NAME``): each one a measured point, with a card.

Fawkes users know ``low / medium / high``; here each name is a
:class:`segue.methods.perceptual_cloak.PerceptualCloak` held to a visibility bar set by the default
generator on the same photo, and ``visible`` is the cloak as it was first shipped (L2 steps under a
30 dB PSNR floor). Each card says how visible the strength is, what it stops and what it costs, as
measured by ``benchmarks/cloak_frontier.py`` (settings chosen on ORL people 0-19 only; dlib never
used to make or choose anything); ``segue list strengths`` prints them.

    >>> list_strengths()
    ['high', 'low', 'medium', 'visible']
    >>> strength_tags("low")["visibility"]
    'faint'
"""

from __future__ import annotations

from typing import Any

import torch

from segue.registry import Registry
from segue.visibility import GENERATOR_VISIBILITY, VISIBLE, VisibilityBudget

STRENGTHS: Registry = Registry("cloak strength", "strengths")
#: ``--cloak`` without ``--strength``: the strongest one within generator visibility.
DEFAULT_STRENGTH = "low"
#: Chroma damping and texture weighting: on ORL 0-19 they lowered dlib-linear from 87.5 to 82.5 % and
#: FaceNet-linear from 57.5 to 37.5 % at the same HaarPSI (benchmarks/results/cloak_frontier_orl20_pilot1.md).
SHAPING = dict(chroma=0.3, texture=True)
#: FaceNet's passes in bfloat16 where the device runs it natively (:func:`segue.runtime.native_bf16`):
#: half their float32 time on a 2-core AVX512-BF16 CPU, the same protection on ORL people 0-19
#: (benchmarks/results/cloak_frontier_orl20_bf16.md). Elsewhere float32, ~1.5x the card's seconds.
PRECISION = "auto"
#: PGD steps of every perceptual strength: the most that keep ``low`` under 0.85 s a photo on 2 CPU cores
#: with bfloat16 (1 s less this machine's ~10 % drift; 20 steps 0.59 s, 24 0.77 s, 28 0.86 s on ORL
#: people 0-19, the same file); chosen by time, not by what an attacker scores.
STEPS = 24
#: The run each card's numbers come from (tests/test_protections.py holds the cards to it): the
#: perceptual strengths as they are now; ``visible``, unchanged since, from the run before.
RESULTS_FILES = {"low": "benchmarks/results/cloak_frontier_celeba234_test_bf16.json",
                 "visible": "benchmarks/results/cloak_frontier_celeba234_test_nhwc.json"}
RESULTS_FILES["medium"] = RESULTS_FILES["high"] = RESULTS_FILES["low"]
#: Where the settings were chosen and the earlier runs, named on each card.
HISTORY = {"visible": "first run: cloak_frontier_celeba234_test"}
HISTORY["low"] = HISTORY["medium"] = HISTORY["high"] = (
    "first run: cloak_frontier_celeba234_test; float32, 20 steps: _nhwc; choices: cloak_frontier_orl20_pilot1, "
    "_pilot2, cloak_frontier_orl20_bf16; low at 16 steps: cloak_frontier_celeba234_test_low")


def _perceptual(haarpsi_margin: float, delta_e_margin: float, **extra: Any):
    def build(device: str | torch.device = "cpu", seed: int = 0):
        from segue.methods.perceptual_cloak import PerceptualCloak

        return PerceptualCloak(haarpsi_margin=haarpsi_margin, delta_e_margin=delta_e_margin, steps=STEPS, **SHAPING,
                               precision=PRECISION, **extra, seed=seed, device=device).load()
    return build


def _low(device="cpu", seed=0):
    """Within the default generator's numbers on each photo, faint shading at 2x on some faces; weak against dlib.

    (HaarPSI and CIEDE2000 p95 are held to the generator's; the shading p95 sees what the eye does:
    docs/visibility.md.)"""
    return _perceptual(0.0, 0.0)(device, seed)


def _medium(device="cpu", seed=0):
    """A little more visible than the default generator (HaarPSI 0.05 lower per photo)."""
    return _perceptual(0.05, 1.5)(device, seed)


def _high(device="cpu", seed=0):
    """Visible (HaarPSI 0.12 lower than the default generator's per photo)."""
    return _perceptual(0.12, 3.5)(device, seed)


def _visible(device="cpu", seed=0):
    """The cloak as first shipped: 16/255 L2 steps under a 30 dB floor; strongest, visibly swirled."""
    from segue.protect.cloaker import create_cloak

    return create_cloak(device, seed)


# One card per strength: builder, visibility ("faint": held to the generator's budget, and the eye finds
# shading at 2x on some faces; "visible": held to VISIBLE), medians per file (HaarPSI, CIEDE2000 p95), seconds a 112-px
# photo on 2 CPU cores (with bfloat16: PRECISION; ~1.5x that in float32), and what it was measured to do.
# Measured on the 35 CelebA234 test people (6 protected training photos each, 2-core CPU); the default
# generator on the same photos: HaarPSI 0.969, CIEDE2000 p95 3.62, dlib-linear 96.6 %.
CARDS = {
    "low": (_low, "faint", 0.971, 1.92, 0.9,
            "dlib-linear / 1-NN 68.0 / 56.0 % (each alone 71.4 / 64.6), FaceNet-linear 26.9 %. "
            "Shading at 2x side by side: on some faces a furrowed brow or darker eyes"),
    "medium": (_medium, "visible", 0.921, 3.25, 0.8,
               "dlib-linear / 1-NN 28.6 / 21.7 % (each alone 21.7 / 19.4), FaceNet-linear 0.0 %. Embossed shading"),
    "high": (_high, "visible", 0.854, 4.27, 0.8,
             "dlib-linear / 1-NN 12.0 / 8.6 % (each alone 10.9 / 10.3; after JPEG q75 + halving 24.0 / 19.4), "
             "FaceNet-linear 0.0 %. Wrinkle-like patterns"),
    "visible": (_visible, "visible", 0.812, 6.5, 0.9,
                "dlib-linear / 1-NN 9.7 / 10.3 % (each alone 11.4 / 15.4), FaceNet-linear 0.0 %. Colour swirls"),
}
for _name, (_build, _visibility, _haarpsi, _delta_e, _seconds, _measured) in CARDS.items():
    STRENGTHS.register(_name, visibility=_visibility, budget="visible" if _visibility == "visible" else "generator",
                       haarpsi_median=_haarpsi, delta_e_p95_median=_delta_e, seconds_per_photo=_seconds,
                       results=f"{RESULTS_FILES[_name].removesuffix('.json')} ({HISTORY[_name]})", measured=_measured)(_build)


def list_strengths(pattern: str | None = None) -> list[str]:
    return STRENGTHS.list(pattern)


def strength_tags(name: str) -> dict[str, Any]:
    return STRENGTHS.tags(name)


def strength_budget(name: str) -> VisibilityBudget:
    """The budget every file of this strength is held to."""
    return GENERATOR_VISIBILITY if strength_tags(name)["budget"] == "generator" else VISIBLE


def create_preset(name: str, device: str | torch.device = "cpu", seed: int = 0):
    """The loaded cloak method of a strength (a :class:`FeatureCloak`)."""
    return STRENGTHS.create(name, device=device, seed=seed)


def create_cloaker(strength: str = DEFAULT_STRENGTH, device: str | torch.device = "cpu", seed: int = 0,
                   native_size: bool = False):
    """A :class:`segue.protect.cloaker.Cloaker` of ``strength``, held to that strength's visibility budget;
    ``native_size``: each face cloaked at its own size (up to ``NATIVE_MAX_SIDE``), not at 112 px."""
    from segue.protect.cloaker import Cloaker

    cloaker = Cloaker(create_preset(strength, device, seed), image_size=0 if native_size else 112, device=device,
                      visibility_budget=strength_budget(strength))
    cloaker.strength = strength
    return cloaker
