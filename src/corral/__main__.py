import gc

gc.disable()  # while the modules load; see corral.cli.main.entry

from corral.cli.main import entry  # noqa: E402

entry()
