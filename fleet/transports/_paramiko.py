"""Import paramiko without paramiko importing invoke.  Import this before paramiko.

paramiko's ssh_config support imports invoke when it is installed (for
``Match exec``; fleet never reads an ssh_config through paramiko), and invoke
brings unittest.mock and asyncio with it: a third of paramiko's import time
on every run.  invoke is hidden only while paramiko loads and only when
nothing has imported it yet (``invoke audit`` has), so invoke itself stays
importable afterwards.
"""

import sys

_HIDE = "paramiko" not in sys.modules and "invoke" not in sys.modules
if _HIDE:
    sys.modules["invoke"] = None  # type: ignore[assignment]  # "not installed", for now
try:
    import paramiko  # noqa: F401
finally:
    if _HIDE and sys.modules.get("invoke", False) is None:
        del sys.modules["invoke"]
