"""The classic OpenSoundscape import paths of the torch parts.

`soundscape.torch.train` (the training loop), `soundscape.torch.predict` (the predictor,
with `windows` and `outputs`) live here; the architectures live in `soundscape.models`, and
`soundscape.torch.models`, `.compact` and `.encoders` are the same module objects under
their classic names.
"""

import sys

from .. import models
from ..models import compact, encoders

for _name, _module in (("models", models), ("compact", compact), ("encoders", encoders)):
    sys.modules[f"{__name__}.{_name}"] = _module
