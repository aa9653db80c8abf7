"""The benchmark: is fleet fast at fleet scale, and never stuck on a bad host?

``python -m tests.lab.bench [--hosts N] [--quick] [--scale N[,M]] [--windows W] [--all]``
(root; ``invoke bench``)
builds an N-host SSH bench lab (``tests.lab.topology.bench``) and measures, side
by side (fleet and the floor run ``--repeat`` times each, taking turns, and
their medians are reported: one run on a shared 2-core VM moves by +-15 %):

* **fleet**: the full default audit, ``python -m fleet audit -i <bench inventory>
  -l bench -q``, as a subprocess: wall time, client CPU (user+sys from
  ``os.wait4``), peak RSS (``ru_maxrss``), and whether every host x check came
  back with a status that is neither ``error`` nor ``unreachable``;
* **the floor**: the plain OpenSSH client fanned out with ``xargs -P <forks>``
  running the very script fleet sends (built by fleet's planner and composer);
* **ansible-playbook** running the same script as a ``raw`` task, same forks, and the
  playbook an Ansible user writes: a ``raw`` task per check, Ansible's SSH defaults
  (skipped with a note when it is not installed).

All three tools pin the same key exchange (curve25519-sha256, paramiko's), so
the comparison is about the tools, not OpenSSH 9's costlier default.  Then
the robustness figures: 10 % silent hosts, hosts that hang (a port that never
speaks SSH, a command that never ends) against the timeouts and ``--deadline``,
probes running side by side on one host, a 10,000-host inventory parsed, the
default plan's probe count for a 1,000-host mail group, and the WinRM cost per
Windows host against the standard lab's simulator.  ``--scale 1000,10000`` adds
fleet over that many hosts (memory, CPU per host); ``--windows 200`` adds that
many simulated Windows hosts (four simulator processes) audited over WinRM by
fleet and by ansible-playbook, and a py-spy profile of fleet's WinRM client;
``--all`` is all of it.

The modules: ``measure`` (a run's cost, medians), ``labs`` (the bench lab and its
servers), ``tools`` (fleet, the floor, paramiko, Ansible), ``robust`` (the bounds,
the inventory, the probe count), ``windows`` (WinRM), ``figures`` (targets, tables,
JSON), ``main`` (the phases, the command line).

The figures are printed as tables and written to ``reports/bench/<timestamp>.json``.
Every lab is torn down at the end, also on failure.  All traffic stays in the
lab's namespaces (198.18.0.0/15) and loopback.
"""

from tests.lab.bench.figures import Figures, report, targets, write_json
from tests.lab.bench.labs import complete
from tests.lab.bench.main import main, run_bench
from tests.lab.bench.measure import Measured, median_of
from tests.lab.bench.robust import Bounded, OnHost

__all__ = [
    "Bounded",
    "Figures",
    "Measured",
    "OnHost",
    "complete",
    "main",
    "median_of",
    "report",
    "run_bench",
    "targets",
    "write_json",
]
