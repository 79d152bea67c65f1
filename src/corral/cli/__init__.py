"""The ``corral`` command line: parse, call ``Host``, render.  Nothing else."""
