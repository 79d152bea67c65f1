"""Template builders: each makes a read-only root tree plus metadata.

``BUILDERS`` maps a template kind to the module that builds it; the service
layer picks one by name and never reaches into a builder's internals.  A
builder's ``build(rootfs, kind=..., mirror=..., progress=...)`` fills an
empty directory and returns metadata.
"""

_DEBOOTSTRAP_KINDS = ("debian-11", "debian-12", "debian-13", "ubuntu-22.04", "ubuntu-24.04")

BUILDERS = {"tiny": "corral.templates.tiny",
            **{kind: "corral.templates.debootstrap" for kind in _DEBOOTSTRAP_KINDS}}
