"""The network lab: a fleet of mail servers in network namespaces on this machine.

For tests, benchmarks and demonstrations; never used by an audit.  Needs root.

    lab = tests.lab.up()        # tears down any previous lab first
    lab.inventory               # inventories/lab/hosts.yml
    tests.lab.down()            # removes everything

or ``python -m tests.lab up|down|status``.  The topology is data, in
``tests.lab.topology``.
"""

from tests.lab.control import Lab, down, status, up
from tests.lab.netns import LabError

__all__ = ["Lab", "LabError", "down", "status", "up"]
