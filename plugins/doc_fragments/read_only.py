"""Documentation fragment: the attributes of a module that only reads the host."""


class ModuleDocFragment:
    # A module that changes nothing: it runs in check mode as in a normal run, and has no diff.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - It only reads, so it runs in check mode as in a normal run.
  diff_mode:
    support: none
  platform:
    platforms: posix
"""
