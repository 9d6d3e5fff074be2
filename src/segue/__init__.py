"""Segue: side-information guided generative unlearnable examples for face photos.

The modules mirror the boxes of the paper's Fig. 1:

* :mod:`segue.side_info`   - who is in the photo, as a 16-bit code (labels or pseudo-labels)
* :mod:`segue.generator`   - the perturbation generator G(x, code) -> delta
* :mod:`segue.distortion`  - the distortion layer that makes delta robust while G trains
* :mod:`segue.training`    - the two-stage (surrogate / generator) training of Alg. 1
* :mod:`segue.protect`     - one forward pass per batch over a folder of photos
* :mod:`segue.victim`      - the victim evaluation: train on protected, test on clean
* :mod:`segue.attackers`   - the attackers: from-scratch victims, pretrained face embeddings, fine-tuning
* :mod:`segue.countermeasures` - what an attacker does to the photos before / while training

The Python API: :func:`protect_images`, :func:`protect_folder`, :func:`load_generator`;
``segue.registry.REGISTRIES`` (``segue list``) names every pluggable part.
"""

__version__ = "0.1.0"

from segue.generator import Generator  # noqa: E402
from segue.checkpoint import load_generator, save_generator  # noqa: E402
from segue.api import protect_folder, protect_images  # noqa: E402
from segue.shipped import list_weights  # noqa: E402

__all__ = ["Generator", "list_weights", "load_generator", "protect_folder", "protect_images", "save_generator",
           "__version__"]
