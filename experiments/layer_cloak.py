"""The perceptual cloak with its objective on one of FaceNet's intermediate feature maps.

Transfer attacks that push a mid-level feature map away (ILA, Huang et al. ICCV 2019; FDA, Ganeshan
et al. ICCV 2019; FIA, Wang et al. ICCV 2021) move black-box models of another architecture more
than attacks on the last embedding: mid-level features are shared across networks, the last layer
is FaceNet's own. The forward and backward passes also stop at that layer, so a step costs less.
Everything else is :class:`segue.methods.perceptual_cloak.PerceptualCloak` (the bar, the shaping,
the steps); ``python benchmarks/cloak_frontier.py --data orl20 --protections layer:repeat_1 ...``
measures it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segue.methods.perceptual_cloak import PerceptualCloak

#: InceptionResnetV1's stages in the order of its forward pass (facenet-pytorch).
STAGES = ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b",
          "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8")


class FaceNetLayer(nn.Module):
    """FaceNet's port cut after ``layer``: ``(N,3,H,W)`` in [0,1] -> the L2-normalised flattened feature map."""

    def __init__(self, facenet: nn.Module, layer: str):
        super().__init__()
        if layer not in STAGES:
            raise ValueError(f"layer is one of {STAGES}")
        self.facenet, self.stages = facenet, STAGES[: STAGES.index(layer) + 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.facenet.preprocess(x)
        for name in self.stages:
            h = getattr(self.facenet.net, name)(h)
        return F.normalize(h.flatten(1), dim=1)


class LayerCloak(PerceptualCloak):
    """:class:`PerceptualCloak` away from the photo's own feature map after ``layer`` (``repeat_1``:
    17x17x256 at FaceNet's 160 px; ``mixed_6a``: 8x8x896); with ``embedding_weight`` > 0 the
    embedding's cosine is added to the objective as well."""

    name = "layer-cloak"

    def __init__(self, layer: str = "repeat_1", embedding_weight: float = 0.0, **kw):
        super().__init__(**kw)
        self.layer, self.embedding_weight = layer, float(embedding_weight)

    def config(self) -> dict:
        return {**super().config(), "layer": self.layer, "embedding_weight": self.embedding_weight}

    def load(self) -> "LayerCloak":
        super().load()  # FaceNet as the package's cloak builds it (folded batch norms, NHWC)
        facenet = self.models[0]
        self.models = [FaceNetLayer(facenet, self.layer)] + ([facenet] if self.embedding_weight > 0 else [])
        return self

    def objective(self, x: torch.Tensor, clean: list[torch.Tensor], targets) -> torch.Tensor:
        weights = [1.0, self.embedding_weight]
        return -sum(w * F.cosine_similarity(m(x), e).sum() for w, m, e in zip(weights, self.models, clean))


def main() -> None:
    """How far each cloak moves its own objective and FaceNet's embedding (mean cosine to the clean
    photo's) on ORL photos: ``python experiments/layer_cloak.py [--photos 16]``."""
    import argparse
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from experiments._common import write_results
    from segue.cloak import DIFFERENTIABLE
    from segue.data import load_orl
    from segue.protect.presets import SHAPING, create_preset

    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--layers", nargs="+", default=["repeat_1", "repeat_2"])
    args = ap.parse_args()
    train, _ = load_orl(size=112, train_per_class=8, num_classes=20)
    x, y = train.images[: args.photos], train.labels[: args.photos]
    facenet = DIFFERENTIABLE.create("facenet-torch")
    cloaks = {"low": create_preset("low")} | {k: LayerCloak(layer=k, **SHAPING).load() for k in args.layers}
    rows = {}
    for name, cloak in cloaks.items():
        out = cloak.perturb(x, y)
        with torch.no_grad():
            rows[name] = {"objective_cosine": round(float(F.cosine_similarity(cloak.models[0](out), cloak.models[0](x)).mean()), 3),
                          "facenet_cosine": round(float(F.cosine_similarity(facenet(out), facenet(x)).mean()), 3)}
    command = f"python experiments/layer_cloak.py --photos {args.photos} --layers {' '.join(args.layers)}"
    lines = ["# How far the layer cloaks move what they push", "", f"`{command}`", "",
             f"The first {args.photos} training photos of ORL people 0-19, 112 px, each cloak at `low`'s bar, shaping and steps; "
             "mean cosine to the clean photo's (1: not moved).", "",
             "| cloak | its own objective | FaceNet's embedding |", "|---|---|---|"]
    lines += [f"| {k} | {r['objective_cosine']} | {r['facenet_cosine']} |" for k, r in rows.items()]
    write_results("layer_cloak_moves", {"command": command, "rows": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
