"""The network lab: a fleet of mail servers in network namespaces on this machine.

For tests, benchmarks and demonstrations; never used by an audit.  Needs root.

    lab = fleet.lab.up()        # tears down any previous lab first
    lab.inventory               # inventories/lab/hosts.yml
    fleet.lab.down()            # removes everything

or ``python -m fleet.lab up|down|status``.  The topology is data, in
``fleet.lab.topology``.
"""

from fleet.lab.control import Lab, down, status, up
from fleet.lab.netns import LabError

__all__ = ["Lab", "LabError", "down", "status", "up"]
