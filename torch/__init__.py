"""TORCH: tracking of offenders' GPS tags for Integrated Offender Management.

The ``torch`` package is the domain core. It knows fixes, tracks, zones and
verdicts; it does not know HTTP or MQTT. Storage lives behind ``torch.store``.
"""

__version__ = "0.1.0"
