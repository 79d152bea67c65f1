"""Corral: OS-level virtualization for Linux.

Fronts (``corral.cli``, ``corral.daemon``) call the service layer
(``corral.host.Host``), which drives ``cgroups``, ``storage``, ``network``,
``runtime`` and ``templates``; only ``corral.linux`` touches syscalls.
This module stays tiny: ``corral --version`` imports nothing else.
"""

__version__ = "0.1.0"
