"""The JUnit XML report, for CI dashboards that chart test results over time.

One ``testsuite`` per host, one ``testcase`` per host x check (x target):
``fail`` is a <failure>, ``error`` and ``unreachable`` are <error>s, ``skipped``
is <skipped/>; ``warn`` passes with its reason in <system-out>.  Host text loses
its control characters and terminal escapes (``fleet.text``), and whatever
else XML 1.0 cannot carry even escaped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from fleet.model import CheckResult, HostResult, RunResult, Status
from fleet.text import clean

# Characters XML 1.0 does not allow at all (escaping does not help): the complement of
# its Char production (#x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-
# #x10FFFF]), written as the short list it is: a negated class of those ranges is
# slow to compile, on every run.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids."""
    return _NOT_XML.sub("", text)


def _text(text: str) -> str:
    """Host text for the report: clean, then fit for XML."""
    return xml_text(clean(text))


def _case_name(r: CheckResult) -> str:
    return f"{r.check} -> {r.target}" if r.target else r.check


def _testcase(parent: ET.Element, h: HostResult, r: CheckResult) -> None:
    case = ET.SubElement(
        parent,
        "testcase",
        name=_text(_case_name(r)),
        classname=_text(f"fleet.{h.host}"),
        time=f"{r.duration:.3f}",
    )
    message = _text(r.summary)
    detail = _text(r.evidence)
    if r.status is Status.FAIL:
        ET.SubElement(case, "failure", message=message, type="fail").text = detail or message
    elif r.status in (Status.ERROR, Status.UNREACHABLE):
        kind = r.status.value
        ET.SubElement(case, "error", message=message, type=kind).text = detail or message
    elif r.status is Status.SKIPPED:
        ET.SubElement(case, "skipped", message=message)
    elif r.status is Status.WARN:
        ET.SubElement(case, "system-out").text = f"warn: {message}"


def _testsuite(parent: ET.Element, run: RunResult, h: HostResult) -> None:
    statuses = [r.status for r in h.results]
    suite = ET.SubElement(
        parent,
        "testsuite",
        name=_text(h.host),
        hostname=_text(h.address),
        tests=str(len(statuses)),
        failures=str(statuses.count(Status.FAIL)),
        errors=str(statuses.count(Status.ERROR) + statuses.count(Status.UNREACHABLE)),
        skipped=str(statuses.count(Status.SKIPPED)),
        time=f"{h.duration:.3f}",
        timestamp=_text(run.started),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (("platform", h.platform), ("connection", h.connection)):
        ET.SubElement(props, "property", name=name, value=_text(value))
    for r in h.results:
        _testcase(suite, h, r)


def render_junit(run: RunResult) -> str:
    """The run as a JUnit XML document (UTF-8, with its declaration)."""
    counts = run.counts()
    root = ET.Element(
        "testsuites",
        name=_text(f"fleet {run.inventory}"),
        tests=str(sum(counts.values())),
        failures=str(counts["fail"]),
        errors=str(counts["error"] + counts["unreachable"]),
        time=f"{sum(h.duration for h in run.hosts):.3f}",
    )
    for h in run.hosts:
        _testsuite(root, run, h)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
