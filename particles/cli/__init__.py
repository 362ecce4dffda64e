"""The command-line tools, one module each: `simulate`, `sweep`, `reproduce`, `transformer`.

Each module has `main(argv) -> int` and `entry()` (the console script: `particles-simulate`
and so on); `scripts/<name>.py` calls the same entry. Shared conventions are in `_common`:
exit codes 0 / 2 (usage or input) / 3 (numerical failure) / 130 (interrupted), one-line
errors without a traceback unless `--debug`, atomic files, progress bars on stderr.
"""
