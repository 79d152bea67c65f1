"""Template builders: each makes a read-only root tree plus metadata.

``BUILDERS`` maps a template kind to the module that builds it; the service
layer picks one by name and never reaches into a builder's internals.
"""

BUILDERS = {"tiny": "corral.templates.tiny"}
