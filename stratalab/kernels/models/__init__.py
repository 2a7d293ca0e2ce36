"""Model files: format detection, signatures, runtimes and input validation.

Submodules are imported where used (``from stratalab.kernels.models.runtime
import load_model``); this package imports nothing heavy itself, so a bare
worker or the upload route pays for ONNX Runtime or torch only when it needs it.
"""

from __future__ import annotations
