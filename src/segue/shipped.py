"""The generators shipped inside the package, as tagged registry entries (timm's pretrained tags).

Each entry's tags say what a user needs to choose: the budget, the image quality and what the
weights were measured to survive or not, each with the committed results file it comes from.
``segue list weights`` prints them; ``--weights NAME`` and ``load_generator(NAME)`` load them.

    >>> from segue.shipped import list_weights, weights_tags
    >>> list_weights()
    ['default', 'robust', 'robust_rem']
    >>> weights_tags("robust_rem")["linf_255"]
    18
"""

from __future__ import annotations

from typing import Any

from segue.registry import Registry

WEIGHTS: Registry = Registry("shipped weights", "weights")


def _entry(name: str, file: str, doc: str, **tags: Any) -> None:
    def load(device: str = "cpu"):
        from segue.checkpoint import load_generator

        return load_generator(name, device)

    load.__doc__ = doc
    WEIGHTS.register(name, file=file, **tags)(load)


_entry("default", "webface10_112.safetensors",
       "The paper's recipe on WebFace10 at 112 px (configs/webface10_112.yaml): L-inf 8/255.",
       linf_255=8, psnr_db=32.2, ssim=0.82, from_scratch_peak_pct=15.3,
       survives="grayscale, JPEG q75, Cutout/Mixup/CutMix, adversarial training 2/255",
       fails="JPEG q30 (77.5 %) and q10 (85.0 %), downscale x0.5 (83.0 %), blur (83.5 %); pretrained embeddings",
       results="benchmarks/results/table1_cpu, benchmarks/results/table1_gpu")
_entry("robust", "webface10_112_robust.safetensors",
       "Survives re-encoding and resizing at L-inf 8/255 (a fine part plus an 8x8-block brightness part).",
       linf_255=8, psnr_db=30.8, ssim=0.838, from_scratch_peak_pct=15.8,
       survives="JPEG q75/q30, downscale x0.5/x0.25, grayscale, blur, grayscale + JPEG q30, adversarial training 4/255",
       fails="JPEG q10 (33.5 %); pretrained embeddings",
       results="benchmarks/results/robust_gpu (segue_2band_fdist)")
_entry("robust_rem", "webface10_112_robust_rem.safetensors",
       "Also against adversarial training and JPEG q10 (REM-style training; L-inf up to 18/255, PSNR >= 30.2 dB).",
       linf_255=18, psnr_db=30.3, ssim=0.851, from_scratch_peak_pct=15.0,
       survives="all ten countermeasure rows at 12.5-24.0 % (3 seeds), incl. JPEG q10 and adversarial training 4/255",
       fails="pretrained embeddings",
       results="benchmarks/results/robust_gpu (segue_2band_rem_long), benchmarks/results/robust_rem_long_cpu")


def list_weights(pattern: str | None = None) -> list[str]:
    return WEIGHTS.list(pattern)


def weights_tags(name: str) -> dict[str, Any]:
    """The tags of a shipped generator (file, linf_255, psnr_db, ssim, survives, fails, results)."""
    return WEIGHTS.tags(name)


SHIPPED = {name: WEIGHTS.tags(name)["file"] for name in WEIGHTS.list()}
