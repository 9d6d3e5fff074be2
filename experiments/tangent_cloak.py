"""The perceptual cloak stepping along HaarPSI's level set instead of into it.

:class:`segue.methods.perceptual_cloak.PerceptualCloak` takes FaceNet's step and then scales the whole
delta down until the photo is back within its bar, shrinking the useful change with the visible one.
Here each step first loses its component that would lower the photo's HaarPSI (the bar that binds at
``low``: HaarPSI 0.970 against the generator's 0.969, CIEDE2000 p95 1.9 against 3.6), a projection onto
the half-space where HaarPSI does not fall to first order, so the scale-down has less to take back.
The risk, to be looked at, not only measured: a step HaarPSI does not see may be one the eye does
(smooth shading, where HaarPSI's Haar filters are small). ``python benchmarks/cloak_frontier.py
--data orl20 --protections tangent:chroma=0.3,texture=true ...`` measures it.
"""

from __future__ import annotations

import torch

from segue.methods.perceptual_cloak import PerceptualCloak
from segue.visibility import Reference


class TangentCloak(PerceptualCloak):
    """:class:`PerceptualCloak` whose steps keep the photo's HaarPSI to first order (``tangent`` of
    the component that lowers it removed: 1 all of it, 0 none, the package's cloak)."""

    name = "tangent-cloak"

    def __init__(self, tangent: float = 1.0, **kw):
        super().__init__(**kw)
        self.tangent = float(tangent)

    def config(self) -> dict:
        return {**super().config(), "tangent": self.tangent}

    def direction(self, g: torch.Tensor, mask: torch.Tensor | None, x: torch.Tensor, delta: torch.Tensor,
                  refs: list[Reference]) -> torch.Tensor:
        step = self.shape_step(g, mask)
        with torch.enable_grad():
            y = (x + delta).clamp(0, 1).detach().requires_grad_(True)
            haarpsi = self.terms(refs, y)[0]  # (N, S): at each of the bar's viewing scales
            grads = [torch.autograd.grad(haarpsi[:, k].sum(), y, retain_graph=True)[0] for k in range(haarpsi.shape[1])]
        for gh in grads:  # one half-space per scale, in turn
            gh = torch.nan_to_num(gh)
            along = (step * gh).sum((1, 2, 3), keepdim=True).clamp_max(0)  # the step's downhill component
            step = step - self.tangent * along * gh / gh.pow(2).sum((1, 2, 3), keepdim=True).clamp_min(1e-20)
        return step


def compared(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """``x`` protected by ``low`` and by the cloaks that met its bar and lost to the eye, each with the
    shipped strengths' shaping, steps and precision: what the side by side and
    experiments/visibility_measures.py compare."""
    from experiments.highpass_cloak import HighPassCloak
    from segue.protect.presets import PRECISION, SHAPING, STEPS, create_preset

    kw = dict(**SHAPING, steps=STEPS, precision=PRECISION)
    return {"low": create_preset("low").perturb(x, y), "tangent": TangentCloak(**kw).load().perturb(x, y),
            "tangent two-scale": TangentCloak(**kw, viewing_scales=2).load().perturb(x, y),
            "tangent high-passed": HighPassCloak(**kw, tangent=1.0).load().perturb(x, y)}


def main() -> None:
    """Side by side at 2x, three ORL faces of people 0-19: original | ``low`` | tangent | tangent with the
    bar also at half size | tangent and high-passed (experiments/highpass_cloak.py):
    ``python experiments/tangent_cloak.py [--out docs/experiments/img/tangent_cloak_orl.png]``."""
    import argparse
    import sys
    from pathlib import Path

    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the repository root
    from segue.data import load_orl

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/experiments/img/tangent_cloak_orl.png")
    args = ap.parse_args()
    train, _ = load_orl(size=112, train_per_class=8, num_classes=20)
    idx = [0, 130, 95]
    x, y = train.images[idx], train.labels[idx]
    columns = [x, *compared(x, y).values()]
    rows = [np.concatenate([(c[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for c in columns], 1)
            for i in range(len(idx))]
    grid = Image.fromarray(np.concatenate(rows, 0))
    grid.resize((grid.width * 2, grid.height * 2), Image.NEAREST).save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
